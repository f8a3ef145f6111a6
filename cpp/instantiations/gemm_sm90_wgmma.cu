// Grouped FC1 / FC2 on the warp-specialized SM90a wgmma kernel (kernel/moe_gemm_sm90_ws.cuh). CMake
// compiles this TU only when 90a is in MOE12X_CUDA_ARCHITECTURES and then defines
// MOE12X_HAS_SM90_WGMMA; c_api.cpp takes it on compute capability 9.x devices (choose_sm90_wgmma,
// MOE12X_SM90_WGMMA). On any other compiled target the kernel body is a trap.
#include "epilogue/fc1_swiglu_quant.cuh"
#include "epilogue/fc2_weighted_store.cuh"
#include "instantiations/dispatch.hpp"
#include "kernel/moe_gemm_sm90_ws.cuh"

namespace moe12x {
cudaError_t launch_fc1_sm90_wgmma(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_gemm_sm90_ws<MoeGemmSm90Ws<Gemm::kFc1, Fc1SwigluQuantEpilogue>>(p, stream);
}
cudaError_t launch_fc2_sm90_wgmma(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_gemm_sm90_ws<MoeGemmSm90Ws<Gemm::kFc2, Fc2WeightedStoreEpilogue>>(p, stream);
}
}  // namespace moe12x
