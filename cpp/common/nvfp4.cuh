// NVFP4 numerics shared by every kernel: exact e4m3 / e2m1 encoders (SPEC §2) and the
// register dequantization of the prepared weight layout. Software encoders on purpose:
// cvt.rn.satfinite.e2m1x2 is SM100+ only, and one code path keeps SM90/SM120/PTX bit-identical.
#pragma once
#include <cstdint>
#include <cuda_bf16.h>

namespace moe12x {

// ---- e4m3 (fn) ---------------------------------------------------------------------------
__device__ __forceinline__ float e4m3_decode(uint32_t b) {
  const uint32_t e = (b >> 3) & 0xF, m = b & 7;
  float v;
  if (e == 0) {
    v = float(m) * (1.0f / 512.0f);  // subnormal: m * 2^-9, exact
  } else {
    uint32_t bits = ((e + 120u) << 23) | (m << 20);
    v = __uint_as_float(bits);
  }
  return (b & 0x80) ? -v : v;
}

// Round-to-nearest-even, saturating to 448; t must be >= 0 (a scale).
__device__ __forceinline__ uint32_t e4m3_encode_nonneg(float t) {
  if (!(t < 448.0f)) return 0x7E;              // >= 448, inf: satfinite (NaN too)
  if (t < 0.015625f) {                           // below 2^-6: subnormal grid m * 2^-9
    return uint32_t(rintf(t * 512.0f));        // exact scaling; 8 -> 0x08 = 2^-6 (normal)
  }
  const uint32_t bits = __float_as_uint(t);
  const uint32_t r = bits + 0x7FFFFu + ((bits >> 20) & 1u);  // RNE to 3 mantissa bits
  const uint32_t c = (r >> 20) - (120u << 3);
  return c > 0x7Eu ? 0x7Eu : c;
}

// ---- e2m1 ----------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t e2m1_encode(float v) {
  // The magnitude code counts the thresholds |v| has passed, ties to even at every midpoint
  // (0.25 -> 0, 0.75 -> 2, 1.25 -> 2, 1.75 -> 4, 2.5 -> 4, 3.5 -> 6, 5 -> 6); > 5, inf and NaN
  // saturate to 7. Branch-free on purpose: written as an if-chain, ptxas emitted a divergent
  // branch tree per value (the FC1 epilogue quantizes 16 values per lane, one token per lane).
  const float a = fabsf(v);
  uint32_t m = uint32_t(a > 0.25f) + uint32_t(a >= 0.75f) + uint32_t(a > 1.25f) + uint32_t(a >= 1.75f) +
               uint32_t(a > 2.5f) + uint32_t(a >= 3.5f) + uint32_t(!(a <= 5.0f));
  m = a != a ? 7u : m;  // NaN: every compare above but the last is false
  return m | ((__float_as_uint(v) >> 28) & 8u);
}

__device__ __forceinline__ float e2m1_decode(uint32_t c) {
  const uint32_t m = c & 7;
  const float mag = m < 2 ? 0.5f * float(m) : float(2 + (m & 1)) * float(1u << (m >> 1)) * 0.25f;
  return (c & 8) ? -mag : mag;
}

// ---- division without a branch per call ----------------------------------------------------
// a / b by the instructions ptxas emits for div.rn when its FCHK range test passes (reciprocal,
// one Newton step, one residual correction), without the test and slow-path call, which wrap
// every division in a divergence region and serialize long runs of them. Used only where
// a == 0 or 2^-60 <= |a| <= 2^60, and 2^-60 <= b <= 2^60 (no intermediate leaves the normal
// range, inside FCHK's fast range); `ok` turns false otherwise and the caller redoes its batch
// with `/` (tiny or huge values: rare). Bit-exact against the reference in
// tests/test_gpu_quant.py (ties, subnormal scales, signed zeros) and the GEMM suite.
__device__ __forceinline__ float div_rn_unchecked(float a, float b, bool& ok) {
  float y;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(b));
  y = fmaf(y, fmaf(-b, y, 1.0f), y);
  const float q = a * y;
  const float r = fmaf(-b, q, a);
  const float aa = fabsf(a);
  const bool zero = a == 0.0f;
  // bitwise &, |: no short-circuit branches
  ok = ok & (zero | ((aa >= 0x1p-60f) & (aa <= 0x1p60f))) & (b >= 0x1p-60f) & (b <= 0x1p60f);
  return zero ? a : fmaf(y, r, q);  // 0 / b = a, sign included
}

