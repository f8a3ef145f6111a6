// Public bf16 -> NVFP4 quantizer (SPEC §2), bit-exact with pymoe.reference.quantize_nvfp4.
// One thread per 16-element block; in the swizzled layout the padding bytes are written as 0.
#include "common/cuda_utils.cuh"
#include "common/launchers.hpp"
#include "common/nvfp4.cuh"

namespace moe12x {

__device__ __forceinline__ int64_t swizzled_offset(int64_t m, int64_t c, int64_t c4) {
  return ((m / 128) * (c4 / 4) + c / 4) * 512 + (m % 32) * 16 + ((m % 128) / 32) * 4 + (c % 4);
}

__global__ void quantize_kernel(const uint16_t* x, int64_t rows, int64_t cols, int64_t ld,
                                const float* gs_ptr, uint8_t* q, uint8_t* sf, bool swizzled) {
  const int64_t nb = cols / 16;
  const int64_t c4 = (nb + 3) / 4 * 4;
  const int64_t prow = swizzled ? (rows + 127) / 128 * 128 : rows;
  const int64_t pcols = swizzled ? c4 : nb;
  const float gs = *gs_ptr;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < prow * pcols;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / pcols, c = i % pcols;
    if (r >= rows || c >= nb) {  // swizzle padding
      sf[swizzled_offset(r, c, c4)] = 0;
      continue;
    }
    const uint16_t* src = x + r * ld + c * 16;  // any row stride: element loads
    uint16_t h[16];
#pragma unroll
    for (int k = 0; k < 16; ++k) h[k] = src[k];
    uint2 codes;
    const uint32_t s = nvfp4_quantize_block(h, gs, codes);
    *reinterpret_cast<uint2*>(q + r * (cols / 2) + c * 8) = codes;
    sf[swizzled ? swizzled_offset(r, c, c4) : r * nb + c] = uint8_t(s);
  }
}

cudaError_t launch_quantize(const uint16_t* x, int64_t rows, int64_t cols, int64_t ld,
                            const float* gs, uint8_t* q, uint8_t* sf, bool swizzled,
                            cudaStream_t stream) {
  const int64_t nb = cols / 16;
  const int64_t total = (swizzled ? (rows + 127) / 128 * 128 * ((nb + 3) / 4 * 4) : rows * nb);
  const int64_t blocks = (total + 255) / 256;
  quantize_kernel<<<int(blocks < 16384 ? blocks : 16384), 256, 0, stream>>>(x, rows, cols, ld, gs,
                                                                           q, sf, swizzled);
  return cudaGetLastError();
}

}  // namespace moe12x
