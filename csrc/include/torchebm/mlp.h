// Maths of the whole-chain MLP kernels (mlp_langevin_chain, mlp_mala_chain, mlp_hmc_chain,
// mlp_energy_grad; contracts in docs/kernels.md), written once for the CPU and CUDA back ends.
//
// The network is a chain of L layers, layer l being z_l = W_l h_{l-1} + b_l, h_l = act_l(z_l)
// (h_{-1} = x), and the energy E(x) = out_scale * sum_j h_{L-1,j} + out_offset. Its gradient is
// the backward pass delta_{L-1} = out_scale act'_{L-1}(z_{L-1}),
// delta_{l-1} = (W_l^T delta_l) * act'_{l-1}(z_{l-1}), grad E = W_0^T delta_0.
//
// Each activation gives its value and its derivative from one evaluation, with the derivative
// formulas autograd uses (python/torchebm/kernels/mlp.py mirrors them in PyTorch). exp, expm1
// and tanh are branch-free polynomials here (so CPU loops vectorise without -ffast-math and
// CUDA computes the same formulas; float32 within ~1 ulp, float64 within ~2 ulp of libm); erf
// (exact GELU) is the C library's / CUDA's.
#pragma once

#include <cstdint>

#include "torchebm/normal.h"

#if !defined(__CUDACC__) && !defined(__HIPCC__)
#include <cmath>
#endif

