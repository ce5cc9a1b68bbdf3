// Closed-form energy and gradient of each built-in analytic model, written once for every back
// end (mirrored in python/torchebm/kernels/reference.py: analytic_energy_grad). Energies follow
// TorchEBM 0.8.9; states are rows x of length d (the last dimension).
//
// | kernel name       | params (in order)      | E(x)                                                  |
// |-------------------|------------------------|-------------------------------------------------------|
// | gaussian          | (mean, precision P)    | 1/2 (x - mu)^T P (x - mu); grad = P (x - mu), P symmetric |
// | double_well       | barrier_height h, b    | h sum (x_i^2 - b^2)^2                                 |
// | harmonic          | k                      | 1/2 k sum x_i^2                                       |
// | rosenbrock        | a, b                   | sum_{i<d-1} (a - x_i)^2 + b (x_{i+1} - x_i^2)^2, d >= 2 |
// | ackley            | a, b, c                | -a exp(-b sqrt(sum x^2 / d)) - exp(sum cos(c x) / d) + a + e |
// | rastrigin         | a                      | a d + sum (x_i^2 - a cos(2 pi x_i))                   |
// | himmelblau        | -                      | (x1^2 + x2 - 11)^2 + (x1 + x2^2 - 7)^2, d = 2         |
// | booth             | -                      | (x1 + 2 x2 - 7)^2 + (2 x1 + x2 - 5)^2, d = 2          |
// | styblinski_tang   | -                      | 1/2 sum (x_i^4 - 16 x_i^2 + 5 x_i)                    |
// | banana            | curvature b, scale s   | x1^2 / (2 s^2) + u^2 / 2 + 1/2 sum_{i>2} x_i^2, u = x2 + b (x1^2 - s^2), d >= 2 |
//
// Ackley's gradient at x = 0 (where autograd gives NaN) is taken as 0 for the radial term.
// Sums over a row use a fixed 8-way split (ordered_sum over a term function, sum8 over an array
// of terms: the same order), so a row's energy does not depend on how the loop around it is
// vectorised or threaded. The CPU kernels evaluate the Gaussian as a blocked GEMM and the
// separable energies as terms + sum8 (csrc/cpu/analytic_models.h: energy_grad_rows), in the
// same order.
#pragma once

#include <cstdint>

#include "torchebm/normal.h"

#if !defined(__CUDACC__) && !defined(__HIPCC__)
#include <cmath>
#endif

namespace torchebm {

// The table of analytic models: every list of them in C++ (the Energy enumerators, the
// with_model switches of both back ends, the argument checks) is generated from it, and
// python/torchebm/kernels/analytic_registry.py is its Python mirror (tests compare the two).
//   X(kernel name, Energy enumerator, model template, scalar params, fixed d (0: any), min d)
// The gaussian's parameters are tensors (mean, precision), not scalars. New models go at the
// end (an enumerator's value is its row).
#define TORCHEBM_ANALYTIC_MODELS(X)                                \
  X("gaussian", kGaussian, Gaussian, 0, 0, 1)                      \
  X("double_well", kDoubleWell, DoubleWell, 2, 0, 1)               \
  X("harmonic", kHarmonic, Harmonic, 1, 0, 1)                      \
  X("rosenbrock", kRosenbrock, Rosenbrock, 2, 0, 2)                \
  X("ackley", kAckley, Ackley, 3, 0, 1)                            \
  X("rastrigin", kRastrigin, Rastrigin, 1, 0, 1)                   \
  X("himmelblau", kHimmelblau, Himmelblau, 0, 2, 2)                \
  X("booth", kBooth, Booth, 0, 2, 2)                               \
  X("styblinski_tang", kStyblinskiTang, StyblinskiTang, 0, 0, 1)  \
  X("banana", kBanana, Banana, 2, 0, 2)

enum class Energy : int {
#define TORCHEBM_ENERGY_ENUMERATOR(name, id, ...) id,
  TORCHEBM_ANALYTIC_MODELS(TORCHEBM_ENERGY_ENUMERATOR)
#undef TORCHEBM_ENERGY_ENUMERATOR
};

namespace math {
#if defined(__CUDACC__) || defined(__HIPCC__)
TORCHEBM_HD float exp_(float x) { return ::expf(x); }
TORCHEBM_HD double exp_(double x) { return ::exp(x); }
TORCHEBM_HD float cos_(float x) { return ::cosf(x); }
TORCHEBM_HD double cos_(double x) { return ::cos(x); }
TORCHEBM_HD float sin_(float x) { return ::sinf(x); }
TORCHEBM_HD double sin_(double x) { return ::sin(x); }
TORCHEBM_HD float log_(float x) { return ::logf(x); }
TORCHEBM_HD double log_(double x) { return ::log(x); }
#else
template <class T>
TORCHEBM_HD T exp_(T x) { return std::exp(x); }
template <class T>
TORCHEBM_HD T cos_(T x) { return std::cos(x); }
template <class T>
TORCHEBM_HD T sin_(T x) { return std::sin(x); }
template <class T>
TORCHEBM_HD T log_(T x) { return std::log(x); }
#endif
}  // namespace math

// sum_{j<n} f(j) split over 8 partial sums (j mod 8) combined in a fixed tree: the order is
// part of the result's definition, and lets the compiler vectorise without reassociating.
template <class T, class F>
TORCHEBM_HD T ordered_sum(int64_t n, F f) {
  T acc[8] = {T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0)};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int k = 0; k < 8; ++k) acc[k] += f(j + k);
  }
  for (int k = 0; j + k < n; ++k) acc[k] += f(j + k);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// The same fixed 8-way split over an array of precomputed terms t[0 .. n): the CPU kernels
