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

// 64 bytes of T as a GCC/Clang vector: the column tile unit of the Gaussian GEMM. Used only
// inside gemm_tile, which is itself multi-versioned (the vector type is lowered for each clone).
// (Explicit specialisations: GCC drops vector_size on a dependent type in an alias template.)
template <class T>
struct Vec64Of;
template <>
struct Vec64Of<float> {
  typedef float type __attribute__((vector_size(64)));
};
template <>
struct Vec64Of<double> {
  typedef double type __attribute__((vector_size(64)));
};
template <class T>
using Vec64 = typename Vec64Of<T>::type;
static_assert(sizeof(Vec64<float>) == 64 && sizeof(Vec64<double>) == 64, "64-byte vectors");
template <class T>
constexpr int64_t vec64_lanes() {
  return 64 / static_cast<int64_t>(sizeof(T));
}

// g[i] = z[i] P for kGemmRows rows of z (each dp long, zero-padded), JV vectors of columns at a
// time with the kGemmRows x JV accumulators in registers. Every g[i][j] is the sum over k in
// increasing order of z[i][k] P[k][j] (multiply-adds), as energies.h's row form.
template <class T, int JV>
TORCHEBM_MULTIVERSION __attribute__((noinline)) void gemm_tile(const T* z, const T* prec, T* g,
                                                               int64_t d, int64_t dp) {
  constexpr int64_t L = vec64_lanes<T>();
  for (int64_t j0 = 0; j0 < dp; j0 += JV * L) {
    Vec64<T> acc[kGemmRows][JV];
    for (int i = 0; i < kGemmRows; ++i) {
      for (int v = 0; v < JV; ++v) acc[i][v] = Vec64<T>{};
    }
    for (int64_t k = 0; k < d; ++k) {
      Vec64<T> pk[JV];
      for (int v = 0; v < JV; ++v) std::memcpy(&pk[v], prec + k * dp + j0 + v * L, sizeof pk[v]);
      for (int i = 0; i < kGemmRows; ++i) {
        const T zik = z[i * dp + k];
        for (int v = 0; v < JV; ++v) acc[i][v] += zik * pk[v];
      }
    }
    for (int i = 0; i < kGemmRows; ++i) {
      for (int v = 0; v < JV; ++v) std::memcpy(g + i * dp + j0 + v * L, &acc[i][v], sizeof acc[i][v]);
    }
  }
}

// Energies (optional) and gradients of up to `rows` rows of length d. `scratch` holds at least
// scratch_size(m, rows, d) elements.
template <class T, class M>
int64_t scratch_size(const M& m, int64_t rows, int64_t d) {
  if constexpr (std::is_same_v<M, GaussianBlocked<T>>) return 2 * kGemmRows * m.dp + d;
  (void)m;
  return rows * d;
}

template <class T, int JV>
TORCHEBM_HD void gaussian_rows(const GaussianBlocked<T>& m, const T* x, T* g, T* e, int64_t rows,
                               int64_t d, T* scratch) {
  const int64_t dp = m.dp;
  T* z = scratch;
  T* gz = scratch + kGemmRows * dp;
  T* terms = gz + kGemmRows * dp;
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
    gemm_tile<T, JV>(z, m.prec, gz, d, dp);
    for (int64_t i = 0; i < nr; ++i) {
      const T* zi = z + i * dp;
      const T* gi = gz + i * dp;
      std::memcpy(g + (r0 + i) * d, gi, sizeof(T) * d);
      if (e) {
#pragma omp simd
        for (int64_t j = 0; j < d; ++j) terms[j] = zi[j] * gi[j];
        e[r0 + i] = T(0.5) * sum8(terms, d);
      }
    }
  }
}

template <class T, class M>
TORCHEBM_MULTIVERSION void energy_grad_rows(const M& m, const T* x, T* g, T* e, int64_t rows,
                                            int64_t d, T* scratch) {
  if constexpr (std::is_same_v<M, GaussianBlocked<T>>) {
    // Two vectors of columns per tile when the padded row holds an even number of vectors.
    if ((m.dp / vec64_lanes<T>()) % 2 == 0) {
      gaussian_rows<T, 2>(m, x, g, e, rows, d, scratch);
    } else {
      gaussian_rows<T, 1>(m, x, g, e, rows, d, scratch);
    }
  } else if constexpr (M::kSeparable) {
#pragma omp simd
    for (int64_t i = 0; i < rows * d; ++i) g[i] = m.elem_grad(x[i]);
    if (e) {
      // E = constant + sum8 of the elementwise terms, computed in one vectorised pass.
#pragma omp simd
      for (int64_t i = 0; i < rows * d; ++i) scratch[i] = m.elem_energy(x[i]);
      const T c = m.constant(d);
      for (int64_t r = 0; r < rows; ++r) e[r] = c + sum8(scratch + r * d, d);
    }
  } else {
    (void)scratch;
    for (int64_t r = 0; r < rows; ++r) {
      const T er = m.energy_grad(x + r * d, g + r * d, d);
      if (e) e[r] = er;
    }
  }
}

