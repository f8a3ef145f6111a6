#!/usr/bin/env bash
# Builds libmoe12x.so here (nvcc + the CUTLASS wheel's headers) into build-dev/ and copies it to
# .devbuild/libmoe12x.so, the library that scripts/device_build.sh installs on the GPU machine,
# and the bench/micro programs (sm_90a) next to it.
#
#   scripts/build_devlib.sh                                   # default archs (CMakeLists.txt)
#   MOE12X_CUDA_ARCHITECTURES=90a-real scripts/build_devlib.sh   # H200 only: faster
#   MOE12X_CUTLASS_DIR=/path/to/cutlass scripts/build_devlib.sh  # else the nvidia-cutlass wheel
#
# Without MOE12X_CUTLASS_DIR the nvidia-cutlass==4.2.0.0 wheel must be findable by python3
# (pip install --no-deps nvidia-cutlass==4.2.0.0: only its headers are used, it is never imported).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${MOE12X_BUILD_DIR:-build-dev}
args=(-DCMAKE_BUILD_TYPE=Release -DMOE12X_BUILD_PYTHON=OFF)
[[ -n ${MOE12X_CUDA_ARCHITECTURES:-} ]] && args+=("-DMOE12X_CUDA_ARCHITECTURES=${MOE12X_CUDA_ARCHITECTURES}")
[[ -n ${MOE12X_CUTLASS_DIR:-} ]] && args+=("-DMOE12X_CUTLASS_DIR=${MOE12X_CUTLASS_DIR}")
python=$(command -v python3 || command -v python)
t0=$(date +%s)
mkdir -p "$build"
# keep the build tree out of git (and out of what is carried to the GPU machine)
[[ -f $build/.gitignore ]] || echo '*' > "$build/.gitignore"
cmake -S . -B "$build" -G Ninja -DPython_EXECUTABLE="$python" "${args[@]}"
cmake --build "$build" 2>&1 | tee "$build/build.log"  # pipefail: a failed build stops here
# ptxas C7512: "wgmma.mma_async instructions are serialized due to insufficient register
# resources" -- an ARRIVE before every wgmma of the kernel, a silent large slowdown (bench/NOTES.md,
# session 10). Stop here rather than carry such a library to the GPU machine.
if grep -q C7512 "$build/build.log"; then
  grep C7512 "$build/build.log" | sed 's/^/build_devlib: /'
  echo "build_devlib: wgmma serialized in the kernels above (ptxas C7512); not copied to .devbuild/" >&2
  exit 1
fi
mkdir -p .devbuild
cp -f "$build/libmoe12x.so" .devbuild/libmoe12x.so.tmp
mv -f .devbuild/libmoe12x.so.tmp .devbuild/libmoe12x.so
# the SM90 micro-benchmarks (bench/micro/), run by scripts/device_record.sh when present
cutlass=$(grep -m1 '^MOE12X_CUTLASS_DIR' "$build/CMakeCache.txt" | cut -d= -f2 || true)
if [[ -n $cutlass && -d $cutlass/include ]]; then
  for prog in sm90_wgmma_rate sm90_ws_ladder decode_stream; do
    nvcc -std=c++17 -O3 -arch=sm_90a --expt-relaxed-constexpr -I"$cutlass/include" -Icpp \
      "bench/micro/$prog.cu" -o ".devbuild/$prog"
  done
fi
echo "build_devlib: .devbuild/libmoe12x.so ($(du -h .devbuild/libmoe12x.so | cut -f1)) in $(( $(date +%s) - t0 )) s," \
     "archs: $(grep -m1 '^MOE12X_CUDA_ARCHITECTURES' "$build/CMakeCache.txt" | cut -d= -f2)"
