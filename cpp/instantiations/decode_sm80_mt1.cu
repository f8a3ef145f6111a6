// The persistent decode kernel (route, FC1 + SwiGLU + NVFP4 quantize, FC2, combine in one
// cooperative launch), portable mma.sync mainloop with one m16 tile per warp (64-row items: twice the warps per expert, for calls with few warps per SM), tiles <= 16 rows.
// One TU per instantiation so the build parallelizes.
#include "instantiations/dispatch.hpp"
#include "kernel/moe_decode.cuh"
#include "mainloop/sm80_mma_fp4.cuh"

namespace moe12x {
template <>
cudaError_t launch_decode<1>(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_decode<Sm80MmaFp4MainloopT<2, 1, false, true>>(p, stream);
}
}  // namespace moe12x
