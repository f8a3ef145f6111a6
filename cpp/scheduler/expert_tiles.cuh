// Schedulers over the routed tile list written by routing/. The list length lives in device
// memory, so launch shapes are fixed and graph-capturable.
//   GridTileScheduler:       blockIdx.x = m-block, blockIdx.y strides tiles (grouped launch).
//   PersistentTileScheduler: a persistent grid strides linearized (tile, m-block) items, m-block
//                            fastest so neighbours share a token tile; per CTA, or per warp for
//                            mainloops whose items are one warp's.
#pragma once
#include "common/params.hpp"

namespace moe12x {

struct ExpertTile {
  int expert;  // local expert
  int row0;    // first packed row
  int nrows;   // valid rows, <= block_n (<= block_n + tile_extra for an expert's last tile)
};

__device__ __forceinline__ ExpertTile load_tile(const MoeParams& p, int idx) {
  const int2 t = p.tiles[idx];
  return ExpertTile{t.x, t.y, expert_tile_rows(p.offsets[t.x + 1] - t.y, p.block_n, p.tile_extra)};
}

struct GridTileScheduler {
  const MoeParams& p;
  int count, idx;
  __device__ explicit GridTileScheduler(const MoeParams& params)
      : p(params), count(*params.tile_count), idx(blockIdx.y) {}
  __device__ bool valid() const { return idx < count; }
  __device__ void advance() { idx += gridDim.y; }
  __device__ ExpertTile tile() const { return load_tile(p, idx); }
};

struct PersistentTileScheduler {
  const MoeParams& p;
  int mblocks, items, idx;
  int stride;
  __device__ PersistentTileScheduler(const MoeParams& params, int mblocks_, int first, int stride_)
      : p(params), mblocks(mblocks_), items(*params.tile_count * mblocks_), idx(first), stride(stride_) {}
  __device__ bool valid() const { return idx < items; }
  __device__ void advance() { idx += stride; }
  __device__ ExpertTile tile() const { return load_tile(p, idx / mblocks); }
  __device__ int mblock() const { return idx % mblocks; }
};

}  // namespace moe12x
