// Bottom-up speed-of-light ladder of the SM90 warp-specialized FP4 mainloop: the real pieces of
// kernel/moe_gemm_sm90_ws.cuh added one at a time around two consumer warpgroups streaming
// RS wgmma m64n128k16 x 2 m-tiles per k64 block (sm90_wgmma_rate.cu: ~970 TFLOP/s alone).
//   kDeq:   A dequantized per block from a shared-memory ring stage (Sm90WgmmaFp4Block)
//   kBar:   a producer warpgroup hands 4 token buffers over full/empty mbarriers (+ proxy fence)
//   kStore: the producer also writes each 16 KB token buffer (8 x STS.128 per thread)
//   kDecode: ... decoded from FP4 token rows in a shared raw stage (stage_fp4_row_gmma, as the
//           kernel; the session-5 results before v17 used act_code_pair)
//   kNB:    token-tile width in n8 tiles (16 = 128 tokens)
//   kC:     consumer warpgroups (the kernel: 2); a block is 64 kMT kC rows
//   kX:     extra n8 tiles of a second accumulator fed by the same dequantized A (an expert's
//           remainder rows riding on a full tile: 128 + 8 kX tokens per weight block); their token
//           rows are staged right after the main block's in each buffer
//   kMT:    m64 tiles per consumer warpgroup (the kernel: 2, 32 rows per warp; 1: 16 rows per warp,
//           half the accumulator, so four warpgroups fit a 128-token tile)
//   kLoads: weights (consumer ring, cp.async per 2-block stage) and FP4 token rows (producer,
//           cp.async, 7 blocks ahead) come from global memory: every CTA streams its own 2 MB of
//           weights (HBM, as a 256-row slab of a large expert) and one token tile (L2)
//   kTma:   (with kLoads) the token tile comes as bf16 rows (the FP4 values decoded once, ahead of
//           the GEMM) through TMA: 1: one SW128 box of 64 k x 8 (kNB + kX) rows per block, one
//           thread arms the full barrier and issues it; 2: boxes of 8 rows, one per lane of a
//           producer warp (one tensor map for every tile width); 3: as 1, each box loaded twice
//           (the L2 traffic of a token tile per consumer warpgroup). The producer decodes nothing.
// Global memory only with kLoads. One CTA per SM; prints TFLOP/s over the grid.
//   nvcc -std=c++17 -O3 -arch=sm_90a --expt-relaxed-constexpr -I<cutlass>/include -Icpp \
//        bench/micro/sm90_ws_ladder.cu -o ws_ladder && ./ws_ladder
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <cuda.h>
#include <cute/arch/copy_sm80.hpp>
#include <cute/arch/copy_sm90_tma.hpp>
#include <cutlass/arch/barrier.h>
#include <cutlass/arch/reg_reconfig.h>

#include "mainloop/activation_stage.cuh"
#include "mainloop/sm90_wgmma_fp4.cuh"
#include "micro_timing.cuh"

