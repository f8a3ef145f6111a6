// One grouped-GEMM work item: Mainloop::kItemRows prepared weight rows (an m-block) of one expert
// for one routed token tile, run by a CTA of 4 warps or, for warp-item mainloops, by one warp.
// Mainloop (arch policy) and Epilogue (FC1 SwiGLU+quant or FC2 weighted store) are template
// parameters; schedulers (scheduler/) decide which items run where, so the same body serves the
// grouped launch and the persistent static kernel.
#pragma once
#include "common/params.hpp"
#include "mainloop/activation_stage.cuh"
#include "scheduler/expert_tiles.cuh"

namespace moe12x {

enum class Gemm { kFc1, kFc2 };

template <Gemm kWhich, class Mainloop, class Epilogue>
struct MoeGemm {
  static constexpr bool kFc1 = kWhich == Gemm::kFc1;
  static constexpr int kNB = Mainloop::kBN / 8;
  using SharedStorage = typename Mainloop::SharedStorage;

  __host__ __device__ static int rows(const MoeParams& p) { return kFc1 ? 2 * p.inter : p.hidden; }
  __host__ __device__ static int mblocks(const MoeParams& p) {
    return (rows(p) + Mainloop::kItemRows - 1) / Mainloop::kItemRows;
  }

  __device__ static void run_item(const MoeParams& p, SharedStorage& smem, const ExpertTile& tile,
                                  int mblock) {
    const int warp = threadIdx.x / 32;
    const int warp_row0 = Mainloop::warp_row0(mblock, warp);
    const int K = kFc1 ? p.hidden : p.inter;
    const int mtiles = max(0, min(2, (rows(p) - warp_row0) / kWarpRows));
    const size_t codes_per_expert = size_t(rows(p)) * K / 2, scales_per_expert = size_t(rows(p)) * K / 16;
    const uint8_t* codes = (kFc1 ? p.w13_codes : p.w2_codes) + tile.expert * codes_per_expert;
    const uint8_t* scales = (kFc1 ? p.w13_scales : p.w2_scales) + tile.expert * scales_per_expert;

    ActivationRows act;
    act.K = K;
    act.fp4 = p.act_fp4;
    act.codes = kFc1 ? p.xq : p.act;
    act.scales = kFc1 ? p.xq_sf : p.act_sf;
    act.bf16 = kFc1 ? p.x : reinterpret_cast<const uint16_t*>(p.act);
    act.gather = (kFc1 && !p.act_fp4) ? p.row_pair : nullptr;
    act.gather_div = p.top_k;

    typename Mainloop::Accum acc;
    Mainloop::run(codes, scales, K, warp_row0, mtiles, act, tile.row0, tile.nrows, smem, acc);
    if (mtiles > 0 && Mainloop::epilogue_warp(warp)) Epilogue::template apply<kNB>(p, tile, warp_row0, acc);
  }
};

// Grouped launch: blockIdx.x = m-block, blockIdx.y strides the routed tile list.
template <class Gemm_>
__global__ void __launch_bounds__(kCtaThreads) moe_gemm_grouped_kernel(const MoeParams p) {
  __shared__ typename Gemm_::SharedStorage smem;
  for (GridTileScheduler s(p); s.valid(); s.advance()) Gemm_::run_item(p, smem, s.tile(), blockIdx.x);
}

template <class Gemm_>
cudaError_t launch_moe_gemm_grouped(const MoeParams& p, cudaStream_t stream) {
  const int64_t ytiles = p.max_tiles < 65535 ? p.max_tiles : 65535;
  const dim3 grid(Gemm_::mblocks(p), unsigned(ytiles > 0 ? ytiles : 1));
  moe_gemm_grouped_kernel<Gemm_><<<grid, kCtaThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace moe12x
