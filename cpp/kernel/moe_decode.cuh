// The decode schedule (SPEC §4 "static"): the whole layer in one persistent cooperative launch of
// the grouped decode kernels' CTAs (Sm80MmaFp4MainloopT, tiles of <= 16 rows), for up to
// kDecodeMaxPairs routed pairs. Dataflow instead of phase barriers:
//   route:   every CTA routes on its own (routing/route_local.cuh), nothing in global memory;
//   pack:    none: FC1 quantizes its x rows to NVFP4 as it stages them (ActivationRows::from_x);
//   items:   FC1 items (tile, m-block) first, then FC2 items; each CTA's first item is its
//            blockIdx.x, later ones come from one atomic counter, so items run in claim order;
//   FC1->FC2: an FC2 item issues its weight ring, then waits for its tile's FC1 m-blocks (a counter
//            per tile, released by each FC1 item after its epilogue, acquired by a fence). Deadlock-free: an item waits
//            only for items of lower index, which are claimed, hence running, and never wait;
//   combine: after the one grid barrier at the end (the slot-order sum, combine.cuh).
// The counters live in the workspace and are zeroed by the kernel itself before the one grid
// barrier at its start (during the first item's weight loads), so graph replays need no host work.
#pragma once
#include <cooperative_groups.h>

#include "combine/combine.cuh"
#include "epilogue/fc1_swiglu_quant.cuh"
#include "epilogue/fc2_weighted_store.cuh"
#include "kernel/moe_gemm.cuh"
#include "routing/route_local.cuh"

