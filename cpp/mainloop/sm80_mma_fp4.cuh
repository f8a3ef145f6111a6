// Portable mainloop (SM80+ mma.sync, also the SM90 and SM120 path): FP4 weights are the A
// operand, tokens are N. Each warp owns 2 m16 tiles (32 weight rows) of a 128-row item.
//   weights: a per-warp ring of kStages stages of 2 k64 blocks, filled by cp.async (16 B per
//            lane per tile and block, fragment-major; lanes 0..15 copy the scales); 6 blocks
//            stay in flight across the activation barriers, so every SM streams weights
//            continuously without spending registers on prefetch (the v3 register double
//            buffer lost occupancy, bench/NOTES.md). Decode is issue-bound: the loop body is
//            kept free of per-block branches (MT is a template, not a runtime check).
//   tokens:  staged as bf16 in shared memory per K chunk; the chunk grows as the tile narrows,
//            so a decode tile stages 2048 K values per barrier pair.
// The token-tile width NB (n8 tiles) is a template of run(); MoeGemm picks it per tile at run
// time. fp32 accumulation, K in fixed order: an output never depends on NB or tile neighbours.
#pragma once
#include <cstddef>  // offsetof

#include <cute/arch/copy_sm80.hpp>
#include <cute/arch/mma_sm80.hpp>
#include "common/nvfp4.cuh"
#include "common/params.hpp"
#include "common/pdl.cuh"
#include "mainloop/activation_stage.cuh"
#include "kernel/ws_trace.cuh"

namespace moe12x {

// cp.async of 16 bytes, L2-cached only (cute's SM80_CP_ASYNC_CACHEGLOBAL), to a 32-bit shared
// address: a stage's copies share one address register and constant offsets.
__device__ __forceinline__ void cp_async_cg16(uint32_t smem_dst, const void* gmem_src) {
  asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16;" ::"r"(smem_dst), "l"(gmem_src) : "memory");
}

// A row's 4 prepared scale codes (one per k16 step) -> two words whose 16-bit halves are the
// bf16 S of steps (0, 2) and (1, 3): S bits = code * 16 + 0x7580 (nvfp4.cuh), no carry across
// halves. dup_half then broadcasts one half; ptxas can fold it into the FMA's operand select.
__device__ __forceinline__ uint2 scale_halves(uint32_t codes4) {
  uint32_t even, odd;
  asm("prmt.b32 %0, %1, 0, 0x4240;" : "=r"(even) : "r"(codes4));
  asm("prmt.b32 %0, %1, 0, 0x4341;" : "=r"(odd) : "r"(codes4));
  return make_uint2(even * 16u + 0x75807580u, odd * 16u + 0x75807580u);
}

__device__ __forceinline__ uint32_t dup_half(uint32_t x, int hi) {
  uint32_t d;
  if (hi) asm("{.reg .b16 l, h; mov.b32 {l, h}, %1; mov.b32 %0, {h, h};}" : "=r"(d) : "r"(x));
  else asm("{.reg .b16 l, h; mov.b32 {l, h}, %1; mov.b32 %0, {l, l};}" : "=r"(d) : "r"(x));
  return d;
}

// kMaxNB_: widest token tile (n8 tiles). 8 for the general kernel; 2 and 4 for the decode kernels,
// whose smaller accumulators and token stage fit 4 CTAs per SM instead of 3 (more warps to hide
// the weight stream's latency when tiles are a few rows).
// kWarpTiles_: m16 tiles per warp. 1 halves the item (64 rows) and so doubles the warps that
// stream an expert: at T = 1 a call has only ~3-8 warps per SM with 2, each bound by its own
// instruction latency (ncu: ~1 warp per scheduler, issue slots 15-29 % busy).
// kActPrefetch_: 16-row token tiles stage their FP4 rows one K chunk ahead (Fp4ActPrefetch); its
// own instantiation, chosen per call (choose_act_prefetch), because the extra loop costs the
// kernel's 8-row tiles too (bench/NOTES.md v36).
// kXQuant_: FC1's FP4 rows may be quantized from bf16 x as they are staged (ActivationRows::from_x:
// the persistent decode kernel, which has no pack phase).
template <int kMaxNB_, int kWarpTiles_ = 2, bool kActPrefetch_ = false, bool kXQuant_ = false>
struct Sm80MmaFp4MainloopT {
  static constexpr int kMaxNB = kMaxNB_;
  static_assert(kMaxNB == 2 || kMaxNB == 4 || kMaxNB == 8, "widths: 16, 32 (decode) or 64 (general)");
  static constexpr int kWarpTiles = kWarpTiles_;
  static_assert(kWarpTiles == 1 || kWarpTiles == 2, "one or two m16 tiles per warp");
  static constexpr int kMTiles = kWarpTiles;
  static constexpr int kWarps = kCtaThreads / 32;
  static constexpr int kStageBlocks = 2;        // k64 blocks per ring stage
  static constexpr int kStages = 4;             // ring stages per warp (3 in flight)
  static constexpr int kChunkRows = kMaxNB == 8 ? 2048 : 1024;  // K x rows staged per barrier pair
  static constexpr int kStageElems = 8 * kMaxNB * (kChunkRows / kMaxNB + 32);  // rows x (chunk + 32)
  static constexpr bool kRuntimeNB = true;
  static constexpr bool kWarpItems = false;
  static constexpr int kItemRows = kWarps * kWarpTiles * kWarpRows;
  static constexpr int kCtasPerSm = kMaxNB == 8 ? 3 : kWarpTiles == 1 ? 6 : 4;  // register bound for __launch_bounds__
  static constexpr bool kActPrefetch = kActPrefetch_;
  static_assert(!kActPrefetch || (kMaxNB == 2 && kWarpTiles == 2), "prefetch: the two-tile 16-row decode kernel only");
  static constexpr bool kXQuant = kXQuant_;
  static_assert(!(kXQuant && kActPrefetch), "rows quantized from x are staged synchronously");

