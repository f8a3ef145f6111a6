#!/usr/bin/env bash
# One device call: install pymoe against the carried prebuilt library, then run the GPU tests
# and/or the benchmark. Run from the repo root on the GPU machine:
#   bash scripts/device_suite.sh [test|bench|all|iter] [extra pytest args...]
# iter: the tests, then the decode sweep and a quick prefill sweep without the torch baseline.
# with .devbuild/libmoe12x.so carried (scripts/build_devlib.sh builds it here). Logs go to $OUT.
set -uo pipefail
mode=${1:-all}; shift || true
out=${OUT:-/tmp/moe12x-out}; mkdir -p "$out"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
t0=$(date +%s)
CMAKE_ARGS="-DMOE12X_PREBUILT_LIBRARY=$PWD/.devbuild/libmoe12x.so" \
  python3 -m pip install --no-build-isolation --no-deps -q . > /tmp/install.log 2>&1 \
  || { cp /tmp/install.log "$out/"; tail -40 /tmp/install.log; exit 1; }
echo "install: $(( $(date +%s) - t0 )) s"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
cd /tmp  # import the installed package, not the checkout
rc=0
if [[ $mode == test || $mode == all || $mode == iter ]]; then
  python3 -m pytest -q -rs -p no:cacheprovider --junitxml="$out/junit.xml" "$OLDPWD/tests" "$@" \
    > "$out/pytest.log" 2>&1; rc=$?
  grep -E "MOE12X-ERR" "$out/pytest.log" | head -0
  tail -25 "$out/pytest.log"
fi
if [[ $mode == bench || $mode == all ]]; then
  python3 "$OLDPWD/bench/bench_moe.py" --out-json "$out/bench.json" --png "$out/roofline.png" \
    2>&1 | tee "$out/bench.log" | tail -45
fi
if [[ $mode == iter ]]; then
  # SASS of the carried library, for instruction counts of the mainloops (no cuobjdump here)
  (cuobjdump -sass "$OLDPWD/.devbuild/libmoe12x.so" 2>/dev/null || true) | gzip > "$out/lib.sass.gz"
  python3 "$OLDPWD/bench/bench_moe.py" --no-torch --out-json "$out/decode.json" --png /tmp/decode.png \
    2>&1 | tee "$out/decode.log" | tail -45
  python3 "$OLDPWD/bench/bench_moe.py" --no-torch --prefill --quick --out-json "$out/prefill.json" \
    --png /tmp/prefill.png 2>&1 | tee "$out/prefill.log" | tail -25
fi
echo "device_suite: $(( $(date +%s) - t0 )) s"
exit $rc
