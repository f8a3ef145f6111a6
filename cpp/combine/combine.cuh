// out[t] = bf16( sum_j y[t, j] ) over local slots in increasing j, fp32: deterministic, and a
// token's result depends on nothing but its own slots (batch invariant).
#pragma once
#include "common/cuda_utils.cuh"
#include "common/params.hpp"

namespace moe12x {

// Columns [y_col0, y_col0 + y_ncols) of every token: y's column chunk (rows of y_cols floats).
__device__ __forceinline__ void combine_range(const MoeParams& p, int64_t first, int64_t stride) {
  const int vecs = p.y_ncols / 8;
  const int64_t total = p.tokens * vecs;
  for (int64_t i = first; i < total; i += stride) {
    const int64_t t = i / vecs;
    const int c = int(i % vecs) * 8;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int j = 0; j < p.top_k; ++j) {
      const int64_t pair = t * p.top_k + j;
      if (local_expert(load_id(p.ids, p.ids64, pair), p.local_offset, p.e_local) < 0) continue;
      const float4* y = reinterpret_cast<const float4*>(p.y + pair * p.y_cols + c);
      const float4 a = y[0], b = y[1];
      acc[0] += a.x; acc[1] += a.y; acc[2] += a.z; acc[3] += a.w;
      acc[4] += b.x; acc[5] += b.y; acc[6] += b.z; acc[7] += b.w;
    }
    uint4 o;
    o.x = pack_bf16x2(acc[0], acc[1]);
    o.y = pack_bf16x2(acc[2], acc[3]);
    o.z = pack_bf16x2(acc[4], acc[5]);
    o.w = pack_bf16x2(acc[6], acc[7]);
    *reinterpret_cast<uint4*>(p.out + t * p.hidden + p.y_col0 + c) = o;
  }
}

}  // namespace moe12x