  struct Stage {
    uint4 q[kStageBlocks][kMTiles][32];  // codes: lane-major, as prepared
    uint4 s[kStageBlocks][kMTiles][4];   // 64 B of scale codes per tile (rows g, g+8 at 8 g)
  };
  struct SharedStorage {
    alignas(16) uint16_t b[kStageElems];
    Stage ring[kWarps][kStages];
  };
  template <int NB>
  using Accum = float[2][NB][4];  // MoeGemm's shape; [1] unused with one tile per warp

  template <int NB>
  static constexpr int chunk_k() { return kChunkRows / NB; }
  template <int NB>
  static constexpr int stride() { return chunk_k<NB>() + 32; }  // +64 B per row: conflict-free

  __device__ static int warp_row0(int mblock, int warp) { return mblock * kItemRows + warp * kWarpTiles * kWarpRows; }
  __device__ static bool epilogue_warp(int) { return true; }

  // codes/scales: this expert's prepared matrix; row0: first prepared row of this warp. wait():
  // between the weight ring's first stages and the first token stage (pdl.cuh), every thread.
  template <int NB, class Wait = PdlWaitTrigger>
  __device__ static void run(const uint8_t* codes, const uint8_t* scales, int K, int row0, int mtiles,
                             const ActivationRows& act, int tok0, int ntok, SharedStorage& smem,
                             Accum<NB>& acc, const Wait& wait = Wait{}) {
    zero_acc(acc);
    // A warp past the matrix's last rows still joins the CTA barriers of the activation stage.
    // Prefetching is a template, like MT: one loop per kind keeps each one's registers. 8-row tiles
    // keep the synchronous stage (the prefetching loop measured slower for them).
    if (kActPrefetch && NB == 2 && act.fp4) run_mt<NB, kActPrefetch && NB == 2>(codes, scales, K, row0, mtiles, act, tok0, ntok, smem, acc, wait);
    else run_mt<NB, false>(codes, scales, K, row0, mtiles, act, tok0, ntok, smem, acc, wait);
    if (act.fp4) undo_fp4_act_scale(acc);
  }

  template <int NB, bool kPrefetch, class Wait>
  __device__ static void run_mt(const uint8_t* codes, const uint8_t* scales, int K, int row0, int mtiles,
                                const ActivationRows& act, int tok0, int ntok, SharedStorage& smem, Accum<NB>& acc,
                                const Wait& wait) {
    if (kWarpTiles >= 2 && mtiles >= 2) run_tiles<NB, kWarpTiles, kPrefetch>(codes, scales, K, row0, act, tok0, ntok, smem, acc, wait);
    else if (mtiles == 1) run_tiles<NB, 1, kPrefetch>(codes, scales, K, row0, act, tok0, ntok, smem, acc, wait);
    else run_tiles<NB, 0, kPrefetch>(codes, scales, K, row0, act, tok0, ntok, smem, acc, wait);
  }

