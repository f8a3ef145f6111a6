// Per-CTA routing of the persistent decode kernel (kernel/moe_decode.cuh): every CTA derives the
// same rows and tiles from the ids on its own, so no route kernel, no table in global memory and no
// barrier stand between the launch and the first weight loads (the route kernel was ~4 us of a
// T = 1 call's critical path, bench/NOTES.md session 11).
//   rows:  the local pairs ordered by (local expert, pair index): a deterministic order, so every
//          CTA agrees on which routed row a pair is (one CTA's FC1 writes the intermediate row that
//          another CTA's FC2 reads);
//   tiles: each expert's rows in runs of <= kDecodeTileRows, ascending expert.
// A pair's row: local_route_row, O(P) per pair from shared memory, P <= kDecodeMaxPairs (P = 8 at
// T = 1).
#pragma once
#include "common/cuda_utils.cuh"
#include "common/params.hpp"
#include "routing/local_route.hpp"
#include "scheduler/expert_tiles.cuh"

namespace moe12x {

struct LocalRoute {
  int row_pair[kDecodeMaxPairs];  // routed row -> pair t * k + j
  int tiles[kDecodeMaxPairs];     // pack_local_tile words, ascending expert
  int ntiles;
  __device__ ExpertTile tile(int i) const {
    const int v = tiles[i];
    return ExpertTile{local_tile_expert(v), local_tile_row0(v), local_tile_rows(v)};
  }
};

// Every thread of the CTA; scratch: 2 * kDecodeMaxPairs ints of shared memory, free until the
// first token stage. Ends with a CTA barrier.
__device__ __forceinline__ void build_local_route(const MoeParams& p, LocalRoute& r, int* scratch) {
  int* el = scratch;                     // pair -> local expert or -1
  int* head = scratch + kDecodeMaxPairs; // row -> tile word or -1
  __shared__ int s_warp_tiles[kCtaThreads / 32];
  const int pairs = int(p.tokens * p.top_k), tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int i = tid; i < pairs; i += kCtaThreads) el[i] = local_expert(load_id(p.ids, p.ids64, i), p.local_offset, p.e_local);
  __syncthreads();
  int rows = 0;  // local pairs
  for (int i0 = 0; i0 < pairs; i0 += kCtaThreads) {  // uniform trip count: __syncthreads_count
    const int i = i0 + tid;
    const bool local = i < pairs && el[i] >= 0;
    if (local) {
      int h;
      const int row = local_route_row(el, pairs, i, &h);
      r.row_pair[row] = i;
      head[row] = h;
    }
    rows += __syncthreads_count(local);
  }
  __syncthreads();
  // Tiles in row order: a prefix count of the heads.
  int base = 0;
  for (int r0 = 0; r0 < rows; r0 += kCtaThreads) {
    const int row = r0 + tid;
    const int h = row < rows ? head[row] : -1;
    const unsigned ballot = __ballot_sync(0xffffffffu, h >= 0);
    if (lane == 0) s_warp_tiles[warp] = __popc(ballot);
    __syncthreads();
    int before = base;
    for (int w = 0; w < warp; ++w) before += s_warp_tiles[w];
    if (h >= 0) r.tiles[before + __popc(ballot & ((1u << lane) - 1u))] = h;
    for (int w = 0; w < kCtaThreads / 32; ++w) base += s_warp_tiles[w];
    __syncthreads();
  }
  if (tid == 0) r.ntiles = base;
  __syncthreads();
}

}  // namespace moe12x
