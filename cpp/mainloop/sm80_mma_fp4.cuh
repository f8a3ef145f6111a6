// Portable mainloop (SM80+ mma.sync, also the SM90 and SM120 path): FP4 weights are the A
// operand, streamed from the fragment-major prepared layout straight into registers (one 16-B
// load per lane per 16x64 block) and dequantized there; tokens are N, staged as bf16 in shared
// memory. Each warp owns 2 m16 tiles x BN tokens; fp32 accumulation, K in fixed order, so an
// output element never depends on which other rows share its tile.
#pragma once
#include <cute/arch/mma_sm80.hpp>
#include "common/nvfp4.cuh"
#include "common/params.hpp"
#include "mainloop/activation_stage.cuh"

namespace moe12x {

template <int NB>
struct Sm80MmaFp4Mainloop {
  static constexpr int kBN = 8 * NB;
  static constexpr int kStride = kChunkK + 8;  // +16 B per row: conflict-free B fragment loads
  static constexpr int kMTiles = 2;
  static constexpr int kKBlocksPerChunk = kChunkK / kKBlock;
  static_assert(NB >= 1 && NB <= 8, "token tile must be 8..64");
  static_assert(kChunkK % kKBlock == 0, "chunk must hold whole prepared blocks");

  struct SharedStorage {
    alignas(16) uint16_t b[kBN * kStride];
  };
  using Accum = float[kMTiles][NB][4];

  // A work item is 128 rows: each warp owns 32 of them and runs its own epilogue.
  static constexpr int kItemRows = kCtaRows;
  static constexpr bool kWarpItems = false;
  __device__ static int warp_row0(int mblock, int warp) { return mblock * kItemRows + warp * 2 * kWarpRows; }
  __device__ static bool epilogue_warp(int) { return true; }

  // codes/scales: this expert's prepared matrix; row0: first prepared row of this warp.
  __device__ static void run(const uint8_t* codes, const uint8_t* scales, int K, int row0,
                             int mtiles, const ActivationRows& act, int tok0, int ntok,
                             SharedStorage& smem, Accum& acc) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int kblocks = K / kKBlock;
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int nb = 0; nb < NB; ++nb)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[mt][nb][i] = 0.0f;

    const uint4* wq[kMTiles];
    const uint2* ws[kMTiles];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      const int64_t tile = row0 / kWarpRows + mt;
      wq[mt] = reinterpret_cast<const uint4*>(codes + tile * kblocks * kFragBytes) + lane;
      ws[mt] = reinterpret_cast<const uint2*>(scales + tile * kblocks * kScaleBytes) + g;
    }

    for (int k0 = 0; k0 < K; k0 += kChunkK) {
      const int kc = min(kChunkK, K - k0);
      const int kb0 = k0 / kKBlock, nkb = kc / kKBlock;
      // Issue this chunk's weight loads first: their latency hides behind the B staging.
      uint4 q[kMTiles][kKBlocksPerChunk];
      uint2 s[kMTiles][kKBlocksPerChunk];
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
        for (int kb = 0; kb < kKBlocksPerChunk; ++kb) {
          if (mt < mtiles && kb < nkb) {
            q[mt][kb] = __ldg(wq[mt] + (kb0 + kb) * 32);
            s[mt][kb] = __ldg(ws[mt] + (kb0 + kb) * 8);
          } else {
            q[mt][kb] = make_uint4(0, 0, 0, 0);
            s[mt][kb] = make_uint2(0, 0);
          }
        }
      __syncthreads();  // previous chunk fully consumed
      stage_activations<kBN, kStride, kCtaThreads>(act, tok0, ntok, k0, kc, smem.b);
      __syncthreads();

#pragma unroll
      for (int kb = 0; kb < kKBlocksPerChunk; ++kb) {
        if (kb >= nkb) break;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          uint32_t b[NB][2];
          const int kk = kb * kKBlock + j * 16 + 2 * t;
#pragma unroll
          for (int nb = 0; nb < NB; ++nb) {
            const uint16_t* row = smem.b + (nb * 8 + g) * kStride + kk;
            b[nb][0] = *reinterpret_cast<const uint32_t*>(row);
            b[nb][1] = *reinterpret_cast<const uint32_t*>(row + 8);
          }
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt) {
            if (mt >= mtiles) break;
            const uint32_t words[4] = {q[mt][kb].x, q[mt][kb].y, q[mt][kb].z, q[mt][kb].w};
            uint32_t a[4];
            dequant_a_frag(words[j], scale_pair(s[mt][kb].x, j), scale_pair(s[mt][kb].y, j), a);
#pragma unroll
            for (int nb = 0; nb < NB; ++nb)
              cute::SM80_16x8x16_F32BF16BF16F32_TN::fma(
                  acc[mt][nb][0], acc[mt][nb][1], acc[mt][nb][2], acc[mt][nb][3], a[0], a[1],
                  a[2], a[3], b[nb][0], b[nb][1], acc[mt][nb][0], acc[mt][nb][1],
                  acc[mt][nb][2], acc[mt][nb][3]);
          }
        }
      }
    }
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
