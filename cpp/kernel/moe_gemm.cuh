// One grouped-GEMM work item: Mainloop::kItemRows prepared weight rows (an m-block) of one expert
// for one routed token tile, run by a CTA of 4 warps or, for warp-item mainloops, by one warp.
// Mainloop (arch policy) and Epilogue (FC1 SwiGLU+quant or FC2 weighted store) are template
// parameters; schedulers (scheduler/) decide which items run where, so the same body serves the
// grouped launch and the persistent static kernel.
#pragma once
#include <atomic>

#include "common/params.hpp"
#include "common/pdl.cuh"
#include "mainloop/activation_stage.cuh"
#include "kernel/ws_trace.cuh"
#include "scheduler/cta_spread.hpp"
#include "scheduler/expert_tiles.cuh"

namespace moe12x {

enum class Gemm { kFc1, kFc2 };

// The B operand rows of FC1 (packed FP4 rows, by routed row or with p.xq_gather by pair / token
// through row_pair; or bf16 rows of x gathered through row_pair) or FC2 (the intermediate).
template <bool kFc1>
__device__ __forceinline__ ActivationRows gemm_activations(const MoeParams& p, int K) {
  ActivationRows act;
  act.K = K;
  act.fp4 = p.act_fp4;
  act.codes = kFc1 ? p.xq : p.act;
  act.scales = kFc1 ? p.xq_sf : p.act_sf;
  act.bf16 = kFc1 ? p.x : reinterpret_cast<const uint16_t*>(p.act);
  act.gather = kFc1 && (!p.act_fp4 || p.xq_gather) ? p.row_pair : nullptr;
  act.gather_div = p.act_fp4 ? p.xq_gather : p.top_k;
  return act;
}

template <Gemm kWhich, class Mainloop, class Epilogue>
struct MoeGemm {
  static constexpr bool kFc1 = kWhich == Gemm::kFc1;
  using SharedStorage = typename Mainloop::SharedStorage;
  using MainloopType = Mainloop;

  __host__ __device__ static int rows(const MoeParams& p) { return kFc1 ? 2 * p.inter : p.hidden; }
  __host__ __device__ static int mblocks(const MoeParams& p) {
    return (rows(p) + Mainloop::kItemRows - 1) / Mainloop::kItemRows;
  }
  // A launch's m-blocks: all of FC1's; FC2's of its output-column chunk (p.y_col0 is a multiple
  // of kItemRows: plan_fc2_chunks).
  __host__ __device__ static int mblock0(const MoeParams& p) { return kFc1 ? 0 : fc2_chunk_mblock0(p, Mainloop::kItemRows); }
  __host__ __device__ static int launch_mblocks(const MoeParams& p) {
    return kFc1 ? mblocks(p) : fc2_chunk_mblocks(p, Mainloop::kItemRows);
  }

  // Where an item's B rows come from and where its epilogue finds each row's pair. Io policies
  // are read at their point of use: the workspace's (grouped and static kernels) straight from
  // the kernel parameters, so no pointer stays live in a register across the mainloop (a
  // materialized copy spilled the 64-row FC1 kernel: 28 -> 124 spill bytes); or a CTA's own
  // tables (ItemIo, kernel/moe_decode.cuh).
  struct WorkspaceIo {
    __device__ ActivationRows activations(const MoeParams& p) const {
      return gemm_activations<kFc1>(p, kFc1 ? p.hidden : p.inter);
    }
    __device__ const int* pairs(const MoeParams& p) const { return p.row_pair; }
  };
  struct ItemIo {
    ActivationRows act;
    const int* row_pair;
    __device__ const ActivationRows& activations(const MoeParams&) const { return act; }
    __device__ const int* pairs(const MoeParams&) const { return row_pair; }
  };

  __device__ static void run_item(const MoeParams& p, SharedStorage& smem, const ExpertTile& tile,
                                  int mblock) {
    run_item(p, smem, tile, mblock, WorkspaceIo{}, PdlWaitTrigger{});
  }

