#!/usr/bin/env bash
# compute-sanitizer memcheck and racecheck over small cases of every kernel (both schedules, both
# activation modes, the quantizer, weight preparation). Run on the GPU machine from the repo root.
set -uo pipefail
out=${OUT:-/tmp/moe12x-out}; mkdir -p "$out"
lib=${1:-.devbuild/libmoe12x.so}
rc=0
for tool in memcheck racecheck; do
  compute-sanitizer --tool $tool --error-exitcode 99 --print-limit 20 \
    python3 scripts/dev_smoke.py "$lib" --small > "$out/sanitizer-$tool.log" 2>&1
  r=$?; rc=$((rc | r))
  echo "== $tool: exit $r"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|failed|-> " "$out/sanitizer-$tool.log" | tail -8
done
exit $rc
