// Warp-specialized SM90a grouped GEMM (the prefill kernel on Hopper; docs/sm90-wgmma.md). One CTA
// per SM runs (256 prepared rows) x (token tile of <= 128 rows) items:
//   warpgroup 0 (producer, 40 registers): stages the token tile's k64 blocks into kBStages
//     shared buffers (bf16, GMMA K-major SW128), mbarrier full/empty; FP4 rows come through a
//     per-thread cp.async ring and are decoded there;
//   warpgroups 1, 2 (consumers, 232 registers): 128 weight rows each, the per-warp cp.async weight
//     ring and Sm90WgmmaFp4Block (A dequantized in registers, RS wgmma).
// The token tile is staged once per 256 rows instead of once per 128, off the consumers' issue
// slots, and two consumer warpgroups interleave dequantization with each other's tensor-core work.
// Same operands, same k order, same accumulator mapping as the mma.sync mainloop: the epilogues
// are shared (their apply_staged variants, which restage through the warp's idle weight ring)
// and the results bitwise equal (measured on H200, bench/NOTES.md).
#pragma once
#include <cute/arch/copy_sm80.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>

#include "kernel/moe_gemm.cuh"
#include "mainloop/sm90_wgmma_fp4.cuh"

namespace moe12x {

// kConsumers_ = 2: items of 256 rows, token tiles of <= 128. 3: items of 384 rows, tiles of <= 64
// tokens (152 consumer registers: no room for a 128-wide accumulator), more warps to hide the
// narrow tiles' latency (bench/micro/sm90_ws_ladder.cu).
template <Gemm kWhich, class Epilogue, int kConsumers_ = 2>
struct MoeGemmSm90Ws {
  using ML = Sm90WgmmaFp4Block;
  static constexpr bool kFc1 = kWhich == Gemm::kFc1;
  static constexpr int kConsumers = kConsumers_;             // warpgroups of 128 weight rows
  static_assert(kConsumers == 2 || kConsumers == 3, "two or three consumer warpgroups");
  static constexpr int kTileNB = kConsumers == 2 ? 16 : 8;
  static constexpr int kProducerRegs = 40;
  static constexpr int kConsumerRegs = kConsumers == 2 ? 232 : 152;
  static_assert(128 * (kProducerRegs + kConsumers * kConsumerRegs) <= 65536, "setmaxnreg split fits the register file");
  static constexpr int kThreads = 128 * (1 + kConsumers);
  static constexpr int kItemRows = 128 * kConsumers;
  static constexpr int kBStages = 4;
  static constexpr int kBStageBytes = 8 * ML::kMaxNB * 128;  // one k64 block of 128 tokens, or 128 / n of n
  static constexpr int kRawStages = 8;                        // FP4 token blocks in flight
  using Barrier = cutlass::arch::ClusterBarrier;

  // FP4 token rows of one k64 block as they are in global memory; producer thread r copies and
  // decodes row r, so the raw ring needs no barrier, only the thread's own cp.async groups.
  struct RawStage {
    uint4 codes[8 * ML::kMaxNB][2];  // 32 B per row
    uint32_t scales[8 * ML::kMaxNB]; // 4 e4m3 codes per row
  };

  struct SharedStorage {
    RawStage raw[kRawStages];
    uint8_t b_raw[kBStages * kBStageBytes + 1024];  // 1024-B aligned at run time (SW128)
    typename ML::Stage ring[4 * kConsumers][ML::kStages];
    alignas(8) uint64_t full[kBStages];
    alignas(8) uint64_t empty[kBStages];
  };
  static_assert(8 * ML::kMaxNB == 128, "the 128 producer threads own the (row, block) pairs of a token buffer");
  static_assert(sizeof(SharedStorage) <= 227 * 1024, "one CTA per SM must fit SM90's 227 KB of shared memory");

  __host__ __device__ static int rows(const MoeParams& p) { return kFc1 ? 2 * p.inter : p.hidden; }
  __host__ __device__ static int mblocks(const MoeParams& p) { return (rows(p) + kItemRows - 1) / kItemRows; }

  __device__ static uint8_t* b_buffer(SharedStorage& smem, int i) {
    // Offset the shared pointer itself (a round trip through an integer address would lose the
    // address space: the producer's stores became generic ST.E with 64-bit address math).
    const uint32_t pad = (1024u - (static_cast<uint32_t>(__cvta_generic_to_shared(smem.b_raw)) & 1023u)) & 1023u;
    return smem.b_raw + pad + i * kBStageBytes;
  }