// The callers' rare fallback, out of line: a division inlined is ~15 instructions plus the
// slow-path call, and the fallback batches were a large share of the SASS of kernels that
// unroll them per tile width (instruction-fetch stalls, bench/NOTES.md v24).
static __device__ __noinline__ float div_rn_cold(float a, float b) { return __fdiv_rn(a, b); }

// ---- block quantization (SPEC §2, exact op order) -------------------------------------------
struct BlockScale {
  uint32_t sf;    // e4m3 byte
  float denom;    // dec(sf) * gs; 0 => every code is 0
};

__device__ __forceinline__ BlockScale nvfp4_block_scale(float amax, float gs) {
  BlockScale s{0u, 0.0f};
  if (amax == 0.0f || gs == 0.0f) return s;
  const float t = __fdiv_rn(__fdiv_rn(amax, 6.0f), gs);
  s.sf = e4m3_encode_nonneg(t);
  const float d = e4m3_decode(s.sf);
  s.denom = d == 0.0f ? 0.0f : __fmul_rn(d, gs);
  return s;
}

__device__ __forceinline__ uint32_t nvfp4_code(float v, const BlockScale& s) {
  return s.denom == 0.0f ? 0u : e2m1_encode(__fdiv_rn(v, s.denom));
}

// v[i] / s.denom for a block (s.denom != 0), nvfp4_code's divisions batched: 16 independent
// chains instead of 16 serialized ones, the checked division where one left the safe range.
__device__ __forceinline__ void nvfp4_block_quotients(const float (&v)[16], float denom, float (&q)[16]) {
  bool ok = true;
#pragma unroll
  for (int i = 0; i < 16; ++i) q[i] = div_rn_unchecked(v[i], denom, ok);
  if (!ok) {
#pragma unroll
    for (int i = 0; i < 16; ++i) q[i] = div_rn_cold(v[i], denom);
  }
}

// The block's scale (SPEC §2: amax over the 16 values).
__device__ __forceinline__ BlockScale nvfp4_block_scale(const float (&v)[16], float gs) {
  float amax = 0.0f;
#pragma unroll
  for (int i = 0; i < 16; ++i) amax = fmaxf(amax, fabsf(v[i]));
  return nvfp4_block_scale(amax, gs);
}

// One 16-element block of fp32 values -> 8 packed code bytes (element 2j in the low nibble) and
// the e4m3 scale byte. Shared by the quantizers, the routed-row packer and the FC1 epilogue.
__device__ __forceinline__ uint32_t nvfp4_quantize_block(const float (&v)[16], float gs, uint2& codes) {
  const BlockScale s = nvfp4_block_scale(v, gs);
  uint32_t w[2] = {0u, 0u};
  if (s.denom != 0.0f) {
    float q[16];
    nvfp4_block_quotients(v, s.denom, q);
#pragma unroll
    for (int i = 0; i < 16; ++i) w[i / 8] |= e2m1_encode(q[i]) << (4 * (i % 8));
  }
  codes = make_uint2(w[0], w[1]);
  return s.sf;
}

// The same for a block of bf16 bits.
__device__ __forceinline__ uint32_t nvfp4_quantize_block(const uint16_t (&h)[16], float gs, uint2& codes) {
  float v[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) v[i] = __uint_as_float(uint32_t(h[i]) << 16);
  return nvfp4_quantize_block(v, gs, codes);
}

// ---- prepared-weight dequantization --------------------------------------------------------
// Each A register is built as bf16x2 bits "q * 2^-126": sign at bit 15, the 3 magnitude bits
// (e1 e0 m) at bits 8..6, per half (code 1 lands on a bf16 subnormal, exactly 0.5 * 2^-126);
// one bf16 FMA with S = sf * 2^118 yields q * sf * 2^-8, exact because q * sf has at most 6
// significant bits. kAccScale undoes the 2^-8.
constexpr float kAccScale = 256.0f;

// A prepared 32-bit word holds the 8 codes one lane needs for one m16n8k16 A fragment: register
// a0 (row g, k 2t/2t+1), a1 (row g+8), a2 (row g, k+8), a3 (row g+8, k+8); low half = even k.
// Its bit order is chosen so that extraction is 8 integer ops (was 15): a0 is the word masked,
// a1/a2 the word rotated right by 3/6 and masked, a3 the 8 remaining bits (0,1,3,4 per half)
// spread by one multiply (copies at +2, +7, +12 never overlap, so no carries) and masked.
// (No layout makes every register a 2-op rotate/permute + mask: 4 translates of the per-half
// pattern {6,7,8,15} cannot tile 16 bits, with or without byte permutes.)
constexpr uint32_t kABits = 0x81C081C0u;                          // sign + magnitude, both halves
constexpr uint32_t kA3Src = 0x001B001Bu;                          // a3's bits in the word
constexpr uint32_t kA3Mul = (1u << 2) | (1u << 7) | (1u << 12);  // 4 -> 6, 0/1 -> 7/8, 3 -> 15

