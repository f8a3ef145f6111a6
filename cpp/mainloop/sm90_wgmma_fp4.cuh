// EXPERIMENTAL (draft, not run on a GPU yet; docs/wgmma-draft.md): SM90a wgmma mainloop with the
// same products as Sm80MmaFp4Mainloop. A = the prepared FP4 weights dequantized in registers by
// dequant_a_frag (q * sf * 2^-8, exact bf16), fed to wgmma.mma_async m64nNk16 from registers (RS);
// B = the token tile staged in shared memory as bf16, K-major, 128-byte swizzle (GMMA descriptor).
// fp32 accumulation, K in the same fixed order (k64 blocks, then k16 steps, ascending).
//
// Row mapping (tests/host/wgmma_layout_test.cu checks it against CuTe's layouts):
//   The CTA is one warpgroup (4 warps). Per warp, wgmma's register A fragment (CuTe
//   GMMA::ALayout_64x16) is rows 16w..16w+15 of the m64 tile with exactly mma.sync m16n8k16's
//   A-fragment pattern, and its accumulator (GMMA::CLayout_64xN) is rows 16w..16w+15 with the
//   m16n8 C-fragment pattern per 8 columns. Because A comes from registers, which prepared rows a
//   warp feeds is free: in wgmma tile j (j = 0, 1) warp w feeds its prepared m16 tile 2w + j of
//   the 128-row item, i.e. the same 2 tiles, same ring and same warp_row0 = mblock*128 + 32w as
//   the mma.sync mainloop. Then acc[j][nb][i] (wgmma tile j, register 4 nb + i) is exactly the
//   mma.sync acc[mt = j][nb][i], so the epilogues are unchanged.
//
// Pipeline:
//   weights: the per-warp cp.async ring of the mma.sync mainloop (4 stages of 2 k64 blocks),
//            tiles past the matrix zero-filled (a warpgroup instruction needs all 4 warps).
//   tokens:  kBStages = 2 shared buffers of kBStageBytes; while the wgmma of block j of chunk c
//            runs, the threads stage block j of chunk c + 1 into the other buffer (synchronous
//            ld.global + st.shared, then fence.proxy.async before the barrier).
//   wgmma:   per k64 block: dequantize 4 k16 steps x 2 tiles (32 registers), warpgroup_arrive,
//            8 wgmma, commit, wait<1> (the previous block's group retired, so its A registers are
//            free while this block runs); wait<0> + barrier at each chunk end.
// NOT done (see docs/wgmma-draft.md): warp specialization (setmaxnreg producer/consumer), TMA for
// B (the bf16 gather needs per-row copies; cp.async for B would share the commit-group count with
// the weight ring), TMA multicast across a cluster, mbarrier pipelines, wider N than 128.
#pragma once
#include <utility>

#include <cute/arch/copy_sm80.hpp>
#include <cute/arch/mma_sm90_desc.hpp>
#include <cute/arch/mma_sm90_gmma.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/tensor.hpp>
#include <cutlass/arch/barrier.h>

#include "common/nvfp4.cuh"
#include "common/params.hpp"
#include "common/pdl.cuh"
#include "mainloop/activation_stage.cuh"
#include "mainloop/sm80_mma_fp4.cuh"  // scale_halves, dup_half

#ifndef MOE12X_SM90_WGMMA_IN_FLIGHT
#define MOE12X_SM90_WGMMA_IN_FLIGHT 0
#endif

