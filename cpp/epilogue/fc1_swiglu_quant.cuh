// FC1 epilogue: the prepared W13 pairs up/gate rows inside each m16 tile (rows 0-7 up, 8-15
// gate of the same 8 features), so c0/c1 and c2/c3 of one lane are up and gate of one
// (feature, token): SwiGLU stays in registers, in fp32. A warp's 2 tiles hold 16 consecutive
// features = one NVFP4 block per token: amax and packing are warp shuffles over the g lanes.
#pragma once
#include "common/cuda_utils.cuh"
#include "common/nvfp4.cuh"
#include "common/params.hpp"
#include "scheduler/expert_tiles.cuh"

namespace moe12x {

struct Fc1SwigluQuantEpilogue {
  template <int NB>
  __device__ static void apply(const MoeParams& p, const ExpertTile& tile, int warp_row0,
                               const float (&acc)[2][NB][4]) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int el = tile.expert;
    const float gs_in = p.act_fp4 ? p.fc1_scale[input_scale_index(p.fc1_count, el, p.e_local, p.local_offset)] : 1.0f;
    const float alpha = p.w13_gs[el] * gs_in * kAccScale;
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
          a[mt] = gate / (1.0f + expf(-gate)) * up;
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
};

}  // namespace moe12x
