// Update rules of the samplers, per element or per row, written once for every back end and
// mirrored in python/torchebm/kernels/reference.py. The per-step ops and the whole-chain
// kernels both call these, which is what makes a chain equal its per-step loop.
#pragma once

#include <cstdint>

#include "torchebm/energies.h"
#include "torchebm/philox.h"

namespace torchebm {

TORCHEBM_HD float min_(float a, float b) { return b < a ? b : a; }
TORCHEBM_HD double min_(double a, double b) { return b < a ? b : a; }
TORCHEBM_HD float max_(float a, float b) { return a < b ? b : a; }
TORCHEBM_HD double max_(double a, double b) { return a < b ? b : a; }

// x' = clamp(x - a * clip(g, -c, c) + b * xi, lo, hi). lo/hi are -inf/+inf when absent (a NaN
// propagates, as torch.clamp does); clipping is skipped when `clip` is false.
template <class T>
struct LangevinCoef {
  T a, b, lo, hi, c;
  bool clip;
};

template <class T>
TORCHEBM_HD T langevin_point(T x, T g, T xi, const LangevinCoef<T>& k) {
  const T gc = k.clip ? min_(max_(g, -k.c), k.c) : g;
  const T v = x - k.a * gc + k.b * xi;
  return min_(max_(v, k.lo), k.hi);
}

// Kick then drift: p' = p - kick * g; x' = x + drift * (m * p') with m = M^{-1} (1 when absent).
template <class T>
TORCHEBM_HD T kick(T p, T g, T kick_size) {
  return p - kick_size * g;
}
template <class T>
TORCHEBM_HD T drift(T x, T p_new, T inv_mass, T drift_size) {
  return x + drift_size * (p_new * inv_mass);
}
template <class T>
TORCHEBM_HD T drift_unit_mass(T x, T p_new, T drift_size) {
  return x + drift_size * p_new;
}

// Metropolis test: accept iff log(u) < log_ratio (u in (0, 1), so log u is finite). A NaN
// ratio (a NaN energy, or inf - inf) compares false and rejects; -inf (a +inf proposal energy)
// rejects. log is normal.h's log_approx (within 2 ulp of libm's; vectorises), the same on every
// back end.
template <class T>
TORCHEBM_HD bool metropolis_accept(T u, T log_ratio) {
  return log_approx(u) < log_ratio;
}

// The terms of the MALA log ratio of element j: (y - x + a gx)^2 and (x - y + a gy)^2.
template <class T>
TORCHEBM_HD T mala_forward_term(T x, T y, T gx, T a) {
  const T r = y - x + a * gx;
  return r * r;
}
template <class T>
TORCHEBM_HD T mala_backward_term(T x, T y, T gy, T a) {
  const T r = x - y + a * gy;
  return r * r;
}

// log of the MALA acceptance ratio of one row, proposal y = x - a grad_x + b xi:
// E(x) - E(y) + (|y - x + a gx|^2 - |x - y + a gy|^2) / (2 b^2).
// Each sum is sum8 over the row's terms (mala_forward_term / mala_backward_term).
template <class T>
TORCHEBM_HD T mala_log_ratio_from_sums(T fwd, T bwd, T ex, T ey, T b) {
  return ex - ey + (fwd - bwd) / (T(2) * b * b);
}

// Kinetic energy 1/2 sum8_j (m_j p_j^2) of a row (m = inverse mass, 1 when absent).
template <class T>
TORCHEBM_HD T kinetic_term(T p, T inv_mass) {
  return inv_mass * (p * p);
}

}  // namespace torchebm
