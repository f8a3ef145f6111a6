// FC1 epilogue: the prepared W13 pairs up/gate rows inside each m16 tile (rows 0-7 up, 8-15
// gate of the same 8 features), so c0/c1 and c2/c3 of one lane are up and gate of one
// (feature, token): SwiGLU stays in registers, in fp32. A warp's 2 tiles hold 16 consecutive
// features = one NVFP4 block per token: amax and packing are warp shuffles over the g lanes.
#pragma once
#include "common/cuda_utils.cuh"
#include "common/nvfp4.cuh"
#include "common/params.hpp"
#include "mainloop/activation_stage.cuh"  // decode_fp4_block_bf16
#include "scheduler/expert_tiles.cuh"

namespace moe12x {

__device__ __forceinline__ float swiglu(float up, float gate) { return gate / (1.0f + expf(-gate)) * up; }

struct Fc1SwigluQuantEpilogue {
  // Accumulator -> FC1 output: the weights' global scale, the FC1 input scale (NVFP4 activations)
  // and the 2^8 the operands carry (kAccScale).
  __device__ static float acc_scale(const MoeParams& p, int el) {
    const float gs_in = p.act_fp4 ? p.fc1_scale[input_scale_index(p.fc1_count, el, p.e_local, p.local_offset)] : 1.0f;
    return p.w13_gs[el] * gs_in * kAccScale;
  }

  template <int NB>
  __device__ static void apply(const MoeParams& p, const ExpertTile& tile, int warp_row0,
                               const float (&acc)[2][NB][4]) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int el = tile.expert;
    const float alpha = acc_scale(p, el);
    const float gs_out = p.fc2_scale[input_scale_index(p.fc2_count, el, p.e_local, p.local_offset)];
    const int f0 = warp_row0 / 2;  // first of this warp's 16 features
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {  // token column 2t + c
        float a[2];
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
          const float up = acc[mt][nb][c] * alpha;
          const float gate = acc[mt][nb][2 + c] * alpha;
          a[mt] = swiglu(up, gate);
        }
        const int col = nb * 8 + 2 * t + c;
        const bool valid = col < tile.nrows;
        const int64_t row = int64_t(tile.row0) + col;
        if (p.act_fp4) {
          float amax = fmaxf(fabsf(a[0]), fabsf(a[1]));
#pragma unroll
          for (int o = 4; o < 32; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
          const BlockScale s = nvfp4_block_scale(amax, gs_out);
          uint32_t w0 = nvfp4_code(a[0], s) << (4 * g), w1 = nvfp4_code(a[1], s) << (4 * g);
#pragma unroll
          for (int o = 4; o < 32; o <<= 1) {
            w0 |= __shfl_xor_sync(0xffffffffu, w0, o);
            w1 |= __shfl_xor_sync(0xffffffffu, w1, o);
          }
          if (valid && g == 0) {
            *reinterpret_cast<uint2*>(p.act + row * (p.inter / 2) + f0 / 2) = make_uint2(w0, w1);
            p.act_sf[row * (p.inter / 16) + f0 / 16] = uint8_t(s.sf);
          }
        } else if (valid) {
          uint16_t* dst = reinterpret_cast<uint16_t*>(p.act) + row * p.inter + f0 + g;
          dst[0] = float_to_bf16(a[0]);
          dst[8] = float_to_bf16(a[1]);
        }
      }
    }
  }

  // The same outputs, bit for bit, for kernels with a per-warp shared scratch (the SM90 WS kernel,
  // one CTA per SM, where nothing hides the epilogue). apply() costs ~275 instructions per 2
  // values (shuffles, and every lane redoes its block's scale) and unrolls to ~140 KB of SASS at
  // NB = 16, past the instruction cache. Here SwiGLU stays in registers, the fp32 results go to
  // the scratch (token rows of 16 features), and a rolled loop quantizes one block per lane.
  static constexpr int kScratchStride = 20;  // floats per token row: 8 t + g distinct banks on
                                             // write, 16-B reads conflict-free per quarter warp
  static constexpr int kScratchBytes = 64 * kScratchStride * 4;  // 64 tokens per pass
  template <int NB>
  __device__ static void apply_staged(const MoeParams& p, const ExpertTile& tile, int warp_row0,
                                      const float (&acc)[2][NB][4], float* scratch) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int el = tile.expert;
    const float alpha = acc_scale(p, el);
    const float gs_out = p.fc2_scale[input_scale_index(p.fc2_count, el, p.e_local, p.local_offset)];
    const int f0 = warp_row0 / 2;  // first of this warp's 16 features
    constexpr int kPassNB = NB < 8 ? NB : 8;  // passes of 8 n8 tiles; the last may be narrower (NB 18, 20)
