// Philox words -> uniforms in (0, 1) -> standard normals (Box-Muller, both outputs used).
//
// The transcendental functions are our own branch-free polynomials, so that a CPU loop over a
// block of counters vectorises without -ffast-math (GCC only calls its vector libm under
// fast-math, and fast-math would flush denormals process-wide), and so that CUDA computes the
// same formulas. Accuracy, measured against libm in long double (tests/test_kernels_rng.py):
//   log_approx:  <= 1.95 ulp (float and double), positive normal inputs
//   sincos_2pi:  float <= 1.9 ulp of the result, and <= 1.2 eps absolute near the zeros;
//                double <= 1.1 eps absolute (|t| < 2^22 for the int32 quadrant)
//
// Uniform layout (docs/kernels.md):
//   float32: one word per uniform, u = (k + 1/2) 2^-23 with k = w >> 9 (23 bits). Smallest
//            u = 2^-24, so |z| <= sqrt(2 * 24 ln 2) = 5.77 (mass beyond it: 8e-9).
//   float64: two words per uniform, u = (k + 1/2) 2^-52 with k = (w_a << 20) | (w_b >> 12)
//            (52 bits); |z| <= 8.6.
// Both are exact in floating point and lie strictly inside (0, 1), so log(u) is finite.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "torchebm/philox.h"

namespace torchebm {

TORCHEBM_HD float bits_to_float(uint32_t b) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __uint_as_float(b);
#else
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
#endif
}
TORCHEBM_HD uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __float_as_uint(f);
#else
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
#endif
}
TORCHEBM_HD double bits_to_double(uint64_t b) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __longlong_as_double(static_cast<long long>(b));
#else
  double f;
  std::memcpy(&f, &b, sizeof f);
  return f;
#endif
}
TORCHEBM_HD uint64_t double_to_bits(double f) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return static_cast<uint64_t>(__double_as_longlong(f));
#else
  uint64_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
#endif
}

TORCHEBM_HD float sqrt_ieee(float x) {
#if defined(__CUDACC__) || defined(__HIPCC__)
  return ::sqrtf(x);
#else
  return std::sqrt(x);  // vectorises to sqrtps/vsqrtps with -fno-math-errno (CMakeLists.txt)
#endif
}
TORCHEBM_HD double sqrt_ieee(double x) {
#if defined(__CUDACC__) || defined(__HIPCC__)
  return ::sqrt(x);
#else
  return std::sqrt(x);
#endif
}

// ---- uniforms -------------------------------------------------------------------------------

// (k + 1/2) 2^-23, k = top 23 bits of w: 1 + k 2^-23 built from bits, minus 1 (exact), plus 2^-24.
TORCHEBM_HD float uniform_f32(uint32_t w) {
  return (bits_to_float(0x3F800000u | (w >> 9)) - 1.0f) + 5.9604644775390625e-08f;
}

// (k + 1/2) 2^-52, k = 52 bits from two words, built the same way in double.
TORCHEBM_HD double uniform_f64(uint32_t wa, uint32_t wb) {
  const uint64_t k = (static_cast<uint64_t>(wa) << 20) | (wb >> 12);
  return (bits_to_double(0x3FF0000000000000ull | k) - 1.0) + 1.1102230246251565e-16;
}

// ---- log ------------------------------------------------------------------------------------
// x = m 2^e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...),
// s = (m - 1) / (m + 1), |s| <= 0.1716 (series truncated where the next term is < 2^-30
// (float) or 2^-60 (double) relative); e ln 2 added in two parts (ln2_hi e is exact).
// Domain: positive, normal, finite x.

TORCHEBM_HD float log_approx(float x) {
  const uint32_t ix = float_to_bits(x);
  float e = static_cast<float>(static_cast<int32_t>(ix >> 23) - 127);
  float m = bits_to_float((ix & 0x007FFFFFu) | 0x3F800000u);  // [1, 2)
  const bool big = m > 1.41421356f;
  m = big ? 0.5f * m : m;
  e = big ? e + 1.0f : e;
  const float f = m - 1.0f;  // exact
  const float s = f / (f + 2.0f);
  const float z = s * s;
  const float p =
      z * (0.333333333f + z * (0.2f + z * (0.142857143f + z * (0.111111111f + z * 0.0909090909f))));
  const float log_m = 2.0f * s + 2.0f * s * p;
  return e * 0.693145751953125f + (log_m + e * 1.42860677e-06f);
}