  // wait: the mainloop's hook before the first token stage (pdl.cuh), every thread.
  template <class Io, class Wait>
  __device__ static void run_item(const MoeParams& p, SharedStorage& smem, const ExpertTile& tile,
                                  int mblock, const Io& io, const Wait& wait) {
    const int warp = threadIdx.x / 32;
    const int warp_row0 = Mainloop::warp_row0(mblock, warp);
    const int K = kFc1 ? p.hidden : p.inter;
    const int mtiles = max(0, min(Mainloop::kWarpTiles, (rows(p) - warp_row0) / kWarpRows));
    const size_t codes_per_expert = size_t(rows(p)) * K / 2, scales_per_expert = size_t(rows(p)) * K / 16;
    const uint8_t* codes = (kFc1 ? p.w13_codes : p.w2_codes) + tile.expert * codes_per_expert;
    const uint8_t* scales = (kFc1 ? p.w13_scales : p.w2_scales) + tile.expert * scales_per_expert;

    const ActivationRows act = io.activations(p);

    // Runtime-width mainloops get the narrowest n8 multiple that holds the tile: decode tiles
    // stay cheap while one tile per expert still covers up to 64 routed rows.
    if constexpr (Mainloop::kRuntimeNB) {
      const int nb = (tile.nrows + 7) / 8;
      if (nb <= 1) {
        run_nb<1>(p, smem, tile, codes, scales, K, warp_row0, mtiles, act, io, wait);
      } else if (Mainloop::kMaxNB <= 2 || nb <= 2) {  // tiles never exceed 8 * kMaxNB rows
        run_nb<2>(p, smem, tile, codes, scales, K, warp_row0, mtiles, act, io, wait);
      } else if constexpr (Mainloop::kMaxNB >= 4) {
        if (Mainloop::kMaxNB <= 4 || nb <= 4) run_nb<4>(p, smem, tile, codes, scales, K, warp_row0, mtiles, act, io, wait);
        else if constexpr (Mainloop::kMaxNB >= 8) run_nb<8>(p, smem, tile, codes, scales, K, warp_row0, mtiles, act, io, wait);
      }
    } else {
      run_nb<Mainloop::kNB>(p, smem, tile, codes, scales, K, warp_row0, mtiles, act, io, wait);
    }
  }

  template <int NB, class Io, class Wait>
  __device__ static void run_nb(const MoeParams& p, SharedStorage& smem, const ExpertTile& tile,
                                const uint8_t* codes, const uint8_t* scales, int K, int warp_row0,
                                int mtiles, const ActivationRows& act, const Io& io, const Wait& wait) {
    float acc[2][NB][4];
    if constexpr (Mainloop::kRuntimeNB)
      Mainloop::template run<NB>(codes, scales, K, warp_row0, mtiles, act, tile.row0, tile.nrows, smem, acc, wait);
    else  // the static kernel's warp-item mainloop: no activation hook (one launch, grid barriers)
      Mainloop::run(codes, scales, K, warp_row0, mtiles, act, tile.row0, tile.nrows, smem, acc);
    if (mtiles > 0 && Mainloop::epilogue_warp(threadIdx.x / 32))
      Epilogue::template apply<NB, Mainloop::kWarpTiles>(p, tile, warp_row0, acc, io.pairs(p));
  }
};

#ifdef MOE12X_WS_TRACE
// Trace builds: thread 0 opens the item's record (ws_trace.cuh) and keeps it for the mainloop.
__device__ __forceinline__ void decode_trace_begin(const MoeParams& p, bool fc1, int idx, const ExpertTile& t) {
  WsTraceRecord* r = nullptr;
  const unsigned item = unsigned(idx) * gridDim.x + blockIdx.x;
  if (p.decode_trace && item < kWsTraceRecords) r = static_cast<WsTraceRecord*>(p.decode_trace) + (fc1 ? 0 : kWsTraceRecords) + item;
  decode_trace_slot() = r;
  if (!r) return;
  unsigned smid;
  asm volatile("mov.u32 %0, %smid;" : "=r"(smid));
  r->start = ws_trace_now(), r->smid = int(smid), r->mblock = int(blockIdx.x), r->nrows = t.nrows, r->expert = t.expert;
  r->epi_end[1] = 0;
}
#endif

// Grouped launch: blockIdx.x = m-block (from mblock0), blockIdx.y strides the routed tile list. Shared
// storage is dynamic (the weight ring exceeds the 48 KiB static limit).
template <class Gemm_>
__global__ void __launch_bounds__(kCtaThreads, Gemm_::MainloopType::kCtasPerSm) moe_gemm_grouped_kernel(const MoeParams p) {
  extern __shared__ uint4 smem_raw[];
  auto& smem = *reinterpret_cast<typename Gemm_::SharedStorage*>(smem_raw);
  for (GridTileScheduler s(p); s.valid(); s.advance()) {
    MOE12X_WS_PROBE(if (threadIdx.x == 0) decode_trace_begin(p, Gemm_::kFc1, s.idx, s.tile()));
    Gemm_::run_item(p, smem, s.tile(), Gemm_::mblock0(p) + int(blockIdx.x));
    MOE12X_WS_PROBE(if (threadIdx.x == 0) if (auto* r = decode_trace_slot()) r->epi_end[0] = ws_trace_now());
  }
  pdl_wait();  // a CTA without items still completes only after the predecessor (pdl.cuh)
}

// Opt a kernel into more than 48 KiB of dynamic shared memory, once per device (the attribute
// lives in the device's context). Templated on the kernel itself: one flag set per kernel.
// Thread-safe (setting it twice is harmless); devices past the 64th are set on every launch.
template <auto kKernel>
cudaError_t opt_in_smem(size_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  static std::atomic<bool> done[64] = {};
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess || (dev < 64 && done[dev].load(std::memory_order_relaxed))) return e;
  e = cudaFuncSetAttribute(kKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (e == cudaSuccess && dev < 64) done[dev].store(true, std::memory_order_relaxed);
  return e;
}

// The SM count c_api.cpp caches in MoeParams::sm_count (no driver query per call), or the current
// device's where it is unset.
inline cudaError_t device_sm_count(int cached, int* sms) {
  if ((*sms = cached) > 0) return cudaSuccess;
  int dev = 0;
  const cudaError_t e = cudaGetDevice(&dev);
  return e != cudaSuccess ? e : cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, dev);
}

