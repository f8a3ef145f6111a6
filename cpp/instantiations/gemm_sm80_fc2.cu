// Grouped FC2 x routing weight, portable mma.sync mainloop (SM80 PTX, SM90, SM120). One TU per GEMM so the
// build parallelizes; each holds the four token widths the mainloop picks from at run time.
#include "common/launchers.hpp"
#include "epilogue/fc1_swiglu_quant.cuh"
#include "epilogue/fc2_weighted_store.cuh"
#include "kernel/moe_gemm.cuh"
#include "mainloop/sm80_mma_fp4.cuh"

namespace moe12x {
cudaError_t launch_fc2(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_gemm_grouped<MoeGemm<Gemm::kFc2, Sm80MmaFp4Mainloop, Fc2WeightedStoreEpilogue>>(p, stream);
}
}  // namespace moe12x