// compute the terms in one vectorised pass, then sum each row with this (a loop the compiler
// turns into one 8-lane vector accumulator).
template <class T>
TORCHEBM_HD T sum8(const T* t, int64_t n) {
  T acc[8] = {T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0)};
  const int64_t full = n / 8 * 8;
  for (int64_t j = 0; j < full; j += 8) {
#if !defined(__CUDACC__) && !defined(__HIPCC__)
#pragma omp simd
#endif
    for (int k = 0; k < 8; ++k) acc[k] += t[j + k];
  }
  for (int64_t k = 0; full + k < n; ++k) acc[k] += t[full + k];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// ---- separable models: E = constant(d) + sum_i e(x_i), grad_i = g(x_i) ----------------------

template <class T>
struct DoubleWell {
  static constexpr bool kSeparable = true;
  T h, b2;
  TORCHEBM_HD DoubleWell(const double* p) : h(T(p[0])), b2(T(p[1]) * T(p[1])) {}
  TORCHEBM_HD T constant(int64_t) const { return T(0); }
  TORCHEBM_HD T elem_energy(T x) const {
    const T u = x * x - b2;
    return h * (u * u);
  }
  TORCHEBM_HD T elem_grad(T x) const { return (T(4) * h) * x * (x * x - b2); }
};

template <class T>
struct Harmonic {
  static constexpr bool kSeparable = true;
  T k;
  TORCHEBM_HD Harmonic(const double* p) : k(T(p[0])) {}
  TORCHEBM_HD T constant(int64_t) const { return T(0); }
  TORCHEBM_HD T elem_energy(T x) const { return (T(0.5) * k) * (x * x); }
  TORCHEBM_HD T elem_grad(T x) const { return k * x; }
};

template <class T>
struct Rastrigin {
  static constexpr bool kSeparable = true;
  T a;
  TORCHEBM_HD Rastrigin(const double* p) : a(T(p[0])) {}
  TORCHEBM_HD T constant(int64_t d) const { return a * T(d); }
  // cos(2 pi x) and sin(2 pi x) from normal.h's sincos_2pi (exact range reduction, |x| < 2^22).
  TORCHEBM_HD T elem_energy(T x) const {
    T s, c;
    sincos_2pi(x, s, c);
    return x * x - a * c;
  }
  TORCHEBM_HD T elem_grad(T x) const {
    T s, c;
    sincos_2pi(x, s, c);
    return T(2) * x + (T(6.283185307179586477) * a) * s;
  }
};