namespace moe12x {

namespace sm90_detail {
namespace GMMA = cute::SM90::GMMA;
template <int N> struct RsOp;
template <> struct RsOp<8> { using type = GMMA::MMA_64x8x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<16> { using type = GMMA::MMA_64x16x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<32> { using type = GMMA::MMA_64x32x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<64> { using type = GMMA::MMA_64x64x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<128> { using type = GMMA::MMA_64x128x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };

// One wgmma m64n(8 NB)k16: d register 4 nb + i is acc[nb][i] (CLayout_64xN value order).
template <int NB, int... I>
__device__ __forceinline__ void wgmma_rs(const uint32_t (&a)[4], uint64_t desc, float (&acc)[NB][4],
                                         std::integer_sequence<int, I...>) {
  RsOp<8 * NB>::type::fma(a[0], a[1], a[2], a[3], desc, acc[I / 4][I % 4]..., GMMA::ScaleOut::One);
}

// K-major SW128 descriptor of k16 step j of one (8 NB) x 64 bf16 block at `base` (1024-B aligned),
// built by CuTe: make_gmma_desc takes exactly one wgmma's K extent (16 bf16 = 2 x 16 B).
template <int NB>
__device__ __forceinline__ uint64_t step_desc(const uint8_t* base, int j) {
  using namespace cute;
  auto layout = tile_to_shape(GMMA::Layout_K_SW128_Atom<cute::bfloat16_t>{}, make_shape(Int<8 * NB>{}, Int<64>{}));
  Tensor t = make_tensor(make_smem_ptr(reinterpret_cast<const cute::bfloat16_t*>(base)), layout);
  Tensor steps = flat_divide(t, make_shape(Int<8 * NB>{}, Int<16>{}));  // (8 NB, 16, 1, 4)
  return GMMA::make_gmma_desc<GMMA::Major::K>(steps(_, _, 0, j)).desc_;
}
}  // namespace sm90_detail

template <int kMaxNB_ = 16>
struct Sm90WgmmaFp4MainloopT {
  static constexpr int kMaxNB = kMaxNB_;
  static_assert(kMaxNB == 8 || kMaxNB == 16, "widths: 64 or 128 tokens");
  static constexpr int kMTiles = 2;
  static constexpr int kWarps = kCtaThreads / 32;
  static_assert(kWarps == 4, "one warpgroup per CTA");
  static constexpr int kStageBlocks = 2;  // weight ring: k64 blocks per stage
  static constexpr int kStages = 4;
  static constexpr int kBStages = 2;              // token buffers
  static constexpr int kBStageBytes = 32 * 1024;  // per buffer: 32 / NB k64 blocks of 8 NB rows
  static constexpr bool kRuntimeNB = true;
  static constexpr bool kWarpItems = false;
  static constexpr int kItemRows = kCtaRows;
  static constexpr int kCtasPerSm = 2;
  // wgmma groups (one per k64 block) left in flight after a block: 1 lets the next block's
  // dequantization overlap the tensor cores but needs 2 A register sets (ptxas then serialized
  // the wgmma: C7512, insufficient registers at 128 accumulators); 0 keeps one A set live.
  static constexpr int kWgmmaInFlight = MOE12X_SM90_WGMMA_IN_FLIGHT;  // ~101 KB of shared memory per CTA

  struct Stage {
    uint4 q[kStageBlocks][kMTiles][32];
    uint4 s[kStageBlocks][kMTiles][4];
  };
  struct SharedStorage {
    alignas(16) uint8_t b_raw[kBStages * kBStageBytes + 1024];  // 1024-B aligned at run time
    Stage ring[kWarps][kStages];
  };
  template <int NB>
  using Accum = float[kMTiles][NB][4];

  template <int NB>
  static constexpr int chunk_blocks() { return kBStageBytes / (NB * 1024); }

  __device__ static uint8_t* b_buffer(SharedStorage& smem, int i) {
    const uintptr_t p = (reinterpret_cast<uintptr_t>(smem.b_raw) + 1023) & ~uintptr_t(1023);
    return reinterpret_cast<uint8_t*>(p) + i * kBStageBytes;
  }
  __device__ static int warp_row0(int mblock, int warp) { return mblock * kItemRows + warp * 2 * kWarpRows; }
  __device__ static bool epilogue_warp(int) { return true; }

  template <int NB>
  __device__ static void run(const uint8_t* codes, const uint8_t* scales, int K, int row0, int mtiles,
                             const ActivationRows& act, int tok0, int ntok, SharedStorage& smem,
                             Accum<NB>& acc) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int nb = 0; nb < NB; ++nb)
#pragma unroll
        for (int i = 0; i < 4; ++i) acc[mt][nb][i] = 0.0f;
#if defined(CUTE_ARCH_MMA_SM90A_ENABLED)
    run_tiles<NB>(codes, scales, K, row0, mtiles, act, tok0, ntok, smem, acc);
#else
    __trap();  // compiled for another target: this policy exists only in sm_90a SASS
#endif
    if (act.fp4) {
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
        for (int nb = 0; nb < NB; ++nb)
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[mt][nb][i] *= kAccScale;
    }
  }

  template <int NB>
  __device__ static void run_tiles(const uint8_t* codes, const uint8_t* scales, int K, int row0, int mtiles,
                                   const ActivationRows& act, int tok0, int ntok, SharedStorage& smem,
                                   Accum<NB>& acc) {
    constexpr int kChunkBlocks = chunk_blocks<NB>();
    constexpr int kBlockBytes = NB * 1024;  // 8 NB rows x 128 B
    static_assert(NB >= 1 && NB <= kMaxNB, "token tile wider than this mainloop's kMaxNB");
    static_assert(kChunkBlocks % kStageBlocks == 0, "chunk must hold whole ring stages");
    using Copy = cute::SM80_CP_ASYNC_CACHEGLOBAL_ZFILL<cute::uint128_t>;
    const int lane = threadIdx.x & 31, t = lane & 3;
    const int kblocks = K / kKBlock;
    Stage* ring = smem.ring[threadIdx.x / 32];

    // ---- weight ring (as Sm80MmaFp4Mainloop; absent tiles zero-filled: A = 0) ----
    const uint8_t* qsrc[kMTiles];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
      qsrc[mt] = mt < mtiles ? codes + (int64_t(row0 / kWarpRows + mt) * kblocks) * kFragBytes + lane * 16 : codes;
    const int s_blk = (lane >> 3) & 1, s_mt = (lane >> 2) & 1;
    const bool scale_lane = lane < 16;
    const bool scale_valid = s_mt < mtiles;
    const uint8_t* ssrc =
        scale_valid ? scales + (int64_t(row0 / kWarpRows + s_mt) * kblocks + s_blk) * kScaleBytes + t * 16 : scales;
    auto issue = [&](int kb0, int slot) {
      Stage& st = ring[slot];
#pragma unroll
      for (int i = 0; i < kStageBlocks; ++i)
        if (kb0 + i < kblocks)
#pragma unroll
          for (int mt = 0; mt < kMTiles; ++mt)
            Copy::copy(*reinterpret_cast<const cute::uint128_t*>(qsrc[mt] + (mt < mtiles ? int64_t(kb0 + i) * kFragBytes : 0)),
                       *reinterpret_cast<cute::uint128_t*>(&st.q[i][mt][lane]), mt < mtiles);
      if (scale_lane && kb0 + s_blk < kblocks)
        Copy::copy(*reinterpret_cast<const cute::uint128_t*>(ssrc + (scale_valid ? int64_t(kb0) * kScaleBytes : 0)),
                   *reinterpret_cast<cute::uint128_t*>(&st.s[s_blk][s_mt][t]), scale_valid);
      cute::cp_async_fence();
    };
    __syncthreads();  // the previous item's token buffers and ring are no longer read
#pragma unroll
    for (int i = 0; i < kStages - 1; ++i) issue(i * kStageBlocks, i);
    pdl_wait();
    pdl_trigger();

    constexpr int kChunkK = kChunkBlocks * kKBlock;
    stage_activations_gmma<8 * NB, kCtaThreads>(act, tok0, ntok, 0, min(kChunkK, K), b_buffer(smem, 0));
    cutlass::arch::fence_view_async_shared();  // generic-proxy stores -> visible to wgmma
    __syncthreads();

    int kb = 0, slot = 0, buf = 0;
    for (int k0 = 0; k0 < K; k0 += kChunkK, buf ^= 1) {
      const int nblk = min(kChunkK, K - k0) / kKBlock;
      const int k0n = k0 + kChunkK;
      const int nblk_next = k0n < K ? min(kChunkK, K - k0n) / kKBlock : 0;
      const uint8_t* bcur = b_buffer(smem, buf);
      uint8_t* bnext = b_buffer(smem, buf ^ 1);
      for (int j = 0; j < nblk; j += kStageBlocks, kb += kStageBlocks) {
        cute::cp_async_wait<kStages - 2>();
        __syncwarp();
        const Stage& st = ring[slot];
        issue(kb + (kStages - 1) * kStageBlocks, slot == 0 ? kStages - 1 : slot - 1);
        slot = slot == kStages - 1 ? 0 : slot + 1;
#pragma unroll
        for (int i = 0; i < kStageBlocks; ++i) {
          if (j + i < nblk) {  // uniform over the warpgroup
            block_wgmma<NB>(st, i, bcur + (j + i) * kBlockBytes, acc);
            if (j + i < nblk_next)  // overlap: stage the next chunk's block while this one runs
              stage_activations_gmma<8 * NB, kCtaThreads>(act, tok0, ntok, k0n + (j + i) * kKBlock, kKBlock,
                                                          bnext + (j + i) * kBlockBytes);
            cute::warpgroup_wait<kWgmmaInFlight>();
            warpgroup_fence_acc<NB>(acc);
          }
        }
      }
      cute::warpgroup_wait<0>();
      warpgroup_fence_acc<NB>(acc);
      cutlass::arch::fence_view_async_shared();
      __syncthreads();  // next buffer staged by all threads; this buffer free for chunk + 2
    }
    cute::cp_async_wait<0>();
  }

  template <int NB>
  __device__ static void warpgroup_fence_acc(Accum<NB>& acc) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int nb = 0; nb < NB; ++nb)
#pragma unroll
        for (int i = 0; i < 4; ++i) cute::warpgroup_fence_operand(acc[mt][nb][i]);
  }

