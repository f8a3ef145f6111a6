// Host-side launchers of every kernel. Each returns the cudaError_t of its launch.
#pragma once
#include <cuda_runtime_api.h>
#include "common/params.hpp"

namespace moe12x {

// routing/: histogram, offsets and tile list (one CTA), then FP4 packing of routed rows.
cudaError_t launch_route(const MoeParams& p, cudaStream_t stream);
cudaError_t launch_pack_fp4(const MoeParams& p, cudaStream_t stream);
// instantiations/: FC1 + SwiGLU + quantize, and FC2 + routing weight, for a token tile width.
cudaError_t launch_fc1(const MoeParams& p, cudaStream_t stream);
cudaError_t launch_fc2(const MoeParams& p, cudaStream_t stream);
// kernel/moe_static.cuh: the whole layer in one persistent cooperative launch.
cudaError_t launch_static(const MoeParams& p, cudaStream_t stream);
// combine/: deterministic slot-order sum into bf16 out.
cudaError_t launch_combine(const MoeParams& p, cudaStream_t stream);
// prep/: canonical NVFP4 -> fragment-major prepared layout.
struct PrepareArgs {
  const uint8_t* codes;      // [E, rows, k/2]
  const uint8_t* scales;     // [E, rows, k/16] or swizzled per expert
  const float* gscale;       // [E]
  bool swizzled;
  bool fc1_interleave;       // W13: pair up/gate rows per m16 tile
  bool gate_first;           // W13 canonical order [gate; up]
  int e_local, rows, k;
  uint8_t* out_codes; uint8_t* out_scales; float* out_gscale;
};
cudaError_t launch_prepare(const PrepareArgs& a, cudaStream_t stream);
// quant/: the public bf16 -> NVFP4 quantizer.
cudaError_t launch_quantize(const uint16_t* x, int64_t rows, int64_t cols, int64_t ld,
                            const float* gs, uint8_t* q, uint8_t* sf, bool swizzled,
                            cudaStream_t stream);

}  // namespace moe12x
