// Token-tile width 64: the grouped FC1/FC2 kernels and the persistent static kernel; at this
// width the static kernel stages tokens in shared memory like the grouped kernels.
// One width per translation unit so the build parallelizes.
#include "instantiations/dispatch.hpp"
#include "kernel/moe_static.cuh"
#include "mainloop/sm80_mma_fp4.cuh"


namespace moe12x {
template <>
cudaError_t launch_nb<8>(const MoeParams& p, Launch which, cudaStream_t stream) {
  using Mainloop = Sm80MmaFp4Mainloop<8>;
  switch (which) {
    case Launch::kFc1: return launch_moe_gemm_grouped<MoeGemm<Gemm::kFc1, Mainloop, Fc1SwigluQuantEpilogue>>(p, stream);
    case Launch::kFc2: return launch_moe_gemm_grouped<MoeGemm<Gemm::kFc2, Mainloop, Fc2WeightedStoreEpilogue>>(p, stream);
    default: return launch_moe_static<Mainloop>(p, stream);
  }
}
}  // namespace moe12x
