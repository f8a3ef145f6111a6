#!/usr/bin/env bash
# On the GPU machine (Python 3.12 with scikit-build-core, cython, cmake, ninja; no network, no
# CUTLASS): install pymoe from this checkout around the carried prebuilt library
# .devbuild/libmoe12x.so (made here by scripts/build_devlib.sh). Only the Cython extension is
# compiled; no CUDA compiler is needed. Run from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
lib="$PWD/.devbuild/libmoe12x.so"
if [[ ! -f $lib ]]; then
  echo "device_build: $lib missing (run scripts/build_devlib.sh and carry .devbuild)" >&2
  exit 1
fi
python=${PYTHON:-python3}
echo "device_build: $($python --version 2>&1), library $(du -h "$lib" | cut -f1)"
t0=$(date +%s%N)
CMAKE_ARGS="-DMOE12X_PREBUILT_LIBRARY=$lib" \
  "$python" -m pip install --no-build-isolation --no-deps -q .
t1=$(date +%s%N)
ms=$(( (t1 - t0) / 1000000 ))
printf 'device_build: pip install took %d.%01d s\n' $(( ms / 1000 )) $(( ms % 1000 / 100 ))
# Import the installed package (not ./pymoe) and report what it sees.
(cd / && "$python" -c 'import pymoe; from pymoe import _core; print("device_build: pymoe", pymoe.__version__, "from", pymoe.__file__, "| library version", pymoe.library_version(), "| devices", pymoe.device_count())')
