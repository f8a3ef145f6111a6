// Programmatic dependent launch (SM90+): the grouped schedule's kernels launch while their
// predecessor drains, issue what does not depend on it (the next GEMM's weight ring), then wait.
// Rule that keeps the chain transitive: every CTA waits before it exits, and triggers only after
// its wait, so a kernel that has launched knows every kernel two steps back has completed.
// Without a programmatic launch (or below SM90) both are no-ops.
#pragma once
#include <cuda_runtime_api.h>

#include <utility>

namespace moe12x {

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// The mainloops' hook between issuing an item's weight loads and reading its activations: in the
// grouped launches, the PDL wait (and trigger, after it). The persistent decode kernel passes its
// own (kernel/moe_decode.cuh: the grid barrier once, then the FC1 -> FC2 dependency).
struct PdlWaitTrigger {
  __device__ __forceinline__ void operator()() const {
    pdl_wait();
    pdl_trigger();
  }
};

// Launches kernel<<<grid, block, smem, stream>>>(args...), programmatically dependent on the
// stream's previous kernel when pdl is set.
template <class... Params, class... Args>
cudaError_t launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                          cudaStream_t stream, bool pdl, Args&&... args) {
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = pdl ? attr : nullptr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace moe12x
