// TMA tensor maps of the packed bf16 token rows [rows, K] that the SM90 wgmma kernel stages
// (kernel/moe_gemm_sm90_ws.cuh): one map per token-tile width nb (n8 tiles), each a 3-D view
// (64 k, row, k64 block) whose box (64, 8 nb, kTokenMapMaxNB / nb) fills one token buffer: the
// blocks land 8 nb * 128 B apart, each block in GMMA K-major SW128 order (the hardware swizzle
// of 128-B rows within 1024-B atoms, as sw128_k_offset). Built on the host per launch.
#pragma once
#include <cuda.h>  // CUtensorMap (the type only; the encoder is resolved through cudart)
#include <cuda_runtime_api.h>
#include <cstdint>

#include "common/params.hpp"

namespace moe12x {

constexpr int kTokenMapMaxNB = 20;  // 160 rows: a token buffer
constexpr int kTokenMapWidths[] = {1, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20};  // the wgmma N / 8 instantiated
constexpr int kTokenMaps = sizeof(kTokenMapWidths) / sizeof(int);

MOE12X_HD constexpr int token_map_index(int nb) { return nb <= 2 ? nb - 1 : nb / 2; }  // nb in kTokenMapWidths
static_assert(token_map_index(20) == kTokenMaps - 1 && token_map_index(4) == 2, "one map per width");

struct Sm90TokenMaps {  // CUtensorMap carries its own (64-B or more) alignment
  CUtensorMap map[kTokenMaps];
};

// Encodes the maps of `rows` bf16 rows of K elements (K % 64 == 0) at `base` (16-B aligned).
// cudaErrorInvalidValue if the driver rejects a map.
cudaError_t encode_token_maps(const void* base, int64_t rows, int K, Sm90TokenMaps& maps);

}  // namespace moe12x
