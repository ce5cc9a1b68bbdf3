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

// log_ratio[r] of MALA for rows [0, rows).
template <class T>
TORCHEBM_MULTIVERSION void mala_log_ratio_block(T* log_ratio, const T* x, const T* y,
                                                const T* gx, const T* gy, const T* ex,
                                                const T* ey, T a, T b, int64_t rows, int64_t d) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t o = r * d;
    log_ratio[r] = mala_log_ratio(x + o, y + o, gx + o, gy + o, ex[r], ey[r], a, b, d);
  }
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