// A Gaussian's mean [d] and precision [d, d] in T, with the precision padded for the blocked
// GEMM: owns what model() points to.
template <class T>
struct GaussianStorage {
  at::Tensor mu;
  std::vector<T> padded;
  int64_t dp = 0;
  GaussianStorage(const at::Tensor& mean, const at::Tensor& precision, int64_t d) {
    mu = mean.to(c10::CppTypeToScalarType<T>::value).contiguous();
    const at::Tensor prec = precision.to(c10::CppTypeToScalarType<T>::value).contiguous();
    const int64_t lanes = vec64_lanes<T>();
    dp = (d + lanes - 1) / lanes * lanes;
    padded.assign(static_cast<size_t>(d * dp), T(0));
    const T* src = prec.const_data_ptr<T>();
    for (int64_t k = 0; k < d; ++k) std::memcpy(&padded[k * dp], src + k * d, sizeof(T) * d);
  }
  GaussianBlocked<T> model() const { return {mu.const_data_ptr<T>(), padded.data(), dp}; }
};

// Calls f(model) with model type M<T>, owning what it needs for the call (the Gaussian's
// padded precision).
template <class M, class T, class F>
void call_with_model(F& f, c10::ArrayRef<double> params, const std::optional<at::Tensor>& mean,
                     const std::optional<at::Tensor>& precision, int64_t d) {
  if constexpr (std::is_same_v<M, Gaussian<T>>) {
    const GaussianStorage<T> g(*mean, *precision, d);
    f(g.model());
  } else {
    f(M(params.data()));
  }
}

// A model M tempered along a path (the chain ops' beta): row i's energy and gradient are
//   E_b = b_i E + (1 - b_i) E0,  grad E_b = b_i grad E + (1 - b_i) grad E0
// with E0(x) = 1/2 (x - m0)^T P0 (x - m0) the Gaussian base, or E_b = b_i E without one. The
// row values b_i are set by the kernel (chain_common.h: Tempering) before each evaluation;
// every evaluation also keeps the rows' untempered E and E0 (0 without a base), which the AIS
// log weights are made of. One per thread: it holds that thread's buffers.
template <class T, class M>
struct Tempered {
  using Model = M;
  const M& m;
  std::optional<GaussianBlocked<T>> base;
  int64_t d;
  mutable std::vector<T> beta, energy, base_energy, base_grad, base_scratch;
  Tempered(const M& model, std::optional<GaussianBlocked<T>> base_model, int64_t rows, int64_t dim)
      : m(model), base(base_model), d(dim), beta(rows), energy(rows), base_energy(rows, T(0)),
        base_grad(base_model ? rows * dim : 0),
        base_scratch(base_model ? scratch_size<T>(*base_model, rows, dim) : 0) {}
};

template <class T>
struct is_tempered : std::false_type {};
template <class T, class M>
struct is_tempered<Tempered<T, M>> : std::true_type {};

template <class T, class M>
int64_t scratch_size(const Tempered<T, M>& t, int64_t rows, int64_t d) {
  return scratch_size<T>(t.m, rows, d);
}

template <class T, class M>
void energy_grad_rows(const Tempered<T, M>& t, const T* x, T* g, T* e, int64_t rows, int64_t d,
                      T* scratch) {
  energy_grad_rows<T>(t.m, x, g, t.energy.data(), rows, d, scratch);
  if (t.base) {
    energy_grad_rows<T>(*t.base, x, t.base_grad.data(), t.base_energy.data(), rows, d,
                        t.base_scratch.data());
  }
  for (int64_t i = 0; i < rows; ++i) {
    const T b = t.beta[i], c = T(1) - b;
    T* gi = g + i * d;
    if (t.base) {
      const T* g0 = t.base_grad.data() + i * d;
      for (int64_t j = 0; j < d; ++j) gi[j] = b * gi[j] + c * g0[j];
      if (e) e[i] = b * t.energy[i] + c * t.base_energy[i];
    } else {
      for (int64_t j = 0; j < d; ++j) gi[j] = b * gi[j];
      if (e) e[i] = b * t.energy[i];
    }
  }
}

// Calls f(model) with the concrete model of `energy` (one case per row of energies.h's table),
// for the duration of an op call.
template <class T, class F>
void with_model(Energy energy, c10::ArrayRef<double> params,
                const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& precision,
                int64_t d, F&& f) {
  switch (energy) {
#define TORCHEBM_MODEL_CASE(name, id, Model, ...) \
  case Energy::id: call_with_model<Model<T>, T>(f, params, mean, precision, d); return;
    TORCHEBM_ANALYTIC_MODELS(TORCHEBM_MODEL_CASE)
#undef TORCHEBM_MODEL_CASE
  }
}

}  // namespace torchebm::cpu
