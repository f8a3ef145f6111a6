// The static (decode) schedule: one persistent cooperative launch. Phases, separated by grid-wide
// barriers: zero counters | count pairs per expert | scan (every CTA), publish tiles (CTA 0),
// scatter + quantize routed rows | FC1 + SwiGLU + quantize | FC2 x routing weight | combine.
// Counters are re-armed inside the launch, so graph replays need no host work.
#pragma once
#include <cooperative_groups.h>

#include "combine/combine.cuh"
#include "epilogue/fc1_swiglu_quant.cuh"
#include "epilogue/fc2_weighted_store.cuh"
#include "kernel/moe_gemm.cuh"
#include "routing/route_device.cuh"

namespace moe12x {

template <class Mainloop>
union StaticSmem {
  typename Mainloop::SharedStorage gemm;
  struct { int rows[kMaxStaticExperts + 1], tiles[kMaxStaticExperts + 1], warp[64]; } route;
};

template <class Mainloop>
__global__ void __launch_bounds__(kCtaThreads) moe_static_kernel(const MoeParams p) {
  namespace cg = cooperative_groups;
  cg::grid_group grid = cg::this_grid();
  using Fc1 = MoeGemm<Gemm::kFc1, Mainloop, Fc1SwigluQuantEpilogue>;
  using Fc2 = MoeGemm<Gemm::kFc2, Mainloop, Fc2WeightedStoreEpilogue>;
  extern __shared__ uint4 smem_raw[];
  auto& smem = *reinterpret_cast<StaticSmem<Mainloop>*>(smem_raw);

  MOE12X_WS_PROBE(if (threadIdx.x == 0) decode_trace_slot() = nullptr);  // no records from this kernel
  const int64_t gtid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t gthreads = int64_t(gridDim.x) * blockDim.x;
  const int64_t pairs = p.tokens * p.top_k;
  const int lane = threadIdx.x & 31;

  // ---- route ----
  for (int64_t e = gtid; e < p.e_local; e += gthreads) { p.counts[e] = 0; p.cursor[e] = 0; }
  grid.sync();
  for (int64_t i = gtid; i < pairs; i += gthreads) {
    const int el = local_expert(load_id(p.ids, p.ids64, i), p.local_offset, p.e_local);
    if (el >= 0) atomicAdd(&p.counts[el], 1);
  }
  grid.sync();
  scan_expert_offsets(p.counts, p.e_local, p.block_n, p.tile_extra, smem.route.rows, smem.route.tiles, smem.route.warp);
  if (blockIdx.x == 0) publish_tiles(p, smem.route.rows, smem.route.tiles);
  for (int64_t i = gtid / 32; i < pairs; i += gthreads / 32) {
    const int el = local_expert(load_id(p.ids, p.ids64, i), p.local_offset, p.e_local);
    if (el < 0) continue;
    int row = 0;
    if (lane == 0) {
      row = smem.route.rows[el] + atomicAdd(&p.cursor[el], 1);
      p.row_pair[row] = int(i);
    }
    row = __shfl_sync(0xffffffffu, row, 0);
    if (p.act_fp4) pack_row_fp4(p, row, int(i), el, lane);
  }
  grid.sync();

  // Items per CTA, or per warp when the mainloop's items are one warp's (no CTA barrier inside).
  constexpr int kPer = Mainloop::kWarpItems ? kCtaThreads / 32 : 1;
  const int first = blockIdx.x * kPer + (Mainloop::kWarpItems ? threadIdx.x / 32 : 0);
  const int stride = gridDim.x * kPer;

  // ---- FC1 -> SwiGLU -> quantize ----
  for (PersistentTileScheduler s(p, Fc1::mblocks(p), first, stride); s.valid(); s.advance())
    Fc1::run_item(p, smem.gemm, s.tile(), s.mblock());
  grid.sync();

  // ---- FC2 x routing weight ----
  for (PersistentTileScheduler s(p, Fc2::mblocks(p), first, stride); s.valid(); s.advance())
    Fc2::run_item(p, smem.gemm, s.tile(), s.mblock());
  grid.sync();

  // ---- combine ----
  combine_range(p, gtid, gthreads);
}

// Grid = co-resident CTAs on this device (occupancy x SMs), cached per device.
template <class Mainloop>
cudaError_t launch_moe_static(const MoeParams& p, cudaStream_t stream) {
  constexpr size_t kSmem = sizeof(StaticSmem<Mainloop>);
  int64_t grid = 0;
  if (const cudaError_t e = cooperative_grid_cap<moe_static_kernel<Mainloop>>(kSmem, p.sm_count, &grid); e != cudaSuccess)
    return e;
  void* args[] = {const_cast<MoeParams*>(&p)};
  return cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(moe_static_kernel<Mainloop>), dim3(unsigned(grid)),
                                     dim3(kCtaThreads), args, kSmem, stream);
}

}  // namespace moe12x
