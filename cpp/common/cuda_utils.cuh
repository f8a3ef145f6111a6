// Small device utilities shared by kernels.
#pragma once
#include <cstdint>
#include <cuda_bf16.h>

namespace moe12x {

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ float bf16_to_float(uint16_t b) {
  return __uint_as_float(uint32_t(b) << 16);
}

__device__ __forceinline__ uint16_t float_to_bf16(float v) {
  const __nv_bfloat16 h = __float2bfloat16_rn(v);
  return *reinterpret_cast<const uint16_t*>(&h);
}

// Routing helpers: the local expert of a (token, slot) pair, or -1. Never faults on bad ids.
__device__ __forceinline__ int64_t load_id(const void* ids, bool ids64, int64_t p) {
  return ids64 ? static_cast<const int64_t*>(ids)[p] : int64_t(static_cast<const int32_t*>(ids)[p]);
}

__device__ __forceinline__ int local_expert(int64_t id, int offset, int e_local) {
  const int64_t el = id - offset;
  return (el >= 0 && el < e_local) ? int(el) : -1;
}

__device__ __forceinline__ float load_weight(const void* w, bool w_bf16, int64_t p) {
  return w_bf16 ? bf16_to_float(static_cast<const uint16_t*>(w)[p]) : static_cast<const float*>(w)[p];
}

}  // namespace moe12x
