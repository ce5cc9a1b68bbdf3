// CUDA kernels of philox_normal and philox_uniform (docs/kernels.md, "Random numbers"), and
// the device-side advance of a graph-safe Philox state.
#include "launchers.h"
#include "storage.cuh"

namespace torchebm::cuda {
namespace {

constexpr int kThreads = 256;

// One thread per Philox group per iteration: the group's G values land in G consecutive
// elements, so the output is the same whatever the grid.
template <class T, bool kUniform>
__global__ void __launch_bounds__(kThreads)
    philox_fill_kernel(T* __restrict__ out, int64_t n, PhiloxArgs rng, bool aligned) {
  using C = compute_t<T>;
  constexpr int G = kGroup<T>;
  const PhiloxStep ps = resolve(rng);
  const int64_t groups = (n + G - 1) / G;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups;
       g += int64_t(gridDim.x) * blockDim.x) {
    C v[G];
    if constexpr (kUniform) {
      group_uniforms<C>(ps.key, static_cast<uint64_t>(g), ps.step, v);
    } else {
      group_normals<C>(ps.key, static_cast<uint64_t>(g), ps.step, v);
    }
    store_group(out, g, n, aligned, v);
  }
}

template <bool kUniform, class T>
cudaError_t fill(void* out, int64_t n, PhiloxArgs rng, Launch launch) {
  if (n == 0) return cudaSuccess;
  const int64_t groups = (n + kGroup<T> - 1) / kGroup<T>;
  const unsigned grid = streaming_grid(groups, kThreads);
  philox_fill_kernel<T, kUniform><<<grid, kThreads, 0, launch.stream>>>(
      static_cast<T*>(out), n, rng, pack_aligned<T>(out));
  return launch_status();
}

template <bool kUniform>
cudaError_t fill_dtype(void* out, Dtype dtype, int64_t n, PhiloxArgs rng, Launch launch) {
  return with_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return fill<kUniform, T>(out, n, rng, launch);
  });
}

__global__ void philox_state_advance_kernel(int64_t* state, int64_t increment) {
  state[1] += increment;
}

}  // namespace

cudaError_t philox_normal(void* out, Dtype dtype, int64_t n, PhiloxArgs rng, Launch launch) {
  return fill_dtype<false>(out, dtype, n, rng, launch);
}

cudaError_t philox_uniform(void* out, Dtype dtype, int64_t n, PhiloxArgs rng, Launch launch) {
  return fill_dtype<true>(out, dtype, n, rng, launch);
}

cudaError_t philox_state_advance(int64_t* state, int64_t increment, Launch launch) {
  philox_state_advance_kernel<<<1, 1, 0, launch.stream>>>(state, increment);
  return launch_status();
}

}  // namespace torchebm::cuda