using namespace moe12x;
// wide token tiles (N = 136 .. 160: one wgmma per m64 tile and k16 step; 144, 160 in the mainloop)
namespace moe12x::sm90_detail {
template <> struct RsOp<136> { using type = GMMA::MMA_64x136x16_F32BF16BF16_RS<GMMA::Major::K, GMMA::Major::K>; };
}  // namespace moe12x::sm90_detail
using ML = Sm90WgmmaFp4Block;
using Barrier = cutlass::arch::ClusterBarrier;
constexpr int kStages = 4, kRawStages = 8;
static const char* g_only = nullptr;  // run only the variants whose name contains it
static int g_blocks = 4096;
// bf16 token rows for kTma: [256 rows][4096 k64 blocks x 64], one SW128 map per box height 8 nb
static CUtensorMap g_tmaps[33];  // g_tmaps[1]: the 8-row box of kTma = 2
__constant__ CUtensorMap g_tmap8;
static int make_tmaps(const void* act16) {
  using Encode = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*, const cuuint64_t*,
                              const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave, CUtensorMapSwizzle,
                              CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult q;
  CK(cudaGetDriverEntryPoint("cuTensorMapEncodeTiled", &fn, cudaEnableDefault, &q));
  if (!fn) return 1;
  for (int nb = 1; nb <= 32; ++nb) {
    const cuuint64_t dims[2] = {4096 * 64, 256}, strides[1] = {4096 * 64 * 2};
    const cuuint32_t box[2] = {64, cuuint32_t(8 * nb)}, estr[2] = {1, 1};
    if (reinterpret_cast<Encode>(fn)(&g_tmaps[nb], CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<void*>(act16), dims, strides,
                                     box, estr, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                                     CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS) {
      printf("cuTensorMapEncodeTiled failed (box rows %d)\n", 8 * nb);
      return 1;
    }
  }
  return 0;
}

// Sized for the tile width (8 kNB token rows) and kC consumer warpgroups (4 ring stages per warp).
template <int kC, int kNB>
struct Smem {
  static constexpr int kRows = 8 * kNB, kBBytes = (kRows * 128 + 1023) / 1024 * 1024;  // SW128 buffers stay 1024-B aligned
  struct RawStage {
    uint4 codes[kRows][2];
    uint32_t scales[kRows];
  };
  RawStage raw[kRawStages];
  uint8_t b_raw[kStages * kBBytes + 1024];
  ML::Stage ring[4 * kC * 4];
  alignas(8) uint64_t full[kStages];
  alignas(8) uint64_t empty[kStages];
  __device__ uint8_t* bbuf(int i) {
    return b_raw + ((1024u - (static_cast<uint32_t>(__cvta_generic_to_shared(b_raw)) & 1023u)) & 1023u) + i * kBBytes;
  }
};
// setmaxnreg split of the launch's registers (65536 / threads, rounded down to 8): producer 40.
constexpr int consumer_regs(int kC) { return kC == 2 ? 232 : kC == 3 ? 152 : 104; }

template <bool kDeq, bool kBar, bool kStore, bool kDecode = false, bool kLoads = false, int kNB = 16, int kC = 2,
          int kMT = 2, int kX = 0, int kTma = 0>
__global__ void __launch_bounds__(128 * (kC + 1), 1) ladder_kernel(int blocks, float* sink, const uint8_t* wq, const uint8_t* act,
                                                                  const __grid_constant__ CUtensorMap tmap) {
  using Copy16 = cute::SM80_CP_ASYNC_CACHEGLOBAL<cute::uint128_t>;
  using Copy4 = cute::SM80_CP_ASYNC_CACHEALWAYS<uint32_t>;
  using Smem = ::Smem<kC, kNB + kX>;
  static_assert(kX == 0 || (kDeq && kMT == 2 && !kStore), "the extra accumulator rides on the dequantized 2-tile block");
  static_assert(sizeof(Smem) <= 227 * 1024, "one CTA per SM");
  static_assert(!kTma || (kLoads && !kDecode && !kStore), "TMA replaces the producer's loads and decode");
  extern __shared__ uint4 raw[];
  Smem& s = *reinterpret_cast<Smem*>(raw);
  for (int i = threadIdx.x; i < int(sizeof(Smem) / 4) - 2 * kStages * 2; i += blockDim.x)
    reinterpret_cast<uint32_t*>(&s)[i] = 0x3c003c00u ^ (i & 0x00ff00ffu);
  if (threadIdx.x == 0)
    for (int i = 0; i < kStages; ++i) {
      Barrier::init(&s.full[i], kTma ? 1 : 128);
      Barrier::init(&s.empty[i], 128 * kC);
    }
  cutlass::arch::fence_barrier_init();
  __syncthreads();
  if (threadIdx.x >= 128 * kC) {  // producer
    cutlass::arch::warpgroup_reg_dealloc<40>();
    if (!kBar) return;
    const int r = threadIdx.x - 128 * kC;
    int stage = 0;
    uint32_t phase = 0;
    for (int kb = 0; kb < blocks && kTma; ++kb) {  // one thread: arm the barrier, one TMA per block
      if ((kTma == 1 || kTma == 3) && r == 0) {
        Barrier::wait(&s.empty[stage], phase ^ 1u);
        cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&s.full[stage], (kTma == 3 ? 2 : 1) * 8 * (kNB + kX) * 128);
        cute::SM90_TMA_LOAD_2D::copy(&tmap, &s.full[stage], 0, s.bbuf(stage), (kb & 4095) * 64, 0);
        if (kTma == 3)  // the same box again: twice the L2 -> SM token traffic (a token tile per warpgroup)
          cute::SM90_TMA_LOAD_2D::copy(&tmap, &s.full[stage], 0, s.bbuf(stage), (kb & 4095) * 64, 0);
      } else if (kTma == 2 && r < 32) {
        Barrier::wait(&s.empty[stage], phase ^ 1u);
        if (r == 0) cutlass::arch::ClusterTransactionBarrier::arrive_and_expect_tx(&s.full[stage], 8 * (kNB + kX) * 128);
        __syncwarp();  // armed before any box can complete
        for (int i = r; i < kNB + kX; i += 32)
          cute::SM90_TMA_LOAD_2D::copy(&g_tmap8, &s.full[stage], 0, s.bbuf(stage) + i * 1024, (kb & 4095) * 64, 8 * i);
      }
      if (++stage == kStages) { stage = 0; phase ^= 1u; }
    }
    for (int kb = 0; kb < blocks && !kTma; ++kb) {
      if (kLoads) {  // rows r, r + 128 (< 8 (kNB + kX)): block kb + 7 in flight, wait for block kb
        const int kn = kb + kRawStages - 1;
        auto& st = s.raw[kn % kRawStages];
        for (int rr = r; rr < 8 * (kNB + kX); rr += 128) {
          const uint8_t* src = act + (int64_t(rr) * 4096 + (kn & 4095)) * 48;
          Copy16::copy(*reinterpret_cast<const cute::uint128_t*>(src), *reinterpret_cast<cute::uint128_t*>(&st.codes[rr][0]));
          Copy16::copy(*reinterpret_cast<const cute::uint128_t*>(src + 16), *reinterpret_cast<cute::uint128_t*>(&st.codes[rr][1]));
          Copy4::copy(*reinterpret_cast<const uint32_t*>(src + 32), st.scales[rr]);
        }
        cute::cp_async_fence();
        cute::cp_async_wait<kRawStages - 1>();
      }
      Barrier::wait(&s.empty[stage], phase ^ 1u);
      for (int rr = r; rr < 8 * (kNB + kX); rr += 128) {
        if (kDecode) {
          const auto& st = s.raw[kb % kRawStages];
          const bool main = rr < 8 * kNB;  // else an extra row, in the block after the main one
          stage_fp4_row_gmma(st.codes[rr], st.scales[rr], main ? rr : rr - 8 * kNB,
                             s.bbuf(stage) + (main ? 0 : 8 * kNB * 128));
        } else if (kStore) {
          uint4* dst = reinterpret_cast<uint4*>(s.bbuf(stage) + rr * 128);
#pragma unroll
          for (int c = 0; c < 8; ++c) dst[c ^ (rr & 7)] = make_uint4(kb, rr, c, 0x3c003c00u);
        }
      }
      cutlass::arch::fence_view_async_shared();
      Barrier::arrive(&s.full[stage]);
      if (++stage == kStages) { stage = 0; phase ^= 1u; }
    }
    return;
  }
  cutlass::arch::warpgroup_reg_alloc<consumer_regs(kC)>();
  const int warp = threadIdx.x / 32;
  ML::Accum<kNB> acc;  // kMT = 1 uses acc[0] only
  zero_acc(acc);
  float acc2[2][kX > 0 ? kX : 1][4] = {};  // kX > 0 only
  auto fence = [&] {
    if constexpr (kX > 0)
#pragma unroll
      for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nb = 0; nb < kX; ++nb)
#pragma unroll
          for (int i = 0; i < 4; ++i) cute::warpgroup_fence_operand(acc2[mt][nb][i]);
    if constexpr (kMT == 2) return ML::warpgroup_fence_acc<kNB>(acc);
#pragma unroll
    for (int mt = 0; mt < kMT; ++mt)
#pragma unroll
      for (int nb = 0; nb < kNB; ++nb)
#pragma unroll
        for (int i = 0; i < 4; ++i) cute::warpgroup_fence_operand(acc[mt][nb][i]);
  };
  fence();
  uint32_t a[2][4];
  for (int mt = 0; mt < 2; ++mt)
    for (int i = 0; i < 4; ++i) a[mt][i] = 0x3c003c00u + threadIdx.x;
  int stage = 0;
  uint32_t phase = 0;
  // kLoads: ring of 4 stages x 2 blocks per warp (as the kernel), 3 in flight
  const int lane = threadIdx.x & 31;
  const uint8_t* wsrc = wq + (int64_t(blockIdx.x) * 4 * kC + warp) * (int64_t(1) << 18);  // 256 KB per warp
  auto issue = [&](int kb0) {
    ML::Stage& st = s.ring[warp * 4 + (kb0 / 2) % 4];
    for (int i = 0; i < 2; ++i)
      for (int mt = 0; mt < kMT; ++mt)
        Copy16::copy(*reinterpret_cast<const cute::uint128_t*>(wsrc + ((int64_t(kb0 + i) * 2 + mt) * 512 & ((1 << 18) - 1)) + lane * 16),
                     *reinterpret_cast<cute::uint128_t*>(&st.q[i][mt][lane]));
    if (lane < 16)
      Copy16::copy(*reinterpret_cast<const cute::uint128_t*>(wsrc + (int64_t(kb0) * 64 & ((1 << 18) - 1)) + lane * 16),
                   *reinterpret_cast<cute::uint128_t*>(&st.s[lane >> 3][(lane >> 2) & 1][lane & 3]));
    cute::cp_async_fence();
  };
  if (kLoads)
    for (int i = 0; i < 3; ++i) issue(2 * i);
  for (int kb = 0; kb < blocks; ++kb) {
    if (kLoads && (kb & 1) == 0) {
      cute::cp_async_wait<2>();
      __syncwarp();
      issue(kb + 6);
    }
    const ML::Stage& st = kLoads ? s.ring[warp * 4 + (kb / 2) % 4] : s.ring[warp];
    if (kBar) Barrier::wait(&s.full[stage], phase);
    const uint8_t* b = s.bbuf(stage);
    if (kDeq && kX > 0) {  // one dequantized A, two accumulators: 8 wgmma N = 8 kNB, 8 of N = 8 kX
      ML::TileA t[2];
      ML::dequant_tile(st, kb & 1, 0, t[0]);
      ML::dequant_tile(st, kb & 1, 1, t[1]);
      fence();
      cute::warpgroup_arrive();
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
          sm90_detail::wgmma_rs<kNB>(t[mt][j], sm90_detail::step_desc<kNB>(b, j), acc[mt],
                                     std::make_integer_sequence<int, 4 * kNB>{});
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int mt = 0; mt < 2; ++mt)
          sm90_detail::wgmma_rs<(kX > 0 ? kX : 1)>(t[mt][j], sm90_detail::step_desc<(kX > 0 ? kX : 1)>(b + 8 * kNB * 128, j),
                                                  acc2[mt], std::make_integer_sequence<int, 4 * (kX > 0 ? kX : 1)>{});
      cute::warpgroup_commit_batch();
    } else if (kDeq && kMT == 2) {
      ML::block_wgmma<kNB>(st, kb & 1, b, acc);  // the kernel's block: dequantize, 8 wgmma, commit
    } else if (kDeq) {
      ML::TileA t;
      ML::dequant_tile(st, kb & 1, 0, t);
      fence();
      cute::warpgroup_arrive();
      ML::issue_tile<kNB>(t, b, acc[0]);
      cute::warpgroup_commit_batch();
    } else {
      fence();
      cute::warpgroup_arrive();
#pragma unroll
      for (int j = 0; j < 4; ++j)
#pragma unroll
        for (int mt = 0; mt < kMT; ++mt)
          sm90_detail::wgmma_rs<kNB>(a[mt], sm90_detail::step_desc<kNB>(b, j), acc[mt],
                                     std::make_integer_sequence<int, 4 * kNB>{});
      cute::warpgroup_commit_batch();
    }
    cute::warpgroup_wait<0>();
    fence();
    if (kBar) Barrier::arrive(&s.empty[stage]);
    a[0][0] += 1u;  // the next block's A (as a dequantization would write)
    if (++stage == kStages) { stage = 0; phase ^= 1u; }
  }
  cute::warpgroup_wait<0>();
  fence();
  float sum = 0.f;
  for (int mt = 0; mt < kMT; ++mt)
    for (int nb = 0; nb < kNB; ++nb)
      for (int i = 0; i < 4; ++i) sum += acc[mt][nb][i];
  for (int mt = 0; mt < 2; ++mt)
    for (int nb = 0; nb < kX; ++nb)
      for (int i = 0; i < 4; ++i) sum += acc2[mt][nb][i];
  if (sum == 1234.5f) sink[threadIdx.x] = sum;
}


