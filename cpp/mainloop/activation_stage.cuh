// Stages the B operand (token rows x K chunk) in shared memory as bf16, in fragment order. FP4 rows are decoded to
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
  const int* gather;        // row -> source row is gather[row] / gather_div; null = identity
  int gather_div;
  int K;
  bool fp4;
  bool from_x = false;  // fp4 rows quantized from the bf16 rows (x) with global scale gs as they
  float gs = 0.0f;      // are staged (stage_activations<..., kXQuant = true>): no packed copy
};

// FP4 decode with the weights' bit trick (nvfp4.cuh): the 3 magnitude bits of a code at bf16
// bits 6..8 and its sign at bit 15 read as q * 2^-126; one bf16 multiply by S = sf * 2^118
// (exact in bf16) gives q * sf * 2^-8 exactly. ~6 instructions per 2 values: staging is paid
// by every m-block of a tile, so it must stay cheap next to the weight stream.
__device__ __forceinline__ uint32_t act_scale_pair(uint32_t sf_code) {
  const uint32_t h = uint32_t(float_to_bf16(e4m3_decode(sf_code) * 0x1p118f));  // exact
  return h * 0x10001u;
}

// Byte `i` of `word` (codes 2i, 2i+1; low nibble first) -> bf16x2 of both values times S.
__device__ __forceinline__ uint32_t act_code_pair(uint32_t word, int i, uint32_t s2) {
  const uint32_t b = __byte_perm(word, 0u, 0x4440u | uint32_t(i));  // byte i alone
  const uint32_t mag = (b * 0x00040040u) & 0x01C001C0u;  // bits 0..2 -> 6..8, 4..6 -> 22..24
  const uint32_t sgn = (b * 0x01001000u) & 0x80008000u;  // bit 3 -> 15, bit 7 -> 31
  return bf16x2_mul_exact(mag | sgn, s2);
}

// One 16-element block (codes in element order, low nibble first; its e4m3 scale code) -> its 16
// values q * sf * 2^-8 as 8 bf16x2 words (word p = elements 2p, 2p+1): every FP4 token stage, and
// the decoded rows the SM90 wgmma kernel loads by TMA.
__device__ __forceinline__ void decode_fp4_block_bf16(uint2 codes, uint32_t sf_code, uint32_t (&w)[8]) {
  const uint32_t s2 = act_scale_pair(sf_code);
#pragma unroll
  for (int j = 0; j < 8; ++j) w[j] = act_code_pair(j < 4 ? codes.x : codes.y, j % 4, s2);
}

// nvfp4_quantize_block then decode_fp4_block_bf16, bit for bit, without forming the codes: each
// quotient is rounded onto the e2m1 grid by one float add and subtract of 2^22 / 2^23 / 2^24 (the
// grid steps 0.5 / 1 / 2 below 2 / 4 / 6 become the fp32 ulp, and round-to-nearest-even picks the
// even grid point at every midpoint, as e2m1_encode), saturated at 6 (inf and NaN too), signed
// as the quotient, times dec(sf) * 2^-8: exact in fp32 and in bf16 (at most 6 significant bits,
// never below 2^-18). ~10 instructions per value against ~24 for encode + pack + decode.
__device__ __forceinline__ void nvfp4_block_decoded_bf16(const float (&v)[16], float gs, uint32_t (&w)[8]) {
  const BlockScale s = nvfp4_block_scale(v, gs);
  float q[16];
  nvfp4_block_quotients(v, s.denom != 0.0f ? s.denom : 1.0f, q);  // denom 0: every code 0 (+0), below
  const float scale = s.denom != 0.0f ? e4m3_decode(s.sf) * (1.0f / 256.0f) : 0.0f;
  float d[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const float a = fabsf(q[i]);
    const float m = a < 2.0f ? 0x1p22f : a < 4.0f ? 0x1p23f : 0x1p24f;
    const float r = fminf(__fsub_rn(__fadd_rn(a, m), m), 6.0f);
    const float signed_r = __uint_as_float(__float_as_uint(r) | (__float_as_uint(q[i]) & 0x80000000u));
    d[i] = s.denom != 0.0f ? __fmul_rn(signed_r, scale) : 0.0f;
  }
#pragma unroll
  for (int j = 0; j < 8; ++j) w[j] = uint32_t(float_to_bf16(d[2 * j])) | (uint32_t(float_to_bf16(d[2 * j + 1])) << 16);
}

