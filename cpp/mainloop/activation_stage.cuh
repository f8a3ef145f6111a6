// Stages the B operand (token rows x K chunk) in shared memory as bf16, in fragment order. The
// packed operands are bf16 already (NVFP4 values stored exact, params.hpp), so staging is a copy;
// rows past the tile are 0.
#pragma once
#include "common/cuda_utils.cuh"

namespace moe12x {

struct ActivationRows {
  const uint16_t* bf16;     // row-major [rows, K]
  const int* gather;        // row -> source row is gather[row] / gather_div; null = identity
  int gather_div;
  int K;
};
// Shared-memory order: fragment order. Within each 32-element K block, lane t's B values for
// k16 steps 2i and 2i+1 (k = 2t, 2t+1, 2t+8, 2t+9 of each step) are 8 consecutive bf16 at 8 t,
// so a lane loads a step pair with one 16-byte load. Rows are kStride apart (kStride = 32 mod
// 64 elements: the two token rows of a quarter-warp land on disjoint banks).
__device__ __forceinline__ int frag_order_offset(int group, int t) {  // 16-element group, lane t
  return (group >> 1) * 32 + 8 * t + 4 * (group & 1);
}

// Writes one 16-element group given as 8 bf16x2 words (word p = elements 2p, 2p+1).
__device__ __forceinline__ void store_group_frag_order(uint16_t* row, int group, const uint32_t (&w)[8]) {
#pragma unroll
  for (int t = 0; t < 4; ++t)
    *reinterpret_cast<uint2*>(row + frag_order_offset(group, t)) = make_uint2(w[t], w[4 + t]);
}

template <int BN, int kStride, int kThreads>
__device__ __forceinline__ void stage_activations(const ActivationRows& a, int row0, int nrows,
                                                  int k0, int kc, uint16_t* smem) {
  static_assert(kStride % 64 == 32, "stride must be 32 mod 64 elements (bank-conflict-free)");
  const int gpr = kc / 16;  // 16-element groups per row
  for (int i = threadIdx.x; i < BN * gpr; i += kThreads) {
    const int r = i / gpr, b = i % gpr;
    uint32_t w[8] = {0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u};
    if (r < nrows) {
      const int64_t row = a.gather ? int64_t(a.gather[row0 + r] / a.gather_div) : int64_t(row0 + r);
      const uint4* src = reinterpret_cast<const uint4*>(a.bf16 + row * a.K + k0 + b * 16);
      const uint4 lo = src[0], hi = src[1];
      w[0] = lo.x; w[1] = lo.y; w[2] = lo.z; w[3] = lo.w;
      w[4] = hi.x; w[5] = hi.y; w[6] = hi.z; w[7] = hi.w;
    }
    store_group_frag_order(smem + r * kStride, b, w);
  }
}

}  // namespace moe12x
