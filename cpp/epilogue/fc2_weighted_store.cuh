// FC2 epilogue: y[pair, h - y_col0] = routing weight * (acc * global scales), fp32, one slot per
// row (y holds the launch's column chunk, rows of y_cols). The combine kernel later sums slots in
// increasing order: no atomics, deterministic.
#pragma once
#include "common/cuda_utils.cuh"
#include "common/nvfp4.cuh"
#include "common/params.hpp"
#include "scheduler/expert_tiles.cuh"

namespace moe12x {

struct Fc2WeightedStoreEpilogue {
  // Accumulator -> FC2 output before the routing weight (as Fc1SwigluQuantEpilogue::acc_scale).
  __device__ static float acc_scale(const MoeParams& p, int el) {
    const float gs_in = p.act_fp4 ? p.fc2_scale[input_scale_index(p.fc2_count, el, p.e_local, p.local_offset)] : 1.0f;
    return p.w2_gs[el] * gs_in * kAccScale;
  }

  // row_pair: packed row -> pair (p.row_pair, or the persistent decode kernel's own table).
  template <int NB, int kMT = 2>  // kMT: the warp's m16 tiles (Sm80MmaFp4MainloopT::kWarpTiles)
  __device__ static void apply(const MoeParams& p, const ExpertTile& tile, int warp_row0,
                               const float (&acc)[2][NB][4], const int* row_pair) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int el = tile.expert;
    const float beta = acc_scale(p, el);
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
#pragma unroll
      for (int c = 0; c < 2; ++c) {
        const int col = nb * 8 + 2 * t + c;
        if (col >= tile.nrows) continue;
        const int pair = row_pair[tile.row0 + col];
        const float w = load_weight(p.topk_w, p.w_bf16, pair);
        float* yrow = p.y + int64_t(pair) * p.y_cols;
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt) {
          const int h = warp_row0 + mt * 16 + g;
          if (h >= p.hidden) continue;
          yrow[h - p.y_col0] = w * (acc[mt][nb][c] * beta);
          yrow[h + 8 - p.y_col0] = w * (acc[mt][nb][2 + c] * beta);
        }
      }
    }
  }

  // The same values, bit for bit, for the SM90 WS kernel (one CTA per SM: nothing hides the
  // epilogue). apply() issues 4-byte stores (8 lanes per 32-B row segment) after two dependent
  // global loads per column. Here acc * beta goes to the warp's scratch as token rows of the
  // warp's 32 features, and each token's 128 B leave as eight 16-B stores (w * value, as in
  // apply()); slot indices and routing weights are loaded once per item and shuffled.
  static constexpr int kScratchStride = 36;  // floats per token row: 2 t S + g distinct banks on
                                             // write (S = 4 mod 16), 16-B reads conflict-free
  static constexpr int kScratchBytes = 64 * kScratchStride * 4;
  template <int NB>
  __device__ static void apply_staged(const MoeParams& p, const ExpertTile& tile, int warp_row0,
                                      const float (&acc)[2][NB][4], float* scratch) {
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int el = tile.expert;
    const float beta = acc_scale(p, el);
    constexpr int kPassNB = NB < 8 ? NB : 8;  // passes of 8 n8 tiles; the last may be narrower (NB 18, 20)
    constexpr int kPassTok = kPassNB * 8;
    constexpr int kPasses = (NB + kPassNB - 1) / kPassNB;
    const int chunk = lane & 7;  // 4 features of the warp's 32
    const int h0 = warp_row0 + 4 * chunk;
    // Slots and routing weights of every pass first: two dependent round trips per item instead
    // of two per pass (one CTA per SM: nothing else hides them).
    int prs[kPasses][2];
    float wrs[kPasses][2];
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        const int col = pass * kPassTok + lane + 32 * j;
        prs[pass][j] = lane + 32 * j < kPassTok && col < tile.nrows ? p.row_pair[tile.row0 + col] : -1;
      }
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass)
#pragma unroll
      for (int j = 0; j < 2; ++j) wrs[pass][j] = prs[pass][j] >= 0 ? load_weight(p.topk_w, p.w_bf16, prs[pass][j]) : 0.0f;
    // Rolled over passes and tokens (instruction footprint, as the FC1 epilogue); copy_pass and
    // pass_slots pick the registers of the pass.
#pragma unroll 1
    for (int pass = 0; pass < kPasses; ++pass) {
      int pr[2];
      float wr[2];
      pass_slots<kPasses>(prs, wrs, pass, pr, wr);
      __syncwarp();  // the previous pass's reads are done
      copy_pass<NB, kPassNB>(acc, pass, beta, scratch + (2 * t) * kScratchStride + g);
      __syncwarp();
#pragma unroll 2
      for (int i = 0; i < kPassTok / 4; ++i) {
        const int tk = (lane >> 3) + 4 * i;  // 4 tokens per step, 8 lanes each
        const int pair = __shfl_sync(0xffffffffu, i < 8 ? pr[0] : pr[1], tk & 31);
        const float w = __shfl_sync(0xffffffffu, i < 8 ? wr[0] : wr[1], tk & 31);
        if (pair < 0 || h0 >= p.hidden) continue;
        const float4 v = reinterpret_cast<const float4*>(scratch + tk * kScratchStride)[chunk];
        *reinterpret_cast<float4*>(p.y + int64_t(pair) * p.y_cols + (h0 - p.y_col0)) = make_float4(w * v.x, w * v.y, w * v.z, w * v.w);
      }
    }
  }

  template <int kPasses, int P = 0>
  __device__ __forceinline__ static void pass_slots(const int (&prs)[kPasses][2], const float (&wrs)[kPasses][2], int pass,
                                                    int (&pr)[2], float (&wr)[2]) {
    if (pass == P) {
      pr[0] = prs[P][0], pr[1] = prs[P][1], wr[0] = wrs[P][0], wr[1] = wrs[P][1];
      return;
    }
    if constexpr (P + 1 < kPasses) pass_slots<kPasses, P + 1>(prs, wrs, pass, pr, wr);
  }

  // Pass `pass`'s accumulators * beta -> token rows of the warp's 32 features; dst = this
  // lane's first slot.
  template <int NB, int kPassNB, int P = 0>
  __device__ __forceinline__ static void copy_pass(const float (&acc)[2][NB][4], int pass, float beta, float* dst) {
    if (pass == P) {
#pragma unroll
      for (int nbl = 0; nbl < kPassNB; ++nbl)
#pragma unroll
        for (int c = 0; c < 2; ++c)
#pragma unroll
          for (int mt = 0; mt < 2; ++mt)
#pragma unroll
            for (int half = 0; half < 2; ++half)
              dst[(nbl * 8 + c) * kScratchStride + mt * 16 + half * 8] =
                  acc[mt][min(P * kPassNB + nbl, NB - 1)][2 * half + c] * beta;  // past NB: unread
      return;
    }
    if constexpr ((P + 1) * kPassNB < NB) copy_pass<NB, kPassNB, P + 1>(acc, pass, beta, dst);
  }
};

}  // namespace moe12x