  // Both roles walk the same items and k blocks, so the buffer sequence (stage, phase) matches.
  struct Pipe {
    int stage = 0;
    uint32_t phase = 0;
    __device__ void advance() {
      if (++stage == kBStages) { stage = 0; phase ^= 1u; }
    }
  };

  // Tile width in n8 tiles, rounded up to a wgmma N the mainloop instantiates.
  __device__ static int tile_nb(int nrows) {
    const int nb = (nrows + 7) / 8;
    return nb <= 1 ? 1 : nb <= 2 ? 2 : nb <= 4 ? 4 : nb <= 8 || kTileNB == 8 ? 8 : 16;
  }
  template <class F>
  __device__ static void with_nb(int nrows, F&& f) {
    switch (tile_nb(nrows)) {
      case 1: return f(std::integral_constant<int, 1>{});
      case 2: return f(std::integral_constant<int, 2>{});
      case 4: return f(std::integral_constant<int, 4>{});
      case 8: return f(std::integral_constant<int, 8>{});
      default: return f(std::integral_constant<int, kTileNB>{});
    }
  }
  // A token buffer holds kMaxNB / nb k64 blocks of a narrower tile: one full/empty handshake per
  // buffer instead of per block, and all 128 producer threads decode (row, block) pairs. Measured
  // in bench/micro/sm90_ws_ladder.cu: at 32 tokens the per-block handshake and a 32-thread decode
  // cost ~190 of ~630 ns per block.
  __device__ static int blocks_per_buffer(int nb) { return ML::kMaxNB / nb; }

  // ---- producer: token tile -> shared buffers ----
  // FP4 rows: producer thread t owns (row t % rows, block t / rows) of every buffer (rows = 8 nb,
  // a buffer holds 128 / rows blocks) and keeps kRawStages - 1 buffers of it in flight (cp.async),
  // then decodes each into the GMMA buffer (prepared words: stage_fp4_row_gmma).
  __device__ static void produce_fp4(const ActivationRows& act, SharedStorage& smem, const ExpertTile& tile,
                                     Pipe& pipe) {
    using Copy16 = cute::SM80_CP_ASYNC_CACHEGLOBAL<cute::uint128_t>;
    using Copy4 = cute::SM80_CP_ASYNC_CACHEALWAYS<uint32_t>;
    const int nb = tile_nb(tile.nrows), per = blocks_per_buffer(nb);
    const int r = threadIdx.x & (8 * nb - 1), j = threadIdx.x / (8 * nb);  // row, block in the buffer
    const int kblocks = act.K / kKBlock, nbuf = (kblocks + per - 1) / per;
    const bool row_ok = r < tile.nrows;
    const uint8_t* csrc = act.codes + int64_t(tile.row0 + (row_ok ? r : 0)) * (act.K / 2) + j * 32;
    const uint8_t* ssrc = act.scales + int64_t(tile.row0 + (row_ok ? r : 0)) * (act.K / 16) + j * 4;
    auto issue = [&](int buf) {
      if (row_ok && buf * per + j < kblocks) {
        RawStage& st = smem.raw[buf % kRawStages];
        const int off = buf * per;  // blocks
        Copy16::copy(*reinterpret_cast<const cute::uint128_t*>(csrc + off * 32), *reinterpret_cast<cute::uint128_t*>(&st.codes[threadIdx.x][0]));
        Copy16::copy(*reinterpret_cast<const cute::uint128_t*>(csrc + off * 32 + 16), *reinterpret_cast<cute::uint128_t*>(&st.codes[threadIdx.x][1]));
        Copy4::copy(*reinterpret_cast<const uint32_t*>(ssrc + off * 4), st.scales[threadIdx.x]);
      }
      cute::cp_async_fence();  // empty groups keep the count uniform
    };
#pragma unroll 1
    for (int i = 0; i < kRawStages - 1; ++i) issue(i);
    for (int buf = 0; buf < nbuf; ++buf) {
      issue(buf + kRawStages - 1);
      cute::cp_async_wait<kRawStages - 1>();  // this thread's copies of buffer buf have landed
      Barrier::wait(&smem.empty[pipe.stage], pipe.phase ^ 1u);  // fresh barriers pass at parity 1
      if (row_ok && buf * per + j < kblocks) {
        const RawStage& st = smem.raw[buf % kRawStages];
        stage_fp4_row_gmma(st.codes[threadIdx.x], st.scales[threadIdx.x], r, b_buffer(smem, pipe.stage) + j * nb * 1024);
      }
      cutlass::arch::fence_view_async_shared();  // generic-proxy stores -> visible to wgmma
      Barrier::arrive(&smem.full[pipe.stage]);
      pipe.advance();
    }
    cute::cp_async_wait<0>();  // only empty groups remain
  }

