#!/usr/bin/env bash
# One ViT block training step (batch 32, 49 tokens, dim 128, 4 heads, fp32, AdamW): mimlab on ort and go,
# and PyTorch on the same machine, in one run; prints each median and the ratios (PyTorch time / mimlab
# time, so > 1 means mimlab is faster).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${STEPS:-50}
out=$(mktemp)
for be in ort go; do
  n=$steps; [ "$be" = go ] && n=$(( steps / 5 > 5 ? steps / 5 : 5 ))
  MIMLAB_BENCH_PRINT=1 MIMLAB_BENCH_BACKEND=$be go test -run '^$' -bench BlockStep -benchtime ${n}x ./bench | grep -o 'RESULT.*' | tail -1 | tee -a "$out"
done
OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/block_torch.py "$steps" 2 | tee -a "$out"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
awk '/^RESULT/ { split($4, a, "="); t[$2] = a[2] }
     END { for (k in t) if (k != "pytorch") printf "%-12s %8.2f ms/step   ratio (pytorch/mimlab) %.2f\n", k, t[k], t["pytorch"] / t[k];
           printf "%-12s %8.2f ms/step\n", "pytorch", t["pytorch"] }' "$out"
