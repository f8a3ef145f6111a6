// Grouped FC2 x routing weight, portable mma.sync mainloop, decode kernel with one m16 tile per
// warp (64-row items: twice the warps per expert, for calls with few warps per SM; tiles <= 16
// rows).
// One TU per instantiation so the build parallelizes.
#include "epilogue/fc1_swiglu_quant.cuh"
#include "epilogue/fc2_weighted_store.cuh"
#include "instantiations/dispatch.hpp"
#include "kernel/moe_gemm.cuh"
#include "mainloop/sm80_mma_fp4.cuh"

namespace moe12x {
template <>
cudaError_t launch_fc2_nb<2, 1>(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_gemm_grouped<MoeGemm<Gemm::kFc2, Sm80MmaFp4MainloopT<2, 1>, Fc2WeightedStoreEpilogue>>(p, stream);
}
}  // namespace moe12x