  __device__ static void produce(const MoeParams& p, SharedStorage& smem, const ExpertTile& tile, Pipe& pipe) {
    const ActivationRows act = gemm_activations<kFc1>(p, kFc1 ? p.hidden : p.inter);
    if (act.fp4) return produce_fp4(act, smem, tile, pipe);
    const int kblocks = act.K / kKBlock;
    with_nb(tile.nrows, [&](auto nbc) {
      constexpr int NB = decltype(nbc)::value;
      const int per = blocks_per_buffer(NB);
      for (int kb = 0; kb < kblocks; kb += per) {
        Barrier::wait(&smem.empty[pipe.stage], pipe.phase ^ 1u);  // fresh barriers pass at parity 1
        stage_activations_gmma<8 * NB, 128, 1>(act, tile.row0, tile.nrows, kb * kKBlock,
                                               min(per, kblocks - kb) * kKBlock, b_buffer(smem, pipe.stage));
        cutlass::arch::fence_view_async_shared();  // generic-proxy stores -> visible to wgmma
        Barrier::arrive(&smem.full[pipe.stage]);
        pipe.advance();
      }
    });
  }

  // ---- consumers: weight ring, dequantization, wgmma, epilogue ----
  template <int NB>
  __device__ static void consume_nb(const MoeParams& p, SharedStorage& smem, const ExpertTile& tile,
                                    const uint8_t* codes, const uint8_t* scales, int K, int row0,
                                    int mtiles, int cwarp, Pipe& pipe) {
    using Copy = cute::SM80_CP_ASYNC_CACHEGLOBAL_ZFILL<cute::uint128_t>;
    constexpr int kStages = ML::kStages, kStageBlocks = ML::kStageBlocks, kMTiles = ML::kMTiles, kMaxNB = ML::kMaxNB;
    const int lane = threadIdx.x & 31, t = lane & 3;
    const int kblocks = K / kKBlock;
    typename ML::Stage* ring = smem.ring[cwarp];
    typename ML::template Accum<NB> acc;
    zero_acc(acc);

    // weight ring (as Sm90WgmmaFp4MainloopT: tiles past the matrix zero-filled, A = 0)
    const uint8_t* qsrc[kMTiles];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
      qsrc[mt] = mt < mtiles ? codes + (int64_t(row0 / kWarpRows + mt) * kblocks) * kFragBytes + lane * 16 : codes;
    const int s_blk = (lane >> 3) & 1, s_mt = (lane >> 2) & 1;
    const bool scale_lane = lane < 16, scale_valid = s_mt < mtiles;
    const uint8_t* ssrc =
        scale_valid ? scales + (int64_t(row0 / kWarpRows + s_mt) * kblocks + s_blk) * kScaleBytes + t * 16 : scales;
    auto issue = [&](int kb0, int slot) {
      typename ML::Stage& st = ring[slot];
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
    __syncwarp();  // every lane is done with the previous item's ring
#pragma unroll
    for (int i = 0; i < kStages - 1; ++i) issue(i * kStageBlocks, i);

    int slot = 0, sub = 0;  // sub: block inside the current token buffer
    constexpr int kPer = kMaxNB / NB;
    for (int kb = 0; kb < kblocks; kb += kStageBlocks) {
      cute::cp_async_wait<kStages - 2>();
      __syncwarp();
      const typename ML::Stage& st = ring[slot];
      issue(kb + (kStages - 1) * kStageBlocks, slot == 0 ? kStages - 1 : slot - 1);
      slot = slot == kStages - 1 ? 0 : slot + 1;
#pragma unroll
      for (int i = 0; i < kStageBlocks; ++i) {
        if (kb + i < kblocks) {  // uniform over the warpgroup
          if (sub == 0) Barrier::wait(&smem.full[pipe.stage], pipe.phase);
          ML::template block_wgmma<NB>(st, i, b_buffer(smem, pipe.stage) + sub * NB * 1024, acc);
          cute::warpgroup_wait<0>();
          ML::template warpgroup_fence_acc<NB>(acc);
          if (++sub == kPer || kb + i + 1 == kblocks) {  // the producer's buffer boundaries
            Barrier::arrive(&smem.empty[pipe.stage]);
            pipe.advance();
            sub = 0;
          }
        }
      }
    }
    cute::cp_async_wait<0>();
    if (p.act_fp4) undo_fp4_act_scale(acc);
    // The warp's weight ring is idle until the next item's prologue: the epilogue's scratch.
    static_assert(Epilogue::kScratchBytes <= sizeof(typename ML::Stage) * kStages, "epilogue scratch fits the weight ring");
    if (mtiles > 0) Epilogue::template apply_staged<NB>(p, tile, row0, acc, reinterpret_cast<float*>(ring));
  }

  __device__ static void consume(const MoeParams& p, SharedStorage& smem, const ExpertTile& tile, int mblock,
                                 Pipe& pipe) {
    const int cwarp = threadIdx.x / 32 - 4;  // 0 .. 4 kConsumers - 1
    const int row0 = mblock * kItemRows + cwarp * 2 * kWarpRows;
    const int K = kFc1 ? p.hidden : p.inter;
    const int mtiles = max(0, min(2, (rows(p) - row0) / kWarpRows));
    const size_t codes_per_expert = size_t(rows(p)) * K / 2, scales_per_expert = size_t(rows(p)) * K / 16;
    const uint8_t* codes = (kFc1 ? p.w13_codes : p.w2_codes) + tile.expert * codes_per_expert;
    const uint8_t* scales = (kFc1 ? p.w13_scales : p.w2_scales) + tile.expert * scales_per_expert;
    with_nb(tile.nrows, [&](auto nbc) {
      consume_nb<decltype(nbc)::value>(p, smem, tile, codes, scales, K, row0, mtiles, cwarp, pipe);
    });
  }
};

template <class G>
__global__ void __launch_bounds__(G::kThreads, 1) moe_gemm_sm90_ws_kernel(const MoeParams p) {
#if defined(CUTE_ARCH_MMA_SM90A_ENABLED)
  extern __shared__ uint4 smem_raw[];
  auto& smem = *reinterpret_cast<typename G::SharedStorage*>(smem_raw);
  if (threadIdx.x == 0) {
    for (int s = 0; s < G::kBStages; ++s) {
      G::Barrier::init(&smem.full[s], 128);                 // producer threads
      G::Barrier::init(&smem.empty[s], 128 * G::kConsumers);  // consumer threads
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();
  typename G::Pipe pipe;
  if (threadIdx.x < 128) {
    cutlass::arch::warpgroup_reg_dealloc<G::kProducerRegs>();
    pdl_wait();  // the activations come from the previous kernel
    pdl_trigger();
    for (GridTileScheduler s(p); s.valid(); s.advance()) G::produce(p, smem, s.tile(), pipe);
  } else {
    cutlass::arch::warpgroup_reg_alloc<G::kConsumerRegs>();
    pdl_wait();  // epilogue writes (pdl.cuh: every thread waits before it exits)
    pdl_trigger();
    for (GridTileScheduler s(p); s.valid(); s.advance()) G::consume(p, smem, s.tile(), blockIdx.x, pipe);
  }
#else
  __trap();  // compiled for another target: this kernel exists only in sm_90a SASS (c_api.cpp
             // selects it on compute capability 9.x only)
#endif
}

template <class G>
cudaError_t launch_moe_gemm_sm90_ws(const MoeParams& p, cudaStream_t stream) {
  constexpr size_t kSmem = sizeof(typename G::SharedStorage);
  if (const cudaError_t e = opt_in_smem<moe_gemm_sm90_ws_kernel<G>>(kSmem); e != cudaSuccess) return e;
  return launch_kernel(moe_gemm_sm90_ws_kernel<G>, grouped_grid(G::mblocks(p), p), dim3(G::kThreads), kSmem, stream,
                       grouped_pdl(p, G::kFc1), p);
}

}  // namespace moe12x
