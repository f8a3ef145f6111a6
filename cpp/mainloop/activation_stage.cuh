// Stages the B operand (token rows x K chunk) in shared memory as bf16, in fragment order. The
// packed operands are bf16 already (NVFP4 values stored exact, params.hpp), so staging is a copy.
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

// Only the tile's rows are staged: columns past it hold stale values and produce accumulator
// columns that every epilogue drops (a token column never mixes with another). Loads go out
// kUnroll groups at a time before any store, so a thread waits for one round trip per kUnroll
// groups instead of one per group (the stage is latency-bound at prefill, bench/NOTES.md v11).
template <int BN, int kStride, int kThreads>
__device__ __forceinline__ void stage_activations(const ActivationRows& a, int row0, int nrows,
                                                  int k0, int kc, uint16_t* smem) {
  static_assert(kStride % 64 == 32, "stride must be 32 mod 64 elements (bank-conflict-free)");
  constexpr int kUnroll = 2;
  const int gpr = kc / 16;  // 16-element groups per row
  const int total = min(nrows, BN) * gpr;
  for (int i0 = threadIdx.x; i0 < total; i0 += kUnroll * kThreads) {
    uint4 v[kUnroll][2];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = i0 + u * kThreads;
      if (i < total) {
        const int r = i / gpr, b = i % gpr;
        const int64_t row = a.gather ? int64_t(a.gather[row0 + r] / a.gather_div) : int64_t(row0 + r);
        const uint4* src = reinterpret_cast<const uint4*>(a.bf16 + row * a.K + k0 + b * 16);
        v[u][0] = src[0];
        v[u][1] = src[1];
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = i0 + u * kThreads;
      if (i < total) {
        const int r = i / gpr, b = i % gpr;
        const uint32_t w[8] = {v[u][0].x, v[u][0].y, v[u][0].z, v[u][0].w,
                               v[u][1].x, v[u][1].y, v[u][1].z, v[u][1].w};
        store_group_frag_order(smem + r * kStride, b, w);
      }
    }
  }
}

}  // namespace moe12x
