// CUDA kernel of the fused Langevin update (docs/kernels.md):
//   x' = clamp(x - a * clip(grad, -c, c) + b * xi, clamp_min, clamp_max)
// (langevin_point in torchebm/updates.h) with xi passed in or drawn from Philox stream 0,
// group by group, exactly as philox_normal draws it; a and b floats or per chain ([B]).
//
// Memory-bound: 12 bytes per float32 element with in-kernel noise (x, grad in; x' out). Each
// thread handles whole Philox groups (4 float32 or 2 float64 elements: one 16-byte vector per
// tensor), one group per thread (streaming_grid), in a grid-stride loop that accepts any grid.
#include <limits>

#include "launchers.h"
#include "storage.cuh"
#include "torchebm/updates.h"

namespace torchebm::cuda {
namespace {

constexpr int kThreads = 256;

// `out` may alias `x` (the graph-safe in-place update), so neither is __restrict__: each
// element is read before it is written, by the same thread.
// Per-chain coefficients (a_chain or b_chain not null, [B]): element i takes chain i / row's
// (a, b), the same update rule (the CPU kernel's rows with their chain's coefficients).
template <class T, bool kNoise>
__global__ void __launch_bounds__(kThreads)
    langevin_update_kernel(const T* x, const T* __restrict__ grad, const T* __restrict__ noise,
                           T* out, int64_t n, LangevinCoef<compute_t<T>> k, PhiloxArgs rng,
                           bool aligned, const T* __restrict__ a_chain,
                           const T* __restrict__ b_chain, int64_t row) {
  using C = compute_t<T>;
  constexpr int G = kGroup<T>;
  const PhiloxStep ps = resolve(rng);
  const int64_t groups = (n + G - 1) / G;
  const bool per_chain = a_chain != nullptr || b_chain != nullptr;
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups;
       g += int64_t(gridDim.x) * blockDim.x) {
    C xv[G], gv[G], z[G];
    load_group(x, g, n, aligned, xv);
    load_group(grad, g, n, aligned, gv);
    if constexpr (kNoise) {
      load_group(noise, g, n, aligned, z);
    } else {
      group_normals<C>(ps.key, static_cast<uint64_t>(g), ps.step, z);
    }
    if (!per_chain) {
#pragma unroll
      for (int j = 0; j < G; ++j) xv[j] = langevin_point(xv[j], gv[j], z[j], k);
    } else {
      // Element g * G + j of chain c, at offset r in its row (one division per group).
      const int64_t i0 = g * G;
      int64_t c = i0 / row, r = i0 - c * row;
#pragma unroll
      for (int j = 0; j < G; ++j) {
        LangevinCoef<C> kc = k;
        if (i0 + j < n) {  // tail elements past n are not stored (and c may be B)
          if (a_chain != nullptr) kc.a = to_compute(a_chain[c]);
          if (b_chain != nullptr) kc.b = to_compute(b_chain[c]);
        }
        xv[j] = langevin_point(xv[j], gv[j], z[j], kc);
        if (++r == row) {
          r = 0;
          ++c;
        }
      }
    }
    store_group(out, g, n, aligned, xv);
  }
}

template <class T>
cudaError_t run(const void* x, const void* grad, const void* noise, void* out, int64_t n,
                const LangevinCoeffs& c, PhiloxArgs rng, Launch launch, ChainCoeffs chain) {
  using C = compute_t<T>;
  if (n == 0) return cudaSuccess;
  const bool per_chain = chain.first != nullptr || chain.second != nullptr;
  if (per_chain && chain.row <= 0) return cudaErrorInvalidValue;
  const T* ac = static_cast<const T*>(chain.first);
  const T* bc = static_cast<const T*>(chain.second);
  const LangevinCoef<C> k = langevin_coef<C>(c);
  const bool aligned = pack_aligned<T>(x) && pack_aligned<T>(grad) && pack_aligned<T>(noise) &&
                       pack_aligned<T>(out);
  const int64_t groups = (n + kGroup<T> - 1) / kGroup<T>;
  const T* xp = static_cast<const T*>(x);
  const T* gp = static_cast<const T*>(grad);
  T* op = static_cast<T*>(out);
  if (noise != nullptr) {
    const unsigned grid = streaming_grid(groups, kThreads);
    langevin_update_kernel<T, true><<<grid, kThreads, 0, launch.stream>>>(
        xp, gp, static_cast<const T*>(noise), op, n, k, rng, aligned, ac, bc, chain.row);
  } else {
    const unsigned grid = streaming_grid(groups, kThreads);
    langevin_update_kernel<T, false><<<grid, kThreads, 0, launch.stream>>>(
        xp, gp, nullptr, op, n, k, rng, aligned, ac, bc, chain.row);
  }
  return launch_status();
}

}  // namespace

cudaError_t langevin_update(const void* x, const void* grad, const void* noise, void* out,
                            Dtype dtype, int64_t n, LangevinCoeffs coeffs, PhiloxArgs rng,
                            Launch launch, ChainCoeffs per_chain) {
  return with_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return run<T>(x, grad, noise, out, n, coeffs, rng, launch, per_chain);
  });
}

}  // namespace torchebm::cuda
