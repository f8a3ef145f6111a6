// Routing: count local (token, slot) pairs per expert, lay experts out contiguously, emit the
// tile list for the GEMMs, scatter pair indices into packed rows; then quantize routed rows.
// Row order inside an expert comes from atomics and is not fixed, which is harmless: every
// packed row is computed independently and results are stored per pair, so the output is
// bitwise deterministic and batch invariant anyway.
#include "common/cuda_utils.cuh"
#include "common/launchers.hpp"
#include "common/nvfp4.cuh"

namespace moe12x {

constexpr int kRouteThreads = 1024;

__global__ void __launch_bounds__(kRouteThreads) route_kernel(MoeParams p) {
  extern __shared__ int smem[];
  int* hist = smem;                  // [E_local]
  int* tile_off = smem + p.e_local;  // [E_local + 1]
  const int tid = threadIdx.x;
  const int64_t pairs = p.tokens * p.top_k;

  for (int e = tid; e < p.e_local; e += kRouteThreads) hist[e] = 0;
  __syncthreads();
  for (int64_t i = tid; i < pairs; i += kRouteThreads) {
    const int el = local_expert(load_id(p.ids, p.ids64, i), p.local_offset, p.e_local);
    if (el >= 0) atomicAdd(&hist[el], 1);
  }
  __syncthreads();
  if (tid == 0) {  // serial scan: E_local is small next to the pair loop
    int rows = 0, tiles = 0;
    for (int e = 0; e < p.e_local; ++e) {
      p.offsets[e] = rows;
      tile_off[e] = tiles;
      rows += hist[e];
      tiles += (hist[e] + p.block_n - 1) / p.block_n;
    }
    p.offsets[p.e_local] = rows;
    tile_off[p.e_local] = tiles;
    *p.tile_count = tiles;
  }
  __syncthreads();
  for (int e = tid; e < p.e_local; e += kRouteThreads) {
    p.counts[e] = hist[e];
    const int first = p.offsets[e];
    for (int t = tile_off[e]; t < tile_off[e + 1]; ++t)
      p.tiles[t] = make_int2(e, first + (t - tile_off[e]) * p.block_n);
    hist[e] = 0;  // reused as the scatter cursor
  }
  __syncthreads();
  for (int64_t i = tid; i < pairs; i += kRouteThreads) {
    const int el = local_expert(load_id(p.ids, p.ids64, i), p.local_offset, p.e_local);
    if (el >= 0) p.row_pair[p.offsets[el] + atomicAdd(&hist[el], 1)] = int(i);
  }
}

cudaError_t launch_route(const MoeParams& p, cudaStream_t stream) {
  const size_t smem = sizeof(int) * (2 * size_t(p.e_local) + 1);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(route_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         int(smem));
    if (e != cudaSuccess) return e;
  }
  route_kernel<<<1, kRouteThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

// One warp per packed row; each lane quantizes 16-element blocks of x[token] with the row's
// expert input scale (SPEC §2 exact order).
__global__ void __launch_bounds__(256) pack_fp4_kernel(MoeParams p) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  const int rows = p.offsets[p.e_local];
  const int blocks = p.hidden / 16;
  for (int64_t r = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
    const int pair = p.row_pair[r];
    const int el = local_expert(load_id(p.ids, p.ids64, pair), p.local_offset, p.e_local);
    const float gs = p.fc1_scale[input_scale_index(p.fc1_count, el, p.e_local, p.local_offset)];
    const uint16_t* xr = p.x + (int64_t(pair) / p.top_k) * p.hidden;
    uint8_t* qr = p.xq + r * (p.hidden / 2);
    uint8_t* sr = p.xq_sf + r * blocks;
    for (int b = lane; b < blocks; b += 32) {
      const uint4* src = reinterpret_cast<const uint4*>(xr + b * 16);
      uint4 raw[2] = {src[0], src[1]};
      const uint16_t* h = reinterpret_cast<const uint16_t*>(raw);
      float v[16], amax = 0.0f;
#pragma unroll
      for (int i = 0; i < 16; ++i) { v[i] = bf16_to_float(h[i]); amax = fmaxf(amax, fabsf(v[i])); }
      const BlockScale s = nvfp4_block_scale(amax, gs);
      uint32_t w[2] = {0u, 0u};
#pragma unroll
      for (int i = 0; i < 16; ++i) w[i / 8] |= nvfp4_code(v[i], s) << (4 * (i % 8));
      *reinterpret_cast<uint2*>(qr + b * 8) = make_uint2(w[0], w[1]);
      sr[b] = uint8_t(s.sf);
    }
  }
}

cudaError_t launch_pack_fp4(const MoeParams& p, cudaStream_t stream) {
  const int64_t warps_needed = p.tokens * p.top_k;
  const int64_t blocks = (warps_needed + 7) / 8;
  const int grid = int(blocks < 4096 ? blocks : 4096);
  pack_fp4_kernel<<<grid, 256, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace moe12x