// The same for a block of bf16 bits (as nvfp4_quantize_block's overload).
__device__ __forceinline__ void nvfp4_block_decoded_bf16(const uint16_t (&h)[16], float gs, uint32_t (&w)[8]) {
  float v[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) v[i] = __uint_as_float(uint32_t(h[i]) << 16);
  nvfp4_block_decoded_bf16(v, gs, w);
}

// 16 bf16 values (8 words) -> 32 B at dst (16-B aligned).
__device__ __forceinline__ void store_bf16x16(void* dst, const uint32_t (&w)[8]) {
  uint4* d = reinterpret_cast<uint4*>(dst);
  d[0] = make_uint4(w[0], w[1], w[2], w[3]);
  d[1] = make_uint4(w[4], w[5], w[6], w[7]);
}

// Every mainloop's accumulators start at 0.
template <int MT, int NB>
__device__ __forceinline__ void zero_acc(float (&acc)[MT][NB][4]) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nb][i] = 0.0f;
}

// FP4 B operands carry 2^-8 (above), like A; every mainloop undoes it on its accumulators, exactly.
template <int MT, int NB>
__device__ __forceinline__ void undo_fp4_act_scale(float (&acc)[MT][NB][4]) {
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int i = 0; i < 4; ++i) acc[mt][nb][i] *= kAccScale;
}

// Shared-memory order: fragment order. Within each 32-element K block, lane t's B values for
// k16 steps 2i and 2i+1 (k = 2t, 2t+1, 2t+8, 2t+9 of each step) are 8 consecutive bf16 at 8 t,
// so a lane loads a step pair with one 16-byte load. Rows are kStride apart (kStride = 32 mod
// 64 elements: the two token rows of a quarter-warp land on disjoint banks).
__device__ __forceinline__ int frag_order_offset(int group, int t) {  // 16-element group, lane t
  return (group >> 1) * 32 + 8 * t + 4 * (group & 1);
}

// Writes one 16-element group given as 8 bf16x2 words (word p = elements 2p, 2p+1).
__device__ __forceinline__ void store_group_frag_order(uint16_t* row, int group, const uint32_t (&w)[8]) {
#pragma unroll
  for (int t = 0; t < 4; ++t)
    *reinterpret_cast<uint2*>(row + frag_order_offset(group, t)) = make_uint2(w[t], w[4 + t]);
}

// kXQuant: rows with a.from_x are quantized from bf16 as they load (nvfp4_block_decoded_bf16: the
// values the pack kernel's codes decode to, bit for bit).
template <int BN, int kStride, int kThreads, bool kXQuant = false>
__device__ __forceinline__ void stage_activations(const ActivationRows& a, int row0, int nrows,
                                                  int k0, int kc, uint16_t* smem) {
  static_assert(kStride % 64 == 32, "stride must be 32 mod 64 elements (bank-conflict-free)");
  const int gpr = kc / 16;  // 16-element groups per row
  for (int i = threadIdx.x; i < BN * gpr; i += kThreads) {
    const int r = i / gpr, b = i % gpr;
    uint32_t w[8] = {0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u};
    if (r < nrows) {
      const int64_t row = a.gather ? int64_t(a.gather[row0 + r] / a.gather_div) : int64_t(row0 + r);
      if (kXQuant && a.fp4 && a.from_x) {
        union { uint4 v[2]; uint16_t h[16]; } raw;  // rows are 16-B aligned: two vector loads
        const uint4* src = reinterpret_cast<const uint4*>(a.bf16 + row * a.K + k0 + b * 16);
        raw.v[0] = src[0];
        raw.v[1] = src[1];
        nvfp4_block_decoded_bf16(raw.h, a.gs, w);
      } else if (a.fp4) {
        const uint2 q = *reinterpret_cast<const uint2*>(a.codes + row * (a.K / 2) + (k0 + b * 16) / 2);
        decode_fp4_block_bf16(q, a.scales[row * (a.K / 16) + (k0 / 16) + b], w);
      } else {
        const uint4* src = reinterpret_cast<const uint4*>(a.bf16 + row * a.K + k0 + b * 16);
        const uint4 lo = src[0], hi = src[1];
        w[0] = lo.x; w[1] = lo.y; w[2] = lo.z; w[3] = lo.w;
        w[4] = hi.x; w[5] = hi.y; w[6] = hi.z; w[7] = hi.w;
      }
    }
    store_group_frag_order(smem + r * kStride, b, w);
  }
}

