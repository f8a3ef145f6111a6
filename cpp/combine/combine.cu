#include "combine/combine.cuh"
#include "common/launchers.hpp"
#include "common/pdl.cuh"

namespace moe12x {

__global__ void __launch_bounds__(256) combine_kernel(MoeParams p) {
  pdl_wait();
  pdl_trigger();
  combine_range(p, blockIdx.x * int64_t(blockDim.x) + threadIdx.x, int64_t(gridDim.x) * blockDim.x);
}

cudaError_t launch_combine(const MoeParams& p, cudaStream_t stream) {
  const int64_t total = p.tokens * (p.y_ncols / 8);
  const int64_t blocks = (total + 255) / 256;
  return launch_kernel(combine_kernel, dim3(unsigned(blocks < 8192 ? blocks : 8192)), dim3(256), 0, stream,
                       p.pdl, p);
}

}  // namespace moe12x
