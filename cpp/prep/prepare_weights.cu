// Canonical NVFP4 (row-major codes, row-major or 128x4-swizzled e4m3 scales) -> the prepared
// fragment-major layout of mainloop/sm80_mma_fp4.cuh:
//   codes:  [expert][m16 tile][k64 block][lane][16 B]: word j = k16 step j, bit order of
//           pack_prepared_word (common/nvfp4.cuh) over the A registers a0 (row g k 2t/2t+1),
//           a1 (row g+8), a2 (row g k+8), a3 (row g+8 k+8)
//   scales: [expert][m16 tile][k64 block][g][row g: 4 codes][row g+8: 4 codes]
// W13 tiles pair features: tile m holds up rows 8m..8m+7 then gate rows 8m..8m+7.
// Blocks whose e4m3 scale is 0 get zero codes and scale code 1, so the hot loop has no zero case.
#include "common/launchers.hpp"
#include "common/nvfp4.cuh"

namespace moe12x {

// e4m3 byte (sign ignored: scales are unsigned, as the SM100/SM120 ue4m3 scale type) -> code.
__device__ __forceinline__ uint32_t prepared_scale_code(uint32_t b) {
  b &= 0x7F;
  if (b == 0x7F) b = 0x7E;  // NaN scale: unsupported input, clamp to 448
  const uint32_t e = b >> 3, m = b & 7;
  if (e > 0) return ((e + 3) << 3) | m;  // sf = 2^(e-7) (1+m/8) = 2^(E-10) (1+m/8)
  // subnormal m * 2^-9: normalize
  if (m == 1) return (1u << 3);
  if (m < 4) return (2u << 3) | ((m - 2) << 2);
  return (3u << 3) | ((m - 4) << 1);
}

__device__ __forceinline__ int64_t scale_offset(int64_t row, int64_t c, int64_t rows, int64_t kb16,
                                                bool swizzled) {
  if (!swizzled) return row * kb16 + c;
  const int64_t c4 = (kb16 + 3) / 4 * 4;
  return ((row / 128) * (c4 / 4) + c / 4) * 512 + (row % 32) * 16 + ((row % 128) / 32) * 4 + (c % 4);
}

__global__ void prepare_kernel(PrepareArgs a) {
  const int kblocks = a.k / 64, tiles = a.rows / 16, kb16 = a.k / 16;
  const int64_t total = int64_t(a.e_local) * tiles * kblocks * 32;
  const int64_t scale_bytes_expert = a.swizzled ? int64_t((a.rows + 127) / 128 * 128) * ((kb16 + 3) / 4 * 4)
                                                : int64_t(a.rows) * kb16;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int lane = int(i % 32), g = lane >> 2, t = lane & 3;
    const int kb = int((i / 32) % kblocks);
    const int tile = int((i / 32 / kblocks) % tiles);
    const int e = int(i / 32 / kblocks / tiles);
    // canonical rows of this lane's two fragment rows (g, g+8)
    int row[2];
    for (int h = 0; h < 2; ++h) {
      const int r = tile * 16 + g + 8 * h;
      if (!a.fc1_interleave) { row[h] = r; continue; }
      const int feature = tile * 8 + g, inter = a.rows / 2;
      const bool up = h == 0;
      row[h] = (up != a.gate_first) ? feature : feature + inter;
    }
    const uint8_t* codes = a.codes + int64_t(e) * a.rows * (a.k / 2);
    const uint8_t* scales = a.scales + int64_t(e) * scale_bytes_expert;
    uint32_t words[4];
    uint32_t sc[2] = {0u, 0u};
    for (int j = 0; j < 4; ++j) {
      const int k0 = kb * 64 + j * 16;
      uint32_t byte[4];  // a0: row g k 2t, a1: row g+8 k 2t, a2: row g k 2t+8, a3: row g+8 k 2t+8
      for (int h = 0; h < 2; ++h) {
        const uint32_t sf = scales[scale_offset(row[h], k0 / 16, a.rows, kb16, a.swizzled)];
        const bool zero = (sf & 0x7F) == 0;
        const uint8_t* cr = codes + int64_t(row[h]) * (a.k / 2);
        byte[h] = zero ? 0u : cr[(k0 + 2 * t) / 2];
        byte[2 + h] = zero ? 0u : cr[(k0 + 2 * t + 8) / 2];
        sc[h] |= (zero ? 1u : prepared_scale_code(sf)) << (8 * j);
      }
      uint32_t r[4];
      for (int b = 0; b < 4; ++b) r[b] = e2m1_pair_bits(byte[b]);
      words[j] = pack_prepared_word(r);
    }
    const int64_t block = (int64_t(e) * tiles + tile) * kblocks + kb;
    reinterpret_cast<uint4*>(a.out_codes + block * kFragBytes)[lane] =
        make_uint4(words[0], words[1], words[2], words[3]);
    if (t == 0)
      reinterpret_cast<uint2*>(a.out_scales + block * kScaleBytes)[g] = make_uint2(sc[0], sc[1]);
  }
  const int64_t tid = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (tid < a.e_local) a.out_gscale[tid] = a.gscale[tid];
}

cudaError_t launch_prepare(const PrepareArgs& a, cudaStream_t stream) {
  const int64_t total = int64_t(a.e_local) * (a.rows / 16) * (a.k / 64) * 32;
  int64_t blocks = (total + 255) / 256;
  blocks = blocks < 65535 ? blocks : 65535;
  if (blocks * 256 < a.e_local) blocks = (a.e_local + 255) / 256;
  prepare_kernel<<<int(blocks), 256, 0, stream>>>(a);
  return cudaGetLastError();
}

}  // namespace moe12x
