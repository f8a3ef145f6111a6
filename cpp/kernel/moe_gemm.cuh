// The grouped expert GEMM kernel: a CTA of 4 warps computes 128 prepared weight rows x one
// routed token tile, for each tile the scheduler hands it. Mainloop (arch policy), Epilogue
// (FC1 SwiGLU+quant or FC2 weighted store) and the scheduler are template parameters.
#pragma once
#include "common/params.hpp"
#include "mainloop/activation_stage.cuh"
#include "scheduler/expert_tiles.cuh"

namespace moe12x {

enum class Gemm { kFc1, kFc2 };

template <Gemm kWhich, class Mainloop, class Epilogue, class Scheduler>
struct MoeGemmKernel {
  static constexpr int kNB = Mainloop::kBN / 8;

  __device__ static void run(const MoeParams& p, typename Mainloop::SharedStorage& smem) {
    const int warp = threadIdx.x / 32;
    const int warp_row0 = blockIdx.x * kCtaRows + warp * 2 * kWarpRows;
    const bool fc1 = kWhich == Gemm::kFc1;
    const int rows = fc1 ? 2 * p.inter : p.hidden;
    const int K = fc1 ? p.hidden : p.inter;
    const int mtiles = max(0, min(2, (rows - warp_row0) / kWarpRows));
    const uint8_t* codes = fc1 ? p.w13_codes : p.w2_codes;
    const uint8_t* scales = fc1 ? p.w13_scales : p.w2_scales;
    const size_t codes_per_expert = size_t(rows) * K / 2, scales_per_expert = size_t(rows) * K / 16;

    ActivationRows act;
    act.K = K;
    act.fp4 = p.act_fp4;
    act.codes = fc1 ? p.xq : p.act;
    act.scales = fc1 ? p.xq_sf : p.act_sf;
    act.bf16 = fc1 ? p.x : reinterpret_cast<const uint16_t*>(p.act);
    act.gather = (fc1 && !p.act_fp4) ? p.row_pair : nullptr;
    act.gather_div = p.top_k;

    for (Scheduler sched(p); sched.valid(); sched.advance()) {
      const ExpertTile tile = sched.tile();
      typename Mainloop::Accum acc;
      Mainloop::run(codes + tile.expert * codes_per_expert, scales + tile.expert * scales_per_expert,
                    K, warp_row0, mtiles, act, tile.row0, tile.nrows, smem, acc);
      if (mtiles > 0) Epilogue::template apply<kNB>(p, tile, warp_row0, acc);
    }
  }
};

template <class Kernel, class Mainloop>
__global__ void __launch_bounds__(kCtaThreads) moe_gemm_entry(const MoeParams p) {
  __shared__ typename Mainloop::SharedStorage smem;
  Kernel::run(p, smem);
}

template <Gemm kWhich, class Mainloop, class Epilogue, class Scheduler>
cudaError_t launch_moe_gemm(const MoeParams& p, cudaStream_t stream) {
  using Kernel = MoeGemmKernel<kWhich, Mainloop, Epilogue, Scheduler>;
  const int rows = kWhich == Gemm::kFc1 ? 2 * p.inter : p.hidden;
  const int64_t ytiles = p.max_tiles < 65535 ? p.max_tiles : 65535;
  const dim3 grid((rows + kCtaRows - 1) / kCtaRows, unsigned(ytiles > 0 ? ytiles : 1));
  moe_gemm_entry<Kernel, Mainloop><<<grid, kCtaThreads, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace moe12x