template <bool kDeq, bool kBar, bool kStore, bool kDecode = false, bool kLoads = false, int kNB = 16, int kC = 2,
          int kMT = 2, int kX = 0, int kTma = 0>
int run(const char* name, int sms, float* sink, const uint8_t* wq, const uint8_t* act) {
  if (g_only && !strstr(name, g_only)) return 0;
  auto k = ladder_kernel<kDeq, kBar, kStore, kDecode, kLoads, kNB, kC, kMT, kX, kTma>;
  const int smem = sizeof(Smem<kC, kNB + kX>);
  CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const int blocks = g_blocks;
  float best;
  if (best_of([&](bool warm) { k<<<sms, 128 * (kC + 1), smem>>>(warm ? 64 : blocks, sink, wq, act, g_tmaps[kNB + kX]); }, 5, &best)) return 1;
  const int rows = 64 * kMT * kC;  // weight rows per block
  const double flop = 2.0 * sms * rows * 8.0 * (kNB + kX) * 64.0 * blocks;
  printf("%-44s %7.1f TFLOP/s  %6.0f ns per k64 block  %6.0f ns per 256 rows\n", name, flop / (best * 1e-3) / 1e12,
         best * 1e6 / blocks, best * 1e6 / blocks * 256 / rows);
  return 0;
}

