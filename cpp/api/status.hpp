// Thread-local last-error text and helpers that set it together with a status.
#pragma once
#include <cuda_runtime_api.h>
#include "moe12x/moe12x.h"

namespace moe12x {

// Records `fmt...` as this thread's last error and returns `status`.
moe12x_status_t fail(moe12x_status_t status, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));
void clear_error();

// Maps a CUDA error to a status (no device / unsupported device / generic CUDA failure).
moe12x_status_t fail_cuda(cudaError_t err, const char* what);

}  // namespace moe12x

#define MOE12X_TRY(expr)                                 \
  do {                                                   \
    const moe12x_status_t moe12x_s_ = (expr);            \
    if (moe12x_s_ != MOE12X_SUCCESS) return moe12x_s_;   \
  } while (0)

#define MOE12X_CUDA_TRY(expr, what)                      \
  do {                                                   \
    const cudaError_t moe12x_e_ = (expr);                \
    if (moe12x_e_ != cudaSuccess) return ::moe12x::fail_cuda(moe12x_e_, what); \
  } while (0)