namespace torchebm::mlp {

// Activation codes of the ops' `activations` argument; each layer has kActParams parameters.
enum Act : int32_t {
  kIdentity = 0,
  kReLU = 1,
  kLeakyReLU = 2,  // p0 = negative_slope
  kELU = 3,        // p0 = alpha, p1 = scale, p2 = input_scale > 0 (ELU and SELU)
  kSiLU = 4,
  kGELU = 5,       // exact: x Phi(x), Phi by erf
  kGELUTanh = 6,   // tanh approximation
  kTanh = 7,
  kSigmoid = 8,
  kSoftplus = 9,   // p0 = beta, p1 = threshold
  kCELU = 10,      // p0 = alpha > 0, p1 = 1/alpha (value), p2 = 1/alpha as autograd's derivative has it
};
constexpr int kActCount = 11;
constexpr int kActParams = 3;

template <class T>
struct ActParams {
  T p0, p1, p2;
};

// ---- exp and expm1 ------------------------------------------------------------------------
// x = k ln2 + r, |r| <= ln2/2 (k = round(x / ln2) by the 1.5*2^p trick, which also leaves k in
// the low bits of the rounded value: no float -> int conversion, which AVX2 lacks for double);
// expm1(r) by its Taylor series (float to r^7, double to r^13: truncation below 2^-25 / 2^-56
// relative); e = (1 + p) 2^k and expm1 = p 2^k + (2^k - 1), each one fused multiply-add, so
// expm1 keeps its relative accuracy near 0. x is first clamped to [kMin, kMax], where 2^k is a
// normal number: results below exp(kMin) (the smallest normal) come out as exp(kMin), above
// exp(kMax) (64% of the largest finite float, 46% of the largest double) as exp(kMax); NaN
// propagates.

template <class T>
struct ExpConsts;
template <>
struct ExpConsts<float> {
  static constexpr float kLog2e = 1.44269504088896341f;
  static constexpr float kLn2Hi = 0.693145751953125f;  // 16 significant bits: k * hi is exact
  static constexpr float kLn2Lo = 1.42860682030941723e-06f;
  static constexpr float kShift = 12582912.0f;  // 1.5 * 2^23
  static constexpr float kMin = -87.3365479f, kMax = 88.3f;  // k in [-126, 127]
};
template <>
struct ExpConsts<double> {
  static constexpr double kLog2e = 1.4426950408889634074;
  static constexpr double kLn2Hi = 6.93147180369123816490e-01;  // 32 significant bits
  static constexpr double kLn2Lo = 1.90821492927058770002e-10;
  static constexpr double kShift = 6755399441055744.0;  // 1.5 * 2^52
  static constexpr double kMin = -708.39641853226408, kMax = 709.0;  // k in [-1022, 1023]
};

TORCHEBM_HD float expm1_reduced(float r) {
  return r + r * r * (0.5f + r * (1.66666667e-1f + r * (4.16666667e-2f + r * (8.33333333e-3f +
         r * (1.38888889e-3f + r * 1.98412698e-4f)))));
}
TORCHEBM_HD double expm1_reduced(double r) {
  return r + r * r * (0.5 + r * (1.6666666666666666e-01 + r * (4.1666666666666664e-02 + r *
         (8.3333333333333332e-03 + r * (1.3888888888888889e-03 + r * (1.9841269841269841e-04 +
         r * (2.4801587301587302e-05 + r * (2.7557319223985893e-06 + r * (2.7557319223985888e-07 +
         r * (2.5052108385441720e-08 + r * (2.0876756987868100e-09 + r * 1.6059043836821613e-10)))))))))));
}

// 2^k from `shifted` = k + 1.5 * 2^p (k a normal exponent): the low bits of its representation
// moved into the exponent field (the shift's own bits wrap away).
TORCHEBM_HD float exp2_shifted(float shifted) {
  return bits_to_float((float_to_bits(shifted) << 23) + 0x3F800000u);
}
TORCHEBM_HD double exp2_shifted(double shifted) {
  return bits_to_double((double_to_bits(shifted) << 52) + 0x3FF0000000000000ull);
}

// exp(x) and expm1(x) of x already within [kMin, kMax] (or NaN).
template <class T>
TORCHEBM_HD void exp_expm1_in_range(T x, T& e, T& em1) {
  using C = ExpConsts<T>;
  const T shifted = x * C::kLog2e + C::kShift;
  const T k = shifted - C::kShift;
  const T r = (x - k * C::kLn2Hi) - k * C::kLn2Lo;
  const T p = expm1_reduced(r);
  const T s = exp2_shifted(shifted);
  e = p * s + s;
  em1 = p * s + (s - T(1));
}

template <class T>
TORCHEBM_HD T clamp_nan(T x, T lo, T hi) {
  // lo/hi bound a finite x; a NaN passes through (both comparisons are false).
  x = x < lo ? lo : x;
  return x > hi ? hi : x;
}

// exp(x) and expm1(x) from one reduction.
template <class T>
TORCHEBM_HD void exp_expm1(T x, T& e, T& em1) {
  exp_expm1_in_range(clamp_nan(x, ExpConsts<T>::kMin, ExpConsts<T>::kMax), e, em1);
}

template <class T>
TORCHEBM_HD T exp_(T x) {
  T e, em1;
  exp_expm1(x, e, em1);
  return e;
}

// tanh(x) = -expm1(-2|x|) / (2 + expm1(-2|x|)), sign restored: relative accuracy near 0 too.
template <class T>
TORCHEBM_HD T tanh_(T x) {
  const T ax = x < T(0) ? -x : x;
  T e, em1;
  exp_expm1(T(-2) * ax, e, em1);
  const T t = -em1 / (T(2) + em1);
  return x < T(0) ? -t : t;
}

TORCHEBM_HD float erf_(float x) {
#if defined(__CUDACC__) || defined(__HIPCC__)
  return ::erff(x);
#else
  return std::erf(x);
#endif
}
TORCHEBM_HD double erf_(double x) {
#if defined(__CUDACC__) || defined(__HIPCC__)
  return ::erf(x);
#else
  return std::erf(x);
#endif
}

// log1p(e) for e >= 0 from the rounded 1 + e (exact correction of the rounding).
template <class T>
TORCHEBM_HD T log1p_pos(T e) {
  const T u = T(1) + e;
  return u == T(1) ? e : log_approx(u) * (e / (u - T(1)));
}

// ---- activations: value h and derivative dh of z --------------------------------------------

template <class T>
struct SoftplusCut;  // beta z above this: log1p(exp(beta z)) == beta z to rounding
template <>
struct SoftplusCut<float> {
  static constexpr float kValue = 17.0f;
};
template <>
struct SoftplusCut<double> {
  static constexpr double kValue = 37.0;
};

template <int K, class T>
TORCHEBM_HD void activation(T z, const ActParams<T>& p, T& h, T& dh) {
  if constexpr (K == kIdentity) {
    h = z;
    dh = T(1);
  } else if constexpr (K == kReLU) {
    h = z < T(0) ? T(0) : z;  // NaN passes, as in torch.relu
    dh = z > T(0) ? T(1) : T(0);
  } else if constexpr (K == kLeakyReLU) {
    h = z > T(0) ? z : z * p.p0;
    dh = z > T(0) ? T(1) : p.p0;
  } else if constexpr (K == kELU) {
    // alpha * scale * expm1(z * input_scale) for z <= 0, scale * z above (as torch.elu);
    // input_scale > 0, so the exponent is <= 0 where it is used (0 elsewhere; NaN passes).
    const bool pos = z > T(0);
    T t = pos ? T(0) : z * p.p2;
    t = t < ExpConsts<T>::kMin ? ExpConsts<T>::kMin : t;
    T e, em1;
    exp_expm1_in_range(t, e, em1);
    const T neg = p.p0 * p.p1;
    h = pos ? z * p.p1 : em1 * neg;
    dh = pos ? p.p1 : e * (neg * p.p2);
  } else if constexpr (K == kCELU) {
    // torch.celu's value, and autograd's derivative of it, whose 1/alpha is rounded to float32
    // (p2) where the value's is not (p1): two exponentials, to match autograd to rounding.
    const bool pos = z > T(0);
    T t1 = pos ? T(0) : z * p.p1, t2 = pos ? T(0) : z * p.p2;
    t1 = t1 < ExpConsts<T>::kMin ? ExpConsts<T>::kMin : t1;
    t2 = t2 < ExpConsts<T>::kMin ? ExpConsts<T>::kMin : t2;
    T e, em1, e2, em1_2;
    exp_expm1_in_range(t1, e, em1);
    exp_expm1_in_range(t2, e2, em1_2);
    h = pos ? z : em1 * p.p0;
    dh = pos ? T(1) : e2 * (p.p0 * p.p2);
  } else if constexpr (K == kSiLU) {
    const T s = T(1) / (T(1) + exp_(-z));
    h = z * s;
    dh = s * (T(1) + z * (T(1) - s));
  } else if constexpr (K == kGELU) {
    const T cdf = T(0.5) * (T(1) + erf_(z * T(0.70710678118654752440)));
    const T pdf = exp_(T(-0.5) * z * z) * T(0.39894228040143267794);
    h = z * cdf;
    dh = cdf + z * pdf;
  } else if constexpr (K == kGELUTanh) {
    const T beta = T(0.79788456080286535588), kappa = T(0.044715);
    const T z2 = z * z;
    const T t = tanh_(beta * (z + kappa * z2 * z));
    h = T(0.5) * z * (T(1) + t);
    dh = T(0.5) * (T(1) + t) + T(0.5) * z * (T(1) - t * t) * beta * (T(1) + T(3) * kappa * z2);
  } else if constexpr (K == kTanh) {
    const T t = tanh_(z);
    h = t;
    dh = T(1) - t * t;
  } else if constexpr (K == kSigmoid) {
    const T s = T(1) / (T(1) + exp_(-z));
    h = s;
    dh = s * (T(1) - s);
  } else if constexpr (K == kSoftplus) {
    // torch: z if beta z > threshold, else log1p(exp(beta z)) / beta; derivative e / (e + 1).
    const T bz = z * p.p0;
    const T cut = SoftplusCut<T>::kValue;
    const T e = exp_(bz < cut ? bz : cut);
    const T soft = bz < cut ? log1p_pos(e) / p.p0 : z;
    h = bz > p.p1 ? z : soft;
    dh = bz > p.p1 ? T(1) : e / (e + T(1));
  }
}

// Runtime-dispatched form (one activation per layer, so a CUDA warp never diverges on it).
template <class T>
TORCHEBM_HD void activation(int kind, T z, const ActParams<T>& p, T& h, T& dh) {
  switch (kind) {
    case kReLU: activation<kReLU>(z, p, h, dh); break;
    case kLeakyReLU: activation<kLeakyReLU>(z, p, h, dh); break;
    case kELU: activation<kELU>(z, p, h, dh); break;
    case kSiLU: activation<kSiLU>(z, p, h, dh); break;
    case kGELU: activation<kGELU>(z, p, h, dh); break;
    case kGELUTanh: activation<kGELUTanh>(z, p, h, dh); break;
    case kTanh: activation<kTanh>(z, p, h, dh); break;
    case kSigmoid: activation<kSigmoid>(z, p, h, dh); break;
    case kSoftplus: activation<kSoftplus>(z, p, h, dh); break;
    case kCELU: activation<kCELU>(z, p, h, dh); break;
    default: activation<kIdentity>(z, p, h, dh); break;
  }
}

}  // namespace torchebm::mlp
