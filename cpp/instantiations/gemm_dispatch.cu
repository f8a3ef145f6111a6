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
cudaError_t launch_fc1(const MoeParams& p, cudaStream_t stream) {
#ifdef MOE12X_HAS_SM90_WGMMA
  if (p.sm90_wgmma)  // chosen in c_api.cpp (choose_sm90_wgmma, sm90_wgmma_block_n)
    return p.block_n <= 64 ? launch_fc1_sm90_wgmma<3>(p, stream)
           : p.fc1_handoff ? launch_fc1_sm90_wgmma_handoff(p, stream)
                           : launch_fc1_sm90_wgmma<2>(p, stream);
#endif
  if (p.block_n <= 16 && p.fc1_warp_tiles == 1) return launch_fc1_nb<2, 1>(p, stream);
  if (p.block_n <= 16 && p.act_prefetch) return launch_fc1_nb<2, 2, true>(p, stream);
  return p.block_n <= 16 ? launch_fc1_nb<2>(p, stream)
         : p.block_n <= 32 ? launch_fc1_nb<4>(p, stream) : launch_fc1_nb<8>(p, stream);
}
cudaError_t launch_fc2(const MoeParams& p, cudaStream_t stream) {
#ifdef MOE12X_HAS_SM90_WGMMA
  if (p.sm90_wgmma)
    return p.block_n <= 64 ? launch_fc2_sm90_wgmma<3>(p, stream) : launch_fc2_sm90_wgmma<2>(p, stream);
#endif
  if (p.block_n <= 16 && p.fc2_warp_tiles == 1) return launch_fc2_nb<2, 1>(p, stream);
  if (p.block_n <= 16 && p.act_prefetch) return launch_fc2_nb<2, 2, true>(p, stream);
  return p.block_n <= 16 ? launch_fc2_nb<2>(p, stream)
         : p.block_n <= 32 ? launch_fc2_nb<4>(p, stream) : launch_fc2_nb<8>(p, stream);
}
}  // namespace moe12x
