#include "common/token_maps.hpp"

#include <mutex>

namespace moe12x {

namespace {
using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// The driver's encoder through cudart (the library links no libcuda), resolved once.
EncodeTiled encoder() {
  static const EncodeTiled fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess) {
      cudaGetLastError();
      return EncodeTiled{nullptr};
    }
    return reinterpret_cast<EncodeTiled>(f);
  }();
  return fn;
}

cudaError_t encode_uncached(const void* base, int64_t rows, int K, Sm90TokenMaps& maps) {
  const EncodeTiled encode = encoder();
  if (!encode) return cudaErrorNotSupported;
  // dims (k in block, row, block); strides of row and block in bytes (the block stride, 128 B, is
  // the smaller one: the box walks rows inside a block first, as the GMMA buffer stores them)
  const cuuint64_t dims[3] = {64, cuuint64_t(rows), cuuint64_t(K / 64)};
  const cuuint64_t strides[2] = {cuuint64_t(K) * 2, 128};
  const cuuint32_t estrides[3] = {1, 1, 1};
  for (int i = 0; i < kTokenMaps; ++i) {
    const int nb = kTokenMapWidths[i];
    const cuuint32_t box[3] = {64, cuuint32_t(8 * nb), cuuint32_t(kTokenMapMaxNB / nb)};
    if (encode(&maps.map[i], CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 3, const_cast<void*>(base), dims, strides, box,
               estrides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS)
      return cudaErrorInvalidValue;
  }
  return cudaSuccess;
}
}  // namespace

// A map describes only (address, shape): the last few are kept, so a layer's repeated calls (the
// same workspace, the same T) skip the 2 x 11 encodes. Any thread, any device: keyed by address.
cudaError_t encode_token_maps(const void* base, int64_t rows, int K, Sm90TokenMaps& maps) {
  struct Entry {
    const void* base = nullptr;
    int64_t rows = 0;
    int K = 0;
    Sm90TokenMaps maps;
  };
  static std::mutex mu;
  static Entry cache[8];
  static unsigned next = 0;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (const Entry& e : cache)
      if (e.base == base && e.rows == rows && e.K == K) {
        maps = e.maps;
        return cudaSuccess;
      }
  }
  if (const cudaError_t e = encode_uncached(base, rows, K, maps); e != cudaSuccess) return e;
  std::lock_guard<std::mutex> lock(mu);
  Entry& e = cache[next++ % 8];
  e.base = base;
  e.rows = rows;
  e.K = K;
  e.maps = maps;
  return cudaSuccess;
}

}  // namespace moe12x
