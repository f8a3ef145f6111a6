// Routing building blocks shared by the one-CTA route kernel (grouped schedule) and the
// distributed routing phase of the persistent static kernel.
#pragma once
#include "common/cuda_utils.cuh"
#include "common/nvfp4.cuh"
#include "common/params.hpp"

namespace moe12x {

// A warp quantizes x[token of pair] into packed row `row` with the expert's FC1 input scale
// (SPEC §2 exact order), one 16-element block per lane per step.
__device__ __forceinline__ void pack_row_fp4(const MoeParams& p, int64_t row, int pair, int el, int lane) {
  const float gs = p.fc1_scale[input_scale_index(p.fc1_count, el, p.e_local, p.local_offset)];
  const uint16_t* xr = p.x + (int64_t(pair) / p.top_k) * p.hidden;
  uint8_t* qr = p.xq + row * (p.hidden / 2);
  uint8_t* sr = p.xq_sf + row * (p.hidden / 16);
  for (int b = lane; b < p.hidden / 16; b += 32) {
    union { uint4 v[2]; uint16_t h[16]; } raw;  // rows are 16-B aligned: two vector loads
    const uint4* src = reinterpret_cast<const uint4*>(xr + b * 16);
    raw.v[0] = src[0];
    raw.v[1] = src[1];
    uint2 codes;
    sr[b] = uint8_t(nvfp4_quantize_block(raw.h, gs, codes));
    *reinterpret_cast<uint2*>(qr + b * 8) = codes;
  }
}

// Block-wide exclusive scan of (rows, tiles) over experts: s_rows[e], s_tiles[e] for e <= E_local
// (entry E_local holds the totals; tiles per expert: expert_tile_count). counts come from global
// memory. Any block size that is a multiple of 32, up to 1024.
__device__ __forceinline__ void scan_expert_offsets(const int* counts, int e_local, int block_n, int extra,
                                                    int* s_rows, int* s_tiles, int* s_warp) {
  const int nt = blockDim.x, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int per = (e_local + nt - 1) / nt;
  const int e0 = min(e_local, tid * per), e1 = min(e_local, e0 + per);
  int r = 0, t = 0;
  for (int e = e0; e < e1; ++e) { const int c = counts[e]; r += c; t += expert_tile_count(c, block_n, extra); }
  int ri = r, ti = t;  // inclusive warp scan
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int rr = __shfl_up_sync(0xffffffffu, ri, o), tt = __shfl_up_sync(0xffffffffu, ti, o);
    if (lane >= o) { ri += rr; ti += tt; }
  }
  if (lane == 31) { s_warp[2 * warp] = ri; s_warp[2 * warp + 1] = ti; }
  __syncthreads();
  int rbase = 0, tbase = 0;
  for (int w = 0; w < warp; ++w) { rbase += s_warp[2 * w]; tbase += s_warp[2 * w + 1]; }
  r = rbase + ri - r;
  t = tbase + ti - t;
  for (int e = e0; e < e1; ++e) {
    s_rows[e] = r; s_tiles[e] = t;
    const int c = counts[e];
    r += c; t += expert_tile_count(c, block_n, extra);
  }
  if (tid == nt - 1) { s_rows[e_local] = r; s_tiles[e_local] = t; }
  __syncthreads();
}

// Writes offsets, the tile list and its length from a finished scan (one CTA does this).
__device__ __forceinline__ void publish_tiles(const MoeParams& p, const int* s_rows, const int* s_tiles) {
  for (int e = threadIdx.x; e <= p.e_local; e += blockDim.x) p.offsets[e] = s_rows[e];
  for (int e = threadIdx.x; e < p.e_local; e += blockDim.x)
    for (int t = s_tiles[e]; t < s_tiles[e + 1]; ++t)
      p.tiles[t] = make_int2(e, s_rows[e] + (t - s_tiles[e]) * p.block_n);
  if (threadIdx.x == 0) {
    p.tile_count[0] = s_tiles[p.e_local];
    p.tile_count[1] = p.tile_count[2] = 0;  // the SM90 work-queue kernel's FC1 / FC2 item counters
  }
}

}  // namespace moe12x