template <class T>
struct StyblinskiTang {
  static constexpr bool kSeparable = true;
  TORCHEBM_HD StyblinskiTang(const double*) {}
  TORCHEBM_HD T constant(int64_t) const { return T(0); }
  TORCHEBM_HD T elem_energy(T x) const {
    const T x2 = x * x;
    return T(0.5) * (x2 * x2 - T(16) * x2 + T(5) * x);
  }
  TORCHEBM_HD T elem_grad(T x) const { return T(2) * x * x * x - T(16) * x + T(2.5); }
};

// ---- row models: energy and gradient of one row ---------------------------------------------

template <class T>
struct Rosenbrock {
  static constexpr bool kSeparable = false;
  T a, b;
  TORCHEBM_HD Rosenbrock(const double* p) : a(T(p[0])), b(T(p[1])) {}
  TORCHEBM_HD T energy_grad(const T* x, T* g, int64_t d) const {
    for (int64_t i = 0; i < d; ++i) g[i] = T(0);
    for (int64_t i = 0; i + 1 < d; ++i) {
      const T u = a - x[i], v = x[i + 1] - x[i] * x[i];
      g[i] += T(-2) * u - T(4) * b * x[i] * v;
      g[i + 1] += T(2) * b * v;
    }
    return ordered_sum<T>(d - 1, [&](int64_t i) {
      const T u = a - x[i], v = x[i + 1] - x[i] * x[i];
      return u * u + b * (v * v);
    });
  }
};

template <class T>
struct Ackley {
  static constexpr bool kSeparable = false;
  T a, b, c;
  TORCHEBM_HD Ackley(const double* p) : a(T(p[0])), b(T(p[1])), c(T(p[2])) {}
  TORCHEBM_HD T energy_grad(const T* x, T* g, int64_t d) const {
    const T inv_d = T(1) / T(d);
    const T s2 = ordered_sum<T>(d, [&](int64_t i) { return x[i] * x[i]; });
    const T sc = ordered_sum<T>(d, [&](int64_t i) { return math::cos_(c * x[i]); });
    const T r = sqrt_ieee(s2 * inv_d);
    const T e1 = math::exp_(-b * r), e2 = math::exp_(sc * inv_d);
    // d/dx_i of -a exp(-b r) = a b exp(-b r) x_i / (d r); taken as 0 at r = 0.
    const T radial = r > T(0) ? a * b * e1 * inv_d / r : T(0);
    const T angular = e2 * c * inv_d;
    for (int64_t i = 0; i < d; ++i) g[i] = radial * x[i] + angular * math::sin_(c * x[i]);
    return -a * e1 - e2 + a + T(2.718281828459045235);
  }
};

template <class T>
struct Himmelblau {
  static constexpr bool kSeparable = false;
  TORCHEBM_HD Himmelblau(const double*) {}
  TORCHEBM_HD T energy_grad(const T* x, T* g, int64_t) const {
    const T u = x[0] * x[0] + x[1] - T(11), v = x[0] + x[1] * x[1] - T(7);
    g[0] = T(4) * x[0] * u + T(2) * v;
    g[1] = T(2) * u + T(4) * x[1] * v;
    return u * u + v * v;
  }
};

template <class T>
struct Booth {
  static constexpr bool kSeparable = false;
  TORCHEBM_HD Booth(const double*) {}
  TORCHEBM_HD T energy_grad(const T* x, T* g, int64_t) const {
    const T u = x[0] + T(2) * x[1] - T(7), v = T(2) * x[0] + x[1] - T(5);
    g[0] = T(2) * u + T(4) * v;
    g[1] = T(4) * u + T(2) * v;
    return u * u + v * v;
  }
};

