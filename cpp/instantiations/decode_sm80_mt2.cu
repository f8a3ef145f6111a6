// The persistent decode kernel (route, FC1 + SwiGLU + NVFP4 quantize, FC2, combine in one
// cooperative launch), portable mma.sync mainloop with two m16 tiles per warp (128-row items), tiles <= 16 rows.
// One TU per instantiation so the build parallelizes.
#include "instantiations/dispatch.hpp"
#include "kernel/moe_decode.cuh"
#include "mainloop/sm80_mma_fp4.cuh"

namespace moe12x {
template <>
cudaError_t launch_decode<2>(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_decode<Sm80MmaFp4MainloopT<2, 2, false, true>>(p, stream);
}
}  // namespace moe12x
