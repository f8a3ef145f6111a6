// Grouped FC1 / FC2 on the warp-specialized SM90a wgmma kernel (kernel/moe_gemm_sm90_ws.cuh), tiles
// of up to 128 tokens (160 for an expert's last). CMake compiles the gemm_sm90_wgmma*.cu TUs only when 90a is in
// MOE12X_CUDA_ARCHITECTURES and then defines MOE12X_HAS_SM90_WGMMA; c_api.cpp takes the kernel on
// compute capability 9.x devices (choose_sm90_wgmma, MOE12X_SM90_WGMMA). On any other compiled
// target the kernel body is a trap.
#include "instantiations/gemm_sm90_wgmma.cuh"

namespace moe12x {
template cudaError_t launch_fc1_sm90_wgmma<2>(const MoeParams& p, cudaStream_t stream);
template cudaError_t launch_fc2_sm90_wgmma<2>(const MoeParams& p, cudaStream_t stream);
}  // namespace moe12x

#ifdef MOE12X_WS_TRACE
#define MOE12X_HANDOFF_IN_TRACE_TU
#include "instantiations/gemm_sm90_wgmma_handoff.cu"  // its records in this TU's buffer

// Experiment builds: copy (reset = 0) or clear (reset != 0) this TU's trace records
// (kernel/ws_trace.cuh; scripts/ws_trace.py). Returns a cudaError_t.
extern "C" __attribute__((visibility("default"))) int moe12x_debug_ws_trace(void* host, size_t bytes, int reset) {
  using moe12x::g_ws_trace;
  if (reset) {
    void* dev = nullptr;
    if (const cudaError_t e = cudaGetSymbolAddress(&dev, g_ws_trace); e != cudaSuccess) return int(e);
    if (const cudaError_t e = cudaMemset(dev, 0, sizeof(g_ws_trace)); e != cudaSuccess) return int(e);
    return int(cudaDeviceSynchronize());
  }
  return int(cudaMemcpyFromSymbol(host, g_ws_trace, bytes < sizeof(g_ws_trace) ? bytes : sizeof(g_ws_trace)));
}
#endif
