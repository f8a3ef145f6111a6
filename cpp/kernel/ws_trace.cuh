// Timeline probes of the SM90 WS kernel, for experiment builds only (CMake -DMOE12X_WS_TRACE=ON;
// without it every probe compiles to nothing and the kernels are unchanged). One record per item
// ((tile, m-block), m-block fastest): the SM, globaltimer stamps of the item's start (the CTA's
// start in the grouped grid, the item's claim in the work-queue grid), the first token
// buffer reaching the consumers, the mainloop end and the epilogue end of each consumer
// warpgroup, and the tile. Read by moe12x_debug_ws_trace (gemm_sm90_wgmma.cu) and
// scripts/ws_trace.py: where an item's time goes, and the gaps and tail between items on an SM.
#pragma once
#include "kernel/ws_trace_record.hpp"

namespace moe12x {

#ifdef MOE12X_WS_TRACE
static __device__ WsTraceRecord g_ws_trace[2][kWsTraceRecords];  // [FC1, FC2][item]

__device__ __forceinline__ unsigned long long ws_trace_now() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
  return t;
}
__device__ __forceinline__ WsTraceRecord* ws_trace_record(bool fc1, unsigned item) {
  return item < kWsTraceRecords ? &g_ws_trace[fc1 ? 0 : 1][item] : nullptr;
}
// The item's first stamp: its SM, start time and m-block.
__device__ __forceinline__ void ws_trace_start(bool fc1, unsigned item, int mblock) {
  if (WsTraceRecord* r = ws_trace_record(fc1, item)) {
    unsigned smid;
    asm volatile("mov.u32 %0, %smid;" : "=r"(smid));
    r->start = ws_trace_now(), r->smid = int(smid), r->mblock = mblock;
  }
}
// The mma.sync grouped kernels (kernel/moe_gemm.cuh) write the same records through
// MoeParams::decode_trace (their TUs cannot share a __device__ symbol), one per (tile, m-block)
// item: start = the item's start, main_end[0] = past the PDL wait, first_full = the first token
// chunk staged, main_end[1] = the mainloop's end, epi_end[0] = the epilogue's end, epi_end[1] =
// ns inside the token stages and their barriers, summed over the item's chunks (warp 0, lane 0).
// The record of the item thread 0 runs, in shared memory for the mainloop's probes.
__device__ __forceinline__ WsTraceRecord*& decode_trace_slot() {
  __shared__ WsTraceRecord* slot;
  return slot;
}
#define MOE12X_WS_PROBE(...) \
  do {                       \
    __VA_ARGS__;             \
  } while (0)
#else
#define MOE12X_WS_PROBE(...) \
  do {                       \
  } while (0)
#endif

}  // namespace moe12x
