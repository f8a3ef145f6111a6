// The launch templates behind gemm_sm90_wgmma*.cu (one TU per tile-width class, so they build in
// parallel and ptxas sees each kernel alone).
#pragma once
#include "epilogue/fc1_swiglu_quant.cuh"
#include "epilogue/fc2_weighted_store.cuh"
#include "instantiations/dispatch.hpp"
#include "kernel/moe_gemm_sm90_ws.cuh"

namespace moe12x {
template <int kConsumers>
cudaError_t launch_fc1_sm90_wgmma(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_gemm_sm90_ws<MoeGemmSm90Ws<Gemm::kFc1, Fc1SwigluQuantEpilogue, kConsumers>>(p, stream);
}
template <int kConsumers>
cudaError_t launch_fc2_sm90_wgmma(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_gemm_sm90_ws<MoeGemmSm90Ws<Gemm::kFc2, Fc2WeightedStoreEpilogue, kConsumers>>(p, stream);
}
}  // namespace moe12x
