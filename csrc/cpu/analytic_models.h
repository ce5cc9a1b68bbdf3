// CPU evaluation of the analytic models over blocks of rows, shared by analytic_energy_grad and
// the whole-chain kernels (so both compute every energy and gradient with the same
// instructions). The maths is energies.h's; the Gaussian is evaluated as a register-blocked
// small GEMM whose per-element summation order equals energies.h's row form.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#include "multiversion.h"
#include "torchebm/energies.h"

namespace torchebm::cpu {

// Gaussian prepared for the blocked GEMM: precision padded to `dp` columns (a multiple of one
// 64-byte vector) with zeros, so every column tile is full width.
template <class T>
struct GaussianBlocked {
  static constexpr bool kSeparable = false;
  const T* mean;  // [d]
  const T* prec;  // [d, dp]
  int64_t dp;
};

constexpr int kGemmRows = 4;

// Elements of T in one 64-byte vector: the column tile unit.
template <class T>
constexpr int64_t vec64_lanes() {
  return 64 / static_cast<int64_t>(sizeof(T));
}

// Columns [j0, j0 + JT) of g[i] = z[i] P for kGemmRows rows of z (each dp long, zero-padded):
// the kGemmRows x JT accumulators stay in registers across the k loop. Every g[i][j] is the sum
// over k in increasing order of z[i][k] P[k][j] (multiply-adds), as energies.h's row form.
template <class T, int JT>
TORCHEBM_HD void gemm_tile(const T* __restrict z, const T* __restrict prec_cols, T* __restrict g,
                           int64_t d, int64_t dp) {
  static_assert(kGemmRows == 4, "the tile below is written for 4 rows");
  T a0[JT], a1[JT], a2[JT], a3[JT];
#pragma omp simd
  for (int jj = 0; jj < JT; ++jj) a0[jj] = a1[jj] = a2[jj] = a3[jj] = T(0);
  for (int64_t k = 0; k < d; ++k) {
    const T* pk = prec_cols + k * dp;
    const T z0 = z[k], z1 = z[dp + k], z2 = z[2 * dp + k], z3 = z[3 * dp + k];
#pragma omp simd
    for (int jj = 0; jj < JT; ++jj) {
      const T p = pk[jj];
      a0[jj] += z0 * p;
      a1[jj] += z1 * p;
      a2[jj] += z2 * p;
      a3[jj] += z3 * p;
    }
  }
#pragma omp simd
  for (int jj = 0; jj < JT; ++jj) {
    g[jj] = a0[jj];
    g[dp + jj] = a1[jj];
    g[2 * dp + jj] = a2[jj];
    g[3 * dp + jj] = a3[jj];
  }
}

// Energies (optional) and gradients of `rows` rows of length d. `scratch` holds at least
// scratch_size(m, d) elements.
template <class T, class M>
int64_t scratch_size(const M& m, int64_t d) {
  if constexpr (std::is_same_v<M, GaussianBlocked<T>>) return 2 * kGemmRows * m.dp;
  (void)m;
  (void)d;
  return 0;
}

template <class T, int JT>
TORCHEBM_HD void gaussian_rows(const GaussianBlocked<T>& m, const T* x, T* g, T* e, int64_t rows,
                               int64_t d, T* scratch) {
  const int64_t dp = m.dp;
  T* z = scratch;
  T* gz = scratch + kGemmRows * dp;
  for (int64_t i = 0; i < kGemmRows * dp; ++i) z[i] = T(0);
  for (int64_t r0 = 0; r0 < rows; r0 += kGemmRows) {
    const int64_t nr = std::min<int64_t>(kGemmRows, rows - r0);
    for (int64_t i = 0; i < kGemmRows; ++i) {
      if (i < nr) {
#pragma omp simd
        for (int64_t k = 0; k < d; ++k) z[i * dp + k] = x[(r0 + i) * d + k] - m.mean[k];
      } else {
        for (int64_t k = 0; k < d; ++k) z[i * dp + k] = T(0);
      }
    }
    for (int64_t j0 = 0; j0 < dp; j0 += JT) gemm_tile<T, JT>(z, m.prec + j0, gz + j0, d, dp);
    for (int64_t i = 0; i < nr; ++i) {
      const T* zi = z + i * dp;
      const T* gi = gz + i * dp;
      std::memcpy(g + (r0 + i) * d, gi, sizeof(T) * d);
      if (e) e[r0 + i] = T(0.5) * ordered_sum<T>(d, [&](int64_t j) { return zi[j] * gi[j]; });
    }
  }
}

template <class T, class M>
TORCHEBM_MULTIVERSION void energy_grad_rows(const M& m, const T* x, T* g, T* e, int64_t rows,
                                            int64_t d, T* scratch) {
  if constexpr (std::is_same_v<M, GaussianBlocked<T>>) {
    // Two vectors of columns per tile when the padded row holds an even number of vectors.
    if ((m.dp / vec64_lanes<T>()) % 2 == 0) {
      gaussian_rows<T, 2 * vec64_lanes<T>()>(m, x, g, e, rows, d, scratch);
    } else {
      gaussian_rows<T, vec64_lanes<T>()>(m, x, g, e, rows, d, scratch);
    }
  } else if constexpr (M::kSeparable) {
    (void)scratch;
#pragma omp simd
    for (int64_t i = 0; i < rows * d; ++i) g[i] = m.elem_grad(x[i]);
    if (e) {
      for (int64_t r = 0; r < rows; ++r) e[r] = separable_row_energy<T>(m, x + r * d, d);
    }
  } else {
    (void)scratch;
    for (int64_t r = 0; r < rows; ++r) {
      const T er = m.energy_grad(x + r * d, g + r * d, d);
      if (e) e[r] = er;
    }
  }
}

// Owns what a model needs for the duration of an op call (the Gaussian's padded precision) and
// calls f(model) with the concrete model type.
template <class T, class F>
void with_model(Energy energy, c10::ArrayRef<double> params,
                const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& precision,
                int64_t d, F&& f) {
  const double* p = params.data();
  switch (energy) {
    case Energy::kGaussian: {
      const at::Tensor mu = mean->to(c10::CppTypeToScalarType<T>::value).contiguous();
      const at::Tensor prec = precision->to(c10::CppTypeToScalarType<T>::value).contiguous();
      const int64_t lanes = vec64_lanes<T>();
      const int64_t dp = (d + lanes - 1) / lanes * lanes;
      std::vector<T> padded(static_cast<size_t>(d * dp), T(0));
      const T* src = prec.const_data_ptr<T>();
      for (int64_t k = 0; k < d; ++k) std::memcpy(&padded[k * dp], src + k * d, sizeof(T) * d);
      f(GaussianBlocked<T>{mu.const_data_ptr<T>(), padded.data(), dp});
      return;
    }
    case Energy::kDoubleWell: f(DoubleWell<T>(p)); return;
    case Energy::kHarmonic: f(Harmonic<T>(p)); return;
    case Energy::kRosenbrock: f(Rosenbrock<T>(p)); return;
    case Energy::kAckley: f(Ackley<T>(p)); return;
    case Energy::kRastrigin: f(Rastrigin<T>(p)); return;
    case Energy::kHimmelblau: f(Himmelblau<T>(p)); return;
    case Energy::kBooth: f(Booth<T>(p)); return;
    case Energy::kStyblinskiTang: f(StyblinskiTang<T>(p)); return;
  }
}

}  // namespace torchebm::cpu
