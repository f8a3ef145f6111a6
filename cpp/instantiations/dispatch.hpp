// Instantiation dispatch: the grouped FC1/FC2 kernels pick their token-tile width per tile at run
// time; the static kernel is instantiated per routed-tile width (one TU each).
#pragma once
#include <cuda_runtime_api.h>
#include "common/params.hpp"

namespace moe12x {

// choose_warp_tiles: two-tile warps per SM below which the decode kernels split items in half.
constexpr int kNarrowWarpsPerSm = 6;

// block_n = 8 * NB: the persistent static kernel for that routed-tile width.
template <int NB>
cudaError_t launch_static_nb(const MoeParams& p, cudaStream_t stream);

// The persistent decode kernel (kernel/moe_decode.cuh): the whole layer in one cooperative launch
// for <= kDecodeMaxPairs routed pairs, kWarpTiles m16 tiles per warp (1 or 2).
template <int kWarpTiles>
cudaError_t launch_decode(const MoeParams& p, cudaStream_t stream);

// Grouped FC1 / FC2 with tiles of up to 8 * kMaxNB rows (16, 32: decode kernels; 64: general),
// kWarpTiles m16 tiles per warp (1: only with kMaxNB = 2) and, for kMaxNB = 2 with two tiles per
// warp, FP4 token rows staged a K chunk ahead in 16-row tiles (kActPrefetch: choose_act_prefetch).
template <int kMaxNB, int kWarpTiles = 2, bool kActPrefetch = false>
cudaError_t launch_fc1_nb(const MoeParams& p, cudaStream_t stream);
template <int kMaxNB, int kWarpTiles = 2, bool kActPrefetch = false>
cudaError_t launch_fc2_nb(const MoeParams& p, cudaStream_t stream);

#ifdef MOE12X_HAS_SM90_WGMMA
// Warp-specialized wgmma kernel (kernel/moe_gemm_sm90_ws.cuh) with 2 consumer warpgroups, tiles of
// up to 128 rows, 160 for an expert's last (gemm_sm90_wgmma.cu), or 3, tiles of up to 64 rows
// (gemm_sm90_wgmma_narrow.cu).
template <int kConsumers>
cudaError_t launch_fc1_sm90_wgmma(const MoeParams& p, cudaStream_t stream);
template <int kConsumers>
cudaError_t launch_fc2_sm90_wgmma(const MoeParams& p, cudaStream_t stream);
// FC1 with 2 consumer warpgroups on the work-queue grid, its epilogue handed to the producer warps
// (gemm_sm90_wgmma_handoff.cu); NVFP4 activations only.
cudaError_t launch_fc1_sm90_wgmma_handoff(const MoeParams& p, cudaStream_t stream);
#endif

// Ceiling of routed rows per expert that has any (the width choices below key on it).
inline int64_t mean_rows_per_active_expert(int64_t pairs, int e_local) {
  const int64_t active = pairs < e_local ? pairs : e_local;
  return active > 0 ? (pairs + active - 1) / active : 1;
}

// Grouped tiles: up to 64 rows of one expert, so an expert's weights are streamed once per m-block
// whatever the batch (the mainloop narrows to the tile's rows); while the mean routed rows per
// active expert is <= 8 (<= 16), 16-row (32-row) tiles and a decode kernel with 4 CTAs per SM
// instead of 3: an expert with twice the mean rows takes a second tile, rare at such means.
inline int choose_grouped_block_n(int64_t pairs, int e_local) {
  const int64_t mean = mean_rows_per_active_expert(pairs, e_local);
  return mean <= 8 ? 16 : mean <= 16 ? 32 : 64;
}

// The decode kernels' m16 tiles per warp for a GEMM of `rows` prepared rows per expert: with two,
// a call whose warps cannot cover the SMs runs ~1 warp per scheduler, each bound by its own
// instruction latency (ncu at T = 1: issue slots 15-29 % busy, stalls 'wait' and 'selected');
// one tile per warp doubles the warps. Threshold: bench/NOTES.md (v28).
inline int choose_warp_tiles(int64_t pairs, int e_local, int rows, int sm_count) {
  const int64_t active = pairs < e_local ? pairs : e_local;  // experts with rows, at most
  return active * (rows / 32) < int64_t(kNarrowWarpsPerSm) * sm_count ? 1 : 2;
}

// The 16-row decode kernel that stages FP4 token rows a chunk ahead: from a mean of 5 routed rows
// per active expert, where 9..16-row tiles are common (measured on an H200, bench/NOTES.md v36:
// +4-8 % at a mean of 8, none at 4, and 1-4 % slower at 1, where every tile has <= 8 rows).
inline bool choose_act_prefetch(int64_t pairs, int e_local) {
  return mean_rows_per_active_expert(pairs, e_local) > 4;
}

// SM90: the warp-specialized wgmma kernels (tiles of <= 128 rows, 160 for an expert's last,
// 256-row items; <= 64 rows, 384-row items) where they measured faster than the mma.sync kernels
// on an H200 (bench/NOTES.md v12, v18, v19): FP4 activations (with act "none" FC1 gathers bf16
// rows of x through a synchronous copy) and >= 16 routed rows per expert (v19 at 16: 1.05x the
// mma.sync kernel; at 24: 1.25-1.3x).
inline bool choose_sm90_wgmma(int64_t pairs, int e_local, bool act_fp4) {
  return act_fp4 && mean_rows_per_active_expert(pairs, e_local) >= 16;
}
// Its tile width: 128 from a mean of 64 routed rows per expert, else 64 and the three-warpgroup
// kernel (an expert with more rows takes a second tile; bench/NOTES.md v19: +5-12 % at 32-48).
inline int sm90_wgmma_block_n(int64_t pairs, int e_local) {
  return mean_rows_per_active_expert(pairs, e_local) >= 64 ? 128 : 64;
}

// Rows per item of the FC2 kernel launch_fc2 (gemm_dispatch.cu) takes for p: its output-column
// chunks start at multiples (plan_fc2_chunks). The launchers check it (launch_moe_gemm_grouped,
// launch_moe_gemm_sm90_ws).
inline int fc2_item_rows(const MoeParams& p) {
  if (p.sm90_wgmma) return p.block_n <= 64 ? 384 : 256;  // 3 or 2 consumer warpgroups, 128 rows each
  return p.block_n <= 16 && p.fc2_warp_tiles == 1 ? 64 : 128;  // 4 warps x 1 or 2 m16 tiles
}

// Static schedule: the smallest width that covers the mean routed rows per active expert, capped
// at 64 (its decode mainloop is per warp and narrow).
inline int choose_block_n(int64_t pairs, int e_local) {
  const int64_t mean = mean_rows_per_active_expert(pairs, e_local);
  return mean <= 8 ? 8 : mean <= 16 ? 16 : mean <= 32 ? 32 : 64;
}
}  // namespace moe12x
