// Persistent static kernel, routed tiles of 32 or 64 rows: the staged mainloop, width picked per tile.
#include "instantiations/dispatch.hpp"
#include "kernel/moe_static.cuh"
#include "mainloop/sm80_mma_fp4.cuh"

namespace moe12x {
template <>
cudaError_t launch_static_nb<8>(const MoeParams& p, cudaStream_t stream) {
  return launch_moe_static<Sm80MmaFp4Mainloop>(p, stream);
}
}  // namespace moe12x
