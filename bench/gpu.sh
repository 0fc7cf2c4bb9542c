#!/usr/bin/env bash
# The GPU check (issue 10), for a machine with an NVIDIA GPU, Go and the machine's own JAX CUDA / PyTorch:
# builds mimlab with -tags xla, finds a PJRT CUDA plugin (never downloads one), runs a short quickstart on the
# GPU, and times the quickstart's CAE and BEiT steps against PyTorch on the same GPU. Prints the card and
# the ratios. Usage: bash bench/gpu.sh   (STEPS=200 for the quickstart trial length)
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
export GOMLX_NO_AUTO_INSTALL=1
if [ -z "${PJRT_PLUGIN_LIBRARY_PATH:-}" ]; then
  plugin=$(find / \( -name 'pjrt_c_api_cuda_plugin.so' -o -name 'xla_cuda_plugin.so' \) -not -path '*/proc/*' 2>/dev/null | head -1 || true)
  if [ -z "$plugin" ]; then echo "no PJRT CUDA plugin on this machine (a JAX CUDA install has jax_plugins/xla_cuda12/xla_cuda_plugin.so)"; exit 1; fi
  echo "plugin: $plugin"
  d=$(mktemp -d); mkdir -p "$d/lib"
  ln -s "$plugin" "$d/lib/pjrt_c_api_cuda_plugin.so"
  # The plugin's RPATH wants the NVIDIA libraries at ../nvidia relative to it.
  nv=$(dirname "$plugin")/../nvidia; [ -d "$nv" ] || nv=$(find / -type d -name nvidia -path '*site-packages*' 2>/dev/null | head -1)
  [ -n "$nv" ] && ln -s "$(readlink -f "$nv")" "$d/nvidia"
  export PJRT_PLUGIN_LIBRARY_PATH="$d/lib"
fi
go build -tags xla -o /tmp/mimlab-sweep ./cmd/sweep
db=$(mktemp -d)/gpu.db
time /tmp/mimlab-sweep run --db "$db" --runs "$(dirname "$db")/runs" --device cuda -set train.steps="${STEPS:-200}" experiments/quickstart.toml
/tmp/mimlab-sweep status --db "$db"
MIMLAB_BENCH_BACKEND=cuda MIMLAB_BENCH_PRINT=1 go test -tags xla -run '^$' -bench QuickstartStep -benchtime 50x ./bench | grep -o 'RESULT.*' | tee /tmp/gpu_mimlab.txt
TORCH_DEVICE=cuda python3 bench/cae_torch.py 50 | tee /tmp/gpu_torch.txt
for m in cae beit; do
  g=$(grep "mimlab-.*-$m " /tmp/gpu_mimlab.txt | tail -1 | sed 's/.*images_per_s=\([0-9]*\).*/\1/')
  p=$(grep "pytorch-$m " /tmp/gpu_torch.txt | sed 's/.*images_per_s=\([0-9]*\).*/\1/')
  echo "$m: mimlab $g img/s, PyTorch $p img/s, ratio $(echo "$g / $p" | bc -l | cut -c1-4)"
done
