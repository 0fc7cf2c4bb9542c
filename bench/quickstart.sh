#!/usr/bin/env bash
# The quickstart's CAE and BEiT training steps (batch 64) in mimlab (ort) and PyTorch (CPU) on this
# machine, in one run: medians, images/s, ratios (mimlab images/s / PyTorch images/s: > 1 means mimlab is
# faster), peak RSS; then the scaling table over width and token count. Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${STEPS:-30}
out=$(mktemp)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(date -u +%F)"
run_go() { # $1 = overrides, $2 = steps
  MIMLAB_BENCH_SET="$1" MIMLAB_BENCH_PRINT=1 go test -run '^$' -bench QuickstartStep -benchtime "${2}x" ./bench | grep -o 'RESULT.*' | awk '!seen[$2]++ {next} {print}' 
}
run_py() { # $1 = threads, $2 = dim, $3 = grid, $4 = steps
  OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 bench/cae_torch.py "$4" "$1" "$2" "$3" | sed "s/^RESULT pytorch-/RESULT pytorch${1}t-/"
}
{ run_go "" "$steps"; run_py 2 64 7 "$steps"; run_py 1 64 7 "$steps"; } | tee "$out"
echo
echo "quickstart (dim 64, 7x7 tokens, batch 64):"
awk '/^RESULT/ { for (i = 3; i <= NF; i++) { split($i, kv, "="); v[$2, kv[1]] = kv[2] } names[$2] = 1 }
  END {
    for (m in names) if (m ~ /^mimlab/) {
      split(m, parts, "-"); meth = parts[3]
      best = ""; for (p in names) if (p ~ "^pytorch" && p ~ meth "$") { if (best == "" || v[p, "images_per_s"] > v[best, "images_per_s"]) best = p }
      printf "  %-5s mimlab %6.0f img/s (%.1f ms, %.1f ms with data)  PyTorch best %6.0f img/s (%s, %.1f ms)  ratio %.2f  peak RSS mimlab %s MB, PyTorch %s MB\n",
        meth, v[m, "images_per_s"], v[m, "median_ms"], v[m, "with_data_ms"], v[best, "images_per_s"], best, v[best, "median_ms"],
        v[m, "images_per_s"] / v[best, "images_per_s"], v[m, "peak_rss_mb"], v[best, "peak_rss_mb"]
    }
  }' "$out"
[ "${SCALING:-1}" = 1 ] || exit 0
echo
echo "scaling (CAE and BEiT step, batch 64; width x tokens; PyTorch at 2 threads):"
printf "  %-6s %-7s %-5s %12s %12s %7s %12s %12s\n" dim tokens method mimlab_ms pytorch_ms ratio mimlab_MB pytorch_MB
for cfg in "64 7" "128 7" "384 7" "64 14" "128 14"; do
  set -- $cfg; d=$1; g=$2; img=$((g * 4)); nm=$((g * g * 24 / 49)); st=8
  sets="encoder.dim=$d;data.image_size=$img;masking.num_masked=$nm"
  res=$( { run_go "$sets" $st; run_py 2 "$d" "$g" $st; } )
  for meth in cae beit; do
    gm=$(echo "$res" | grep "mimlab-.*-$meth " | head -1); pm=$(echo "$res" | grep "pytorch2t-$meth " | head -1)
    get() { echo "$1" | tr ' ' '\n' | grep "^$2=" | cut -d= -f2; }
    printf "  %-6s %-7s %-5s %12s %12s %7.2f %12s %12s\n" "$d" "$((g * g))" "$meth" "$(get "$gm" median_ms)" "$(get "$pm" median_ms)" \
      "$(echo "$(get "$pm" median_ms) / $(get "$gm" median_ms)" | bc -l)" "$(get "$gm" peak_rss_mb)" "$(get "$pm" peak_rss_mb)"
  done
done
