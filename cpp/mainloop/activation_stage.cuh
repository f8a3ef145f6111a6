// Stages the B operand (token rows x K chunk) in shared memory as bf16. FP4 rows are decoded to
// q * sf * 2^-8, exact in bf16 and the same values the streaming mainloop builds in registers (so
// both mainloops agree bitwise); the mainloop undoes 2^-8 and the epilogue applies the global
// scale. Rows past the tile are 0.
#pragma once
#include "common/cuda_utils.cuh"
#include "common/nvfp4.cuh"

namespace moe12x {

struct ActivationRows {
  const uint8_t* codes;     // fp4: row-major [rows, K/2]
  const uint8_t* scales;    // fp4: row-major [rows, K/16]
  const uint16_t* bf16;     // bf16 source
  const int* gather;        // bf16: row -> source row is gather[row] / gather_div; null = identity
  int gather_div;
  int K;
  bool fp4;
};

template <int BN, int kStride, int kThreads>
__device__ __forceinline__ void stage_activations(const ActivationRows& a, int row0, int nrows,
                                                  int k0, int kc, uint16_t* smem) {
  if (a.fp4) {
    const int bpr = kc / 16;
    for (int i = threadIdx.x; i < BN * bpr; i += kThreads) {
      const int r = i / bpr, b = i % bpr;
      uint4 lo = make_uint4(0, 0, 0, 0), hi = lo;
      if (r < nrows) {
        const int64_t row = row0 + r;
        const uint2 q = *reinterpret_cast<const uint2*>(a.codes + row * (a.K / 2) + (k0 + b * 16) / 2);
        const float sf = e4m3_decode(a.scales[row * (a.K / 16) + (k0 / 16) + b]) * (1.0f / kAccScale);
        uint32_t w[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const uint32_t byte = ((j < 4 ? q.x : q.y) >> (8 * (j % 4))) & 0xFF;
          w[j] = pack_bf16x2(e2m1_decode(byte & 0xF) * sf, e2m1_decode(byte >> 4) * sf);
        }
        lo = make_uint4(w[0], w[1], w[2], w[3]);
        hi = make_uint4(w[4], w[5], w[6], w[7]);
      }
      uint4* dst = reinterpret_cast<uint4*>(smem + r * kStride + b * 16);
      dst[0] = lo;
      dst[1] = hi;
    }
  } else {
    const int vpr = kc / 8;
    for (int i = threadIdx.x; i < BN * vpr; i += kThreads) {
      const int r = i / vpr, v = i % vpr;
      uint4 val = make_uint4(0, 0, 0, 0);
      if (r < nrows) {
        const int64_t row = a.gather ? int64_t(a.gather[row0 + r] / a.gather_div) : int64_t(row0 + r);
        val = *reinterpret_cast<const uint4*>(a.bf16 + row * a.K + k0 + v * 8);
      }
      *reinterpret_cast<uint4*>(smem + r * kStride + v * 8) = val;
    }
  }
}

}  // namespace moe12x
