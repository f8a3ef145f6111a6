// Grouped FC1 + SwiGLU + NVFP4 quantize, portable mma.sync mainloop (SM80 PTX, SM90, SM120), decode kernel (tiles <= 32 rows, 4 CTAs/SM).
// One TU per instantiation so the build parallelizes.
#include "epilogue/fc1_swiglu_quant.cuh"
#include "epilogue/fc2_weighted_store.cuh"
#include "instantiations/dispatch.hpp"
#include "kernel/moe_gemm.cuh"
#include "mainloop/sm80_mma_fp4.cuh"

namespace moe12x {
template <>
cudaError_t launch_fc1_nb<4>(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_gemm_grouped<MoeGemm<Gemm::kFc1, Sm80MmaFp4MainloopT<4>, Fc1SwigluQuantEpilogue>>(p, stream);
}
}  // namespace moe12x
