// Argument checks shared by the CPU and CUDA op implementations (host code only). Every message
// names the op, the argument, the value received and what was expected.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "torchebm/energies.h"

namespace torchebm::checks {

inline void floating(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
}

inline void same_device(const at::Tensor& t, const at::Tensor& ref, const char* op,
                        const char* name, const char* ref_name) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(), " but ",
              ref_name, " is on ", ref.device(), "; expected the same device");
}

// `t` has the shape, dtype and device of `ref`.
inline void like(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* name,
                 const char* ref_name) {
  TORCH_CHECK(t.sizes() == ref.sizes(), op, ": ", name, " must have the shape of ", ref_name, " ",
              ref.sizes(), ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " must have the dtype of ",
              ref_name, " (", ref.scalar_type(), "), got ", t.scalar_type());
  same_device(t, ref, op, name, ref_name);
}

// A batch of chains: at least one dimension, the first being the chain count.
inline int64_t batched(const at::Tensor& x, const char* op, const char* name) {
  floating(x, op, name);
  TORCH_CHECK(x.dim() >= 1, op, ": ", name,
              " must have a leading chain dimension [B, *event], got a 0-d tensor");
  return x.size(0);
}

// A per-chain tensor [B] with the dtype and device of `x`.
inline void per_chain(const at::Tensor& t, const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == x.size(0), op, ": ", name,
              " must be a per-chain tensor of shape [", x.size(0), "], got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", name, " must have the dtype of x (",
              x.scalar_type(), "), got ", t.scalar_type());
  same_device(t, x, op, name, "x");
}

inline void finite(double v, const char* op, const char* name) {
  TORCH_CHECK(std::isfinite(v), op, ": ", name, " must be finite, got ", v);
}

inline void positive(double v, const char* op, const char* name) {
  TORCH_CHECK(std::isfinite(v) && v > 0, op, ": ", name, " must be finite and > 0, got ", v);
}

// The sampler step, the third Philox counter word.
inline uint32_t step(int64_t step, const char* op) {
  TORCH_CHECK(step >= 0 && step <= static_cast<int64_t>(UINT32_MAX), op,
              ": step must be in [0, 2^32 - 1] (a Philox counter word), got ", step);
  return static_cast<uint32_t>(step);
}

// Clamp bounds: each absent or not NaN, and min <= max.
inline void clamp_bounds(std::optional<double> lo, std::optional<double> hi, const char* op) {
  TORCH_CHECK(!lo || !std::isnan(*lo), op, ": clamp_min must not be NaN");
  TORCH_CHECK(!hi || !std::isnan(*hi), op, ": clamp_max must not be NaN");
  TORCH_CHECK(!lo || !hi || *lo <= *hi, op, ": clamp_min (", *lo,
              ") must be <= clamp_max (", hi ? *hi : 0.0, ")");
}

inline void grad_clip(std::optional<double> c, const char* op) {
  TORCH_CHECK(!c || (!std::isnan(*c) && *c > 0), op, ": grad_clip must be > 0 (or None), got ",
              c ? *c : 0.0);
}

// Output size of the factory ops.
inline void size(c10::IntArrayRef size, const char* op) {
  for (int64_t s : size) {
    TORCH_CHECK(s >= 0, op, ": size must have non-negative entries, got ", size);
  }
}

// An analytic model's kernel name -> Energy, with its parameters checked.
inline Energy energy(const std::string& name, c10::ArrayRef<double> params,
                     const std::optional<at::Tensor>& mean,
                     const std::optional<at::Tensor>& precision, const at::Tensor& x,
                     const char* op) {
  static const char* kNames[] = {"gaussian",   "double_well", "harmonic",
                                 "rosenbrock", "ackley",      "rastrigin",
                                 "himmelblau", "booth",       "styblinski_tang"};
  int found = -1;
  for (int i = 0; i < 9; ++i) {
    if (name == kNames[i]) found = i;
  }
  TORCH_CHECK(found >= 0, op, ": energy must be one of gaussian, double_well, harmonic, "
              "rosenbrock, ackley, rastrigin, himmelblau, booth, styblinski_tang; got '", name, "'");
  const Energy e = static_cast<Energy>(found);
  TORCH_CHECK(x.dim() == 2, op, ": the analytic models take x of shape [B, d], got ", x.sizes());
  const int64_t d = x.size(1);
  TORCH_CHECK(d >= 1, op, ": x must have d >= 1, got ", x.sizes());
  const int want = energy_param_count(e);
  TORCH_CHECK(static_cast<int>(params.size()) == want, op, ": energy '", name, "' takes ", want,
              " scalar params, got ", params.size(), " (", params, ")");
  for (size_t i = 0; i < params.size(); ++i) {
    TORCH_CHECK(std::isfinite(params[i]), op, ": params[", i, "] of '", name,
                "' must be finite, got ", params[i]);
  }
  const int64_t fixed = energy_fixed_dim(e);
  TORCH_CHECK(fixed == 0 || d == fixed, op, ": energy '", name, "' needs d == ", fixed,
              ", got x of shape ", x.sizes());
  TORCH_CHECK(e != Energy::kRosenbrock || d >= 2, op, ": energy 'rosenbrock' needs d >= 2, got ",
              x.sizes());
  if (e == Energy::kGaussian) {
    TORCH_CHECK(mean.has_value() && precision.has_value(), op,
                ": energy 'gaussian' needs mean [d] and precision [d, d] tensors");
    TORCH_CHECK(mean->dim() == 1 && mean->size(0) == d, op, ": mean must have shape [", d,
                "], got ", mean->sizes());
    TORCH_CHECK(precision->dim() == 2 && precision->size(0) == d && precision->size(1) == d, op,
                ": precision must have shape [", d, ", ", d, "], got ", precision->sizes());
    floating(*mean, op, "mean");
    floating(*precision, op, "precision");
    same_device(*mean, x, op, "mean", "x0");
    same_device(*precision, x, op, "precision", "x0");
  } else {
    TORCH_CHECK(!mean.has_value() && !precision.has_value(), op, ": energy '", name,
                "' takes no mean/precision tensors (those are the gaussian's)");
  }
  return e;
}

// A per-step schedule: 1-D, floating, CPU or x's device, n_steps entries.
inline void schedule(const at::Tensor& s, int64_t n_steps, const char* op, const char* name) {
  TORCH_CHECK(s.dim() == 1, op, ": ", name, " must be a 1-D per-step tensor [n_steps], got ",
              s.sizes());
  TORCH_CHECK(s.size(0) == n_steps, op, ": ", name, " must have n_steps = ", n_steps,
              " entries, got ", s.size(0));
  TORCH_CHECK(at::isFloatingType(s.scalar_type()), op, ": ", name,
              " must be a floating tensor, got ", s.scalar_type());
}

}  // namespace torchebm::checks
