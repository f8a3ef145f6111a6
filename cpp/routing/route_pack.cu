// Grouped schedule routing: one CTA counts local (token, slot) pairs per expert, lays experts out
// contiguously, emits the tile list, and scatters pair indices into packed rows; then a separate
// launch quantizes the routed rows. Row order inside an expert comes from atomics and is not
// fixed, which is harmless: every packed row is computed independently and results are stored
// per pair, so the output is bitwise deterministic and batch invariant anyway.
#include "common/launchers.hpp"
#include "common/pdl.cuh"
#include "routing/route_device.cuh"

namespace moe12x {

constexpr int kRouteThreads = 1024;

__global__ void __launch_bounds__(kRouteThreads) route_kernel(MoeParams p) {
  extern __shared__ int smem[];
  int* hist = smem;                        // [E_local]
  int* s_rows = hist + p.e_local;          // [E_local + 1]
  int* s_tiles = s_rows + p.e_local + 1;   // [E_local + 1]
  int* s_warp = s_tiles + p.e_local + 1;   // [64]
  const int tid = threadIdx.x;
  const int64_t pairs = p.tokens * p.top_k;
  pdl_trigger();  // the pack kernel may launch; it waits for this one to complete

  for (int e = tid; e < p.e_local; e += kRouteThreads) hist[e] = 0;
  __syncthreads();
  for (int64_t i = tid; i < pairs; i += kRouteThreads) {
    const int el = local_expert(load_id(p.ids, p.ids64, i), p.local_offset, p.e_local);
    if (el >= 0) atomicAdd(&hist[el], 1);
  }
  __syncthreads();
  for (int e = tid; e < p.e_local; e += kRouteThreads) p.counts[e] = hist[e];
  __syncthreads();
  scan_expert_offsets(p.counts, p.e_local, p.block_n, s_rows, s_tiles, s_warp);
  publish_tiles(p, s_rows, s_tiles);
  for (int e = tid; e < p.e_local; e += kRouteThreads) hist[e] = 0;  // now the scatter cursor
  __syncthreads();
  for (int64_t i = tid; i < pairs; i += kRouteThreads) {
    const int el = local_expert(load_id(p.ids, p.ids64, i), p.local_offset, p.e_local);
    if (el >= 0) p.row_pair[s_rows[el] + atomicAdd(&hist[el], 1)] = int(i);
  }
}

cudaError_t launch_route(const MoeParams& p, cudaStream_t stream) {
  const size_t smem = sizeof(int) * (3 * size_t(p.e_local) + 2 + 64);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(route_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  route_kernel<<<1, kRouteThreads, smem, stream>>>(p);
  return cudaGetLastError();
}

// One warp per packed row.
__global__ void __launch_bounds__(256) pack_fp4_kernel(MoeParams p) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  pdl_wait();
  pdl_trigger();
  const int rows = p.offsets[p.e_local];
  for (int64_t r = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32; r < rows; r += warps) {
    const int pair = p.row_pair[r];
    const int el = local_expert(load_id(p.ids, p.ids64, pair), p.local_offset, p.e_local);
    pack_row_fp4(p, r, pair, el, lane);
  }
}

cudaError_t launch_pack_fp4(const MoeParams& p, cudaStream_t stream) {
  const int64_t blocks = (p.tokens * p.top_k + 7) / 8;
  return launch_kernel(pack_fp4_kernel, dim3(unsigned(blocks < 4096 ? blocks : 4096)), dim3(256), 0, stream,
                       p.pdl, p);
}

}  // namespace moe12x
