# Helpers for A/B device runs of several prebuilt libraries in one call (source it on the GPU
# machine, from the repo root):
#   source scripts/device_lib.sh
#   dev_install                              # pymoe against .devbuild/libmoe12x.so
#   dev_use_lib .devbuild/variant.so          # swap the library the installed package loads
#   dev_pytest NAME [tests/... paths] [pytest args]  # -> $OUT/NAME.pytest.log (default: all tests;
#                                            killed after DEV_TIMEOUT s, default 1200)
#   dev_bench NAME [bench_moe.py args]        # -> $OUT/NAME.json, NAME.log (table printed)
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
DEV_REPO=$PWD
DEV_OUT=${OUT:-/tmp/moe12x-out}; mkdir -p "$DEV_OUT"
dev_install() {
  CMAKE_ARGS="-DMOE12X_PREBUILT_LIBRARY=$DEV_REPO/.devbuild/libmoe12x.so" \
    python3 -m pip install --no-build-isolation --no-deps -q "$DEV_REPO" > /tmp/install.log 2>&1 \
    || { cp /tmp/install.log "$DEV_OUT/"; tail -40 /tmp/install.log; return 1; }
  DEV_PKG=$(cd /tmp && python3 -c "import pymoe, os; print(os.path.dirname(pymoe.__file__))")
  [[ -n $DEV_PKG && -d $DEV_PKG ]] || { echo "dev_install: pymoe does not import after the install" >&2; return 1; }
  echo "installed pymoe in $DEV_PKG"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader
}
dev_use_lib() { cp -f "$DEV_REPO/$1" "$DEV_PKG/libmoe12x.so" && echo "== library: $1"; }
dev_pytest() {
  local name=$1; shift
  local args=() a
  for a in "$@"; do [[ $a == tests* ]] && args+=("$DEV_REPO/$a") || args+=("$a"); done
  [[ ${#args[@]} -eq 0 || ${args[0]} == -* ]] && args=("$DEV_REPO/tests" "${args[@]}")
  (cd /tmp && timeout ${DEV_TIMEOUT:-1200} python3 -m pytest -q -rs -p no:cacheprovider "${args[@]}" > "$DEV_OUT/$name.pytest.log" 2>&1)
  local rc=$?; echo "== pytest $name rc=$rc"; grep -E "^(FAILED|ERROR)" "$DEV_OUT/$name.pytest.log" | head -15
  tail -2 "$DEV_OUT/$name.pytest.log"; return $rc
}
dev_bench() {
  local name=$1; shift
  (cd /tmp && timeout ${DEV_TIMEOUT:-1200} python3 "$DEV_REPO/bench/bench_moe.py" --no-torch --out-json "$DEV_OUT/$name.json" \
     --png /tmp/$name.png "$@" > "$DEV_OUT/$name.log" 2>&1)
  echo "== bench $name rc=$?"; grep -E "^(==| *[0-9]+ )" "$DEV_OUT/$name.log" | head -80
}
