// CUDA kernel of the fused leapfrog kick + drift (docs/kernels.md, torchebm/updates.h):
//   p' = p - kick * grad;  x' = x + drift * inv_mass * p'
// inv_mass absent (unit mass), a scalar, or diagonal [d] broadcast over the last dimension.
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
                      compute_t<T> drift_size, bool aligned) {
  using C = compute_t<T>;
  constexpr int G = kGroup<T>;
  const int64_t groups = (n + G - 1) / G;
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
#pragma unroll
    for (int k = 0; k < G; ++k) {
      const C pn = kick(pv[k], gv[k], kick_size);
      pv[k] = pn;
      if constexpr (kMass == kUnit) {
        xv[k] = drift_unit_mass(xv[k], pn, drift_size);
      } else if constexpr (kMass == kScalar) {
        xv[k] = drift(xv[k], pn, m_scalar, drift_size);
      } else {
        // Tail elements past n read a valid index and are not stored.
        xv[k] = drift(xv[k], pn, to_compute(inv_mass[j]), drift_size);
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
                double drift, Launch launch) {
  using C = compute_t<T>;
  if (n == 0) return cudaSuccess;
  const bool aligned = pack_aligned<T>(x) && pack_aligned<T>(p) && pack_aligned<T>(grad) &&
                       pack_aligned<T>(x_out) && pack_aligned<T>(p_out);
  const int64_t groups = (n + kGroup<T> - 1) / kGroup<T>;
  const T *xp = static_cast<const T*>(x), *pp = static_cast<const T*>(p),
          *gp = static_cast<const T*>(grad), *mp = static_cast<const T*>(inv_mass);
  T *xo = static_cast<T*>(x_out), *po = static_cast<T*>(p_out);
  if (inv_mass == nullptr) {
    const unsigned grid = streaming_grid(groups, kThreads);
    kick_drift_kernel<T, kUnit><<<grid, kThreads, 0, launch.stream>>>(
        xp, pp, gp, mp, d, xo, po, n, C(kick), C(drift), aligned);
  } else if (inv_mass_len == 1) {
    const unsigned grid = streaming_grid(groups, kThreads);
    kick_drift_kernel<T, kScalar><<<grid, kThreads, 0, launch.stream>>>(
        xp, pp, gp, mp, d, xo, po, n, C(kick), C(drift), aligned);
  } else {
    if (inv_mass_len != d || d <= 0) return cudaErrorInvalidValue;
    const unsigned grid = streaming_grid(groups, kThreads);
    kick_drift_kernel<T, kDiagonal><<<grid, kThreads, 0, launch.stream>>>(
        xp, pp, gp, mp, d, xo, po, n, C(kick), C(drift), aligned);
  }
  return launch_status();
}

}  // namespace

cudaError_t leapfrog_kick_drift(const void* x, const void* p, const void* grad,
                                const void* inv_mass, int64_t inv_mass_len, int64_t dim,
                                void* x_out, void* p_out, Dtype dtype, int64_t n, double kick,
                                double drift, Launch launch) {
  return with_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return run<T>(x, p, grad, inv_mass, inv_mass_len, dim, x_out, p_out, n, kick, drift, launch);
  });
}

}  // namespace torchebm::cuda
