// Decode mainloop (SM80+ mma.sync; the SM90 and SM120 decode path): a work item is one warp's
// 32 weight rows x <= 16 tokens, so a small batch still spreads over every SM's warps. No shared
// memory and no barrier: B fragments come straight from the packed activation rows (L2-resident,
// tiny at decode), kKU weight blocks in flight per lane. K is summed in the same order, with the
// same operand values, as the staged mainloop, so both give bitwise equal results (batch
// invariance across schedules and tile widths).
#pragma once
#include <cute/arch/mma_sm80.hpp>
#include "common/cuda_utils.cuh"
#include "common/nvfp4.cuh"
#include "common/params.hpp"
#include "mainloop/activation_stage.cuh"

namespace moe12x {

// Two e2m1 codes of one byte -> bf16x2 (low nibble -> low half) scaled as q * 2^-126.
__device__ __forceinline__ uint32_t nibble_pair_bf16x2(uint32_t v) {
  return ((v & 0x8u) << 12) | ((v & 0x7u) << 6) | ((v & 0x80u) << 24) | ((v & 0x70u) << 18);
}

template <int NB>
struct Sm80StreamFp4Mainloop {
  static constexpr int kBN = 8 * NB;
  static constexpr int kWarpTiles = 2;
  static constexpr int kItemRows = kWarpTiles * kWarpRows;
  static constexpr int kKU = 4;  // k64 blocks in flight per lane
  static constexpr bool kWarpItems = true;  // each warp runs its own items
  static constexpr bool kRuntimeNB = false;
  static constexpr int kNB = NB;
  static_assert(NB >= 1 && NB <= 2, "the streaming mainloop is for decode tiles of 8..16 tokens");

  using Accum = float[2][NB][4];
  struct SharedStorage {};

  __device__ static int warp_row0(int mblock, int /*warp*/) { return mblock * kItemRows; }
  __device__ static bool epilogue_warp(int) { return true; }

  __device__ static void run(const uint8_t* codes, const uint8_t* scales, int K, int row0, int mtiles,
                             const ActivationRows& act, int tok0, int ntok, SharedStorage&, Accum& acc) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int kblocks = K / kKBlock;
    zero_acc(acc);

    const uint4* wq[2];
    const uint2* ws[2];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
      const int64_t tile = row0 / kWarpRows + mt;
      wq[mt] = reinterpret_cast<const uint4*>(codes + tile * kblocks * kFragBytes) + lane;
      ws[mt] = reinterpret_cast<const uint2*>(scales + tile * kblocks * kScaleBytes) + g;
    }
    // This lane's token rows (B column g of each n8 tile); invalid rows read as zero.
    int64_t brow[NB];
    bool bvalid[NB];
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
      const int r = nb * 8 + g;
      bvalid[nb] = r < ntok;
      const int rr = bvalid[nb] ? tok0 + r : tok0;
      brow[nb] = act.gather ? int64_t(act.gather[rr] / act.gather_div) : int64_t(rr);
    }

    for (int kb0 = 0; kb0 < kblocks; kb0 += kKU) {
      uint4 q[kKU][2];
      uint2 s[kKU][2];
      uint32_t b[kKU][NB][4][2];  // per block, n-tile, k16 step: the two B registers
      // ---- loads: weights for kKU blocks, then activations ----
#pragma unroll
      for (int u = 0; u < kKU; ++u) {
        const int kb = kb0 + u;
        const bool ok = kb < kblocks;
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          q[u][mt] = ok && mt < mtiles ? __ldg(wq[mt] + kb * 32) : make_uint4(0, 0, 0, 0);
          s[u][mt] = ok && mt < mtiles ? __ldg(ws[mt] + kb * 8) : make_uint2(0, 0);
        }
#pragma unroll
        for (int nb = 0; nb < NB; ++nb) load_b(act, brow[nb], ok && bvalid[nb], kb, t, b[u][nb]);
      }
      // ---- math ----
#pragma unroll
      for (int u = 0; u < kKU; ++u)
#pragma unroll
        for (int j = 0; j < 4; ++j)
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            const uint32_t words[4] = {q[u][mt].x, q[u][mt].y, q[u][mt].z, q[u][mt].w};
            uint32_t a[4];
            dequant_a_frag(words[j], scale_pair(s[u][mt].x, j), scale_pair(s[u][mt].y, j), a);
#pragma unroll
            for (int nb = 0; nb < NB; ++nb)
              cute::SM80_16x8x16_F32BF16BF16F32_TN::fma(
                  acc[mt][nb][0], acc[mt][nb][1], acc[mt][nb][2], acc[mt][nb][3], a[0], a[1], a[2], a[3],
                  b[u][nb][j][0], b[u][nb][j][1], acc[mt][nb][0], acc[mt][nb][1], acc[mt][nb][2],
                  acc[mt][nb][3]);
          }
    }

    if (act.fp4) undo_fp4_act_scale(acc);
  }

  // B registers of k64 block kb for token row `row` (column g): step j needs k = 16j + 2t, +1 and
  // 16j + 8 + 2t, +1. FP4 rows: the row's 32 code bytes (shared by the 4 t-lanes, one broadcast
  // load) and 4 scale bytes; values become q * sf * 2^-8 (exact), undone after the reduction.
  __device__ static void load_b(const ActivationRows& act, int64_t row, bool ok, int kb, int t,
                                uint32_t (&b)[4][2]) {
    if (!ok) {
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j][0] = b[j][1] = 0u;
      return;
    }
    if (act.fp4) {
      const uint4* src = reinterpret_cast<const uint4*>(act.codes + row * (act.K / 2) + kb * 32);
      const uint4 c0 = src[0], c1 = src[1];
      const uint32_t w[8] = {c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w};
      const uint32_t sf4 = *reinterpret_cast<const uint32_t*>(act.scales + row * (act.K / 16) + kb * 4);
      const uint32_t sel = uint32_t(t) | (uint32_t(t + 4) << 4);
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        uint32_t x;
        asm("prmt.b32 %0, %1, %2, %3;" : "=r"(x) : "r"(w[2 * j]), "r"(w[2 * j + 1]), "r"(sel));
        const float sf = e4m3_decode((sf4 >> (8 * j)) & 0xFF) * 0x1p118f;  // exact, < 2^127
        const uint32_t s2 = pack_bf16x2(sf, sf);
        b[j][0] = bf16x2_mul_exact(nibble_pair_bf16x2(x & 0xFF), s2);
        b[j][1] = bf16x2_mul_exact(nibble_pair_bf16x2((x >> 8) & 0xFF), s2);
      }
    } else {
      const uint32_t* src = reinterpret_cast<const uint32_t*>(act.bf16 + row * act.K + kb * kKBlock) + t;
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        b[j][0] = src[8 * j];
        b[j][1] = src[8 * j + 4];
      }
    }
  }
};

}  // namespace moe12x