  // One k64 block: 4 k16 steps x 2 wgmma m64 tiles. bblk: the block's staged tokens (GMMA order;
  // k16 step j's descriptor starts 32 B later, tests/host/wgmma_layout_test.cu).
  template <int NB>
  __device__ static void block_wgmma(const Stage& st, int i, const uint8_t* bblk, Accum<NB>& acc) {
    const int lane = threadIdx.x & 31, g = lane >> 2;
    uint32_t a[4][kMTiles][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      const uint4 q = st.q[i][mt][lane];
      const uint2 s = reinterpret_cast<const uint2*>(st.s[i][mt])[g];
      const uint2 sg = scale_halves(s.x), sg8 = scale_halves(s.y);
      const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int jp = j >> 1, jj = j & 1;
        dequant_a_frag(words[j], dup_half(jj ? sg.y : sg.x, jp), dup_half(jj ? sg8.y : sg8.x, jp), a[j][mt]);
      }
    }
    warpgroup_fence_acc<NB>(acc);
    cute::warpgroup_arrive();
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
        sm90_detail::wgmma_rs<NB>(a[j][mt], sm90_detail::step_desc<NB>(bblk, j), acc[mt],
                                  std::make_integer_sequence<int, 4 * NB>{});
    cute::warpgroup_commit_batch();
  }
};

using Sm90WgmmaFp4Mainloop = Sm90WgmmaFp4MainloopT<16>;

}  // namespace moe12x
