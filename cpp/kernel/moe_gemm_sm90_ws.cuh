// Warp-specialized SM90a grouped GEMM (the prefill kernel on Hopper; docs/sm90-wgmma.md). One CTA
// per SM runs (128 kConsumers prepared rows) x (token tile) items:
//   warpgroup 0 (producer, 40 registers): fills kBStages shared token buffers (bf16, GMMA
//     K-major SW128), mbarrier full/empty. Contiguous bf16 rows (the FP4 activations decoded
//     once ahead of the GEMM, or FC2's bf16 intermediate) come by TMA, one box per buffer issued
//     by one thread; FC1's bf16 rows gathered from x are copied by all 128 threads;
//   the consumer warpgroups (232 / 152 registers): 128 weight rows each, the per-warp cp.async
//     weight ring and Sm90WgmmaFp4Block (A dequantized in registers, RS wgmma).
// FC1's 128-token items run on the work-queue grid with the epilogue's quantization handed to
// producer warps 1-3 (kHandoff, v32).
// The token tile is staged once per item instead of once per 128 rows, off the consumers' issue
// slots, and the consumer warpgroups interleave dequantization with each other's tensor-core work.
// Same operands, same k order, same accumulator mapping as the mma.sync mainloop: the epilogues
// are shared (their apply_staged variants, which restage through the warp's idle weight ring)
// and the results bitwise equal (measured on H200, bench/NOTES.md).
#pragma once
#include <cuda.h>  // CUtensorMap
#include <cstdlib>  // getenv
#include <cute/arch/copy_sm80.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>

#include "common/token_maps.hpp"
#include "kernel/moe_gemm.cuh"
#include "kernel/ws_trace.cuh"
#include "mainloop/sm90_wgmma_fp4.cuh"

namespace moe12x {

// Floats of the FC1 hand-off buffer (kHandoff), none otherwise.
template <class Epilogue, bool kOn>
struct HandoffFloats {
  static constexpr int value = 4;
};
template <class Epilogue>
struct HandoffFloats<Epilogue, true> {
  static constexpr int value = Epilogue::kHandoffTokens * Epilogue::kHandoffStride;
};

// kConsumers_ = 2: items of 256 rows, token tiles of <= 128 rows, or <= 160 for an expert's last
// tile (p.tile_extra). 3: items of 384 rows, tiles of <= 64 tokens (152 consumer registers: no
// room for a 128-wide accumulator), more warps to hide the narrow tiles' latency
// (bench/micro/sm90_ws_ladder.cu).
// kHandoff_ (FC1, 2 consumer warpgroups, work-queue grid, TMA tokens): the consumers' epilogue is
// SwiGLU into a shared hand-off buffer; producer warps 1-3, idle since TMA, quantize, decode and
// store it while the consumers run the next item (docs/sm90-wgmma.md). The buffer takes the
// scratch's place and a token stage's; the producers get 56 registers for the quantizer (no spills
// in its loop), the consumers 224. MOE12X_FC1_HANDOFF picks it (c_api.cpp).
template <Gemm kWhich, class Epilogue, int kConsumers_ = 2, bool kHandoff_ = false>
struct MoeGemmSm90Ws {
  using ML = Sm90WgmmaFp4Block;
  static constexpr bool kFc1 = kWhich == Gemm::kFc1;
  static constexpr int kConsumers = kConsumers_;             // warpgroups of 128 weight rows
  static_assert(kConsumers == 2 || kConsumers == 3, "two or three consumer warpgroups");
  static constexpr bool kHandoff = kHandoff_;
  static_assert(!kHandoff || (kFc1 && kConsumers == 2), "the hand-off is FC1's, with 2 consumer warpgroups");
  static constexpr int kTileNB = kConsumers == 2 ? 16 : 8;   // full tiles; kConsumers 2 also 18, 20
  static constexpr int kThreads = 128 * (1 + kConsumers);
  static constexpr int kProducerRegs = kHandoff ? 56 : 40;
  static constexpr int kConsumerRegs = kConsumers == 2 ? (kHandoff ? 224 : 232) : 152;
  // setmaxnreg moves registers within what the CTA was launched with (__launch_bounds__(kThreads,
  // 1): 65536 / kThreads per thread, in steps of 8); asking for more spins forever.
  static_assert(128 * (kProducerRegs + kConsumers * kConsumerRegs) <= (65536 / kThreads & ~7) * kThreads,
                "setmaxnreg split fits the registers the CTA is launched with");
  static constexpr int kItemRows = 128 * kConsumers;
  static constexpr int kBStages = kHandoff ? 3 : 4;
  static constexpr int kHandoffThreads = 96;  // producer warps 1-3
  static constexpr int kItemSlots = 2;  // work-queue kernel: items claimed ahead of the consumers
  static constexpr bool kOwnScratch = kConsumers == 2 && !kHandoff;  // epilogue scratch apart from the weight rings
  static constexpr bool kRingFreeInEpilogue = kConsumers == 2;  // the next item's stages may land during it
  static constexpr int kBStageBytes = 8 * ML::kMaxNB * 128;  // one k64 block of 160 tokens, or 20 / nb of nb n8 tiles
  static_assert(kBStageBytes % 1024 == 0, "SW128 buffers stay 1024-B aligned");
  static_assert(ML::kMaxNB == kTokenMapMaxNB, "token buffers and TMA boxes agree (common/token_maps.hpp)");
  using Barrier = cutlass::arch::ClusterBarrier;
  using TxBarrier = cutlass::arch::ClusterTransactionBarrier;

