#include "common/launchers.hpp"
#include "instantiations/dispatch.hpp"

namespace moe12x {
cudaError_t launch_static(const MoeParams& p, cudaStream_t stream) {
  switch (p.block_n) {
    case 8: return launch_static_nb<1>(p, stream);
    case 16: return launch_static_nb<2>(p, stream);
    default: return launch_static_nb<8>(p, stream);  // 32 and 64: runtime-width mainloop
  }
}
}  // namespace moe12x