#pragma unroll
    for (int pass = 0; pass < (NB + kPassNB - 1) / kPassNB; ++pass) {
      __syncwarp();  // the previous pass's reads are done
      // swiglu() with its divisions batched (div_rn_unchecked): 32 independent chains per pass
      // instead of 32 serialized ones; any value outside the safe range redoes the pass with `/`.
      float a[kPassNB][2][2];
      bool ok = true;
#pragma unroll
      for (int nbl = 0; nbl < kPassNB; ++nbl)
#pragma unroll
        for (int c = 0; c < 2; ++c)
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) {
            const int nb = min(pass * kPassNB + nbl, NB - 1);  // past NB (the last pass): unread
            const float up = acc[mt][nb][c] * alpha, gate = acc[mt][nb][2 + c] * alpha;
            a[nbl][c][mt] = div_rn_unchecked(gate, 1.0f + expf(-gate), ok) * up;
          }
      if (!ok) {
#pragma unroll
        for (int nbl = 0; nbl < kPassNB; ++nbl)
#pragma unroll
          for (int c = 0; c < 2; ++c)
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
              const int nb = min(pass * kPassNB + nbl, NB - 1);
              a[nbl][c][mt] = swiglu(acc[mt][nb][c] * alpha, acc[mt][nb][2 + c] * alpha);
            }
      }
#pragma unroll
      for (int nbl = 0; nbl < kPassNB; ++nbl)
#pragma unroll
        for (int c = 0; c < 2; ++c)
#pragma unroll
          for (int mt = 0; mt < 2; ++mt)
            scratch[(nbl * 8 + 2 * t + c) * kScratchStride + 8 * mt + g] = a[nbl][c][mt];
      __syncwarp();
#pragma unroll 1
      for (int tok = lane; tok < kPassNB * 8; tok += 32) {
        const int col = pass * kPassNB * 8 + tok;
        if (col >= tile.nrows) break;
        float v[16];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const float4 q = reinterpret_cast<const float4*>(scratch + tok * kScratchStride)[j];
          v[4 * j] = q.x, v[4 * j + 1] = q.y, v[4 * j + 2] = q.z, v[4 * j + 3] = q.w;
        }
        const int64_t row = int64_t(tile.row0) + col;
        uint16_t* dst = reinterpret_cast<uint16_t*>(p.act) + row * p.inter + f0;
        uint32_t w[8];  // the 16 values as bf16
        if (p.act_fp4) {
          // only the SM90 wgmma kernel stages through here: its FC2 loads the decoded values by TMA
          uint2 codes;
          const uint32_t sf = nvfp4_quantize_block(v, gs_out, codes);
          decode_fp4_block_bf16(codes, sf, w);
          store_bf16x16(dst, w);
        } else {
#pragma unroll
          for (int j = 0; j < 8; ++j) w[j] = uint32_t(float_to_bf16(v[2 * j])) | (uint32_t(float_to_bf16(v[2 * j + 1])) << 16);
          store_bf16x16(dst, w);
        }
      }
    }
  }
};

}  // namespace moe12x
