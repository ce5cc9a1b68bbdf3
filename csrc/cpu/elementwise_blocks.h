// Multi-versioned CPU loops over blocks of elements/rows, shared by the per-step ops and the
// whole-chain kernels so both compute every value with the same instructions.
#pragma once

#include <cstdint>

#include "multiversion.h"
#include "torchebm/updates.h"

namespace torchebm::cpu {

// out[i] = langevin_point(x[i], g[i], xi[i]); out may alias x.
template <class T>
TORCHEBM_MULTIVERSION void langevin_block(T* out, const T* x, const T* g, const T* xi, int64_t n,
                                          LangevinCoef<T> k) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = langevin_point(x[i], g[i], xi[i], k);
}

// Rows of length d: p' = p - kick g; x' = x + drift (m p') with m = inv_mass[j] (or none);
// x_out/p_out may alias x/p.
template <class T>
TORCHEBM_MULTIVERSION void kick_drift_block(T* x_out, T* p_out, const T* x, const T* p,
                                            const T* g, int64_t rows, int64_t d, T kick_size,
                                            T drift_size, const T* inv_mass, bool scalar_mass) {
  if (inv_mass == nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < rows * d; ++i) {
      const T pn = kick(p[i], g[i], kick_size);
      p_out[i] = pn;
      x_out[i] = drift_unit_mass(x[i], pn, drift_size);
    }
  } else if (scalar_mass) {
    const T m = inv_mass[0];
#pragma omp simd
    for (int64_t i = 0; i < rows * d; ++i) {
      const T pn = kick(p[i], g[i], kick_size);
      p_out[i] = pn;
      x_out[i] = drift(x[i], pn, m, drift_size);
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t o = r * d;
#pragma omp simd
      for (int64_t j = 0; j < d; ++j) {
        const T pn = kick(p[o + j], g[o + j], kick_size);
        p_out[o + j] = pn;
        x_out[o + j] = drift(x[o + j], pn, inv_mass[j], drift_size);
      }
    }
  }
}

// log_ratio[r] of MALA for rows [0, rows): the forward and backward terms of every element in
// one vectorised pass, then a sum8 per row. `scratch` holds 2 * rows * d elements.
template <class T>
TORCHEBM_MULTIVERSION void mala_log_ratio_block(T* log_ratio, const T* x, const T* y,
                                                const T* gx, const T* gy, const T* ex,
                                                const T* ey, T a, T b, int64_t rows, int64_t d,
                                                T* scratch) {
  T* tf = scratch;
  T* tb = scratch + rows * d;
#pragma omp simd
  for (int64_t i = 0; i < rows * d; ++i) {
    tf[i] = mala_forward_term(x[i], y[i], gx[i], a);
    tb[i] = mala_backward_term(x[i], y[i], gy[i], a);
  }
  for (int64_t r = 0; r < rows; ++r) {
    log_ratio[r] = mala_log_ratio_from_sums(sum8(tf + r * d, d), sum8(tb + r * d, d), ex[r], ey[r], b);
  }
}

// accepted[r] = metropolis_accept(u[r], log_ratio[r]) for r < n; returns the number accepted.
template <class T>
TORCHEBM_MULTIVERSION int64_t accept_block(bool* accepted, const T* u, const T* log_ratio,
                                           int64_t n) {
  int64_t count = 0;
#pragma omp simd reduction(+ : count)
  for (int64_t r = 0; r < n; ++r) {
    const bool a = metropolis_accept(u[r], log_ratio[r]);
    accepted[r] = a;
    count += a ? 1 : 0;
  }
  return count;
}

// Kinetic energies 1/2 sum8_j (m_j p_j^2) of `rows` rows (m = inv_mass[j], or 1 when null);
// `scratch` holds rows * d elements.
template <class T>
TORCHEBM_MULTIVERSION void kinetic_block(T* out, const T* p, const T* inv_mass, int64_t rows,
                                         int64_t d, T* scratch) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * d;
#pragma omp simd
    for (int64_t j = 0; j < d; ++j) {
      scratch[o + j] = kinetic_term(p[o + j], inv_mass ? inv_mass[j] : T(1));
    }
  }
  for (int64_t r = 0; r < rows; ++r) out[r] = T(0.5) * sum8(scratch + r * d, d);
}

}  // namespace torchebm::cpu

namespace torchebm::cpu {

// p' = p - kick g over n elements (the kick of kick_drift_block alone: HMC's final half kick).
template <class T>
TORCHEBM_MULTIVERSION void kick_block(T* p_out, const T* p, const T* g, int64_t n, T kick_size) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) p_out[i] = kick(p[i], g[i], kick_size);
}

}  // namespace torchebm::cpu
