#!/usr/bin/env bash
# On the GPU machine (package installed): per-SASS-instruction warp-stall samples of the grouped
# GEMM kernels for one (shape, T), summarized by scripts/sass_hotspots.py into
# $OUT/sass-<shape>-<T>.txt (hot instructions and the sample share of each code region).
#   bash scripts/device_prof_sass.sh deepseek-v3 4096
set -uo pipefail
out=${OUT:-/tmp/moe12x-out}; mkdir -p "$out"
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
[[ -n $ncu ]] || { echo "device_prof_sass: no ncu"; exit 0; }
root=$PWD; shape=$1; T=$2
tmp=$(mktemp -d)
(cd /tmp && timeout 300 "$ncu" --kernel-name "regex:moe_gemm_(grouped|sm90_ws)" --launch-count 2 \
  --section WarpStateStats --section SourceCounters --import-source no -o "$tmp/rep" \
  python3 "$root/scripts/prof_layer.py" "$shape" "$T" 1 > "$tmp/ncu.log" 2>&1)
for k in 0 1; do
  "$ncu" -i "$tmp/rep.ncu-rep" --page source --csv --print-source sass --launch-skip $k --launch-count 1 \
    > "$tmp/sass$k.csv" 2>"$tmp/err$k.log"
done
python3 "$root/scripts/sass_hotspots.py" "$tmp/sass0.csv" "$tmp/sass1.csv" > "$out/sass-$shape-$T.txt" 2>&1
tail -3 "$tmp/ncu.log"; head -c 400 "$tmp/err0.log"; echo "device_prof_sass: $(wc -l < "$out/sass-$shape-$T.txt") lines"
