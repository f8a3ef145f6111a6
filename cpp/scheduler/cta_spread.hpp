// How many CTAs of a small grouped launch may share an SM (host arithmetic; kernel/moe_gemm.cuh
// asks for the shared memory it computes). A grid of few CTAs launched by PDL while its
// predecessor still holds the SMs lands on whichever SMs free up first, as many per SM as fit:
// a decode FC2 then streams from a fraction of the SMs. Asking for 1 / (cap + 1) of an SM's
// shared memory, cap = ceil(CTAs / SMs), leaves room for at most cap of them per SM, so they
// spread (measured on an H200: gpt-oss-120b T = 2 +21 %, bench/NOTES.md session 13).
#pragma once
#include <cstddef>
#include <cstdint>

namespace moe12x {

struct DeviceSmem {
  int per_sm, optin, reserved;  // bytes per SM, per block with opt-in, reserved by the system per block
};

inline size_t spread_align(size_t x) { return (x + 127) / 128 * 128; }

// Dynamic shared memory for a launch of `ctas` CTAs that need `smem` bytes each and fit
// `max_per_sm` per SM otherwise; `smem` itself when the CTAs cover the SMs anyway.
inline size_t spread_smem(size_t smem, int64_t ctas, int max_per_sm, int sms, const DeviceSmem& d) {
  const int64_t cap = sms > 0 ? (ctas + sms - 1) / sms : max_per_sm;
  if (cap >= max_per_sm || d.per_sm <= 0) return smem;
  const size_t spread = spread_align(size_t(d.per_sm / (cap + 1) - d.reserved + 16));
  return spread > smem && spread <= size_t(d.optin) ? spread : smem;
}

// The most spread_smem asks for (one CTA per SM): the kernel's opt-in attribute.
inline size_t spread_smem_max(size_t smem, const DeviceSmem& d) {
  const size_t one = spread_align(size_t(d.per_sm / 2 - d.reserved + 16));
  return one > smem ? one : smem;
}

}  // namespace moe12x
