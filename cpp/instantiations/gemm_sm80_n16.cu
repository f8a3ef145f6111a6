// One token-tile width per translation unit so the build parallelizes.
#include "epilogue/fc1_swiglu_quant.cuh"
#include "epilogue/fc2_weighted_store.cuh"
#include "instantiations/dispatch.hpp"
#include "kernel/moe_gemm.cuh"
#include "mainloop/sm80_mma_fp4.cuh"

namespace moe12x {
template <>
cudaError_t launch_gemm_nb<2>(const MoeParams& p, bool fc1, cudaStream_t stream) {
  using Mainloop = Sm80MmaFp4Mainloop<2>;
  return fc1 ? launch_moe_gemm<Gemm::kFc1, Mainloop, Fc1SwigluQuantEpilogue, ExpertTileScheduler>(p, stream)
             : launch_moe_gemm<Gemm::kFc2, Mainloop, Fc2WeightedStoreEpilogue, ExpertTileScheduler>(p, stream);
}
}  // namespace moe12x
