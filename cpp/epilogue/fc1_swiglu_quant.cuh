// FC1 epilogue: the prepared W13 pairs up/gate rows inside each m16 tile (rows 0-7 up, 8-15
// gate of the same 8 features), so c0/c1 and c2/c3 of one lane are up and gate of one
// (feature, token): SwiGLU stays in registers, in fp32. A warp's 2 tiles hold 16 consecutive
// features = one NVFP4 block per token: amax and packing are warp shuffles over the g lanes.
#pragma once
#include "common/cuda_utils.cuh"
#include "common/nvfp4.cuh"
#include "common/params.hpp"
#include "mainloop/activation_stage.cuh"  // nvfp4_block_decoded_bf16
#include "scheduler/expert_tiles.cuh"

namespace moe12x {

// SwiGLU in fp32: gate * sigmoid(gate) * up from ex2.approx and rcp.approx, 6 instructions. The
// accurate expf and a correctly rounded division were ~25 per value, most of the consumers' FC1
// epilogue on SM90 (bench/NOTES.md v34). Within a few ulp of the float64 reference (quantized
// to e2m1 next, where only values within those ulps of a rounding boundary can move). Every path
// (static, mma.sync, wgmma staged and hand-off) inlines this one function; the __f*_rn forms
// forbid contraction, so each gets the same instructions and the schedules agree bitwise.
// Range: exp2 of a large argument gives +inf, 1 + inf = inf, rcp = 0: silu -> -0 as it should.
__device__ __forceinline__ float swiglu(float up, float gate) {
  float e, r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(__fmul_rn(gate, -1.4426950408889634f)));
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(__fadd_rn(1.0f, e)));
  return __fmul_rn(__fmul_rn(gate, r), up);
}

struct Fc1SwigluQuantEpilogue {
  // Accumulator -> FC1 output: the weights' global scale, the FC1 input scale (NVFP4 activations)
  // and the 2^8 the operands carry (kAccScale).
  __device__ static float acc_scale(const MoeParams& p, int el) {
    const float gs_in = p.act_fp4 ? p.fc1_scale[input_scale_index(p.fc1_count, el, p.e_local, p.local_offset)] : 1.0f;
    return p.w13_gs[el] * gs_in * kAccScale;
  }

  // Rows are routed rows (tile.row0 + column): the pair table is not needed (FC2's signature).
  template <int NB, int kMT = 2>  // kMT: the warp's m16 tiles (Sm80MmaFp4MainloopT::kWarpTiles)
  __device__ static void apply(const MoeParams& p, const ExpertTile& tile, int warp_row0,
                               const float (&acc)[2][NB][4], const int* /*row_pair*/ = nullptr) {
    if constexpr (kMT == 1) {
      apply_half_block<NB>(p, tile, warp_row0, acc);
      return;
    }
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

  // One m16 tile per warp: a warp holds 8 features, warps 2i and 2i + 1 the two halves of a
  // block (inter % 64 == 0, so both halves of every block are in the matrix). Each warp reduces
  // its half's amax per token, the pair swaps them in shared memory behind a 64-thread named
  // barrier, and both take the block scale from the larger: fmaxf is exact and ignores NaN in any
  // order, so scale, codes and bytes are apply()'s.
  template <int NB>
  __device__ static void apply_half_block(const MoeParams& p, const ExpertTile& tile, int warp_row0,
                                          const float (&acc)[2][NB][4]) {
    static_assert(NB <= 8, "the amax exchange holds 64 token columns per warp");
    __shared__ float s_amax[kCtaThreads / 32][64];
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3, warp = threadIdx.x >> 5;
    const int el = tile.expert;
    const float alpha = acc_scale(p, el);
    const int f0 = warp_row0 / 2;  // first of this warp's 8 features
    float a[NB][2];
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int c = 0; c < 2; ++c) a[nb][c] = swiglu(acc[0][nb][c] * alpha, acc[0][nb][2 + c] * alpha);
    if (!p.act_fp4) {
#pragma unroll
      for (int nb = 0; nb < NB; ++nb)
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          const int col = nb * 8 + 2 * t + c;
          if (col < tile.nrows)
            reinterpret_cast<uint16_t*>(p.act)[(int64_t(tile.row0) + col) * p.inter + f0 + g] = float_to_bf16(a[nb][c]);
        }
      return;
    }
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        float amax = fabsf(a[nb][c]);
#pragma unroll
        for (int o = 4; o < 32; o <<= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
        if (g == 0) s_amax[warp][nb * 8 + 2 * t + c] = amax;
      }
    static_assert(kCtaThreads == 128, "two warp pairs: named barriers 1 and 2");
    if (warp < 2) asm volatile("bar.sync 1, 64;" ::: "memory");  // immediate ids: ptxas reserves
    else asm volatile("bar.sync 2, 64;" ::: "memory");            // 3 barriers, not all 16
    const float gs_out = p.fc2_scale[input_scale_index(p.fc2_count, el, p.e_local, p.local_offset)];
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int col = nb * 8 + 2 * t + c;
        const BlockScale s = nvfp4_block_scale(fmaxf(s_amax[warp][col], s_amax[warp ^ 1][col]), gs_out);
        uint32_t w = nvfp4_code(a[nb][c], s) << (4 * g);
#pragma unroll
        for (int o = 4; o < 32; o <<= 1) w |= __shfl_xor_sync(0xffffffffu, w, o);
        if (col < tile.nrows && g == 0) {
          const int64_t row = int64_t(tile.row0) + col;
          *reinterpret_cast<uint32_t*>(p.act + row * (p.inter / 2) + f0 / 2) = w;
          if ((warp & 1) == 0) p.act_sf[row * (p.inter / 16) + f0 / 16] = uint8_t(s.sf);
        }
      }
  }

  // The same outputs, bit for bit, for kernels with a per-warp shared scratch (the SM90 WS kernel,
  // one CTA per SM, where nothing hides the epilogue). apply() costs ~275 instructions per 2
  // values (shuffles, and every lane redoes its block's scale). Here each pass of <= 64 tokens
  // copies the raw accumulators to the scratch as token rows (16 up, 16 gate), and a rolled loop
  // gives each lane one token: SwiGLU, the NVFP4 block, its bf16 decode, one 32-B store. Only
  // the register copy is unrolled per tile width: with SwiGLU unrolled too, FC1's kernel was
  // 50 k instructions (812 KB of SASS, 11 widths) and its warps stalled on instruction fetch
  // 23.5 % of the time (ncu, qwen3-30b T = 2048, bench/NOTES.md v24).
  static constexpr int kScratchStride = 36;  // floats per token row: 8 t + g distinct banks on
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
    // Rolled over passes, so staged_rows exists once per width; copy_pass picks the registers.
