// The SM90a wgmma kernel for tiles of up to 64 tokens: three consumer warpgroups, 384-row items
// (gemm_sm90_wgmma.cu says when CMake builds it).
#include "instantiations/gemm_sm90_wgmma.cuh"

namespace moe12x {
template cudaError_t launch_fc1_sm90_wgmma<3>(const MoeParams& p, cudaStream_t stream);
template cudaError_t launch_fc2_sm90_wgmma<3>(const MoeParams& p, cudaStream_t stream);
}  // namespace moe12x
