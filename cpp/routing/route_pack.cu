// Grouped schedule routing: one CTA (for many pairs, two launches of kRouteCtas CTAs) counts local
// (token, slot) pairs per expert, lays experts out contiguously, emits the tile list, and scatters
// pair indices into packed rows (and the inverse map); then a separate launch quantizes each token
// once per distinct FC1 input scale into its routed rows. Row order inside an expert comes from
// atomics and is not fixed, which is harmless: every packed row is computed independently and
// results are stored per pair, so the output is bitwise deterministic and batch invariant anyway.
#include "common/launchers.hpp"
#include "common/pdl.cuh"
#include "mainloop/activation_stage.cuh"  // nvfp4_block_decoded_bf16
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
  scan_expert_offsets(p.counts, p.e_local, p.block_n, p.tile_extra, s_rows, s_tiles, s_warp);
  publish_tiles(p, s_rows, s_tiles);
  for (int e = tid; e < p.e_local; e += kRouteThreads) hist[e] = 0;  // now the scatter cursor
  __syncthreads();
  for (int64_t i = tid; i < pairs; i += kRouteThreads) {
    const int el = local_expert(load_id(p.ids, p.ids64, i), p.local_offset, p.e_local);
    const int row = el >= 0 ? s_rows[el] + atomicAdd(&hist[el], 1) : -1;
    if (el >= 0) p.row_pair[row] = int(i);
    p.pair_row[i] = row;
  }
}

// ---- many pairs: the same tables from kRouteCtas CTAs in two launches -------------------------
// One CTA's shared-memory atomics retire about one lane per cycle, so the kernel above costs
// ~1.1 ns per pair (23 us at 16384 pairs, 150 us at 131072: scripts/kernel_timeline.py). Here
// kRouteCtas CTAs each take a contiguous chunk of pairs: route_count_kernel writes each chunk's
// histogram into a table [E_local][CTAs]; route_scatter_kernel reads the table (every CTA: the
// totals and the rows of earlier chunks per expert), scans, and scatters its own chunk; CTA 0
// publishes offsets and tiles. The table lives at the start of the intermediate (act), which
// nothing holds at this point: the previous call has completed (this kernel is launched without
// PDL) and FC1 writes act only after the pack and the route (the pack may run beside the route
// with p.xq_gather: it writes xq, inside y).
constexpr int kRouteCtas = 32, kRouteMultiThreads = 512;
constexpr int64_t kRouteMultiMinPairs = 4096;  // below: the one-CTA kernel (decode sizes)

__device__ __forceinline__ int64_t route_chunk(int64_t pairs) { return (pairs + kRouteCtas - 1) / kRouteCtas; }

__global__ void __launch_bounds__(kRouteMultiThreads) route_count_kernel(MoeParams p) {
  extern __shared__ int hist[];  // [E_local]
  const int tid = threadIdx.x, c = blockIdx.x;
  const int64_t pairs = p.tokens * p.top_k, chunk = route_chunk(pairs);
  const int64_t i0 = c * chunk, i1 = min(pairs, i0 + chunk);
  pdl_trigger();  // first kernel of the call: the scatter kernel waits for this one to complete
  for (int e = tid; e < p.e_local; e += kRouteMultiThreads) hist[e] = 0;
  __syncthreads();
  for (int64_t i = i0 + tid; i < i1; i += kRouteMultiThreads) {
    const int el = local_expert(load_id(p.ids, p.ids64, i), p.local_offset, p.e_local);
    if (el >= 0) atomicAdd(&hist[el], 1);
  }
  __syncthreads();
  int* table = reinterpret_cast<int*>(p.act);
  for (int e = tid; e < p.e_local; e += kRouteMultiThreads) table[e * kRouteCtas + c] = hist[e];
}

