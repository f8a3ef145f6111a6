// Host-only check of the SM90 wgmma draft's layout claims (docs/wgmma-draft.md), evaluated on CuTe's
// own layout definitions (no GPU):
//   1. wgmma RS A fragment (GMMA::ALayout_64x16), per warp w: rows 16w.., the same (row, k) per
//      (lane, register) as mma.sync m16n8k16's A (SM80_16x8x16_F32BF16BF16F32_TN ALayout).
//   2. wgmma accumulator (GMMA::CLayout_64xN, N = 8..128) per warp: register 4 nb + i is the
//      m16n8 C fragment register i of n8 tile nb (c0,c1: row g cols 2t,2t+1; c2,c3: row g+8),
//      rows 16w..; with warp w feeding prepared tile 2w + j in wgmma tile j, acc[j][nb][i] lands on
//      item row 32w + 16j + g (+8) = the epilogues' warp_row0 + mt * 16 + g (+8).
//   3. sw128_k_offset (the staging order) equals tile_to_shape(Layout_K_SW128_Atom<bf16>, (N, 64))
//      and k16 step j starts 32 B after the block; make_gmma_desc's fields (SW128, SBO 1024 B).
// Build: nvcc -std=c++17 -I<cutlass>/include -Icpp tests/host/wgmma_layout_test.cu -o /tmp/wlt
#include <cstdio>
#include <cute/atom/mma_traits_sm80.hpp>
#include <cute/atom/mma_traits_sm90_gmma.hpp>
#include <cute/tensor.hpp>
#include "mainloop/activation_stage.cuh"

using namespace cute;
namespace GMMA = cute::SM90::GMMA;
static int failures = 0;
#define CHECK(c, ...) do { if (!(c)) { if (failures++ < 20) { std::printf("FAIL %s:%d ", __FILE__, __LINE__); std::printf(__VA_ARGS__); std::printf("\n"); } } } while (0)

// mma.sync m16n8k16 A register r (bf16x2), half h of lane (g, t): the documented PTX pattern the
// prepared weights (nvfp4.cuh: a0 row g k 2t.., a1 row g+8, a2 row g k+8, a3 row g+8 k+8) follow.
static void sm80_a(int lane, int r, int h, int& m, int& k) {
  const int g = lane >> 2, t = lane & 3;
  m = g + 8 * (r & 1);
  k = 2 * t + h + 8 * (r >> 1);
}

template <int N>
static void check_c() {
  using CL = GMMA::CLayout_64xN<N>;
  for (int tid = 0; tid < 128; ++tid)
    for (int v = 0; v < N / 2; ++v) {
      const int idx = CL{}(tid, v);  // (M=64, N) column-major
      const int m = idx % 64, n = idx / 64;
      const int w = tid / 32, lane = tid % 32, g = lane >> 2, t = lane & 3;
      const int nb = v / 4, i = v % 4;  // acc[j][nb][i] = d[4 nb + i]
      // epilogue expectation (m16n8 C fragment, rows of this warp's slice)
      const int em = 16 * w + g + 8 * (i >> 1), en = 8 * nb + 2 * t + (i & 1);
      CHECK(m == em && n == en, "C N=%d tid=%d v=%d: wgmma (%d,%d) epilogue (%d,%d)", N, tid, v, m, n, em, en);
      // item row via the feed mapping: wgmma tile j, m64 row m -> warp m/16 feeds prepared tile 2(m/16)+j
      for (int j = 0; j < 2; ++j) {
        const int item_row = 32 * (m / 16) + 16 * j + (m % 16);
        const int expect = 32 * w + 16 * j + g + 8 * (i >> 1);  // warp_row0 - mblock*128 + mt*16 + g (+8)
        CHECK(item_row == expect, "row map N=%d tid=%d v=%d j=%d", N, tid, v, j);
      }
    }
  // mma.sync C (SM80_16x8_Row) equals the same pattern: cross-check one tile
  using C80 = typename MMA_Traits<SM80_16x8x16_F32BF16BF16F32_TN>::CLayout;
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      const int idx = C80{}(lane, i), m = idx % 16, n = idx / 16;
      CHECK(m == (lane >> 2) + 8 * (i >> 1) && n == 2 * (lane & 3) + (i & 1), "sm80 C lane=%d i=%d", lane, i);
    }
}

