// Token-tile width dispatch (one instantiation per width, one TU each).
#pragma once
#include <cuda_runtime_api.h>
#include "common/params.hpp"

namespace moe12x {
enum class Launch { kFc1, kFc2, kStatic };

template <int NB>
cudaError_t launch_nb(const MoeParams& p, Launch which, cudaStream_t stream);

// block_n = 8 * NB rows of one expert per tile: the smallest width that covers the mean
// routed rows per active expert, capped at 64.
inline int choose_block_n(int64_t pairs, int e_local) {
  const int64_t active = pairs < e_local ? pairs : e_local;
  const int64_t mean = active > 0 ? (pairs + active - 1) / active : 1;
  return mean <= 8 ? 8 : mean <= 16 ? 16 : mean <= 32 ? 32 : 64;
}
}  // namespace moe12x
