#!/usr/bin/env bash
# The CAE and BEiT training steps (batch 64, forward + backward + clip + AdamW) in mimlab (ort) and PyTorch
# (CPU) on this machine, side by side: the quickstart's size (dim 64, 49 tokens) and the scaling rows (dim
# 128 and 384 at 49 tokens, dim 64 and 128 at 196 tokens). Every (engine, model, thread count) runs as its own
# process, so peak RSS is that model's alone; the engines are interleaved and the whole table is repeated
# REPEATS times (default 3). Warm-up (graph compile, 3-5 first steps) is excluded. Prints median and range
# of each step time, and ratio = PyTorch's ms at its best thread count (1 or 2, the lower median) / mimlab's
# ms: > 1 means mimlab is faster. Not run in CI. ROWS="64x7 128x14" picks rows; MIMLAB_ORT_OPTIONS passes
# ONNX Runtime levers through (BENCHMARKS.md).
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${REPEATS:-3}
rows=${ROWS:-"64x7 128x7 384x7 64x14 128x14"}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/bench.test" ./bench
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F); $repeats repeats; ORT options: ${MIMLAB_ORT_OPTIONS:-none}"
run_go() { # $1 = row, $2 = method, $3 = steps
  local d=${1%x*} g=${1#*x}
  local sets="encoder.dim=$d;data.image_size=$((g * 4));masking.num_masked=$((g * g * 24 / 49))"
  (cd bench && MIMLAB_BENCH_SET="$sets" MIMLAB_BENCH_PRINT=1 "$work/bench.test" -test.run '^$' -test.bench "QuickstartStep/$2\$" -test.benchtime "${3}x") |
    grep -o 'RESULT.*' | tail -1 | sed "s/^RESULT [^ ]*/RESULT row=$1 engine=mimlab method=$2/"
}
run_py() { # $1 = row, $2 = method, $3 = steps, $4 = threads
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/cae_torch.py "$3" "$4" "${1%x*}" "${1#*x}" "$2" |
    grep -o 'RESULT.*' | sed "s/^RESULT [^ ]*/RESULT row=$1 engine=pytorch${4}t method=$2/"
}
for r in $(seq "$repeats"); do
  for row in $rows; do
    steps=10; [ "$row" = 64x7 ] && steps=30
    for m in cae beit; do
      run_go "$row" "$m" "$steps"; run_py "$row" "$m" "$steps" 1; run_py "$row" "$m" "$steps" 2
    done
  done
done | tee "$work/out"
echo
printf "%-7s %-5s %-22s %-30s %-7s %-16s %s\n" row model "mimlab ms (range)" "PyTorch best ms (range, thr)" ratio "ratio range" "peak MB mimlab / PyTorch (x)"
awk 'function sort(a, n,   i, j, x) { for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } }
  function med(s,   v, n) { n = split(substr(s, 2), v, " "); sort(v, n); return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2 }
  function lo(s,   v, n) { n = split(substr(s, 2), v, " "); sort(v, n); return v[1] }
  function hi(s,   v, n) { n = split(substr(s, 2), v, " "); sort(v, n); return v[n] }
  /^RESULT/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); f[kv[1]] = kv[2] }
    k = f["row"] SUBSEP f["method"] SUBSEP f["engine"]; ms[k] = ms[k] " " f["median_ms"]
    if (f["peak_rss_mb"] + 0 > rss[k]) rss[k] = f["peak_rss_mb"] + 0
    if (!(f["row"] in seen)) { seen[f["row"]] = 1; order[++nrows] = f["row"] }
    delete f }
  END {
    for (i = 1; i <= nrows; i++) for (mm = 1; mm <= 2; mm++) {
      row = order[i]; m = (mm == 1) ? "cae" : "beit"; g = row SUBSEP m SUBSEP "mimlab"
      best = ""; for (t = 1; t <= 2; t++) { p = row SUBSEP m SUBSEP "pytorch" t "t"; if (p in ms && (best == "" || med(ms[p]) < med(ms[best]))) { best = p; bt = t } }
      if (!(g in ms) || best == "") continue
      printf "%-7s %-5s %7.1f (%.1f-%.1f)%s %7.1f (%.1f-%.1f, %dt)%s %5.2f   %.2f-%.2f       %d / %d (%.1fx)\n", row, m,
        med(ms[g]), lo(ms[g]), hi(ms[g]), "      ", med(ms[best]), lo(ms[best]), hi(ms[best]), bt, "   ",
        med(ms[best]) / med(ms[g]), lo(ms[best]) / hi(ms[g]), hi(ms[best]) / lo(ms[g]), rss[g], rss[best], rss[g] / rss[best]
    }
  }' "$work/out"
