// Portable mainloop (SM80+ mma.sync, also the SM90 and SM120 path): FP4 weights are the A
// operand, tokens are N. Each warp owns 2 m16 tiles (32 weight rows) of a 128-row item.
//   weights: a per-warp ring of kStages k64 blocks filled by cp.async (16 B per lane per tile,
//            fragment-major, so a lane reads back what it copied); kStages - 1 blocks stay in
//            flight across the activation barriers, so every SM streams weights continuously
//            without spending registers on prefetch (the v3 register double buffer lost
//            occupancy, bench/NOTES.md).
//   tokens:  staged as bf16 in shared memory per K chunk; the chunk grows as the tile narrows,
//            so a decode tile stages 2048 K values per barrier pair.
// The token-tile width NB (n8 tiles) is a template of run(); MoeGemm picks it per tile at run
// time. fp32 accumulation, K in fixed order: an output never depends on NB or tile neighbours.
#pragma once
#include <cute/arch/copy_sm80.hpp>
#include <cute/arch/mma_sm80.hpp>
#include "common/nvfp4.cuh"
#include "common/params.hpp"
#include "mainloop/activation_stage.cuh"

namespace moe12x {

struct Sm80MmaFp4Mainloop {
  static constexpr int kMaxNB = 8;
  static constexpr int kMTiles = 2;
  static constexpr int kWarps = kCtaThreads / 32;
  static constexpr int kStages = 8;             // k64 blocks per warp ring (7 in flight)
  static constexpr int kStageElems = 64 * 264;  // token rows x (chunk + 8) bf16, any width
  static constexpr bool kRuntimeNB = true;
  static constexpr bool kWarpItems = false;
  static constexpr int kItemRows = kCtaRows;

  struct Stage {
    uint4 q[kMTiles][32];  // codes: lane-major, as prepared
    uint4 s[kMTiles][4];   // 64 B of scale codes per tile (rows g, g+8 at 8 g)
  };
  struct SharedStorage {
    alignas(16) uint16_t b[kStageElems];
    Stage ring[kWarps][kStages];
  };
  template <int NB>
  using Accum = float[kMTiles][NB][4];

  template <int NB>
  static constexpr int chunk_k() { return 2048 / NB; }
  template <int NB>
  static constexpr int stride() { return chunk_k<NB>() + 8; }  // +16 B per row: conflict-free

  __device__ static int warp_row0(int mblock, int warp) { return mblock * kItemRows + warp * 2 * kWarpRows; }
  __device__ static bool epilogue_warp(int) { return true; }

  // codes/scales: this expert's prepared matrix; row0: first prepared row of this warp.
  template <int NB>
  __device__ static void run(const uint8_t* codes, const uint8_t* scales, int K, int row0, int mtiles,
                             const ActivationRows& act, int tok0, int ntok, SharedStorage& smem,
                             Accum<NB>& acc) {
    constexpr int kChunk = chunk_k<NB>(), kStride = stride<NB>();
    static_assert(NB >= 1 && NB <= kMaxNB, "token tile must be 8..64 rows");
    static_assert(8 * NB * kStride <= kStageElems, "token stage too small for this width");
    static_assert(kChunk % kKBlock == 0, "chunk must hold whole prepared blocks");
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int kblocks = K / kKBlock;
    Stage* ring = smem.ring[threadIdx.x / 32];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int nb = 0; nb < NB; ++nb)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[mt][nb][i] = 0.0f;