  // kPrefetch: FP4 tokens through Fp4ActPrefetch; else stage_activations.
  template <int NB, int MT, bool kPrefetch, class Wait>
  __device__ static void run_tiles(const uint8_t* codes, const uint8_t* scales, int K, int row0,
                                   const ActivationRows& act, int tok0, int ntok, SharedStorage& smem,
                                   Accum<NB>& acc, const Wait& wait) {
    constexpr int kChunk = chunk_k<NB>(), kStride = stride<NB>();
    static_assert(NB >= 1 && NB <= kMaxNB, "token tile wider than this mainloop's kMaxNB");
    static_assert(8 * NB * kStride <= kStageElems, "token stage too small for this width");
    static_assert(kChunk % (kKBlock * kStageBlocks) == 0, "chunk must hold whole ring stages");
    using Prefetch = Fp4ActPrefetch<8 * NB, kStride, kCtaThreads>;
    static_assert(!kPrefetch || Prefetch::kChunk == kChunk, "a prefetching thread holds 4 groups of each chunk");
    const int lane = threadIdx.x & 31, t = lane & 3;
    const int kblocks = K / kKBlock;
    Stage* ring = smem.ring[threadIdx.x / 32];

    // ---- weight ring ----
    // Running source pointers and one 32-bit shared address per stage with constant offsets: the
    // issue was ~45 of the ~316 instructions of an NB = 1 stage (an IMAD.WIDE and a generic ->
    // shared conversion per copy), and the decode loop is issue-bound.
    const uint8_t* qnext[kMTiles];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
      qnext[mt] = codes + (int64_t(row0 / kWarpRows + mt) * kblocks) * kFragBytes + lane * 16;
    // lanes 0..15 copy scales: lane = 8 * block + 4 * tile + 16-byte part
    const int s_blk = (lane >> 3) & 1, s_tile = (lane >> 2) & 1, s_mt = kMTiles == 2 ? s_tile : 0;
    const bool scale_lane = lane < 16 && s_tile < MT;
    const uint8_t* snext = scales + (int64_t(row0 / kWarpRows + s_mt) * kblocks + s_blk) * kScaleBytes + t * 16;
    const uint32_t ring_s = static_cast<uint32_t>(__cvta_generic_to_shared(ring));
    const uint32_t q_lane = lane * 16u, s_lane = uint32_t(offsetof(Stage, s)) + uint32_t((s_blk * kMTiles + s_mt) * 4 + t) * 16u;
    int kb_next = 0;  // first block of the next stage to issue
    auto issue = [&](int slot) {  // stage of blocks kb_next, kb_next + 1
      const uint32_t st = ring_s + uint32_t(slot) * uint32_t(sizeof(Stage));
#pragma unroll
      for (int i = 0; i < kStageBlocks; ++i)
        if (kb_next + i < kblocks)
#pragma unroll
          for (int mt = 0; mt < MT; ++mt)
            cp_async_cg16(st + q_lane + uint32_t((i * kMTiles + mt) * kFragBytes), qnext[mt] + i * kFragBytes);
      if (scale_lane && kb_next + s_blk < kblocks) cp_async_cg16(st + s_lane, snext);
      cute::cp_async_fence();  // empty groups past the end keep the wait count uniform
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) qnext[mt] += kStageBlocks * kFragBytes;
      snext += kStageBlocks * kScaleBytes;
      kb_next += kStageBlocks;
    };
    __syncwarp();  // every lane is done with the previous item's ring
#pragma unroll
    for (int i = 0; i < kStages - 1; ++i) issue(i);
    // Prefetching loops only (nrows 0 elsewhere: reads nothing). FC1's row gather (row_pair) is the
    // route kernel's, two launches back: read before the wait.
    Prefetch pf(act, tok0, kPrefetch ? ntok : 0);
    // Weights never depend on the previous kernel; the activations do (pdl.cuh).
    wait();
    MOE12X_WS_PROBE(if (threadIdx.x == 0) if (auto* r = decode_trace_slot()) r->main_end[0] = ws_trace_now());
    if (kPrefetch) pf.load(0, min(kChunk, K));