TORCHEBM_HD double log_approx(double x) {
  const uint64_t ix = double_to_bits(x);
  // Exponent as a double without an int64 -> double conversion (which SSE/AVX2 lack):
  // 2^52 + biased exponent, built from bits, minus (2^52 + 1023).
  double e = bits_to_double(0x4330000000000000ull | (ix >> 52)) - 4503599627371519.0;
  double m = bits_to_double((ix & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);
  const bool big = m > 1.4142135623730951;
  m = big ? 0.5 * m : m;
  e = big ? e + 1.0 : e;
  const double f = m - 1.0;
  const double s = f / (f + 2.0);
  const double z = s * s;
  const double p =
      z * (1.0 / 3 + z * (1.0 / 5 + z * (1.0 / 7 + z * (1.0 / 9 + z * (1.0 / 11 + z * (1.0 / 13 +
      z * (1.0 / 15 + z * (1.0 / 17 + z * (1.0 / 19 + z * (1.0 / 21 + z * (1.0 / 23)))))))))));
  const double log_m = 2.0 * s + 2.0 * s * p;
  return e * 6.9314718036912381649e-01 + (log_m + e * 1.9082149292705877e-10);
}

// ---- sin and cos of 2 pi t ------------------------------------------------------------------
// t = q/4 + f with q = round(4t), |f| <= 1/8 (f is exact); a = 2 pi f in [-pi/4, pi/4] where
// Taylor series to a^9 / a^10 (float) or a^17 / a^18 (double) are below half an ulp; the
// quadrant q mod 4 swaps and negates.

TORCHEBM_HD void sincos_2pi(float t, float& sin_out, float& cos_out) {
  const float r = 4.0f * t;
  const int32_t q = static_cast<int32_t>(r + (r >= 0.0f ? 0.5f : -0.5f));
  const float f = t - 0.25f * static_cast<float>(q);
  const float a = 6.28318530717958648f * f;
  const float a2 = a * a;
  const float s =
      a + a * a2 * (-1.66666667e-1f + a2 * (8.33333333e-3f + a2 * (-1.98412698e-4f + a2 * 2.75573192e-6f)));
  const float c =
      1.0f + a2 * (-0.5f + a2 * (4.16666667e-2f + a2 * (-1.38888889e-3f + a2 * (2.48015873e-5f +
      a2 * -2.75573192e-7f))));
  const bool swap = (q & 1) != 0;
  const float sin_abs = swap ? c : s, cos_abs = swap ? s : c;
  sin_out = (q & 2) ? -sin_abs : sin_abs;
  cos_out = ((q + 1) & 2) ? -cos_abs : cos_abs;
}

TORCHEBM_HD void sincos_2pi(double t, double& sin_out, double& cos_out) {
  const double r = 4.0 * t;
  // Quadrant as an integer without a double -> int64 conversion: the result fits in int32.
  const int32_t q = static_cast<int32_t>(r + (r >= 0.0 ? 0.5 : -0.5));
  const double f = t - 0.25 * static_cast<double>(q);
  const double a = 6.283185307179586477 * f;
  const double a2 = a * a;
  // Coefficients (-1)^k / (2k+1)! and (-1)^k / (2k)!.
  const double s =
      a + a * a2 * (-1.6666666666666666e-01 + a2 * (8.3333333333333332e-03 + a2 *
      (-1.9841269841269841e-04 + a2 * (2.7557319223985893e-06 + a2 * (-2.5052108385441720e-08 +
      a2 * (1.6059043836821613e-10 + a2 * (-7.6471637318198164e-13 + a2 * 2.8114572543455206e-15)))))));
  const double c =
      1.0 + a2 * (-0.5 + a2 * (4.1666666666666664e-02 + a2 * (-1.3888888888888889e-03 + a2 *
      (2.4801587301587302e-05 + a2 * (-2.7557319223985888e-07 + a2 * (2.0876756987868099e-09 +
      a2 * (-1.1470745597729725e-11 + a2 * (4.7794773323873853e-14 + a2 * -1.5619206968586225e-16))))))));
  const bool swap = (q & 1) != 0;
  const double sin_abs = swap ? c : s, cos_abs = swap ? s : c;
  sin_out = (q & 2) ? -sin_abs : sin_abs;
  cos_out = ((q + 1) & 2) ? -cos_abs : cos_abs;
}

// ---- Box-Muller -----------------------------------------------------------------------------
// Two uniforms -> two independent standard normals: r = sqrt(-2 log u1), (r cos 2pi u2, r sin 2pi u2).

template <class T>
TORCHEBM_HD void box_muller(T u1, T u2, T& z0, T& z1) {
  const T r = sqrt_ieee(T(-2) * log_approx(u1));
  T s, c;
  sincos_2pi(u2, s, c);
  z0 = r * c;
  z1 = r * s;
}

// Normals of one Philox group: four float32 (elements 4g .. 4g+3) or two float64 (2g, 2g+1).
TORCHEBM_HD void normals_from_words(const uint32_t w[4], float z[4]) {
  box_muller(uniform_f32(w[0]), uniform_f32(w[1]), z[0], z[1]);
  box_muller(uniform_f32(w[2]), uniform_f32(w[3]), z[2], z[3]);
}
TORCHEBM_HD void normals_from_words(const uint32_t w[4], double z[2]) {
  box_muller(uniform_f64(w[0], w[1]), uniform_f64(w[2], w[3]), z[0], z[1]);
}

// Elements per Philox group for a dtype: 4 float32 values or 2 float64 values.
template <class T>
struct PhiloxGroup {
  static constexpr int kElems = sizeof(T) == 4 ? 4 : 2;
};

// Uniforms of one group, in element order.
TORCHEBM_HD void uniforms_from_words(const uint32_t w[4], float u[4]) {
  for (int k = 0; k < 4; ++k) u[k] = uniform_f32(w[k]);
}
TORCHEBM_HD void uniforms_from_words(const uint32_t w[4], double u[2]) {
  u[0] = uniform_f64(w[0], w[1]);
  u[1] = uniform_f64(w[2], w[3]);
}

}  // namespace torchebm
