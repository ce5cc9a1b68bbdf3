// CUDA kernel of dsm_perturb (docs/score_matching.md): the denoising-score-matching noise and
// target in one pass, x_tilde = x + sigma * xi and target = -xi / sigma, with xi passed in or
// drawn from Philox stream 0, group by group, exactly as philox_normal draws it.
//
// Memory-bound: 12 bytes per float32 element with in-kernel noise (x in; x_tilde, target out).
// Each thread handles whole Philox groups, one group per thread (streaming_grid), in a
// grid-stride loop that accepts any grid.
#include "dsm_launchers.h"
#include "storage.cuh"

namespace torchebm::cuda {
namespace {

constexpr int kThreads = 256;

template <class T, bool kNoise>
__global__ void __launch_bounds__(kThreads)
    dsm_perturb_kernel(const T* __restrict__ x, const T* __restrict__ noise,
                       T* __restrict__ x_tilde, T* __restrict__ target, int64_t n,
                       compute_t<T> sigma, PhiloxArgs rng, bool aligned) {
  using C = compute_t<T>;
  constexpr int G = kGroup<T>;
  const PhiloxStep ps = resolve(rng);
  const int64_t groups = (n + G - 1) / G;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups;
       g += int64_t(gridDim.x) * blockDim.x) {
    C xv[G], z[G], t[G];
    load_group(x, g, n, aligned, xv);
    if constexpr (kNoise) {
      load_group(noise, g, n, aligned, z);
    } else {
      group_normals<C>(ps.key, static_cast<uint64_t>(g), ps.step, z);
    }
#pragma unroll
    for (int j = 0; j < G; ++j) {
      const C e = sigma * z[j];  // eps ~ N(0, sigma^2)
      xv[j] = xv[j] + e;
      t[j] = -z[j] / sigma;
    }
    store_group(x_tilde, g, n, aligned, xv);
    store_group(target, g, n, aligned, t);
  }
}

template <class T>
cudaError_t run(const void* x, const void* noise, void* x_tilde, void* target, int64_t n,
                double sigma, PhiloxArgs rng, Launch launch) {
  using C = compute_t<T>;
  if (n == 0) return cudaSuccess;
  const bool aligned = pack_aligned<T>(x) && pack_aligned<T>(noise) && pack_aligned<T>(x_tilde) &&
                       pack_aligned<T>(target);
  const int64_t groups = (n + kGroup<T> - 1) / kGroup<T>;
  const unsigned grid = streaming_grid(groups, kThreads);
  const T* xp = static_cast<const T*>(x);
  T* xtp = static_cast<T*>(x_tilde);
  T* tp = static_cast<T*>(target);
  const C s = static_cast<C>(sigma);
  if (noise != nullptr) {
    dsm_perturb_kernel<T, true><<<grid, kThreads, 0, launch.stream>>>(
        xp, static_cast<const T*>(noise), xtp, tp, n, s, rng, aligned);
  } else {
    dsm_perturb_kernel<T, false><<<grid, kThreads, 0, launch.stream>>>(xp, nullptr, xtp, tp, n, s,
                                                                        rng, aligned);
  }
  return launch_status();
}

}  // namespace

cudaError_t dsm_perturb(const void* x, const void* noise, void* x_tilde, void* target,
                        Dtype dtype, int64_t n, double sigma, PhiloxArgs rng, Launch launch) {
  return with_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return run<T>(x, noise, x_tilde, target, n, sigma, rng, launch);
  });
}

}  // namespace torchebm::cuda