  struct SharedStorage {
    uint8_t b_raw[kBStages * kBStageBytes + 1024];  // 1024-B aligned at run time (SW128)
    typename ML::Stage ring[4 * kConsumers][ML::kStages];
    alignas(8) uint64_t full[kBStages];
    alignas(8) uint64_t empty[kBStages];
    alignas(8) uint64_t item_full[kItemSlots];   // work-queue kernel: the producer's claimed items
    alignas(8) uint64_t item_empty[kItemSlots];
    int item[kItemSlots];
    alignas(16) float scratch[kOwnScratch ? 4 * kConsumers : 1][kOwnScratch ? Epilogue::kScratchBytes / 4 : 1];
    alignas(16) float handoff[HandoffFloats<Epilogue, kHandoff>::value];
    alignas(8) uint64_t handoff_full;   // the consumers' SwiGLU rows are in (256 arrivals)
    alignas(8) uint64_t handoff_empty;  // the producer warps are done reading them (96)
    int handoff_item;                   // the rows' item; -1: no more
  };
  static_assert(sizeof(SharedStorage) <= 227 * 1024, "one CTA per SM must fit SM90's 227 KB of shared memory");

  // Token rows come by TMA unless FC1 gathers bf16 rows of x (act_quant none).
  __host__ __device__ static bool tma_tokens(const MoeParams& p) { return !kFc1 || p.act_fp4; }

  __host__ __device__ static int rows(const MoeParams& p) { return kFc1 ? 2 * p.inter : p.hidden; }
  __host__ __device__ static int mblocks(const MoeParams& p) { return (rows(p) + kItemRows - 1) / kItemRows; }
  // A launch's m-blocks (as MoeGemm's): FC2 covers its output-column chunk, from mblock0.
  __host__ __device__ static int mblock0(const MoeParams& p) { return kFc1 ? 0 : fc2_chunk_mblock0(p, kItemRows); }
  __host__ __device__ static int launch_mblocks(const MoeParams& p) { return kFc1 ? mblocks(p) : fc2_chunk_mblocks(p, kItemRows); }

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
    uint32_t handoff_phase = 0;  // kHandoff consumers: parity of the hand-off buffer's use
    __device__ void advance() {
      if (++stage == kBStages) { stage = 0; phase ^= 1u; }
    }
  };