// Haario's twisted Gaussian: N(0, diag(s^2, 1, ..., 1)) bent along x2 = -b (x1^2 - s^2).
// grad = (x1 / s^2 + 2 b x1 u, u, x3, ..., xd) with u = x2 + b (x1^2 - s^2); d >= 2.
template <class T>
struct Banana {
  static constexpr bool kSeparable = false;
  T b, inv_s2, b_s2;
  TORCHEBM_HD Banana(const double* p)
      : b(T(p[0])), inv_s2(T(1.0 / (p[1] * p[1]))), b_s2(T(p[0] * p[1] * p[1])) {}
  TORCHEBM_HD T energy_grad(const T* x, T* g, int64_t d) const {
    const T x1 = x[0], u = x[1] + b * (x1 * x1) - b_s2;
    g[0] = inv_s2 * x1 + (T(2) * b) * x1 * u;
    g[1] = u;
    for (int64_t i = 2; i < d; ++i) g[i] = x[i];
    const T rest = ordered_sum<T>(d - 2, [&](int64_t i) { return x[i + 2] * x[i + 2]; });
    return T(0.5) * ((inv_s2 * (x1 * x1) + u * u) + rest);
  }
};

// Gaussian: grad_j = sum_k (x_k - mu_k) P[k, j] (k in order; equals (P z)_j for symmetric P),
// E = 1/2 ordered_sum_j z_j grad_j. `z` is caller scratch of length d.
template <class T>
struct Gaussian {
  static constexpr bool kSeparable = false;
  const T* mean;       // [d]
  const T* precision;  // [d, d], row-major, symmetric
  TORCHEBM_HD Gaussian(const T* mu, const T* prec) : mean(mu), precision(prec) {}
  TORCHEBM_HD T energy_grad(const T* x, T* g, T* z, int64_t d) const {
    for (int64_t k = 0; k < d; ++k) z[k] = x[k] - mean[k];
    for (int64_t j = 0; j < d; ++j) g[j] = T(0);
    for (int64_t k = 0; k < d; ++k) {
      const T zk = z[k];
      const T* row = precision + k * d;
      for (int64_t j = 0; j < d; ++j) g[j] += zk * row[j];
    }
    return T(0.5) * ordered_sum<T>(d, [&](int64_t j) { return z[j] * g[j]; });
  }
};

// Row energy of a separable model (the gradient is elementwise).
template <class T, class M>
TORCHEBM_HD T separable_row_energy(const M& m, const T* x, int64_t d) {
  return m.constant(d) + ordered_sum<T>(d, [&](int64_t i) { return m.elem_energy(x[i]); });
}

// ---- the table's columns, by model -----------------------------------------------------------

struct EnergyInfo {
  const char* name;   // the kernel name
  int n_params;       // scalar parameters (the gaussian's mean and precision are tensors)
  int64_t fixed_dim;  // the dimension d the model is defined for, 0: any
  int64_t min_dim;    // the least d
};

TORCHEBM_HD constexpr EnergyInfo energy_info(Energy e) {
  switch (e) {
#define TORCHEBM_ENERGY_INFO(name, id, Model, n_params, fixed_dim, min_dim) \
  case Energy::id: return EnergyInfo{name, n_params, fixed_dim, min_dim};
    TORCHEBM_ANALYTIC_MODELS(TORCHEBM_ENERGY_INFO)
#undef TORCHEBM_ENERGY_INFO
  }
  return EnergyInfo{nullptr, -1, 0, 0};
}

#define TORCHEBM_ENERGY_ONE(...) +1
// Number of models in the table.
constexpr int kEnergyCount = 0 TORCHEBM_ANALYTIC_MODELS(TORCHEBM_ENERGY_ONE);
#undef TORCHEBM_ENERGY_ONE

// The most scalar parameters any model takes (the CUDA kernels pass them in a fixed array).
constexpr int max_energy_params() {
  int most = 0;
  for (int i = 0; i < kEnergyCount; ++i) {
    const int n = energy_info(static_cast<Energy>(i)).n_params;
    most = n > most ? n : most;
  }
  return most;
}

// EnergyOf<M>::value: the Energy of model type M (Gaussian<float> -> kGaussian).
template <class M>
struct EnergyOf;
#define TORCHEBM_ENERGY_OF(name, id, Model, ...) \
  template <class T>                             \
  struct EnergyOf<Model<T>> {                    \
    static constexpr Energy value = Energy::id;  \
  };
TORCHEBM_ANALYTIC_MODELS(TORCHEBM_ENERGY_OF)
#undef TORCHEBM_ENERGY_OF

}  // namespace torchebm
