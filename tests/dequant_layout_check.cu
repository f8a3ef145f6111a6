// Host check (no GPU): the prepared code-word bit order of common/nvfp4.cuh (pack_prepared_word
// at preparation, prepared_a_bits in dequant_a_frag) gives the same A-register bits as the
// previous layout (copied below as the reference). Scale pairs are unchanged, so the bf16 FMAs,
// and every kernel output, are bit-identical. Also the FP4 activation words of the SM90 wgmma
// kernel (prepare_act_word, decoded by prepared_a_bits) against act_code_pair's bits.
//   usage: dequant_layout_check [full]   (full: all 2^32 code-byte quadruples)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include "common/nvfp4.cuh"

using namespace moe12x;

namespace ref {  // the layout before this change (prepare_weights.cu + dequant_a_frag)
uint32_t pack(const uint32_t (&byte)[4]) {
  uint32_t w = 0;
  const int slot_of[4] = {3, 2, 1, 0};
  for (int b = 0; b < 4; ++b) {
    w |= (byte[b] & 0xF) << (4 * slot_of[b]);
    w |= (byte[b] >> 4) << (4 * (slot_of[b] + 4));
  }
  return w;
}
void extract(uint32_t q, uint32_t (&r)[4]) {
  const uint32_t kSign = 0x80008000u, kMag = 0x01C001C0u;
  r[0] = (q & kSign) | ((q >> 6) & kMag);
  r[1] = ((q << 4) & kSign) | ((q >> 2) & kMag);
  r[2] = ((q << 8) & kSign) | ((q << 2) & kMag);
  r[3] = ((q << 12) & kSign) | ((q << 6) & kMag);
}
// act_code_pair (mainloop/activation_stage.cuh) before its bf16 multiply: byte i of a standard
// activation word -> bf16x2 bits of its two codes.
uint32_t act_pair_bits(uint32_t word, int i) {
  const uint32_t b = (word >> (8 * i)) & 0xFFu;
  return ((b * 0x00040040u) & 0x01C001C0u) | ((b * 0x01001000u) & 0x80008000u);
}
}  // namespace ref

static int failures = 0;
static void fail(const char* what, uint64_t x, uint32_t got, uint32_t want) {
  if (++failures <= 10)
    std::printf("MISMATCH %s input=0x%llx got=0x%08x want=0x%08x\n", what, (unsigned long long)x, got, want);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next32() {
  rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
  return uint32_t(rng >> 16);
}

static void check_codes(uint32_t in) {  // in: the 4 code bytes of one word, byte i -> a[i]
  const uint32_t byte[4] = {in & 0xFF, (in >> 8) & 0xFF, (in >> 16) & 0xFF, in >> 24};
  uint32_t want[4], got[4], r[4];
  ref::extract(ref::pack(byte), want);
  for (int i = 0; i < 4; ++i) r[i] = e2m1_pair_bits(byte[i]);
  prepared_a_bits(pack_prepared_word(r), got);
  for (int i = 0; i < 4; ++i)
    if (got[i] != want[i]) fail("A register", (uint64_t(i) << 32) | in, got[i], want[i]);
}

static void check_act(uint32_t in) {  // in: a standard FP4 activation word
  uint32_t got[4];
  prepared_a_bits(prepare_act_word(in), got);
  for (int i = 0; i < 4; ++i)
    if (got[i] != ref::act_pair_bits(in, i)) fail("activation pair", (uint64_t(i) << 32) | in, got[i], ref::act_pair_bits(in, i));
}

int main(int argc, char** argv) {
  const bool full = argc > 1 && std::strcmp(argv[1], "full") == 0;
  // code words: exhaustive per register byte (others random), random words, or all 2^32.
  uint64_t n = 0;
  if (full) {
    for (uint64_t in = 0; in <= 0xFFFFFFFFull; ++in, ++n) {
      check_codes(uint32_t(in));
      check_act(uint32_t(in));
    }
  } else {
    for (int i = 0; i < 4; ++i)
      for (uint32_t v = 0; v < 256; ++v)
        for (int k = 0; k < 64; ++k, ++n) {
          const uint32_t in = (next32() & ~(0xFFu << (8 * i))) | (v << (8 * i));
          check_codes(in);
          check_act(in);
        }
    for (int k = 0; k < (1 << 22); ++k, ++n) {
      const uint32_t in = next32();
      check_codes(in);
      check_act(in);
    }
  }
  // bit-level bijection: each of the 32 code bits lands on exactly one word bit
  uint32_t seen = 0;
  for (int bit = 0; bit < 32; ++bit) {
    const uint32_t in = 1u << bit;
    const uint32_t byte[4] = {in & 0xFF, (in >> 8) & 0xFF, (in >> 16) & 0xFF, in >> 24};
    uint32_t r[4];
    for (int i = 0; i < 4; ++i) r[i] = e2m1_pair_bits(byte[i]);
    const uint32_t w = pack_prepared_word(r);
    if (__builtin_popcount(w) != 1 || (seen & w)) fail("bijection", in, w, 0);
    seen |= w;
  }
  std::printf("%llu code words checked%s: %s\n", (unsigned long long)n, full ? " (all 2^32)" : "",
              failures ? "FAIL" : "OK");
  return failures ? 1 : 0;
}
