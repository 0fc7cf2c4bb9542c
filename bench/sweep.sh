#!/usr/bin/env bash
# Whole sweeps (issue 18): trials per hour of a 6-trial quickstart-sized sweep (CAE and BEiT x 3 seeds, the
# quickstart's models, STEPS steps each, no evaluation) in mimlab and in PyTorch, interleaved, REPEATS
# times, on this machine. mimlab runs: `-j auto` (what it picks by itself), and both splits of 2 cores
# explicitly: `-j 1 --threads 2` and `-j 2 --threads 1` (one of them is what auto picks). PyTorch
# runs each trial as its own process (bench/cae_torch.py, interpreter start and model build included, as
# a real PyTorch sweep would): 6 in a row at 1 thread (its fastest setting here, BENCHMARKS.md), and 2 at a
# time of 1 thread each. A mimlab trial includes loading MNIST, augmentation and masks; PyTorch's trains
# on one fixed batch, which favours PyTorch. Prints each run's wall time and the medians and ranges of
# trials per hour; ratio = mimlab / PyTorch's best (> 1: mimlab faster). Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${STEPS:-100}
repeats=${REPEATS:-3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/sweep" ./cmd/sweep
cat > "$work/spec.toml" <<SPEC
name = "bench_sweep"
base = "$PWD/experiments/base/mnist.toml"
[train]
steps = $steps
checkpoint_every = 100000
[eval]
protocols = []
[sweep]
seeds = [1, 2, 3]
[sweep.zip]
"method.name" = ["cae", "beit"]
"method.align_weight" = [2.0, 0.0]
"regressor.name" = ["cae", "none"]
"decoder.name" = ["transformer", "linear"]
SPEC
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F); $steps steps a trial, 6 trials"
now() { date +%s.%N; }
mimlab() { # $1 = label, rest = flags; env passes through
  local label=$1; shift
  rm -rf "$work/runs" "$work/r.db"*
  local t0; t0=$(now)
  "$work/sweep" run --plain --db "$work/r.db" --runs "$work/runs" "$@" "$work/spec.toml" > "$work/log" 2>&1 || { cat "$work/log"; exit 1; }
  local t1; t1=$(now)
  echo "RUN $label wall_s=$(echo "$t1 - $t0" | bc -l) $(grep -m1 -o -- '-j [a-z0-9]*: .*' "$work/log" | tr ' ' '_')"
}
torch_trial() { OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/cae_torch.py "$steps" 1 64 7 "$1" > /dev/null; }
export -f torch_trial; export steps
pytorch() { # $1 = label, $2 = processes at once
  local t0; t0=$(now)
  printf '%s\n' cae beit cae beit cae beit | xargs -P "$2" -I{} bash -c 'torch_trial {}'
  local t1; t1=$(now)
  echo "RUN $1 wall_s=$(echo "$t1 - $t0" | bc -l)"
}
for r in $(seq "$repeats"); do
  mimlab mimlab-auto
  pytorch pytorch-seq-1t 1
  mimlab mimlab-j1-t2 -j 1 --threads 2
  pytorch pytorch-2x1t 2
  mimlab mimlab-j2-t1 -j 2 --threads 1
done | tee "$work/out"
echo
awk 'function sort(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } }
  /^RUN/ { split($3, kv, "="); w[$2] = w[$2] " " kv[2]; n[$2]++ }
  END {
    for (k in w) {
      m = split(substr(w[k], 2), v, " "); sort(v, m)
      med = (m % 2) ? v[(m + 1) / 2] : (v[m / 2] + v[m / 2 + 1]) / 2
      tph[k] = 6 * 3600 / med
      printf "%-22s median %6.1f s (range %.1f-%.1f, n=%d)  %5.0f trials/hour (range %.0f-%.0f)\n", k, med, v[1], v[m], m, tph[k], 6 * 3600 / v[m], 6 * 3600 / v[1]
    }
    best = (tph["pytorch-seq-1t"] > tph["pytorch-2x1t"]) ? "pytorch-seq-1t" : "pytorch-2x1t"
    printf "ratio mimlab -j auto / PyTorch best (%s): %.2f\n", best, tph["mimlab-auto"] / tph[best]
  }' "$work/out"