    // ---- weight ring: lanes copy their own 16 B per tile; lanes 0..7 the tiles' scales ----
    const uint8_t* qsrc[kMTiles];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
      qsrc[mt] = codes + (int64_t(row0 / kWarpRows + mt) * kblocks) * kFragBytes + lane * 16;
    const int smt = lane >> 2;
    const bool scale_lane = lane < 4 * kMTiles && smt < mtiles;
    const uint8_t* ssrc = scales + (int64_t(row0 / kWarpRows + (smt & 1)) * kblocks) * kScaleBytes + t * 16;
    auto issue = [&](int kb, Stage& st) {
      if (kb < kblocks) {
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt)
          if (mt < mtiles)
            cute::SM80_CP_ASYNC_CACHEGLOBAL<cute::uint128_t>::copy(
                *reinterpret_cast<const cute::uint128_t*>(qsrc[mt] + int64_t(kb) * kFragBytes),
                *reinterpret_cast<cute::uint128_t*>(&st.q[mt][lane]));
        if (scale_lane)
          cute::SM80_CP_ASYNC_CACHEGLOBAL<cute::uint128_t>::copy(
              *reinterpret_cast<const cute::uint128_t*>(ssrc + int64_t(kb) * kScaleBytes),
              *reinterpret_cast<cute::uint128_t*>(&st.s[smt & 1][t]));
      }
      cute::cp_async_fence();  // empty groups past the end keep the wait count uniform
    };
    __syncwarp();  // every lane is done with the previous item's ring
#pragma unroll
    for (int i = 0; i < kStages - 1; ++i) issue(i, ring[i]);

    int kb = 0, slot = 0;
    for (int k0 = 0; k0 < K; k0 += kChunk) {
      const int kc = min(kChunk, K - k0);
      __syncthreads();  // previous chunk consumed by every warp
      stage_activations<8 * NB, kStride, kCtaThreads>(act, tok0, ntok, k0, kc, smem.b);
      __syncthreads();

      for (int kk0 = 0; kk0 < kc; kk0 += kKBlock, ++kb) {
        cute::cp_async_wait<kStages - 2>();
        __syncwarp();  // block kb visible to all lanes; slot kb-1 read by all lanes
        const Stage& st = ring[slot];
        uint4 q[kMTiles];
        uint2 s[kMTiles];
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          q[mt] = st.q[mt][lane];
          s[mt] = reinterpret_cast<const uint2*>(st.s[mt])[g];
        }
        const int refill = slot == 0 ? kStages - 1 : slot - 1;
        issue(kb + kStages - 1, ring[refill]);
        slot = slot == kStages - 1 ? 0 : slot + 1;

#pragma unroll
        for (int j = 0; j < 4; ++j) {
          uint32_t b[NB][2];
          const int kk = kk0 + j * 16 + 2 * t;
#pragma unroll
          for (int nb = 0; nb < NB; ++nb) {
            const uint16_t* row = smem.b + (nb * 8 + g) * kStride + kk;
            b[nb][0] = *reinterpret_cast<const uint32_t*>(row);
            b[nb][1] = *reinterpret_cast<const uint32_t*>(row + 8);
          }
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            if (mt >= mtiles) break;
            const uint32_t words[4] = {q[mt].x, q[mt].y, q[mt].z, q[mt].w};
            uint32_t a[4];
            dequant_a_frag(words[j], scale_pair(s[mt].x, j), scale_pair(s[mt].y, j), a);
#pragma unroll
            for (int nb = 0; nb < NB; ++nb)
              cute::SM80_16x8x16_F32BF16BF16F32_TN::fma(
                  acc[mt][nb][0], acc[mt][nb][1], acc[mt][nb][2], acc[mt][nb][3], a[0], a[1], a[2],
                  a[3], b[nb][0], b[nb][1], acc[mt][nb][0], acc[mt][nb][1], acc[mt][nb][2],
                  acc[mt][nb][3]);
          }
        }
      }
    }
    cute::cp_async_wait<0>();  // only empty groups remain; keeps the ring quiet for the next item
    if (act.fp4) {  // fp4 B operands carry 2^-8 (activation_stage.cuh); undo it exactly
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
        for (int nb = 0; nb < NB; ++nb)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[mt][nb][i] *= kAccScale;
    }
  }
};

}  // namespace moe12x
