// Grouped FC1 + SwiGLU + NVFP4 quantize, portable mma.sync mainloop, decode kernel (tiles <= 16 rows, two m16 tiles
// per warp) whose 16-row tiles stage their FP4 token rows a K chunk ahead (choose_act_prefetch).
// One TU per instantiation so the build parallelizes.
#include "epilogue/fc1_swiglu_quant.cuh"
#include "epilogue/fc2_weighted_store.cuh"
#include "instantiations/dispatch.hpp"
#include "kernel/moe_gemm.cuh"
#include "mainloop/sm80_mma_fp4.cuh"

namespace moe12x {
template <>
cudaError_t launch_fc1_nb<2, 2, true>(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_gemm_grouped<MoeGemm<Gemm::kFc1, Sm80MmaFp4MainloopT<2, 2, true>, Fc1SwigluQuantEpilogue>>(p, stream);
}
}  // namespace moe12x
