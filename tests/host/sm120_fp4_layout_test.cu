// Host-only check (no GPU) of the SM120 native block-scaled FP4 MMA's fragments, read from CuTe's
// own traits (MMA_Traits<SM120_16x8x64_TN_VS<e2m1, e2m1, f32, ue4m3, 16>>), and of what they mean
// for a future SM120 mainloop policy (docs/sm90-wgmma.md, next steps; nothing of it runs yet):
//   1. A (M16 x K64): lane (g = lane / 4, t = lane % 4) register r holds 8 consecutive k (nibble
//      order: element 2j low) of row g + 8 (r & 1), k = 8 t + 32 (r >> 1) .. + 7. So a lane reads
//      bytes [4t, 4t + 4) and [16 + 4t, 16 + 4t + 4) of rows g, g + 8 of the canonical k64 block:
//      the prepared mma.sync fragment (k16-step order, nvfp4.cuh) is not this order, so SM120
//      weights need their own prepared order (a byte permutation at preparation time).
//   2. B (N8 x K64): lane register r holds k = 8 t + 32 r .. + 7 of column g: the pack kernel's
//      row-major NVFP4 codes are B fragments as they are (no permutation).
//   3. Scale factors (4 ue4m3 per thread, one per 16 consecutive k = one NVFP4 block): for A, lane
//      gives row g + 8 (lane & 1) (lanes 2 apart duplicate); for B, column g. The blocks stay whole.
//   4. The accumulator is the m16n8 C fragment of mma.sync m16n8k16: the epilogues can be shared.
// Build: nvcc -std=c++17 --expt-relaxed-constexpr -I<cutlass>/include tests/host/sm120_fp4_layout_test.cu
#include <cstdio>
#include <cute/atom/mma_traits_sm80.hpp>
#include <cute/atom/mma_traits_sm120.hpp>
#include <cute/tensor.hpp>

using namespace cute;
static int failures = 0;
#define CHECK(c, ...) do { if (!(c)) { if (failures++ < 20) { std::printf("FAIL %s:%d ", __FILE__, __LINE__); std::printf(__VA_ARGS__); std::printf("\n"); } } } while (0)

using Atom = SM120::BLOCKSCALED::SM120_16x8x64_TN_VS<float_e2m1_t, float_e2m1_t, float, float_ue4m3_t, 16>;
using T120 = MMA_Traits<Atom>;

int main() {
  static_assert(sizeof(typename Atom::ARegisters) == 16 && sizeof(typename Atom::BRegisters) == 8, "4 + 2 registers");
  // 1. A: (T32, V32) -> (M16, K64), column-major index m + 16 k
  for (int lane = 0; lane < 32; ++lane)
    for (int v = 0; v < 32; ++v) {
      const int idx = typename T120::ALayout{}(lane, v), m = idx % 16, k = idx / 16;
      const int g = lane >> 2, t = lane & 3, r = v / 8, nib = v % 8;
      CHECK(m == g + 8 * (r & 1) && k == 8 * t + 32 * (r >> 1) + nib, "A lane=%d v=%d: (%d,%d)", lane, v, m, k);
    }
  // 2. B: (T32, V16) -> (N8, K64), index n + 8 k
  for (int lane = 0; lane < 32; ++lane)
    for (int v = 0; v < 16; ++v) {
      const int idx = typename T120::BLayout{}(lane, v), n = idx % 8, k = idx / 8;
      const int g = lane >> 2, t = lane & 3, r = v / 8, nib = v % 8;
      CHECK(n == g && k == 8 * t + 32 * r + nib, "B lane=%d v=%d: (%d,%d)", lane, v, n, k);
    }
  // 3. scale factors: every (lane, v) names the row (column) whose scales the lane supplies
  for (int lane = 0; lane < 32; ++lane)
    for (int v = 0; v < 64; ++v) {
      const int ia = typename T120::SFALayout{}(lane, v), ma = ia % 16, ka = ia / 16;
      CHECK(ma == (lane >> 2) + 8 * (lane & 1) && ka == v, "SFA lane=%d v=%d: (%d,%d)", lane, v, ma, ka);
      const int ib = typename T120::SFBLayout{}(lane, v), nb = ib % 8, kb = ib / 8;
      CHECK(nb == (lane >> 2) && kb == v, "SFB lane=%d v=%d: (%d,%d)", lane, v, nb, kb);
    }
  static_assert(T120::SFVecSize == 16, "one ue4m3 scale per 16 k: the NVFP4 block");
  // 4. C: the same (lane, register) -> (m, n) as mma.sync m16n8k16's accumulator
  using C80 = typename MMA_Traits<SM80_16x8x16_F32BF16BF16F32_TN>::CLayout;
  for (int lane = 0; lane < 32; ++lane)
    for (int v = 0; v < 4; ++v)
      CHECK(int(typename T120::CLayout{}(lane, v)) == int(C80{}(lane, v)), "C lane=%d v=%d", lane, v);
  std::printf(failures ? "sm120_fp4_layout_test: %d FAILURES\n" : "sm120_fp4_layout_test: all checks passed\n", failures);
  return failures ? 1 : 0;
}
