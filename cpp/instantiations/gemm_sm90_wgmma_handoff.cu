// FC1 on the SM90a wgmma kernel's work-queue grid with the epilogue handed off: the consumer
// warpgroups store SwiGLU rows to shared memory and go on; producer warps 1-3 quantize, decode and
// store them (kernel/moe_gemm_sm90_ws.cuh, kHandoff). Tiles of up to 128 tokens (160 for an
// expert's last); c_api.cpp sets p.fc1_handoff. Trace builds (MOE12X_WS_TRACE) compile it inside
// gemm_sm90_wgmma.cu instead: the trace buffer is one per TU and that TU exports it.
#if !defined(MOE12X_WS_TRACE) || defined(MOE12X_HANDOFF_IN_TRACE_TU)
#include "instantiations/gemm_sm90_wgmma.cuh"

namespace moe12x {
cudaError_t launch_fc1_sm90_wgmma_handoff(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_gemm_sm90_ws<MoeGemmSm90Ws<Gemm::kFc1, Fc1SwigluQuantEpilogue, 2, true>>(p, stream);
}
}  // namespace moe12x
#endif