    int kb = 0, slot = 0;
    for (int k0 = 0; k0 < K; k0 += kChunk) {
      const int kc = min(kChunk, K - k0);
#ifdef MOE12X_WS_TRACE
      const unsigned long long t_stage = ws_trace_now();
#endif
      __syncthreads();  // previous chunk consumed by every warp
      if constexpr (kPrefetch) {
        pf.store(kc, smem.b);
        if (k0 + kChunk < K) pf.load(k0 + kChunk, min(kChunk, K - k0 - kChunk));  // lands during the MMAs
      } else {
        stage_activations<8 * NB, kStride, kCtaThreads, kXQuant>(act, tok0, ntok, k0, kc, smem.b);
      }
      __syncthreads();
      MOE12X_WS_PROBE(if (threadIdx.x == 0) if (auto* r = decode_trace_slot()) {
        const unsigned long long now = ws_trace_now();
        if (k0 == 0) r->first_full = now;
        r->epi_end[1] += now - t_stage;
      });

      for (int kk0 = 0; kk0 < kc; kk0 += kKBlock * kStageBlocks, kb += kStageBlocks) {
        cute::cp_async_wait<kStages - 2>();
        __syncwarp();  // stage visible to all lanes; the previous stage read by all lanes
        const Stage& st = ring[slot];
        issue(slot == 0 ? kStages - 1 : slot - 1);  // blocks kb + (kStages - 1) * kStageBlocks, + 1
        slot = slot == kStages - 1 ? 0 : slot + 1;
        block_mma<NB, MT, kStride>(st, 0, smem.b + kk0, acc);
        if (kk0 + kKBlock < kc) block_mma<NB, MT, kStride>(st, 1, smem.b + kk0 + kKBlock, acc);
      }
    }
    cute::cp_async_wait<0>();  // only empty groups remain; keeps the ring quiet for the next item
    MOE12X_WS_PROBE(if (threadIdx.x == 0) if (auto* r = decode_trace_slot()) r->main_end[1] = ws_trace_now());
  }

  // One k64 block: 4 k16 steps x MT m16 tiles x NB n8 tiles. b: the block's first token column.
  template <int NB, int MT, int kStride>
  __device__ static void block_mma(const Stage& st, int i, const uint16_t* b, Accum<NB>& acc) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    uint4 q[kMTiles];
    uint2 sg[kMTiles], sg8[kMTiles];  // S halves for steps (0, 2) and (1, 3), rows g and g+8
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      q[mt] = st.q[i][mt][lane];
      const uint2 s = reinterpret_cast<const uint2*>(st.s[i][mt])[g];
      sg[mt] = scale_halves(s.x);
      sg8[mt] = scale_halves(s.y);
    }
#pragma unroll
    for (int jp = 0; jp < 2; ++jp) {
      uint4 bq[NB];  // B registers of steps 2 jp and 2 jp + 1 (fragment order)
#pragma unroll
      for (int nb = 0; nb < NB; ++nb)
        bq[nb] = *reinterpret_cast<const uint4*>(b + (nb * 8 + g) * kStride + 32 * jp + 8 * t);
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        const int j = 2 * jp + jj;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          const uint32_t words[4] = {q[mt].x, q[mt].y, q[mt].z, q[mt].w};
          const uint32_t half_g = jj ? sg[mt].y : sg[mt].x, half_g8 = jj ? sg8[mt].y : sg8[mt].x;
          uint32_t a[4];
          dequant_a_frag(words[j], dup_half(half_g, jp), dup_half(half_g8, jp), a);
#pragma unroll
          for (int nb = 0; nb < NB; ++nb) {
            const uint32_t b0 = jj ? bq[nb].z : bq[nb].x, b1 = jj ? bq[nb].w : bq[nb].y;
            cute::SM80_16x8x16_F32BF16BF16F32_TN::fma(
                acc[mt][nb][0], acc[mt][nb][1], acc[mt][nb][2], acc[mt][nb][3], a[0], a[1], a[2], a[3],
                b0, b1, acc[mt][nb][0], acc[mt][nb][1], acc[mt][nb][2], acc[mt][nb][3]);
          }
        }
      }
    }
  }
};

using Sm80MmaFp4Mainloop = Sm80MmaFp4MainloopT<8>;

}  // namespace moe12x