  // Tile width in n8 tiles, rounded up to a wgmma N the mainloop instantiates (kTokenMapWidths):
  // 1, 2, 4, then every even count up to kTileNB (20 with the last tile's extra rows).
  __host__ __device__ static int tile_nb(int nrows) {
    const int nb = (nrows + 7) / 8;
    const int w = nb <= 2 ? nb : nb <= 4 ? 4 : (nb + 1) & ~1;
    return kTileNB == 8 && w > 8 ? 8 : w;
  }
  template <int NB, class F>
  __device__ __forceinline__ static void call_nb(F&& f) { f(std::integral_constant<int, NB>{}); }
  template <class F>
  __device__ __forceinline__ static void with_nb(int nrows, F&& f) {
    switch (tile_nb(nrows)) {
      case 1: return call_nb<1>(f);
      case 2: return call_nb<2>(f);
      case 4: return call_nb<4>(f);
      case 6: return call_nb<6>(f);
      case 8: return call_nb<8>(f);
      default: break;
    }
    if constexpr (kTileNB == 16) {
      switch (tile_nb(nrows)) {
        case 10: return call_nb<10>(f);
        case 12: return call_nb<12>(f);
        case 14: return call_nb<14>(f);
        case 16: return call_nb<16>(f);
        case 18: return call_nb<18>(f);
        default: return call_nb<20>(f);
      }
    }
  }
  // A token buffer holds kMaxNB / nb k64 blocks of a narrower tile: one full/empty handshake (and
  // one TMA box) per buffer instead of per block. Measured in bench/micro/sm90_ws_ladder.cu: at
  // 32 tokens the per-block handshake and a 32-thread decode cost ~190 of ~630 ns per block.
  __host__ __device__ static int blocks_per_buffer(int nb) { return ML::kMaxNB / nb; }

  // ---- producer: token tile -> shared buffers ----
  // TMA: one elected thread arms the buffer's full barrier with the box's bytes and issues the box
  // (64 k x 8 nb rows x kMaxNB / nb blocks, common/token_maps.hpp); rows past the tile are the
  // next expert's (or zero past the packed rows) and their accumulator columns are dropped.
  __device__ __forceinline__ static void produce_tma(const CUtensorMap* map, int K, SharedStorage& smem, const ExpertTile& tile,
                                     Pipe& pipe) {
    const int nb = tile_nb(tile.nrows), per = blocks_per_buffer(nb);
    const int kblocks = K / kKBlock, nbuf = (kblocks + per - 1) / per;
    const uint32_t bytes = uint32_t(nb) * 1024u * uint32_t(per);  // out-of-bounds parts count too
    for (int buf = 0; buf < nbuf; ++buf) {
      Barrier::wait(&smem.empty[pipe.stage], pipe.phase ^ 1u);  // fresh barriers pass at parity 1
      TxBarrier::arrive_and_expect_tx(&smem.full[pipe.stage], bytes);
      cute::SM90_TMA_LOAD_3D::copy(map, &smem.full[pipe.stage], 0, b_buffer(smem, pipe.stage), 0, tile.row0, buf * per);
      pipe.advance();
    }
  }

