#include "api/status.hpp"

#include <cstdarg>
#include <cstdio>

namespace moe12x {

static thread_local char g_last_error[1024] = "";

moe12x_status_t fail(moe12x_status_t status, const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vsnprintf(g_last_error, sizeof(g_last_error), fmt, args);
  va_end(args);
  return status;
}

void clear_error() { g_last_error[0] = '\0'; }

moe12x_status_t fail_cuda(cudaError_t err, const char* what) {
  cudaGetLastError();  // clear a sticky-free error so later calls start clean
  switch (err) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorStubLibrary:
    case cudaErrorCallRequiresNewerDriver:
      return fail(MOE12X_ERROR_NO_DEVICE, "%s: no usable CUDA device (%s: %s)", what,
                  cudaGetErrorName(err), cudaGetErrorString(err));
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorInvalidPtx:
      return fail(MOE12X_ERROR_UNSUPPORTED_DEVICE, "%s: this build has no code for the device (%s: %s)",
                  what, cudaGetErrorName(err), cudaGetErrorString(err));
    default:
      return fail(MOE12X_ERROR_CUDA, "%s: %s: %s", what, cudaGetErrorName(err), cudaGetErrorString(err));
  }
}

}  // namespace moe12x

extern "C" {

const char* moe12x_status_string(moe12x_status_t status) {
  switch (status) {
    case MOE12X_SUCCESS: return "MOE12X_SUCCESS";
    case MOE12X_ERROR_INVALID_ARGUMENT: return "MOE12X_ERROR_INVALID_ARGUMENT";
    case MOE12X_ERROR_UNSUPPORTED_SHAPE: return "MOE12X_ERROR_UNSUPPORTED_SHAPE";
    case MOE12X_ERROR_NO_DEVICE: return "MOE12X_ERROR_NO_DEVICE";
    case MOE12X_ERROR_UNSUPPORTED_DEVICE: return "MOE12X_ERROR_UNSUPPORTED_DEVICE";
    case MOE12X_ERROR_INSUFFICIENT_BUFFER: return "MOE12X_ERROR_INSUFFICIENT_BUFFER";
    case MOE12X_ERROR_CUDA: return "MOE12X_ERROR_CUDA";
    case MOE12X_ERROR_NOT_IMPLEMENTED: return "MOE12X_ERROR_NOT_IMPLEMENTED";
    case MOE12X_ERROR_INTERNAL: return "MOE12X_ERROR_INTERNAL";
  }
  return "MOE12X_ERROR_UNKNOWN_STATUS";
}

const char* moe12x_get_last_error(void) { return moe12x::g_last_error; }

}  // extern "C"
