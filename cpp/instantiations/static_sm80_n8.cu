// Persistent static kernel, routed tiles of 8 rows: per-warp items, weights streamed to registers.
#include "instantiations/dispatch.hpp"
#include "kernel/moe_static.cuh"
#include "mainloop/sm80_stream_fp4.cuh"

namespace moe12x {
template <>
cudaError_t launch_static_nb<1>(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_static<Sm80StreamFp4Mainloop<1>>(p, stream);
}
}  // namespace moe12x
