// FC2 epilogue: y[pair, h] = routing weight * (acc * global scales), fp32, one slot per row.
// The combine kernel later sums slots in increasing order: no atomics, deterministic.
#pragma once
#include "common/cuda_utils.cuh"
#include "common/nvfp4.cuh"
#include "common/params.hpp"
#include "scheduler/expert_tiles.cuh"

namespace moe12x {

struct Fc2WeightedStoreEpilogue {
  template <int NB>
  __device__ static void apply(const MoeParams& p, const ExpertTile& tile, int warp_row0,
                               const float (&acc)[2][NB][4]) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int el = tile.expert;
    const float gs_in = p.act_fp4 ? p.fc2_scale[input_scale_index(p.fc2_count, el, p.e_local, p.local_offset)] : 1.0f;
    const float beta = p.w2_gs[el] * gs_in * kAccScale;
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int col = nb * 8 + 2 * t + c;
        if (col >= tile.nrows) continue;
        const int pair = p.row_pair[tile.row0 + col];
        const float w = load_weight(p.topk_w, p.w_bf16, pair);
        float* yrow = p.y + int64_t(pair) * p.hidden;
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          const int h = warp_row0 + mt * 16 + g;
          if (h >= p.hidden) continue;
          yrow[h] = w * (acc[mt][nb][c] * beta);
          yrow[h + 8] = w * (acc[mt][nb][2 + c] * beta);
        }
      }
    }
  }
};

}  // namespace moe12x
