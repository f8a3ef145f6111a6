// Shared by the bench/micro programs: CUDA checks and the best-of-N event timing of one launch.
#pragma once
#include <cstdio>

#include <cuda_runtime_api.h>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e_)); return 1; } } while (0)

// One warm-up launch, then the fastest of `reps` timed launches (ms) in *best. Returns 0 or 1.
template <class Launch>
int best_of(Launch&& launch, int reps, float* best) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  launch(true);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
  *best = 1e30f;
  for (int r = 0; r < reps; ++r) {
    CK(cudaEventRecord(e0));
    launch(false);
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    *best = ms < *best ? ms : *best;
  }
  CK(cudaEventDestroy(e0));
  CK(cudaEventDestroy(e1));
  return 0;
}

// The SM count of device 0 and a small sink buffer (kernels write to it only on impossible sums,
// so their results stay live). Returns 0 or 1.
inline int micro_setup(int* sms, float** sink) {
  CK(cudaDeviceGetAttribute(sms, cudaDevAttrMultiProcessorCount, 0));
  CK(cudaMalloc(sink, 4096));
  return 0;
}