__host__ __device__ __forceinline__ uint32_t rotr32(uint32_t x, uint32_t n) {
#ifdef __CUDA_ARCH__
  return __funnelshift_r(x, x, n);  // one SHF.R.W
#else
  return (x >> n) | (x << ((32u - n) & 31u));
#endif
}

__host__ __device__ __forceinline__ void prepared_a_bits(uint32_t q, uint32_t (&r)[4]) {
  r[0] = q & kABits;
  r[1] = rotr32(q, 3) & kABits;
  r[2] = rotr32(q, 6) & kABits;
  r[3] = ((q & kA3Src) * kA3Mul) & kABits;
}

// One code byte (low nibble: even k) -> its register bits as above.
__host__ __device__ __forceinline__ uint32_t e2m1_pair_bits(uint32_t byte) {
  const uint32_t lo = byte & 0xF, hi = (byte >> 4) & 0xF;
  return ((lo & 8u) << 12) | ((lo & 7u) << 6) | ((hi & 8u) << 28) | ((hi & 7u) << 22);
}

// Inverse of prepared_a_bits (preparation only): r[i] must hold only kABits bits.
__host__ __device__ __forceinline__ uint32_t pack_prepared_word(const uint32_t (&r)[4]) {
  const uint32_t r1 = (r[1] << 3) | (r[1] >> 29), r2 = (r[2] << 6) | (r[2] >> 26);
  return r[0] | r1 | r2 | ((r[3] >> 2) & 0x00100010u) | ((r[3] >> 7) & 0x00030003u) |
         ((r[3] >> 12) & 0x00080008u);
}

// FP4 activation word (8 codes of one row, k ascending, low nibble first) -> the prepared bit
// order: prepared_a_bits then yields the bf16x2 pairs (k0,k1), (k2,k3), (k4,k5), (k6,k7), the
// same bits act_code_pair extracts one byte at a time (8 integer ops per word instead of 20).
// The SM90 wgmma kernel's token form in v17-v20; since v21 only the ladder
// (bench/micro/sm90_ws_ladder.cu, stage_fp4_row_gmma) and tests/dequant_layout_check.cu use it.
__host__ __device__ __forceinline__ uint32_t prepare_act_word(uint32_t w) {
  const uint32_t r[4] = {e2m1_pair_bits(w & 0xFFu), e2m1_pair_bits((w >> 8) & 0xFFu),
                         e2m1_pair_bits((w >> 16) & 0xFFu), e2m1_pair_bits(w >> 24)};
  return pack_prepared_word(r);
}

// Prepared scale code: 0 never occurs (zero-scale blocks are zeroed at preparation); else
// code = E << 3 | m with sf = 2^(E-10) * (1 + m/8), E in 1..18 (e4m3 subnormals normalized).
// S bits = code << 4 + (235 << 7): exponent field E + 235 <= 253, so S = sf * 2^118 exactly.
// (PRMT + LEA per S stays: a nibble-swapped code lets 2 LOPs per 4-code word feed one PRMT per S,
// but in the mainloop the compiler rematerializes those per step, 3 ops per S.)
__device__ __forceinline__ uint32_t scale_pair(uint32_t codes4, uint32_t j) {
  // bytes [c_j, 0, c_j, 0] -> two bf16 S values
  const uint32_t sel = j | (4u << 4) | (j << 8) | (4u << 12);
  uint32_t x;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(x) : "r"(codes4), "r"(0u), "r"(sel));
  return x * 16u + 0x75807580u;
}

__device__ __forceinline__ uint32_t bf16x2_mul_exact(uint32_t a, uint32_t b) {
  uint32_t d;
  // fma with -0 addend: exact product, +0 stays +0, subnormal inputs honoured (no .ftz for bf16)
  asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(0x80008000u));
  return d;
}

// One prepared word + the two scale pairs of its rows -> the 4 A registers of one k16 step.
__device__ __forceinline__ void dequant_a_frag(uint32_t q, uint32_t s_g, uint32_t s_g8,
                                               uint32_t (&a)[4]) {
  uint32_t r[4];
  prepared_a_bits(q, r);
  a[0] = bf16x2_mul_exact(r[0], s_g);
  a[1] = bf16x2_mul_exact(r[1], s_g8);
  a[2] = bf16x2_mul_exact(r[2], s_g);
  a[3] = bf16x2_mul_exact(r[3], s_g8);
}

}  // namespace moe12x
