// CUDA kernel of the fused leapfrog kick + drift (docs/kernels.md, torchebm/updates.h):
//   p' = p - kick * grad;  x' = x + drift * inv_mass * p'
// inv_mass absent (unit mass), a scalar, or diagonal [d] broadcast over the last dimension.
// kick and drift are floats or per chain ([B]: element i takes chain i / row's).
#include "launchers.h"
#include "storage.cuh"

namespace torchebm::cuda {
namespace {

constexpr int kThreads = 256;
enum Mass : int { kUnit = 0, kScalar = 1, kDiagonal = 2 };

template <class T, int kMass>
__global__ void __launch_bounds__(kThreads)
    kick_drift_kernel(const T* __restrict__ x, const T* __restrict__ p, const T* __restrict__ grad,
                      const T* __restrict__ inv_mass, int64_t d, T* __restrict__ x_out,
                      T* __restrict__ p_out, int64_t n, compute_t<T> kick_size,
                      compute_t<T> drift_size, bool aligned, const T* __restrict__ kick_chain,
                      const T* __restrict__ drift_chain, int64_t row) {
  using C = compute_t<T>;
  constexpr int G = kGroup<T>;
  const int64_t groups = (n + G - 1) / G;
  const bool per_chain = kick_chain != nullptr || drift_chain != nullptr;
  C m_scalar = C(1);
  if constexpr (kMass == kScalar) m_scalar = to_compute(inv_mass[0]);
  for (int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; g < groups;
       g += int64_t(gridDim.x) * blockDim.x) {
    C xv[G], pv[G], gv[G];
    load_group(x, g, n, aligned, xv);
    load_group(p, g, n, aligned, pv);
    load_group(grad, g, n, aligned, gv);
    int64_t j = 0;
    if constexpr (kMass == kDiagonal) j = (g * G) % d;
    // Per chain: element g * G + k belongs to chain c, at offset r in its row.
    const int64_t i0 = g * G;
    int64_t c = per_chain ? i0 / row : 0, r = per_chain ? i0 - c * row : 0;
#pragma unroll
    for (int k = 0; k < G; ++k) {
      C ks = kick_size, ds = drift_size;
      if (per_chain) {
        if (i0 + k < n) {  // tail elements past n are not stored (and c may be B)
          if (kick_chain != nullptr) ks = to_compute(kick_chain[c]);
          if (drift_chain != nullptr) ds = to_compute(drift_chain[c]);
        }
        if (++r == row) {
          r = 0;
          ++c;
        }
      }
      const C pn = kick(pv[k], gv[k], ks);
      pv[k] = pn;
      if constexpr (kMass == kUnit) {
        xv[k] = drift_unit_mass(xv[k], pn, ds);
      } else if constexpr (kMass == kScalar) {
        xv[k] = drift(xv[k], pn, m_scalar, ds);
      } else {
        // Tail elements past n read a valid index and are not stored.
        xv[k] = drift(xv[k], pn, to_compute(inv_mass[j]), ds);
        j = j + 1 == d ? 0 : j + 1;
      }
    }
    store_group(x_out, g, n, aligned, xv);
    store_group(p_out, g, n, aligned, pv);
  }
}

template <class T>
cudaError_t run(const void* x, const void* p, const void* grad, const void* inv_mass,
                int64_t inv_mass_len, int64_t d, void* x_out, void* p_out, int64_t n, double kick,
                double drift, Launch launch, ChainCoeffs chain) {
  using C = compute_t<T>;
  if (n == 0) return cudaSuccess;
  if ((chain.first != nullptr || chain.second != nullptr) && chain.row <= 0) {
    return cudaErrorInvalidValue;
  }
  const T* kc = static_cast<const T*>(chain.first);
  const T* dc = static_cast<const T*>(chain.second);
  const bool aligned = pack_aligned<T>(x) && pack_aligned<T>(p) && pack_aligned<T>(grad) &&
                       pack_aligned<T>(x_out) && pack_aligned<T>(p_out);
  const int64_t groups = (n + kGroup<T> - 1) / kGroup<T>;
  const T *xp = static_cast<const T*>(x), *pp = static_cast<const T*>(p),
          *gp = static_cast<const T*>(grad), *mp = static_cast<const T*>(inv_mass);
  T *xo = static_cast<T*>(x_out), *po = static_cast<T*>(p_out);
  if (inv_mass == nullptr) {
    const unsigned grid = streaming_grid(groups, kThreads);
    kick_drift_kernel<T, kUnit><<<grid, kThreads, 0, launch.stream>>>(
        xp, pp, gp, mp, d, xo, po, n, C(kick), C(drift), aligned, kc, dc, chain.row);
  } else if (inv_mass_len == 1) {
    const unsigned grid = streaming_grid(groups, kThreads);
    kick_drift_kernel<T, kScalar><<<grid, kThreads, 0, launch.stream>>>(
        xp, pp, gp, mp, d, xo, po, n, C(kick), C(drift), aligned, kc, dc, chain.row);
  } else {
    if (inv_mass_len != d || d <= 0) return cudaErrorInvalidValue;
    const unsigned grid = streaming_grid(groups, kThreads);
    kick_drift_kernel<T, kDiagonal><<<grid, kThreads, 0, launch.stream>>>(
        xp, pp, gp, mp, d, xo, po, n, C(kick), C(drift), aligned, kc, dc, chain.row);
  }
  return launch_status();
}

}  // namespace

cudaError_t leapfrog_kick_drift(const void* x, const void* p, const void* grad,
                                const void* inv_mass, int64_t inv_mass_len, int64_t dim,
                                void* x_out, void* p_out, Dtype dtype, int64_t n, double kick,
                                double drift, Launch launch, ChainCoeffs per_chain) {
  return with_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return run<T>(x, p, grad, inv_mass, inv_mass_len, dim, x_out, p_out, n, kick, drift, launch,
                  per_chain);
  });
}

}  // namespace torchebm::cuda