__global__ void __launch_bounds__(kRouteMultiThreads) route_scatter_kernel(MoeParams p) {
  extern __shared__ int smem[];
  int* total = smem;                        // [E_local]
  int* cursor = total + p.e_local;          // [E_local]: rows of earlier chunks, then the cursor
  int* s_rows = cursor + p.e_local;         // [E_local + 1]
  int* s_tiles = s_rows + p.e_local + 1;    // [E_local + 1]
  int* s_warp = s_tiles + p.e_local + 1;    // [2 * warps]
  const int tid = threadIdx.x, c = blockIdx.x;
  const int64_t pairs = p.tokens * p.top_k, chunk = route_chunk(pairs);
  const int64_t i0 = c * chunk, i1 = min(pairs, i0 + chunk);
  pdl_wait();  // the count kernel's table
  pdl_trigger();
  const int4* table = reinterpret_cast<const int4*>(p.act);
  static_assert(kRouteCtas % 4 == 0, "table rows load as int4");
  for (int e = tid; e < p.e_local; e += kRouteMultiThreads) {
    int4 v[kRouteCtas / 4];
#pragma unroll
    for (int q = 0; q < kRouteCtas / 4; ++q) v[q] = table[e * (kRouteCtas / 4) + q];
    int sum = 0, below = 0;
#pragma unroll
    for (int q = 0; q < kRouteCtas / 4; ++q) {
      const int w[4] = {v[q].x, v[q].y, v[q].z, v[q].w};
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        below += 4 * q + r < c ? w[r] : 0;
        sum += w[r];
      }
    }
    total[e] = sum;
    cursor[e] = below;
  }
  __syncthreads();
  scan_expert_offsets(total, p.e_local, p.block_n, p.tile_extra, s_rows, s_tiles, s_warp);
  if (c == 0) {
    for (int e = tid; e < p.e_local; e += kRouteMultiThreads) p.counts[e] = total[e];
    publish_tiles(p, s_rows, s_tiles);
  }
  for (int e = tid; e < p.e_local; e += kRouteMultiThreads) cursor[e] += s_rows[e];
  __syncthreads();
  for (int64_t i = i0 + tid; i < i1; i += kRouteMultiThreads) {
    const int el = local_expert(load_id(p.ids, p.ids64, i), p.local_offset, p.e_local);
    const int row = el >= 0 ? atomicAdd(&cursor[el], 1) : -1;
    if (el >= 0) p.row_pair[row] = int(i);
    p.pair_row[i] = row;
  }
}

// Shared memory attribute above the 48 KB default when E_local needs it.
template <class K>
static cudaError_t allow_smem(K kernel, size_t smem) {
  return smem > 48 * 1024 ? cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem))
                          : cudaSuccess;
}

cudaError_t launch_route(const MoeParams& p, cudaStream_t stream) {
  const int64_t pairs = p.tokens * p.top_k;
  const size_t table_bytes = sizeof(int) * kRouteCtas * size_t(p.e_local);
  if (pairs < kRouteMultiMinPairs || size_t(pairs) * p.inter / 2 < table_bytes) {  // act >= P I / 2 bytes
    const size_t smem = sizeof(int) * (3 * size_t(p.e_local) + 2 + 64);
    if (cudaError_t e = allow_smem(route_kernel, smem); e != cudaSuccess) return e;
    route_kernel<<<1, kRouteThreads, smem, stream>>>(p);
    return cudaGetLastError();
  }
  const size_t smem_count = sizeof(int) * size_t(p.e_local);
  const size_t smem_scatter = sizeof(int) * (4 * size_t(p.e_local) + 2 + 2 * kRouteMultiThreads / 32);
  if (cudaError_t e = allow_smem(route_count_kernel, smem_count); e != cudaSuccess) return e;
  if (cudaError_t e = allow_smem(route_scatter_kernel, smem_scatter); e != cudaSuccess) return e;
  route_count_kernel<<<kRouteCtas, kRouteMultiThreads, smem_count, stream>>>(p);
  if (cudaError_t e = cudaGetLastError(); e != cudaSuccess) return e;
  return launch_kernel(route_scatter_kernel, dim3(kRouteCtas), dim3(kRouteMultiThreads), smem_scatter, stream,
                       p.pdl, p);
}