template <int N>
static void check_smem() {
  auto layout = tile_to_shape(GMMA::Layout_K_SW128_Atom<bfloat16_t>{}, make_shape(Int<N>{}, Int<64>{}));
  // The atom's swizzle acts on the smem pointer (smem_ptr_flag): address elements through a tensor
  // whose base is 0 (1024-B aligned, like the staged blocks) and read the swizzled address back.
  Tensor tb = make_tensor(make_smem_ptr(reinterpret_cast<const bfloat16_t*>(0)), layout);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < 64; ++k) {
      const int off = int(reinterpret_cast<uintptr_t>(raw_pointer_cast(&tb(n, k))));  // bytes
      CHECK(off == int(moe12x::sw128_k_offset(n, k)), "smem N=%d (%d,%d): cute %d ours %u", N, n, k, off,
            moe12x::sw128_k_offset(n, k));
    }
  for (int j = 0; j < 4; ++j) CHECK(int(layout(0, 16 * j)) * 2 == 32 * j, "k16 step %d start", j);
  // descriptor fields (host: CuTe cannot convert a shared address, start_address reads 0)
  Tensor t = make_tensor(make_smem_ptr(reinterpret_cast<const bfloat16_t*>(0)), layout);
  Tensor steps = flat_divide(t, make_shape(Int<N>{}, Int<16>{}));
  cute::GmmaDescriptor d = GMMA::make_gmma_desc<GMMA::Major::K>(steps(_, _, 0, 0));
  CHECK(d.bitfield.layout_type_ == uint8_t(GMMA::LayoutType::B128), "layout type %d", int(d.bitfield.layout_type_));
  // SBO: 1024 B between 8-row atoms; with N = 8 there is one atom and CuTe leaves it 0 (unused)
  CHECK(d.bitfield.stride_byte_offset_ == (N > 8 ? 1024 / 16 : 0), "N=%d SBO %d", N, int(d.bitfield.stride_byte_offset_));
  CHECK(d.bitfield.leading_byte_offset_ == 1, "LBO %d", int(d.bitfield.leading_byte_offset_));
}

int main() {
  // 1. A fragments
  using A90 = GMMA::ALayout_64x16;
  using A80 = typename MMA_Traits<SM80_16x8x16_F32BF16BF16F32_TN>::ALayout;
  for (int tid = 0; tid < 128; ++tid)
    for (int v = 0; v < 8; ++v) {
      const int idx = A90{}(tid, v), m = idx % 64, k = idx / 64;  // (64, 16) column-major
      const int w = tid / 32, lane = tid % 32, r = v / 2, h = v % 2;  // register r = values 2r, 2r+1
      int em, ek;
      sm80_a(lane, r, h, em, ek);
      CHECK(m == 16 * w + em && k == ek, "A tid=%d v=%d: wgmma (%d,%d) mma.sync (%d,%d)", tid, v, m, k, 16 * w + em, ek);
      const int idx80 = A80{}(lane, v), m80 = idx80 % 16, k80 = idx80 / 16;
      CHECK(m80 == em && k80 == ek, "sm80 A lane=%d v=%d: cute (%d,%d) ptx (%d,%d)", lane, v, m80, k80, em, ek);
    }
  // 2. accumulators
  check_c<8>(); check_c<16>(); check_c<32>(); check_c<64>(); check_c<128>();
  // 3. shared memory order and descriptors
  check_smem<8>(); check_smem<16>(); check_smem<32>(); check_smem<64>(); check_smem<128>();
  std::printf(failures ? "wgmma_layout_test: %d FAILURES\n" : "wgmma_layout_test: all checks passed\n", failures);
  return failures ? 1 : 0;
}
