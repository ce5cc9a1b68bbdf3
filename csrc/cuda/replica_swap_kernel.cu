// CUDA kernels of replica_swap (torchebm/replica_swap.h; host side in replica_swap_host.cpp).
//
// Two launches: one thread per proposed pair (k, b) decides the swap (its uniform given, or
// stream 1 element k * B + b, as philox_uniform([K-1, B]) draws it); then a grid-stride pass
// over every element of x writes each row from its source row (swap_source), and the first
// element of each row its energy.
#include "launchers.h"
#include "storage.cuh"
#include "torchebm/replica_swap.h"

namespace torchebm::cuda {
namespace {

constexpr int kThreads = 256;

template <class T>
__global__ void __launch_bounds__(kThreads)
    replica_swap_decide(const T* __restrict__ energy, const T* __restrict__ uniform,
                        bool* __restrict__ accepted, int64_t n_temps, int64_t n_chains,
                        int64_t parity, const compute_t<T>* __restrict__ betas,
                        PhiloxArgs rng) {
  using C = compute_t<T>;
  constexpr int G = kGroup<T>;
  const PhiloxStep ps = resolve(rng);
  const int64_t n = (n_temps - 1) * n_chains;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t k = i / n_chains;
    bool take = false;
    if (swap_pair_proposed(k, n_temps, parity)) {
      C u;
      if (uniform != nullptr) {
        u = to_compute(uniform[i]);
      } else {
        C g[G];
        group_uniforms<C>(ps.key, static_cast<uint64_t>(i / G), ps.step, g);
        u = pick(g, static_cast<uint32_t>(i % G));
      }
      const C log_r = swap_log_ratio(betas[k], betas[k + 1], to_compute(energy[i]),
                                     to_compute(energy[i + n_chains]));
      take = metropolis_accept(u, log_r);
    }
    accepted[i] = take;
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    replica_swap_move(const T* __restrict__ x, const T* __restrict__ energy,
                      const bool* __restrict__ accepted, T* __restrict__ x_out,
                      T* __restrict__ e_out, int64_t n_temps, int64_t n_chains, int64_t d,
                      int64_t parity) {
  const int64_t n = n_temps * n_chains * d;
  for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n;
       e += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = e / d, j = e % d;
    const int64_t k = r / n_chains, b = r % n_chains;
    const int64_t src = swap_source(k, b, n_temps, n_chains, parity, accepted) * n_chains + b;
    x_out[e] = x[src * d + j];
    if (j == 0) e_out[r] = energy[src];
  }
}

template <class T>
cudaError_t run_swap(const void* x, const void* energy, const void* betas, const void* uniform,
                     void* x_out, void* e_out, bool* accepted, int64_t n_temps, int64_t n_chains,
                     int64_t d, int64_t parity, PhiloxArgs rng, Launch launch) {
  using C = compute_t<T>;
  if (n_temps * n_chains == 0) return cudaSuccess;
  if (n_temps > 1) {
    const int64_t pairs = (n_temps - 1) * n_chains;
    replica_swap_decide<T><<<streaming_grid(pairs, kThreads), kThreads, 0, launch.stream>>>(
        static_cast<const T*>(energy), static_cast<const T*>(uniform), accepted, n_temps,
        n_chains, parity, static_cast<const C*>(betas), rng);
    const cudaError_t err = launch_status();
    if (err != cudaSuccess) return err;
  }
  replica_swap_move<T><<<streaming_grid(n_temps * n_chains * d, kThreads), kThreads, 0,
                         launch.stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(energy), accepted, static_cast<T*>(x_out),
      static_cast<T*>(e_out), n_temps, n_chains, d, parity);
  return launch_status();
}

}  // namespace

cudaError_t replica_swap(const void* x, const void* energy, const void* betas,
                         const void* uniform, void* x_out, void* energy_out, bool* accepted,
                         Dtype dtype, int64_t n_temps, int64_t n_chains, int64_t row,
                         int64_t parity, PhiloxArgs rng, Launch launch) {
  return with_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return run_swap<T>(x, energy, betas, uniform, x_out, energy_out, accepted, n_temps, n_chains,
                       row, parity, rng, launch);
  });
}

}  // namespace torchebm::cuda
