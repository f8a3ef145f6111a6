#include "common/launchers.hpp"
#include "instantiations/dispatch.hpp"

namespace moe12x {
static cudaError_t launch_gemm(const MoeParams& p, bool fc1, cudaStream_t stream) {
  switch (p.block_n) {
    case 8: return launch_gemm_nb<1>(p, fc1, stream);
    case 16: return launch_gemm_nb<2>(p, fc1, stream);
    case 32: return launch_gemm_nb<4>(p, fc1, stream);
    default: return launch_gemm_nb<8>(p, fc1, stream);
  }
}
cudaError_t launch_fc1(const MoeParams& p, cudaStream_t stream) { return launch_gemm(p, true, stream); }
cudaError_t launch_fc2(const MoeParams& p, cudaStream_t stream) { return launch_gemm(p, false, stream); }
}  // namespace moe12x