namespace moe12x {

// Waits for a counter: relaxed polls (an acquire load per poll would invalidate the SM's L1 under
// the co-resident CTAs every ~100 ns), then one acquire fence. Traps after 20 s of %globaltimer
// (a launch error, never a hang; time, not polls, so slow tools such as compute-sanitizer pass).
__device__ __forceinline__ void wait_counter_at_least(const int* c, int target) {
  unsigned long long t0 = 0;
  for (unsigned n = 0;; ++n) {
    int v;
    asm volatile("ld.relaxed.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(c) : "memory");
    if (v >= target) break;
    unsigned long long now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
    if (n == 0) t0 = now;
    else if (now - t0 > 20000000000ull) __trap();
    __nanosleep(100);
  }
  asm volatile("fence.acq_rel.gpu;" ::: "memory");  // the counted items' stores are visible after this
}

template <class Mainloop>
struct MoeDecode {
  using Fc1 = MoeGemm<Gemm::kFc1, Mainloop, Fc1SwigluQuantEpilogue>;
  using Fc2 = MoeGemm<Gemm::kFc2, Mainloop, Fc2WeightedStoreEpilogue>;
  static_assert(Mainloop::kRuntimeNB && Mainloop::kMaxNB * 8 == kDecodeTileRows, "tiles of <= 16 rows");
  static_assert(Mainloop::kXQuant, "FC1 stages its rows from x");
  struct SharedStorage {
    typename Mainloop::SharedStorage gemm;
    LocalRoute route;
  };
  static_assert(2 * kDecodeMaxPairs * sizeof(int) <= sizeof(Mainloop::SharedStorage::b),
                "the routing scratch fits the token stage");
  // SM120 / SM121 (this kernel is their decode path too): 99 KiB of shared memory per block, and
  // the cooperative grid needs >= 1 CTA per SM; 2 KiB of headroom for the mainloop's static arrays.
  static_assert(sizeof(SharedStorage) + 2048 <= 99 * 1024, "decode CTA fits SM120's 99 KiB per block");

  // Upper bound of a call's items (tiles <= pairs): the grid never exceeds it.
  __host__ __device__ static int64_t max_items(const MoeParams& p) {
    return p.tokens * p.top_k * int64_t(Fc1::mblocks(p) + Fc2::mblocks(p));
  }
};

// CTAs per SM: shared memory bounds one-tile warps to 5 (the grouped kernel's 6 less the routing
// tables), registers two-tile warps to 4.
template <class Mainloop>
__global__ void __launch_bounds__(kCtaThreads, Mainloop::kWarpTiles == 1 ? 5 : 4) moe_decode_kernel(const MoeParams p) {
  namespace cg = cooperative_groups;
  using D = MoeDecode<Mainloop>;
  using Fc1 = typename D::Fc1;
  using Fc2 = typename D::Fc2;
  extern __shared__ uint4 smem_raw[];
  auto& smem = *reinterpret_cast<typename D::SharedStorage*>(smem_raw);
  MOE12X_WS_PROBE(if (threadIdx.x == 0) decode_trace_slot() = nullptr);  // no records from this kernel
  const int tid = threadIdx.x;

  // ---- route (every CTA) ----
  if (p.tokens * p.top_k > kDecodeMaxPairs) __trap();  // c_api.cpp sends larger calls elsewhere
  build_local_route(p, smem.route, reinterpret_cast<int*>(smem.gemm.b));
  const int ntiles = smem.route.ntiles;
  const int m1 = Fc1::mblocks(p), m2 = Fc2::mblocks(p);
  const int n1 = ntiles * m1, items = n1 + ntiles * m2;
  int* const queue = p.decode_sync;      // items claimed past the first wave
  int* const fc1_done = p.decode_sync + 1;  // [tile]: FC1 m-blocks finished
  if (blockIdx.x == 0)
    for (int i = tid; i <= ntiles; i += kCtaThreads) p.decode_sync[i] = 0;

  // ---- FC1 -> SwiGLU -> quantize, FC2 x routing weight: items in claim order ----
  cg::grid_group grid = cg::this_grid();
  bool synced = false;
  int claim = 0;  // thread 0: the counter's answer, used only at the item's end (its latency hides)
  __shared__ int s_next;
  const typename Fc2::ItemIo io2{typename Fc2::WorkspaceIo{}.activations(p), smem.route.row_pair};  // the intermediate
  for (int item = blockIdx.x; item < items;) {
    const bool fc2 = item >= n1;
    const int j = fc2 ? item - n1 : item, m = fc2 ? m2 : m1, t = j / m;
    const ExpertTile tile = smem.route.tile(t);
    // Between the item's first weight stages and its first token stage (every thread).
    auto wait = [&] {
      if (!synced) grid.sync();  // the counters are zero (once per CTA, during the weight loads)
      synced = true;
      if (tid == 0) claim = atomicAdd(queue, 1);
      if (fc2) {
        if (tid == 0) wait_counter_at_least(fc1_done + t, m1);
        __syncthreads();
      }
    };
    if (fc2) {
      Fc2::run_item(p, smem.gemm, tile, j % m, io2, wait);
    } else {
      typename Fc1::ItemIo io1{};
      io1.act.bf16 = p.x;  // bf16 rows of x by token (row_pair / top_k), quantized as staged
      io1.act.gather = smem.route.row_pair;
      io1.act.gather_div = p.top_k;
      io1.act.K = p.hidden;
      io1.act.fp4 = io1.act.from_x = p.act_fp4;
      io1.act.gs = p.act_fp4 ? p.fc1_scale[input_scale_index(p.fc1_count, tile.expert, p.e_local, p.local_offset)] : 0.0f;
      io1.row_pair = smem.route.row_pair;
      Fc1::run_item(p, smem.gemm, tile, j % m, io1, wait);
    }
    if (tid == 0) s_next = claim + int(gridDim.x);
    __syncthreads();  // the item's stores are issued; s_next is rewritten only after the next item's barriers
    if (!fc2 && tid == 0)  // release the tile's intermediate rows to its FC2 items
      asm volatile("red.release.gpu.global.add.s32 [%0], 1;" ::"l"(fc1_done + t) : "memory");
    item = s_next;
  }
  if (!synced) grid.sync();  // CTAs without items still take part in the first barrier

  // ---- combine ----
  grid.sync();
  combine_range(p, blockIdx.x * int64_t(kCtaThreads) + tid, int64_t(gridDim.x) * kCtaThreads);
}

// Grid: co-resident CTAs on this device (occupancy x SMs, cached per device), at most the call's
// items. Cooperative, so every CTA is resident and the first grid barrier cannot wait on a CTA
// that never starts.
template <class Mainloop>
cudaError_t launch_moe_decode(const MoeParams& p, cudaStream_t stream) {
  using D = MoeDecode<Mainloop>;
  constexpr size_t kSmem = sizeof(typename D::SharedStorage);
  constexpr auto kKernel = moe_decode_kernel<Mainloop>;
  int64_t cap = 0;
  if (const cudaError_t e = cooperative_grid_cap<kKernel>(kSmem, p.sm_count, &cap); e != cudaSuccess) return e;
  const int64_t items = D::max_items(p);
  const unsigned grid = unsigned(items < cap ? (items > 0 ? items : 1) : cap);
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeCooperative;
  attr[0].val.cooperative = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(kCtaThreads);
  cfg.dynamicSmemBytes = kSmem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cudaLaunchKernelEx(&cfg, kKernel, p);
}

}  // namespace moe12x