  __device__ __forceinline__ static void produce(const MoeParams& p, const Sm90TokenMaps& maps, SharedStorage& smem,
                                 const ExpertTile& tile, Pipe& pipe) {
    const int K = kFc1 ? p.hidden : p.inter;
    if (tma_tokens(p)) {
      if (threadIdx.x == 0) produce_tma(&maps.map[token_map_index(tile_nb(tile.nrows))], K, smem, tile, pipe);
      return;
    }
    const ActivationRows act = gemm_activations<kFc1>(p, K);
    const int kblocks = K / kKBlock;
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
  // One warp's cp.async weight ring over one item's k blocks (as Sm90WgmmaFp4MainloopT: tiles
  // past the matrix zero-filled, A = 0). Independent of the tile width, so the work-queue kernel
  // issues the next item's first stages before the current item's epilogue.
  struct WeightRing {
    const uint8_t* qsrc[ML::kMTiles];
    const uint8_t* ssrc;
    int kblocks, mtiles, row0;
    __device__ __forceinline__ WeightRing(const MoeParams& p, int expert, int mblock, int cwarp) {
      const int lane = threadIdx.x & 31, t = lane & 3;
      const int K = kFc1 ? p.hidden : p.inter;
      kblocks = K / kKBlock;
      row0 = mblock * kItemRows + cwarp * 2 * kWarpRows;
      mtiles = max(0, min(2, (rows(p) - row0) / kWarpRows));
      const size_t codes_per_expert = size_t(rows(p)) * K / 2, scales_per_expert = size_t(rows(p)) * K / 16;
      const uint8_t* codes = (kFc1 ? p.w13_codes : p.w2_codes) + expert * codes_per_expert;
      const uint8_t* scales = (kFc1 ? p.w13_scales : p.w2_scales) + expert * scales_per_expert;
#pragma unroll
      for (int mt = 0; mt < ML::kMTiles; ++mt)
        qsrc[mt] = mt < mtiles ? codes + (int64_t(row0 / kWarpRows + mt) * kblocks) * kFragBytes + lane * 16 : codes;
      const int s_blk = (lane >> 3) & 1, s_mt = (lane >> 2) & 1;
      ssrc = s_mt < mtiles ? scales + (int64_t(row0 / kWarpRows + s_mt) * kblocks + s_blk) * kScaleBytes + t * 16 : scales;
    }
    __device__ __forceinline__ void issue(typename ML::Stage* ring, int kb0, int slot) const {
      using Copy = cute::SM80_CP_ASYNC_CACHEGLOBAL_ZFILL<cute::uint128_t>;
      const int lane = threadIdx.x & 31, t = lane & 3;
      const int s_blk = (lane >> 3) & 1, s_mt = (lane >> 2) & 1;
      const bool scale_lane = lane < 16, scale_valid = s_mt < mtiles;
      typename ML::Stage& st = ring[slot];
#pragma unroll
      for (int i = 0; i < ML::kStageBlocks; ++i)
        if (kb0 + i < kblocks)
#pragma unroll
          for (int mt = 0; mt < ML::kMTiles; ++mt)
            Copy::copy(*reinterpret_cast<const cute::uint128_t*>(qsrc[mt] + (mt < mtiles ? int64_t(kb0 + i) * kFragBytes : 0)),
                       *reinterpret_cast<cute::uint128_t*>(&st.q[i][mt][lane]), mt < mtiles);
      if (scale_lane && kb0 + s_blk < kblocks)
        Copy::copy(*reinterpret_cast<const cute::uint128_t*>(ssrc + (scale_valid ? int64_t(kb0) * kScaleBytes : 0)),
                   *reinterpret_cast<cute::uint128_t*>(&st.s[s_blk][s_mt][t]), scale_valid);
      cute::cp_async_fence();
    }
    __device__ __forceinline__ void prologue(typename ML::Stage* ring) const {
      __syncwarp();  // every lane is done with the previous item's ring
#pragma unroll
      for (int i = 0; i < ML::kStages - 1; ++i) issue(ring, i * ML::kStageBlocks, i);
    }
  };

  // The epilogue's scratch: a region of its own where shared memory allows (two consumer
  // warpgroups), so the next item's weight stages can land during the epilogue; else the warp's
  // weight ring, idle until the next item's prologue.
  __device__ static float* scratch(SharedStorage& smem, int cwarp) {
    if constexpr (kOwnScratch) return smem.scratch[cwarp];
    else return reinterpret_cast<float*>(smem.ring[cwarp]);
  }

  // after_main(): called once the item's weights are all in (the work-queue kernel claims its next
  // item there and issues that item's first weight stages); returns nothing.
  template <int NB, class AfterMain>
  __device__ __forceinline__ static void consume_nb(const MoeParams& p, SharedStorage& smem, const ExpertTile& tile,
                                                    const WeightRing& wr, bool ring_ready, int cwarp, Pipe& pipe,
                                                    unsigned item, AfterMain&& after_main) {
    constexpr int kStages = ML::kStages, kStageBlocks = ML::kStageBlocks, kMaxNB = ML::kMaxNB;
    const int kblocks = wr.kblocks;
    typename ML::Stage* ring = smem.ring[cwarp];
    typename ML::template Accum<NB> acc;
    zero_acc(acc);
    if (!ring_ready) wr.prologue(ring);

    int slot = 0, sub = 0;  // sub: block inside the current token buffer
    constexpr int kPer = kMaxNB / NB;
    for (int kb = 0; kb < kblocks; kb += kStageBlocks) {
      cute::cp_async_wait<kStages - 2>();
      __syncwarp();
      const typename ML::Stage& st = ring[slot];
      wr.issue(ring, kb + (kStages - 1) * kStageBlocks, slot == 0 ? kStages - 1 : slot - 1);
      slot = slot == kStages - 1 ? 0 : slot + 1;
#pragma unroll
      for (int i = 0; i < kStageBlocks; ++i) {
        if (kb + i < kblocks) {  // uniform over the warpgroup
          if (sub == 0) Barrier::wait(&smem.full[pipe.stage], pipe.phase);
          MOE12X_WS_PROBE(if (kb + i == 0 && threadIdx.x == 128) if (auto* r = ws_trace_record(kFc1, item)) r->first_full = ws_trace_now());
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
    MOE12X_WS_PROBE(if (threadIdx.x % 128 == 0 && cwarp < 8) if (auto* r = ws_trace_record(kFc1, item)) r->main_end[cwarp / 4] = ws_trace_now());
    after_main();
    if (p.act_fp4) undo_fp4_act_scale(acc);
    static_assert(Epilogue::kScratchBytes <= sizeof(typename ML::Stage) * kStages, "epilogue scratch fits the weight ring");
    if constexpr (kHandoff) {
      Barrier::wait(&smem.handoff_empty, pipe.handoff_phase ^ 1u);  // fresh barriers pass at parity 1
      if (wr.mtiles > 0) Epilogue::template swiglu_to_handoff<NB>(p, tile, cwarp, acc, smem.handoff);
      if (threadIdx.x == 128) smem.handoff_item = int(item);
      Barrier::arrive(&smem.handoff_full);
      pipe.handoff_phase ^= 1u;
    } else if (wr.mtiles > 0) {
      Epilogue::template apply_staged<NB>(p, tile, wr.row0, acc, scratch(smem, cwarp));
    }
    MOE12X_WS_PROBE(if (threadIdx.x % 128 == 0 && cwarp < 8) if (auto* r = ws_trace_record(kFc1, item)) {
      r->epi_end[cwarp / 4] = ws_trace_now();
      if (cwarp == 0) r->nrows = tile.nrows, r->expert = tile.expert;
    });
  }

  // ---- producer warps 1-3 (kHandoff): the FC1 epilogue's quantization, one item behind ----
  __device__ static void handoff_loop(const MoeParams& p, SharedStorage& smem) {
    const int mblocks = MoeGemmSm90Ws::mblocks(p);
    for (uint32_t phase = 0;; phase ^= 1u) {
      Barrier::wait(&smem.handoff_full, phase);
      const int item = smem.handoff_item;
      if (item < 0) break;
      Epilogue::handoff_rows(p, load_tile(p, item / mblocks), (item % mblocks) * (kItemRows / 2), smem.handoff,
                             int(threadIdx.x) - 32, kHandoffThreads);
      Barrier::arrive(&smem.handoff_empty);
    }
  }

  template <class AfterMain>
  __device__ __forceinline__ static void consume(const MoeParams& p, SharedStorage& smem, const ExpertTile& tile, int mblock,
                                                 bool ring_ready, Pipe& pipe, unsigned item, AfterMain&& after_main) {
    const int cwarp = threadIdx.x / 32 - 4;  // 0 .. 4 kConsumers - 1
    const WeightRing wr(p, tile.expert, mblock, cwarp);
    with_nb(tile.nrows, [&](auto nbc) {
      consume_nb<decltype(nbc)::value>(p, smem, tile, wr, ring_ready, cwarp, pipe, item, after_main);
    });
  }
};

// kQueue = false: the grouped grid (blockIdx.x = m-block, blockIdx.y strides tiles), one item per
// CTA in practice; the hardware's block scheduler balances. kQueue = true: one CTA per SM, items
// claimed from a global counter (p.tile_count[1 + gemm], zeroed by the route kernel) by the
// producer thread, which runs ahead into the next item's token boxes while the consumers finish
// the current one; the consumers take item indices from a two-slot shared queue. TMA tokens only.
template <class G, bool kQueue>
__global__ void __launch_bounds__(G::kThreads, 1) moe_gemm_sm90_ws_kernel(const MoeParams p,
                                                                          const __grid_constant__ Sm90TokenMaps maps) {
#if defined(CUTE_ARCH_MMA_SM90A_ENABLED)
  extern __shared__ uint4 smem_raw[];
  auto& smem = *reinterpret_cast<typename G::SharedStorage*>(smem_raw);
  if constexpr (!kQueue)
    MOE12X_WS_PROBE(if (threadIdx.x == 128) ws_trace_start(G::kFc1, blockIdx.y * gridDim.x + blockIdx.x, int(blockIdx.x)));
  if (threadIdx.x == 0) {
    for (int s = 0; s < G::kBStages; ++s) {
      G::Barrier::init(&smem.full[s], G::tma_tokens(p) ? 1 : 128);  // the TMA thread, or every producer thread
      G::Barrier::init(&smem.empty[s], 128 * G::kConsumers);  // consumer threads
    }
    for (int s = 0; s < G::kItemSlots; ++s) {
      G::Barrier::init(&smem.item_full[s], 1);                   // the producer thread
      G::Barrier::init(&smem.item_empty[s], 4 * G::kConsumers);  // one lane per consumer warp
    }
    if constexpr (G::kHandoff) {
      G::Barrier::init(&smem.handoff_full, 128 * G::kConsumers);
      G::Barrier::init(&smem.handoff_empty, G::kHandoffThreads);
    }
    cutlass::arch::fence_barrier_init();
  }
  __syncthreads();
  typename G::Pipe pipe;
  if (threadIdx.x < 128) {
    cutlass::arch::warpgroup_reg_dealloc<G::kProducerRegs>();
    pdl_wait();  // the activations come from the previous kernel
    pdl_trigger();
    if constexpr (kQueue) {
      if (threadIdx.x == 0) {
        const int mblocks = G::launch_mblocks(p), items = *p.tile_count * mblocks;
        int* counter = p.tile_count + (G::kFc1 ? 1 : 2);
        typename G::Pipe slot;  // only its phase is used (the slot index is s)
        for (int s = 0; ; s ^= 1) {
          const int item = atomicAdd(counter, 1);
          G::Barrier::wait(&smem.item_empty[s], slot.phase ^ 1u);
          smem.item[s] = item < items ? item : -1;
          G::Barrier::arrive(&smem.item_full[s]);  // release: the consumers see smem.item[s]
          if (s == 1) slot.phase ^= 1u;
          if (item >= items) break;
          G::produce(p, maps, smem, load_tile(p, item / mblocks), pipe);
        }
      } else if constexpr (G::kHandoff) {
        if (threadIdx.x >= 32) G::handoff_loop(p, smem);
      }
    } else {
      for (GridTileScheduler s(p); s.valid(); s.advance()) G::produce(p, maps, smem, s.tile(), pipe);
    }
  } else {
    cutlass::arch::warpgroup_reg_alloc<G::kConsumerRegs>();
    pdl_wait();  // epilogue writes (pdl.cuh: every thread waits before it exits)
    pdl_trigger();
    if constexpr (kQueue) {
      const int mblocks = G::launch_mblocks(p), mb0 = G::mblock0(p), cwarp = threadIdx.x / 32 - 4;
      uint32_t phase = 0;
      int s = 0;
      auto take = [&] {
        G::Barrier::wait(&smem.item_full[s], phase);
        const int item = smem.item[s];
        __syncwarp();
        if ((threadIdx.x & 31) == 0) G::Barrier::arrive(&smem.item_empty[s]);
        phase ^= uint32_t(s);
        s ^= 1;
        return item;
      };
      bool ring_ready = false;
      for (int item = take(); item >= 0;) {
        MOE12X_WS_PROBE(if (threadIdx.x == 128) ws_trace_start(G::kFc1, unsigned(item), item % mblocks));
        int next = -1;
        G::consume(p, smem, load_tile(p, item / mblocks), mb0 + item % mblocks, ring_ready, pipe, unsigned(item), [&] {
          next = take();
          // the next item's first weight stages land during this item's epilogue
          ring_ready = G::kRingFreeInEpilogue && next >= 0;
          if (ring_ready) typename G::WeightRing(p, load_tile(p, next / mblocks).expert, mb0 + next % mblocks, cwarp).prologue(smem.ring[cwarp]);
        });
        item = next;
      }
      if constexpr (G::kHandoff) {  // release the producer warps
        G::Barrier::wait(&smem.handoff_empty, pipe.handoff_phase ^ 1u);
        if (threadIdx.x == 128) smem.handoff_item = -1;
        G::Barrier::arrive(&smem.handoff_full);
      }
    } else {
      for (GridTileScheduler s(p); s.valid(); s.advance())
        G::consume(p, smem, s.tile(), G::mblock0(p) + int(blockIdx.x), false, pipe, blockIdx.y * gridDim.x + blockIdx.x, [] {});
    }
  }
#else
  __trap();  // compiled for another target: this kernel exists only in sm_90a SASS (c_api.cpp
             // selects it on compute capability 9.x only)
#endif
}

// MOE12X_WS_QUEUE=1: the work-queue grid (A/B runs), read once.
inline bool ws_queue_mode() {
  static const bool on = [] {
    const char* v = std::getenv("MOE12X_WS_QUEUE");
    return v && v[0] && v[0] != '0';
  }();
  return on;
}

template <class G>
cudaError_t launch_moe_gemm_sm90_ws(const MoeParams& p, cudaStream_t stream) {
  constexpr size_t kSmem = sizeof(typename G::SharedStorage);
  if (!chunk_on_mblocks<G>(p, G::kItemRows)) return cudaErrorInvalidValue;
  Sm90TokenMaps maps{};
  if (G::tma_tokens(p)) {
    const int K = G::kFc1 ? p.hidden : p.inter;
    if (const cudaError_t e = encode_token_maps(G::kFc1 ? p.xq : p.act, p.tokens * p.top_k, K, maps); e != cudaSuccess)
      return e;
  }
  if constexpr (G::kHandoff)
    if (!G::tma_tokens(p)) return cudaErrorNotSupported;  // c_api.cpp takes it only with NVFP4 activations
  // The work-queue grid's item counter (tile_count[2] for FC2) is zeroed once per call by the route
  // kernel: FC2 in column chunks takes the grouped grid.
  if (G::tma_tokens(p) && (G::kHandoff || (ws_queue_mode() && (G::kFc1 || p.y_ncols == p.hidden)))) {
    if (const cudaError_t e = opt_in_smem<moe_gemm_sm90_ws_kernel<G, true>>(kSmem); e != cudaSuccess) return e;
    int sms = 0;
    if (const cudaError_t e = device_sm_count(p.sm_count, &sms); e != cudaSuccess) return e;
    const int64_t items = p.max_tiles * G::launch_mblocks(p);
    return launch_kernel(moe_gemm_sm90_ws_kernel<G, true>, dim3(unsigned(items < sms ? (items > 0 ? items : 1) : sms)),
                         dim3(G::kThreads), kSmem, stream, grouped_pdl(p, G::kFc1), p, maps);
  }
  if constexpr (G::kHandoff) {
    return cudaErrorNotSupported;  // not reached: the hand-off needs the work-queue grid
  } else {
    if (const cudaError_t e = opt_in_smem<moe_gemm_sm90_ws_kernel<G, false>>(kSmem); e != cudaSuccess) return e;
    return launch_kernel(moe_gemm_sm90_ws_kernel<G, false>, grouped_grid(G::launch_mblocks(p), p), dim3(G::kThreads), kSmem,
                         stream, grouped_pdl(p, G::kFc1), p, maps);
  }
}

}  // namespace moe12x
