// Tile scheduler over the routed tile list: gridDim.x strides the output rows of a weight
// matrix, blockIdx.y walks (expert, row-tile) entries written by the route kernel. The list
// length lives in device memory, so the launch shape is fixed and graph-capturable.
#pragma once
#include "common/params.hpp"

namespace moe12x {

struct ExpertTile {
  int expert;  // local expert
  int row0;    // first packed row
  int nrows;   // valid rows, <= block_n
};

struct ExpertTileScheduler {
  const MoeParams& p;
  int count;
  int idx;

  __device__ explicit ExpertTileScheduler(const MoeParams& params)
      : p(params), count(*params.tile_count), idx(blockIdx.y) {}

  __device__ bool valid() const { return idx < count; }
  __device__ void advance() { idx += gridDim.y; }
  __device__ ExpertTile tile() const {
    const int2 t = p.tiles[idx];
    const int end = p.offsets[t.x + 1];
    const int n = end - t.y;
    return ExpertTile{t.x, t.y, n < p.block_n ? n : p.block_n};
  }
};

}  // namespace moe12x