#pragma unroll 1
    for (int pass = 0; pass < (NB + kPassNB - 1) / kPassNB; ++pass) {
      __syncwarp();  // the previous pass's reads are done
      copy_pass<NB, kPassNB>(acc, pass, scratch + (2 * t) * kScratchStride + g);
      __syncwarp();
      const int col0 = pass * kPassNB * 8;
      staged_rows(p, scratch, min(kPassNB * 8, tile.nrows - col0), int64_t(tile.row0) + col0, f0, alpha, gs_out);
    }
  }

  // Pass `pass`'s accumulators -> token rows (16 up, 16 gate); dst = this lane's first slot.
  template <int NB, int kPassNB, int P = 0>
  __device__ __forceinline__ static void copy_pass(const float (&acc)[2][NB][4], int pass, float* dst) {
    if (pass == P) {
#pragma unroll
      for (int nbl = 0; nbl < kPassNB; ++nbl)
#pragma unroll
        for (int c = 0; c < 2; ++c)
#pragma unroll
          for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int half = 0; half < 2; ++half)  // up (rows g), gate (rows g + 8)
              dst[(nbl * 8 + c) * kScratchStride + 16 * half + 8 * mt] =
                  acc[mt][min(P * kPassNB + nbl, NB - 1)][2 * half + c];  // past NB: unread
      return;
    }
    if constexpr ((P + 1) * kPassNB < NB) copy_pass<NB, kPassNB, P + 1>(acc, pass, dst);
  }

  // ---- hand-off (the SM90 WS work-queue kernel, FC1 with NVFP4 activations) ----
  // The consumers compute SwiGLU from their accumulators and store it, fp32, as token rows of a
  // shared buffer ([token][feature of the item], kHandoffStride apart); three producer warps then
  // quantize, decode and store each (token, 16 features) block while the consumers run the next
  // item's mainloop. Same expressions as staged_rows, so the same bits.
  static constexpr int kHandoffTokens = 160;  // the widest tile (Sm90WgmmaFp4Block::kMaxNB * 8)
  static constexpr int kHandoffStride = 132;  // floats: 2 t rows x 132 = 8 t banks apart (g + 8 t
                                              // distinct on store), rows 16 B apart mod 128 on load
  // Rolled over passes of 4 n8 tiles (16 values per lane): unrolled per width, SwiGLU was ~2000
  // straight-line instructions run once per item, and the consumers spent ~7 us per item in it
  // (trace, deepseek-v3 T = 4096), as the v24 epilogue did on instruction fetch.
  static constexpr int kHandoffPassNB = 4;
  template <int NB>
  __device__ static void swiglu_to_handoff(const MoeParams& p, const ExpertTile& tile, int cwarp,
                                           const float (&acc)[2][NB][4], float* handoff) {
    static_assert(8 * kHandoffPassNB * ((NB + kHandoffPassNB - 1) / kHandoffPassNB) <= kHandoffTokens,
                  "passes stay inside the hand-off buffer");
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const float alpha = acc_scale(p, tile.expert);
    float* dst = handoff + (2 * t) * kHandoffStride + 16 * cwarp + g;
#pragma unroll 1
    for (int pass = 0; pass < (NB + kHandoffPassNB - 1) / kHandoffPassNB; ++pass) {
      float r[kHandoffPassNB][2][4];  // [n8 tile of the pass][m16 tile][accumulator]
      pick_pass<NB>(acc, pass, r);
      float* d = dst + pass * (8 * kHandoffPassNB) * kHandoffStride;
      float v[kHandoffPassNB][2][2];
#pragma unroll
      for (int nb = 0; nb < kHandoffPassNB; ++nb)
#pragma unroll
        for (int c = 0; c < 2; ++c)
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) v[nb][c][mt] = swiglu(r[nb][mt][c] * alpha, r[nb][mt][2 + c] * alpha);
      // columns past the tile (the last pass of a width that is not a multiple of 4) land in rows
      // below kHandoffTokens that the producer warps never read
#pragma unroll
      for (int nb = 0; nb < kHandoffPassNB; ++nb)
#pragma unroll
        for (int c = 0; c < 2; ++c)
#pragma unroll
          for (int mt = 0; mt < 2; ++mt) d[(nb * 8 + c) * kHandoffStride + 8 * mt] = v[nb][c][mt];
    }
  }

  // The accumulators of pass `pass` (n8 tiles 4 pass .. 4 pass + 3; past NB: the last, unread).
  template <int NB, int P = 0>
  __device__ __forceinline__ static void pick_pass(const float (&acc)[2][NB][4], int pass,
                                                   float (&r)[kHandoffPassNB][2][4]) {
    if (pass == P) {
#pragma unroll
      for (int nb = 0; nb < kHandoffPassNB; ++nb)
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
#pragma unroll
          for (int i = 0; i < 4; ++i) r[nb][mt][i] = acc[mt][min(P * kHandoffPassNB + nb, NB - 1)][i];
      return;
    }
    if constexpr ((P + 1) * kHandoffPassNB < NB) pick_pass<NB, P + 1>(acc, pass, r);
  }

  // The producer side: thread `tid` of `nthreads` takes (16-feature block, token) units, tokens
  // fastest (a warp's 16-B loads hit distinct banks). f_base: the item's first feature.
  __device__ static void handoff_rows(const MoeParams& p, const ExpertTile& tile, int f_base, const float* handoff,
                                      int tid, int nthreads) {
    const int ntok = tile.nrows;
    if (ntok <= 0) return;
    const float gs_out = p.fc2_scale[input_scale_index(p.fc2_count, tile.expert, p.e_local, p.local_offset)];
    int blk = 0;
#pragma unroll 1
    for (int tok = tid;; tok += nthreads) {
      while (tok >= ntok && blk < 8) tok -= ntok, ++blk;
      const int f0 = f_base + 16 * blk;
      if (blk >= 8 || f0 >= p.inter) break;  // blocks past the matrix: the last item's upper half
      float v[16];
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float4 q = reinterpret_cast<const float4*>(handoff + tok * kHandoffStride + 16 * blk)[j];
        v[4 * j] = q.x, v[4 * j + 1] = q.y, v[4 * j + 2] = q.z, v[4 * j + 3] = q.w;
      }
      uint32_t w[8];
      nvfp4_block_decoded_bf16(v, gs_out, w);
      store_bf16x16(reinterpret_cast<uint16_t*>(p.act) + (int64_t(tile.row0) + tok) * p.inter + f0, w);
    }
  }

  // One token row of the scratch per lane (rolled: one copy per tile width, run ~2x per pass).
  __device__ __forceinline__ static void staged_rows(const MoeParams& p, const float* scratch, int ntok, int64_t row0, int f0,
                                     float alpha, float gs_out) {
#pragma unroll 1
    for (int tok = threadIdx.x & 31; tok < ntok; tok += 32) {
      float r[32];  // 16 up, 16 gate
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float4 q = reinterpret_cast<const float4*>(scratch + tok * kScratchStride)[j];
        r[4 * j] = q.x, r[4 * j + 1] = q.y, r[4 * j + 2] = q.z, r[4 * j + 3] = q.w;
      }
      float v[16];
#pragma unroll
      for (int i = 0; i < 16; ++i) v[i] = swiglu(r[i] * alpha, r[16 + i] * alpha);
      uint16_t* dst = reinterpret_cast<uint16_t*>(p.act) + (row0 + tok) * p.inter + f0;
      uint32_t w[8];  // the 16 values as bf16
      if (p.act_fp4) {
        // only the SM90 wgmma kernel stages through here: its FC2 loads the decoded values by TMA
        nvfp4_block_decoded_bf16(v, gs_out, w);
      } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) w[j] = uint32_t(float_to_bf16(v[2 * j])) | (uint32_t(float_to_bf16(v[2 * j + 1])) << 16);
      }
      store_bf16x16(dst, w);
    }
  }
};

}  // namespace moe12x