// FP4 token rows staged one K chunk ahead (the decode mainloops): chunk c + 1's code and scale
// bytes are loaded into registers before chunk c's MMAs and decoded into shared memory after
// them, so only an item's first chunk waits on memory between the barrier pair (a synchronous
// stage is a global round trip per chunk, which few warps per SM at decode cannot hide). Thread
// i stages groups i % kTPR + kTPR u of row i / kTPR: stage_activations' values at its addresses
// (neighbouring lanes, neighbouring groups: one thread per k64 block put 16 lanes on one bank).
template <int BN, int kStride, int kThreads>
struct Fp4ActPrefetch {
  static constexpr int kTPR = kThreads / BN;  // threads per token row
  static constexpr int kGroups = 4;           // 16-element groups per thread and chunk
  static constexpr int kChunk = 16 * kGroups * kTPR;
  static_assert(kThreads % BN == 0, "token rows must split the CTA's threads evenly");
  const uint8_t* codes;  // this thread's row; null past the tile (staged as zeros)
  const uint8_t* scales;
  uint2 q[kGroups];
  uint32_t sf[kGroups];

  // Reads the row's gather entry: callers construct it before their PDL wait only where the
  // gather table is two launches back (pdl.cuh).
  __device__ Fp4ActPrefetch(const ActivationRows& a, int row0, int nrows) : codes(nullptr), scales(nullptr) {
    const int r = threadIdx.x / kTPR;
    if (r >= nrows) return;
    const int64_t row = a.gather ? int64_t(a.gather[row0 + r] / a.gather_div) : int64_t(row0 + r);
    codes = a.codes + row * (a.K / 2);
    scales = a.scales + row * (a.K / 16);
  }
  // Chunk [k0, k0 + kc), kc a multiple of 16.
  __device__ void load(int k0, int kc) {
    const int gpr = kc / 16, l = threadIdx.x % kTPR;
#pragma unroll
    for (int u = 0; u < kGroups; ++u) {
      const int b = l + kTPR * u;
      const bool ok = codes != nullptr && b < gpr;
      q[u] = ok ? *reinterpret_cast<const uint2*>(codes + k0 / 2 + 8 * b) : make_uint2(0u, 0u);
      sf[u] = ok ? scales[k0 / 16 + b] : 0u;
    }
  }
  __device__ void store(int kc, uint16_t* smem) const {
    const int gpr = kc / 16, l = threadIdx.x % kTPR;
    uint16_t* row = smem + (threadIdx.x / kTPR) * kStride;
#pragma unroll
    for (int u = 0; u < kGroups; ++u) {
      const int b = l + kTPR * u;
      if (b >= gpr) continue;
      uint32_t w[8] = {0u, 0u, 0u, 0u, 0u, 0u, 0u, 0u};
      if (codes != nullptr) decode_fp4_block_bf16(q[u], sf[u], w);
      store_group_frag_order(row, b, w);
    }
  }
};

// ---- GMMA order (SM90 wgmma B operand: kernel/moe_gemm_sm90_ws.cuh) ----------------------------
// K-major bf16 with the 128-byte swizzle, one k64 block at a time: a block is BN rows of 128 B
// (the 64 K values of one token row), 8-row atoms 1024 B apart (GMMA descriptor SBO), the 16-byte
// chunk c of row n stored at chunk c ^ (n % 8). The block must start 1024-B aligned (the hardware
// swizzles on address bits 4..6 ^ 7..9). This is CuTe's tile_to_shape(GMMA::Layout_K_SW128_Atom
// <bf16>, (BN, 64)); tests/host/wgmma_layout_test.cu checks the equality.
__host__ __device__ __forceinline__ uint32_t sw128_k_offset(int n, int k) {  // bytes, k in [0, 64)
  return uint32_t(n) * 128u + ((uint32_t((k >> 3) ^ n) & 7u) << 4) + uint32_t(k & 7) * 2u;
}

