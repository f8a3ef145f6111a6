#include "common/launchers.hpp"
#include "instantiations/dispatch.hpp"

namespace moe12x {
static cudaError_t launch(const MoeParams& p, Launch which, cudaStream_t stream) {
  switch (p.block_n) {
    case 8: return launch_nb<1>(p, which, stream);
    case 16: return launch_nb<2>(p, which, stream);
    case 32: return launch_nb<4>(p, which, stream);
    default: return launch_nb<8>(p, which, stream);
  }
}
cudaError_t launch_fc1(const MoeParams& p, cudaStream_t stream) { return launch(p, Launch::kFc1, stream); }
cudaError_t launch_fc2(const MoeParams& p, cudaStream_t stream) { return launch(p, Launch::kFc2, stream); }
cudaError_t launch_static(const MoeParams& p, cudaStream_t stream) { return launch(p, Launch::kStatic, stream); }
}  // namespace moe12x
