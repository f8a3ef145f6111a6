// out[t] = bf16( sum_j y[t, j] ) over local slots in increasing j, fp32: deterministic, and a
// token's result depends on nothing but its own slots (batch invariant).
#include "common/cuda_utils.cuh"
#include "common/launchers.hpp"

namespace moe12x {

__global__ void __launch_bounds__(256) combine_kernel(MoeParams p) {
  const int vecs = p.hidden / 8;
  const int64_t total = p.tokens * vecs;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / vecs;
    const int h = int(i % vecs) * 8;
    float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int j = 0; j < p.top_k; ++j) {
      const int64_t pair = t * p.top_k + j;
      if (local_expert(load_id(p.ids, p.ids64, pair), p.local_offset, p.e_local) < 0) continue;
      const float4* y = reinterpret_cast<const float4*>(p.y + pair * p.hidden + h);
      const float4 a = y[0], b = y[1];
      acc[0] += a.x; acc[1] += a.y; acc[2] += a.z; acc[3] += a.w;
      acc[4] += b.x; acc[5] += b.y; acc[6] += b.z; acc[7] += b.w;
    }
    uint4 o;
    o.x = pack_bf16x2(acc[0], acc[1]);
    o.y = pack_bf16x2(acc[2], acc[3]);
    o.z = pack_bf16x2(acc[4], acc[5]);
    o.w = pack_bf16x2(acc[6], acc[7]);
    *reinterpret_cast<uint4*>(p.out + t * p.hidden + h) = o;
  }
}

cudaError_t launch_combine(const MoeParams& p, cudaStream_t stream) {
  const int64_t total = p.tokens * (p.hidden / 8);
  const int64_t blocks = (total + 255) / 256;
  combine_kernel<<<int(blocks < 8192 ? blocks : 8192), 256, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace moe12x