// One FP4 token row's k64 block (32 code bytes in prepare_act_word order, 4 scale codes) -> row n
// of a GMMA block at blk: the SM90 wgmma kernel's producer step in v17-v20 (the same values as
// every other stage; prepared_a_bits costs 8 integer ops per 8 codes where act_code_pair costs
// 20). Since v21 the kernel loads decode_fp4_block_bf16's rows by TMA; the ladder
// (bench/micro/sm90_ws_ladder.cu) still measures this step.
__device__ __forceinline__ void stage_fp4_row_gmma(const uint4 (&codes)[2], uint32_t sf4, int n, uint8_t* blk) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const uint4 q = codes[h];
#pragma unroll
    for (int gg = 0; gg < 2; ++gg) {  // 16-element group 2 h + gg
      const int grp = 2 * h + gg;
      const uint32_t s2 = act_scale_pair((sf4 >> (8 * grp)) & 0xFFu);
#pragma unroll
      for (int half = 0; half < 2; ++half) {  // k 0..7, 8..15 of the group
        uint32_t r[4];
        prepared_a_bits(half ? (gg ? q.w : q.y) : (gg ? q.z : q.x), r);
        *reinterpret_cast<uint4*>(blk + sw128_k_offset(n, grp * 16 + 8 * half)) =
            make_uint4(bf16x2_mul_exact(r[0], s2), bf16x2_mul_exact(r[1], s2), bf16x2_mul_exact(r[2], s2),
                       bf16x2_mul_exact(r[3], s2));
      }
    }
  }
}

// Stages bf16 token rows (act_quant = none) [row0, row0 + BN) x K [k0, k0 + kc) (kc a multiple of
// 64) as kc / 64 GMMA blocks of BN * 128 bytes at `smem`: the values of stage_activations in the
// SW128 order: the wgmma kernel's FC1 gather of x (act "none"; every other token tile comes by
// TMA). Synchronous loads.
template <int BN, int kThreads, int kUnroll = 4>
__device__ __forceinline__ void stage_activations_gmma(const ActivationRows& a, int row0, int nrows,
                                                       int k0, int kc, uint8_t* smem) {
  // kUnroll groups' loads go out before any conversion or store: one round trip per kUnroll
  // groups instead of one per group. Rows past the tile are not written: their accumulator
  // columns are dropped by the epilogues.
  const int gpr = kc / 16;  // 16-element groups per row; 4 per k64 block
  const int total = min(nrows, BN) * gpr;
  for (int i0 = threadIdx.x; i0 < total; i0 += kUnroll * kThreads) {
    uint4 raw[kUnroll][2];  // the group's 16 values
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = i0 + u * kThreads;
      if (i < total) {
        const int r = i / gpr, b = i % gpr;
        const int64_t row = a.gather ? int64_t(a.gather[row0 + r] / a.gather_div) : int64_t(row0 + r);
        const uint4* src = reinterpret_cast<const uint4*>(a.bf16 + row * a.K + k0 + b * 16);
        raw[u][0] = src[0];
        raw[u][1] = src[1];
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int i = i0 + u * kThreads;
      if (i < total) {
        const int r = i / gpr, b = i % gpr;
        uint8_t* blk = smem + (b >> 2) * (BN * 128);
        const int kin = (b & 3) * 16;  // first K of the group inside its k64 block
        *reinterpret_cast<uint4*>(blk + sw128_k_offset(r, kin)) = raw[u][0];
        *reinterpret_cast<uint4*>(blk + sw128_k_offset(r, kin + 8)) = raw[u][1];
      }
    }
  }
}

}  // namespace moe12x
