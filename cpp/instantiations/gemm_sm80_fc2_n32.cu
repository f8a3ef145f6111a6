// Grouped FC2 x routing weight, portable mma.sync mainloop (SM80 PTX, SM90, SM120), decode kernel (tiles <= 32 rows, 4 CTAs/SM).
// One TU per instantiation so the build parallelizes.
#include "epilogue/fc1_swiglu_quant.cuh"
#include "epilogue/fc2_weighted_store.cuh"
#include "instantiations/dispatch.hpp"
#include "kernel/moe_gemm.cuh"
#include "mainloop/sm80_mma_fp4.cuh"

namespace moe12x {
template <>
cudaError_t launch_fc2_nb<4>(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_gemm_grouped<MoeGemm<Gemm::kFc2, Sm80MmaFp4MainloopT<4>, Fc2WeightedStoreEpilogue>>(p, stream);
}
}  // namespace moe12x
