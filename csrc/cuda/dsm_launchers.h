// Host interface of the dsm_perturb CUDA kernel (dsm_kernel.cu), called by dsm_host.cpp: raw
// pointers, sizes and a stream, no torch types (as launchers.h).
#pragma once

#include "launchers.h"

namespace torchebm::cuda {

// x_tilde = x + sigma * xi, target = -xi / sigma, elementwise over n elements of x. noise ==
// nullptr: xi is drawn from stream 0 (what philox_normal returns for (seed, step) in the compute
// type: float32 for half/bfloat16 states). Outputs are contiguous, in the state dtype.
cudaError_t dsm_perturb(const void* x, const void* noise, void* x_tilde, void* target,
                        Dtype dtype, int64_t n, double sigma, PhiloxArgs rng, Launch launch);

}  // namespace torchebm::cuda