int main(int argc, char** argv) {  // [name substring] [k64 blocks per CTA]: one variant, e.g. under compute-sanitizer
  if (argc > 1) g_only = argv[1];
  if (argc > 2) g_blocks = atoi(argv[2]);
  int sms = 0;
  float* sink;
  if (micro_setup(&sms, &sink)) return 1;
  uint8_t *wq, *act;
  CK(cudaMalloc(&wq, size_t(sms) * 16 << 18));
  CK(cudaMemset(wq, 0x22, size_t(sms) * 16 << 18));
  CK(cudaMalloc(&act, 256 * 4096 * 48));  // token rows: up to 8 (kNB + kX) <= 256
  CK(cudaMemset(act, 0x33, 256 * 4096 * 48));
  void* act16;  // bf16 rows for kTma (values irrelevant: small finite)
  CK(cudaMalloc(&act16, size_t(256) * 4096 * 64 * 2));
  CK(cudaMemset(act16, 0x3c, size_t(256) * 4096 * 64 * 2));
  if (make_tmaps(act16)) return 1;
  CK(cudaMemcpyToSymbol(g_tmap8, &g_tmaps[1], sizeof(CUtensorMap)));
  int rc = 0;
  rc |= run<false, false, false>("wgmma only", sms, sink, wq, act);
  rc |= run<true, false, false>("+ weight dequantization", sms, sink, wq, act);
  rc |= run<true, true, false>("+ full/empty handshake", sms, sink, wq, act);
  rc |= run<true, true, true>("+ token buffer stores", sms, sink, wq, act);
  rc |= run<true, true, false, true>("+ FP4 token decode (instead)", sms, sink, wq, act);
  rc |= run<true, true, true, false, true>("+ global loads, stores only", sms, sink, wq, act);
  rc |= run<true, true, false, true, true>("+ global loads + FP4 decode: the kernel", sms, sink, wq, act);
  // the kernel's loop at other tile widths (tokens = 8 NB)
  rc |= run<true, true, false, true, true, 2>("the kernel, 16 tokens", sms, sink, wq, act);
  rc |= run<true, true, false, true, true, 4>("the kernel, 32 tokens", sms, sink, wq, act);
  rc |= run<true, true, false, true, true, 8>("the kernel, 64 tokens", sms, sink, wq, act);
  // narrow tiles with more consumer warpgroups (more warps to hide the per-block latency chain)
  rc |= run<false, false, false, false, false, 4>("wgmma only, 32 tokens", sms, sink, wq, act);
  rc |= run<true, false, false, false, false, 4>("+ dequantization, 32 tokens", sms, sink, wq, act);
  rc |= run<true, true, false, false, false, 4>("+ handshake, 32 tokens", sms, sink, wq, act);
  rc |= run<true, true, false, true, false, 4>("+ FP4 decode, 32 tokens", sms, sink, wq, act);
  rc |= run<true, true, false, true, true, 2, 3>("the kernel, 16 tokens, 3 consumer WGs", sms, sink, wq, act);
  rc |= run<true, true, false, true, true, 4, 3>("the kernel, 32 tokens, 3 consumer WGs", sms, sink, wq, act);
  rc |= run<true, true, false, true, true, 8, 3>("the kernel, 64 tokens, 3 consumer WGs", sms, sink, wq, act);
  rc |= run<true, true, false, true, true, 2, 4>("the kernel, 16 tokens, 4 consumer WGs", sms, sink, wq, act);
  rc |= run<true, true, false, true, true, 4, 4>("the kernel, 32 tokens, 4 consumer WGs", sms, sink, wq, act);
  rc |= run<true, true, false, true, true, 8, 4>("the kernel, 64 tokens, 4 consumer WGs", sms, sink, wq, act);
  // four consumer warpgroups of 64 rows (16 per warp): a 256-row block with twice the warps and
  // half the accumulator per thread. At 128 tokens it does not fit (104 registers: ptxas C7512
  // serializes the wgmma), so only the narrower tiles.
  rc |= run<true, true, false, true, true, 8, 4, 1>("the kernel, 64 tokens, 4 WGs x 64 rows", sms, sink, wq, act);
  // an expert's remainder rows riding on its full tile: one dequantization for 128 + 8 kX tokens
  // (against a full block plus a separate narrow one: 861 + 624 ns in the session-6 run)
  rc |= run<true, true, false, true, true, 16, 2, 2, 1>("the kernel, 128 + 8 tokens, A shared", sms, sink, wq, act);
  rc |= run<true, true, false, true, true, 16, 2, 2, 2>("the kernel, 128 + 16 tokens, A shared", sms, sink, wq, act);
  rc |= run<true, true, false, true, true, 16, 2, 2, 4>("the kernel, 128 + 32 tokens, A shared", sms, sink, wq, act);
  rc |= run<true, true, false, true, true, 4, 4, 1>("the kernel, 32 tokens, 4 WGs x 64 rows", sms, sink, wq, act);
  // the token tile as bf16 through TMA (decoded ahead of the GEMM): the full tile, narrow ones, and
  // the remainder rows riding on a full tile
  rc |= run<true, true, false, false, true, 16, 2, 2, 0, 1>("TMA bf16 tokens, 128 tokens", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 8, 2, 2, 0, 1>("TMA bf16 tokens, 64 tokens", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 4, 2, 2, 0, 1>("TMA bf16 tokens, 32 tokens", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 2, 2, 2, 0, 1>("TMA bf16 tokens, 16 tokens", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 8, 3, 2, 0, 1>("TMA bf16 tokens, 64 tokens, 3 consumer WGs", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 4, 3, 2, 0, 1>("TMA bf16 tokens, 32 tokens, 3 consumer WGs", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 16, 2, 2, 1, 1>("TMA bf16 tokens, 128 + 8 tokens, A shared", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 16, 2, 2, 2, 1>("TMA bf16 tokens, 128 + 16 tokens, A shared", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 16, 2, 2, 4, 1>("TMA bf16 tokens, 128 + 32 tokens, A shared", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 17, 2, 2, 0, 1>("TMA bf16 tokens, 136 tokens, one wgmma", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 18, 2, 2, 0, 1>("TMA bf16 tokens, 144 tokens, one wgmma", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 20, 2, 2, 0, 1>("TMA bf16 tokens, 160 tokens, one wgmma", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 16, 2, 2, 0, 3>("TMA bf16 tokens twice, 128 tokens", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 20, 2, 2, 0, 3>("TMA bf16 tokens twice, 160 tokens, one wgmma", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 8, 2, 2, 0, 3>("TMA bf16 tokens twice, 64 tokens", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 16, 2, 2, 0, 2>("TMA 8-row boxes, 128 tokens", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 4, 2, 2, 0, 2>("TMA 8-row boxes, 32 tokens", sms, sink, wq, act);
  rc |= run<true, true, false, false, true, 4, 3, 2, 0, 2>("TMA 8-row boxes, 32 tokens, 3 consumer WGs", sms, sink, wq, act);
  return rc;
}