// The most CTAs of kKernel (kCtaThreads each, `bytes` of dynamic shared memory) resident at once
// on the current device: the cooperative launches' grid (static and decode kernels). Opts the
// kernel in and queries its occupancy once per device; sm_count: the caller's cached SM count
// (MoeParams::sm_count), queried if unset.
template <auto kKernel>
cudaError_t cooperative_grid_cap(size_t bytes, int sm_count, int64_t* cap) {
  static std::atomic<int> per_sm_cache[64] = {};
  int dev = 0;
  cudaError_t e = cudaGetDevice(&dev);
  if (e != cudaSuccess) return e;
  int per_sm = dev < 64 ? per_sm_cache[dev].load(std::memory_order_relaxed) : 0;
  if (per_sm == 0) {
    if ((e = opt_in_smem<kKernel>(bytes)) != cudaSuccess) return e;
    if ((e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kKernel, kCtaThreads, bytes)) != cudaSuccess) return e;
    if (per_sm < 1) return cudaErrorCooperativeLaunchTooLarge;
    if (dev < 64) per_sm_cache[dev].store(per_sm, std::memory_order_relaxed);
  }
  int sms = 0;
  if ((e = device_sm_count(sm_count, &sms)) != cudaSuccess) return e;
  *cap = int64_t(per_sm) * sms;
  return cudaSuccess;
}

// Grid of the grouped launches (mma.sync and SM90 wgmma): x = m-block, y strides the tile list.
inline dim3 grouped_grid(int mblocks, const MoeParams& p) {
  const int64_t ytiles = p.max_tiles < 65535 ? p.max_tiles : 65535;
  return dim3(mblocks, unsigned(ytiles > 0 ? ytiles : 1));
}

// The tile list is read before the wait, so the predecessor must itself have waited: the pack
// kernel has; the route kernel (FC1's predecessor without FP4 activations) has not.
inline bool grouped_pdl(const MoeParams& p, bool fc1) { return p.pdl && (!fc1 || p.act_fp4); }

// An FC2 launch's column chunk starts at one of its m-blocks and ends at one or at H.
template <class Gemm_>
bool chunk_on_mblocks(const MoeParams& p, int item_rows) {
  return Gemm_::kFc1 || (p.y_col0 % item_rows == 0 && p.y_ncols > 0 && p.y_col0 + p.y_ncols <= p.hidden &&
                         (p.y_ncols % item_rows == 0 || p.y_col0 + p.y_ncols == p.hidden));
}

template <class Gemm_>
cudaError_t launch_moe_gemm_grouped(const MoeParams& p, cudaStream_t stream) {
  constexpr size_t kSmem = sizeof(typename Gemm_::SharedStorage);
  if (!chunk_on_mblocks<Gemm_>(p, Gemm_::MainloopType::kItemRows)) return cudaErrorInvalidValue;
  const dim3 grid = grouped_grid(Gemm_::launch_mblocks(p), p);
  const DeviceSmem& d = p.smem;  // cached by c_api.cpp: no driver query per call
  // The attribute bounds every launch of the kernel: set once to the largest size either asks for
  // (spread_smem's one CTA per SM; a launch's occupancy follows its own size, not the attribute).
  if (const cudaError_t e = opt_in_smem<moe_gemm_grouped_kernel<Gemm_>>(spread_smem_max(kSmem, d)); e != cudaSuccess)
    return e;
  const bool spread = p.spread_ctas & (Gemm_::kFc1 ? 1 : 2);
  const size_t smem =
      spread ? spread_smem(kSmem, int64_t(grid.x) * grid.y, Gemm_::MainloopType::kCtasPerSm, p.sm_count, d) : kSmem;
  return launch_kernel(moe_gemm_grouped_kernel<Gemm_>, grid, dim3(kCtaThreads), smem, stream,
                       grouped_pdl(p, Gemm_::kFc1), p);
}

}  // namespace moe12x
