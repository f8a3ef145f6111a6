// SM90a wgmma block for FP4 weights: the same products as Sm80MmaFp4Mainloop. A = the prepared FP4
// weights dequantized in registers by dequant_a_frag (q * sf * 2^-8, exact bf16), fed to
// wgmma.mma_async m64nNk16 from registers (RS); B = the token tile staged in shared memory as
// bf16, K-major, 128-byte swizzle (GMMA descriptor). fp32 accumulation, K in the same fixed order
// (k64 blocks, then k16 steps, ascending). Measured bitwise equal to mma.sync on an H200 (the GPU
// suite's static-vs-dynamic and batch-invariance tests, bench/NOTES.md v12).
//
// Row mapping (tests/host/wgmma_layout_test.cu checks it against CuTe's layouts): per warp,
// wgmma's register A fragment (CuTe GMMA::ALayout_64x16) is rows 16w..16w+15 of the m64 tile with
// exactly mma.sync m16n8k16's A-fragment pattern, and its accumulator (GMMA::CLayout_64xN) is
// rows 16w..16w+15 with the m16n8 C-fragment pattern per 8 columns. Because A comes from
// registers, which prepared rows a warp feeds is free: in wgmma tile j (j = 0, 1) warp w of a
// warpgroup feeds its own prepared m16 tiles (the weight ring of the mma.sync mainloop, 32 rows per
// warp), so acc[j][nb][i] is exactly the mma.sync acc[mt = j][nb][i] and the epilogues are shared.
// The kernel around it (producer / consumer warpgroups): kernel/moe_gemm_sm90_ws.cuh.
#pragma once
#include <utility>

#include <cute/arch/mma_sm90_desc.hpp>
#include <cute/arch/mma_sm90_gmma.hpp>
#include <cute/arch/mma_sm90_gmma_ext.hpp>  // N = 48, 80, 112, 144, 160 (after mma_sm90_gmma.hpp)
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/tensor.hpp>

#include "common/nvfp4.cuh"
#include "mainloop/sm80_mma_fp4.cuh"  // scale_halves, dup_half

namespace moe12x {

namespace sm90_detail {
namespace GMMA = cute::SM90::GMMA;
template <int N> struct RsOp;
template <> struct RsOp<8> { using type = GMMA::MMA_64x8x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<16> { using type = GMMA::MMA_64x16x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<32> { using type = GMMA::MMA_64x32x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<64> { using type = GMMA::MMA_64x64x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<48> { using type = GMMA::MMA_64x48x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<80> { using type = GMMA::MMA_64x80x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<96> { using type = GMMA::MMA_64x96x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<112> { using type = GMMA::MMA_64x112x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<128> { using type = GMMA::MMA_64x128x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<144> { using type = GMMA::MMA_64x144x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
template <> struct RsOp<160> { using type = GMMA::MMA_64x160x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };

// One wgmma m64n(8 NB)k16: d register 4 nb + i is acc[nb][i] (CLayout_64xN value order).
template <int NB, int... I>
__device__ __forceinline__ void wgmma_rs(const uint32_t (&a)[4], uint64_t desc, float (&acc)[NB][4],
                                         std::integer_sequence<int, I...>) {
  RsOp<8 * NB>::type::fma(a[0], a[1], a[2], a[3], desc, acc[I / 4][I % 4]..., GMMA::ScaleOut::One);
}

// K-major SW128 descriptor of k16 step j of one (8 NB) x 64 bf16 block at `base` (1024-B aligned),
// built by CuTe: make_gmma_desc takes exactly one wgmma's K extent (16 bf16 = 2 x 16 B).
template <int NB>
__device__ __forceinline__ uint64_t step_desc(const uint8_t* base, int j) {
  using namespace cute;
  auto layout = tile_to_shape(GMMA::Layout_K_SW128_Atom<cute::bfloat16_t>{}, make_shape(Int<8 * NB>{}, Int<64>{}));
  Tensor t = make_tensor(make_smem_ptr(reinterpret_cast<const cute::bfloat16_t*>(base)), layout);
  Tensor steps = flat_divide(t, make_shape(Int<8 * NB>{}, Int<16>{}));  // (8 NB, 16, 1, 4)
  return GMMA::make_gmma_desc<GMMA::Major::K>(steps(_, _, 0, j)).desc_;
}
}  // namespace sm90_detail

struct Sm90WgmmaFp4Block {
  static constexpr int kMaxNB = 20;       // up to 160 tokens: wgmma N = 8 NB (an expert's last
                                          // tile takes up to 32 rows past 128)
  static constexpr int kMTiles = 2;       // m64 wgmma tiles per warpgroup (2 m16 tiles per warp)
  static constexpr int kStageBlocks = 2;  // weight ring: k64 blocks per stage
  static constexpr int kStages = 4;       // ring stages per warp (3 in flight)

  struct Stage {  // one warp's ring stage, as the mma.sync mainloop's
    uint4 q[kStageBlocks][kMTiles][32];
    uint4 s[kStageBlocks][kMTiles][4];
  };
  template <int NB>
  using Accum = float[kMTiles][NB][4];

  template <int NB>
  __device__ static void warpgroup_fence_acc(Accum<NB>& acc) {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt)
#pragma unroll
      for (int nb = 0; nb < NB; ++nb)
#pragma unroll
        for (int i = 0; i < 4; ++i) cute::warpgroup_fence_operand(acc[mt][nb][i]);
  }

  // One m64 tile's A operand for the 4 k16 steps of block i of a ring stage: [k16 step][register].
  using TileA = uint32_t[4][4];
  __device__ static void dequant_tile(const Stage& st, int i, int mt, TileA& a) {
    const int lane = threadIdx.x & 31, g = lane >> 2;
    const uint4 q = st.q[i][mt][lane];
    const uint2 s = reinterpret_cast<const uint2*>(st.s[i][mt])[g];
    const uint2 sg = scale_halves(s.x), sg8 = scale_halves(s.y);
    const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int jp = j >> 1, jj = j & 1;
      dequant_a_frag(words[j], dup_half(jj ? sg.y : sg.x, jp), dup_half(jj ? sg8.y : sg8.x, jp), a[j]);
    }
  }
  // The 4 k16 steps of one m64 tile (no fence, arrive or commit: the caller groups them).
  template <int NB>
  __device__ static void issue_tile(const TileA& a, const uint8_t* bblk, float (&acc)[NB][4]) {
#pragma unroll
    for (int j = 0; j < 4; ++j)
      sm90_detail::wgmma_rs<NB>(a[j], sm90_detail::step_desc<NB>(bblk, j), acc,
                                std::make_integer_sequence<int, 4 * NB>{});
  }

  // One k64 block: 4 k16 steps x 2 wgmma m64 tiles, one commit group. bblk: the block's staged
  // tokens (GMMA order; k16 step j's descriptor starts 32 B later, tests/host/wgmma_layout_test.cu).
  template <int NB>
  __device__ static void block_wgmma(const Stage& st, int i, const uint8_t* bblk, Accum<NB>& acc) {
    uint32_t a[4][kMTiles][4];  // k16 step-major (a tile-major array made ptxas serialize the wgmma)
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      TileA t;
      dequant_tile(st, i, mt, t);
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) a[j][mt][r] = t[j][r];
    }
    warpgroup_fence_acc<NB>(acc);
    cute::warpgroup_arrive();
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt)
        sm90_detail::wgmma_rs<NB>(a[j][mt], sm90_detail::step_desc<NB>(bblk, j), acc[mt],
                                  std::make_integer_sequence<int, 4 * NB>{});
    cute::warpgroup_commit_batch();
  }
};

}  // namespace moe12x
