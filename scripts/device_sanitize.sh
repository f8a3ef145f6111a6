#!/usr/bin/env bash
# compute-sanitizer memcheck and racecheck over small cases of every kernel (both schedules, both
# activation modes, the quantizer, weight preparation), with the default and the opt-in paths. Run
# on the GPU machine from the repo root.
set -uo pipefail
out=${OUT:-/tmp/moe12x-out}; mkdir -p "$out"
lib=${1:-.devbuild/libmoe12x.so}
rc=0
# The default paths, then (suffix -opt) the opt-in ones: the persistent decode kernel for the static
# schedule's small calls and FC2 + combine in 64-column chunks (c_api.cpp, read once per process).
for variant in default opt; do
  env=(); sfx=""
  [[ $variant == opt ]] && env=(MOE12X_DECODE_KERNEL=1 MOE12X_FC2_CHUNK_COLS=64) && sfx=-opt
  for tool in memcheck racecheck; do
    timeout -k 10 ${SANITIZE_TIMEOUT:-150} env "${env[@]}" compute-sanitizer --tool $tool --error-exitcode 99 --print-limit 20 \
      python3 scripts/dev_smoke.py "$lib" --small > "$out/sanitizer-$tool$sfx.log" 2>&1
    r=$?; rc=$((rc | r))
    echo "== $tool $variant: exit $r"; grep -E "ERROR SUMMARY|RACECHECK SUMMARY|failed|-> " "$out/sanitizer-$tool$sfx.log" | tail -8
  done
done
exit $rc