// One warp per (token, 32 blocks of 16 elements): a token's routed rows differ only in the
// expert's FC1 input scale, so each block is quantized once per distinct scale (once for a
// shared scale: 8x less work than a warp per row at top_k = 8) and the same codes go to every
// row. Splitting tokens into 32-block chunks keeps small batches (decode) spread over many
// warps. Same values as pack_row_fp4, bit for bit (for the SM90 wgmma kernel decoded to bf16,
// q * sf * 2^-8: the rows its producer loads by TMA, by nvfp4_block_decoded_bf16).
__global__ void __launch_bounds__(256) pack_fp4_kernel(MoeParams p) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  const int k = p.top_k;  // <= 16 (c_api.cpp): lane j < k holds slot j
  const int nblk = p.hidden / 16, chunks = (nblk + 31) / 32;
  const int64_t units = p.tokens * chunks;
  union Raw { uint4 v[2]; uint16_t h[16]; };  // rows are 16-B aligned: two vector loads
  // x, the ids and the input scales: the caller's, complete before the route kernel started (it
  // is launched without PDL), so a unit's loads may go out before the wait. Only pair_row is
  // the route kernel's. At decode this takes the ids -> scale -> x chain off the critical path.
  // With p.xq_gather the rows are the pair's or the token's own (FC1 gathers through row_pair):
  // nothing here needs the route kernel, so the whole pack runs beside it and waits at the end.
  const bool beside_route = p.xq_gather != 0;
  auto load_inputs = [&](int64_t u, Raw& raw, float& my_gs, bool& my_local) {
    const int64_t tok = u / chunks;
    const int b = int(u % chunks) * 32 + lane;
    my_gs = 0.0f;
    my_local = false;
    if (lane < k) {
      const int el = local_expert(load_id(p.ids, p.ids64, tok * k + lane), p.local_offset, p.e_local);
      my_local = el >= 0;
      if (my_local) my_gs = p.fc1_scale[input_scale_index(p.fc1_count, el, p.e_local, p.local_offset)];
    }
    if (b < nblk) {
      const uint4* src = reinterpret_cast<const uint4*>(p.x + tok * p.hidden + b * 16);
      raw.v[0] = src[0];
      raw.v[1] = src[1];
    }
  };
  int64_t u = blockIdx.x * int64_t(blockDim.x / 32) + threadIdx.x / 32;
  Raw raw;
  float my_gs = 0.0f;
  bool my_local = false;
  if (u < units) load_inputs(u, raw, my_gs, my_local);
  if (!beside_route) {
    pdl_wait();
    pdl_trigger();
  }
  for (bool first = true; u < units; u += warps, first = false) {
    if (!first) load_inputs(u, raw, my_gs, my_local);
    const int64_t tok = u / chunks;
    const int b = int(u % chunks) * 32 + lane;
    const bool active = b < nblk;
    const int64_t own_row = p.xq_gather == 1 ? tok * k + lane : tok;  // by pair, or by token
    const int my_row = !beside_route ? (lane < k ? p.pair_row[tok * k + lane] : -1)  // -1: not local
                                     : (my_local ? int(own_row) : -1);
    uint2 codes = make_uint2(0u, 0u);
    uint32_t sf = 0;
    uint32_t dec[8] = {};  // sm90_wgmma: the block decoded
    bool have = false;
    float have_gs = 0.0f;
#pragma unroll 1
    for (int j = 0; j < k; ++j) {  // row and scale are warp-uniform: no divergence below
      const int row = __shfl_sync(0xffffffffu, my_row, j);
      const float gs = __shfl_sync(0xffffffffu, my_gs, j);
      if (row < 0) continue;
      if (!have || __float_as_uint(gs) != __float_as_uint(have_gs)) {
        if (active && p.sm90_wgmma) {  // quantize + decode_fp4_block_bf16, bit for bit, without codes
          nvfp4_block_decoded_bf16(raw.h, gs, dec);
        } else if (active) {
          sf = nvfp4_quantize_block(raw.h, gs, codes);
        }
        have = true;
        have_gs = gs;
      }
      if (active && p.sm90_wgmma) {
        store_bf16x16(p.xq + (int64_t(row) * p.hidden + b * 16) * 2, dec);
      } else if (active) {
        *reinterpret_cast<uint2*>(p.xq + int64_t(row) * (p.hidden / 2) + b * 8) = codes;
        p.xq_sf[int64_t(row) * (p.hidden / 16) + b] = uint8_t(sf);
      }
      if (p.xq_gather > 1) break;  // by token (one shared scale): one row per token
    }
  }
  if (beside_route) {  // pdl.cuh: wait before exit, trigger after the wait
    pdl_wait();
    pdl_trigger();
  }
}

cudaError_t launch_pack_fp4(const MoeParams& p, cudaStream_t stream) {
  const int64_t blocks = (p.tokens * ((p.hidden / 16 + 31) / 32) + 7) / 8;
  return launch_kernel(pack_fp4_kernel, dim3(unsigned(blocks < 4096 ? blocks : 4096)), dim3(256), 0, stream,
                       p.pdl, p);
}

}  // namespace moe12x
