#!/usr/bin/env bash
# On the GPU machine after scripts/device_suite.sh installed the package: Nsight Compute sections
# of the grouped GEMM kernels (mma.sync or the SM90 wgmma one) for a few (shape, T) points, to
# $OUT/prof${PROF_TAG:+-$PROF_TAG}.tgz. Skips without ncu.
#   bash scripts/device_prof.sh "deepseek-v3:32 deepseek-v3:4096"
set -uo pipefail
out=${OUT:-/tmp/moe12x-out}; mkdir -p "$out"
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu 2>/dev/null | head -1)
[[ -n $ncu ]] || { echo "device_prof: no ncu"; exit 0; }
root=$PWD
tmp=$(mktemp -d)
cd /tmp
for pt in ${1:-deepseek-v3:32 deepseek-v3:4096}; do
  shape=${pt%%:*}; T=${pt##*:}
  timeout 240 "$ncu" --kernel-name "regex:moe_gemm_(grouped|sm90_ws)" --launch-count 2 \
    --section SpeedOfLight --section WarpStateStats --section SchedulerStats --section Occupancy \
    --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section SourceCounters \
    --metrics "regex:smsp__warp_issue_stalled_.*_per_warp_active.pct" \
    python3 "$root/scripts/prof_layer.py" "$shape" "$T" 1 > "$tmp/prof-$shape-$T.txt" 2>&1
  echo "device_prof: $shape T=$T rc=$? $(grep -c 'Duration' "$tmp/prof-$shape-$T.txt") kernels"
done
tar -C "$tmp" -czf "$out/prof${PROF_TAG:+-$PROF_TAG}.tgz" .
