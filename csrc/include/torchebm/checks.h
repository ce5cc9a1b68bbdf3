// The argument checks of every op, shared by the CPU and CUDA back ends (host code only). Each
// back end's entry point of an op starts with checks::<op>(...), so both accept the same
// arguments and raise the same errors; they differ only where their Backend says so (the device,
// and float16/bfloat16 states on CUDA). Every message names the op, the argument, the value
// received and what was expected.
//
// Values inside tensors are checked only where they are on the host (schedules, HMC's inverse
// mass): reading back a GPU tensor would synchronise the host with the device.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include "torchebm/energies.h"

namespace torchebm::checks {

// What the back ends accept differently.
struct Backend {
  c10::DeviceType device;  // of the dispatch key the kernels are registered for
  bool half_states;        // float16/bfloat16 states (computed in float32)
};
inline constexpr Backend kCpu{c10::DeviceType::CPU, false};
inline constexpr Backend kCuda{c10::DeviceType::CUDA, true};

// ---- argument kinds --------------------------------------------------------------------------

inline void floating(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
}

// A dtype the back end's kernels take for states (and draws).
inline void state_dtype(at::ScalarType t, const char* op, const char* name, const Backend& be) {
  const bool half = t == at::kHalf || t == at::kBFloat16;
  TORCH_CHECK(t == at::kFloat || t == at::kDouble || (be.half_states && half), op, ": ", name,
              " must be ",
              be.half_states ? "float32, float64, float16 or bfloat16" : "float32 or float64",
              ", got ", t);
}

inline void on_backend(const at::Device& device, const char* op, const char* name,
                       const Backend& be) {
  TORCH_CHECK(device.type() == be.device, op, ": the ", c10::DeviceTypeName(be.device),
              " kernel got ", name, " on ", device);
}

// A state: on the back end's device, in a dtype its kernels take.
inline void state(const at::Tensor& x, const char* op, const char* name, const Backend& be) {
  on_backend(x.device(), op, name, be);
  state_dtype(x.scalar_type(), op, name, be);
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

// A batch of chains: a state with a leading chain dimension.
inline void batched(const at::Tensor& x, const char* op, const char* name, const Backend& be) {
  state(x, op, name, be);
  TORCH_CHECK(x.dim() >= 1, op, ": ", name,
              " must have a leading chain dimension [B, *event], got a 0-d tensor");
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

// ---- values as the kernels compute with them ---------------------------------------------------
// Scalars arrive as float64 but the kernels compute in the state's precision, so a value is
// checked after rounding to it: 1e300 is finite but float32's +inf, 1e-300 is > 0 but float32's 0.

// The dtype the kernels compute in for states of dtype `t` (float16/bfloat16: float32).
inline at::ScalarType compute_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// `v` rounded to `compute` (the value the kernels see).
inline double rounded(double v, at::ScalarType compute) {
  return compute == at::kDouble ? v : static_cast<double>(static_cast<float>(v));
}

inline const char* dtype_name(at::ScalarType compute) {
  return compute == at::kDouble ? "float64" : "float32";
}

// " in float32" for the message about a value that passes before rounding, not after.
inline const char* in_dtype(bool passes_unrounded) {
  return passes_unrounded ? " in float32 (the dtype the kernels compute in)" : "";
}

inline void finite(double v, at::ScalarType compute, const char* op, const char* name) {
  TORCH_CHECK(std::isfinite(rounded(v, compute)), op, ": ", name, " must be finite",
              in_dtype(std::isfinite(v)), ", got ", v);
}

inline void positive(double v, at::ScalarType compute, const char* op, const char* name) {
  const double r = rounded(v, compute);
  TORCH_CHECK(std::isfinite(r) && r > 0, op, ": ", name, " must be finite and > 0",
              in_dtype(std::isfinite(v) && v > 0), ", got ", v);
}

// MALA's b: its ratio divides by 2 b^2, computed in the kernels' dtype, which must be finite and
// > 0 (float32: about 1e-19 < |b| < 1e19).
inline void mala_scale(double v, at::ScalarType compute, const char* op, const char* name) {
  positive(v, compute, op, name);
  const double r = rounded(v, compute);
  const double two_b2 = compute == at::kDouble
                            ? 2.0 * r * r
                            : static_cast<double>(2.0f * static_cast<float>(r) * static_cast<float>(r));
  TORCH_CHECK(std::isfinite(two_b2) && two_b2 > 0, op, ": ", name, " = ", v, " gives 2 ", name,
              "^2 = ", two_b2, " in ", dtype_name(compute),
              " (the MALA ratio divides by it); expected 2 b^2 finite and > 0");
}

// A bound that is finite must stay finite in the kernels' dtype (torch.clamp refuses such a
// bound: "value cannot be converted to type float without overflow").
inline void representable(std::optional<double> v, at::ScalarType compute, const char* op,
                          const char* name) {
  if (!v || !std::isfinite(*v)) return;
  TORCH_CHECK(std::isfinite(rounded(*v, compute)), op, ": ", name, " = ", *v,
              " is not representable in ", dtype_name(compute), " (the dtype the kernels compute in)");
}

// Caller-supplied uniforms must lie in (0, 1) (log u finite, as the kernels' own draws): checked
// where they are on the host; a GPU tensor is not read back (it would synchronise), so uniforms
// passed on a GPU are the caller's responsibility (docs/kernels.md).
// 16-bit uniforms may be 1: the float32 draws rounded (1 - 2^-24 rounds up), as philox_uniform
// returns them for those dtypes.
inline void uniforms(const at::Tensor& u, const char* op) {
  if (!u.is_cpu() || u.numel() == 0) return;
  const bool half = u.scalar_type() == at::kHalf || u.scalar_type() == at::kBFloat16;
  const at::Tensor c = u.to(at::kDouble).contiguous();
  const double* v = c.const_data_ptr<double>();
  for (int64_t i = 0; i < c.numel(); ++i) {
    TORCH_CHECK(v[i] > 0 && (v[i] < 1 || (half && v[i] == 1)), op, ": uniform[", i,
                "] must lie in the open interval (0, 1)", half ? " (or be 1, for 16-bit dtypes)" : "",
                ", got ", v[i]);
  }
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

// clamp_bounds and grad_clip, in the kernels' dtype `compute` too.
inline void clamp_values(std::optional<double> clamp_min, std::optional<double> clamp_max,
                         std::optional<double> grad_clip_value, at::ScalarType compute,
                         const char* op) {
  clamp_bounds(clamp_min, clamp_max, op);
  grad_clip(grad_clip_value, op);
  representable(clamp_min, compute, op, "clamp_min");
  representable(clamp_max, compute, op, "clamp_max");
  representable(grad_clip_value, compute, op, "grad_clip");
  if (grad_clip_value && std::isfinite(*grad_clip_value)) {
    positive(*grad_clip_value, compute, op, "grad_clip");
  }
}

// The Langevin coefficients: x' = clamp(x - a clip(grad) + b xi).
// Values in the kernels' dtype `compute`: each finite, grad_clip > 0, and each finite bound
// representable.
inline void langevin_coefficients(double a, double b, std::optional<double> clamp_min,
                                  std::optional<double> clamp_max,
                                  std::optional<double> grad_clip_value, at::ScalarType compute,
                                  const char* op) {
  finite(a, compute, op, "a");
  finite(b, compute, op, "b");
  clamp_values(clamp_min, clamp_max, grad_clip_value, compute, op);
}

// Output size of the factory ops.
inline void size(c10::IntArrayRef size, const char* op) {
  for (int64_t s : size) {
    TORCH_CHECK(s >= 0, op, ": size must have non-negative entries, got ", size);
  }
}

// seed_state of the graph-safe ops: int64 [2] = {seed, step} on `device`, read by the kernels
// when they run.
inline void seed_state(const at::Tensor& s, const at::Device& device, const char* op) {
  TORCH_CHECK(s.device() == device, op, ": seed_state must be on ", device, ", got ", s.device());
  TORCH_CHECK(s.scalar_type() == at::kLong && s.numel() == 2 && s.is_contiguous(), op,
              ": seed_state must be a contiguous int64 tensor of 2 elements {seed, step}, got ",
              s.scalar_type(), " of shape ", s.sizes());
}

// ---- analytic models (energies.h's table) ----------------------------------------------------

inline std::optional<Energy> energy_named(const std::string& name) {
  for (int i = 0; i < kEnergyCount; ++i) {
    if (name == energy_info(static_cast<Energy>(i)).name) return static_cast<Energy>(i);
  }
  return std::nullopt;
}

// "gaussian, double_well, ...": the kernel names, in table order.
inline std::string energy_names() {
  std::string out;
  for (int i = 0; i < kEnergyCount; ++i) {
    out += (i > 0 ? ", " : "");
    out += energy_info(static_cast<Energy>(i)).name;
  }
  return out;
}

// An analytic model's kernel name -> Energy, with its parameters and x [B, d] checked.
inline Energy energy(const std::string& name, c10::ArrayRef<double> params,
                     const std::optional<at::Tensor>& mean,
                     const std::optional<at::Tensor>& precision, const at::Tensor& x,
                     const char* x_name, const char* op) {
  const std::optional<Energy> found = energy_named(name);
  TORCH_CHECK(found.has_value(), op, ": energy must be one of ", energy_names(), "; got '", name,
              "'");
  const Energy e = *found;
  const EnergyInfo info = energy_info(e);
  TORCH_CHECK(x.dim() == 2, op, ": the analytic models take ", x_name, " of shape [B, d], got ",
              x.sizes());
  const int64_t d = x.size(1);
  TORCH_CHECK(d >= 1, op, ": ", x_name, " must have d >= 1, got ", x.sizes());
  TORCH_CHECK(static_cast<int>(params.size()) == info.n_params, op, ": energy '", name, "' takes ",
              info.n_params, " scalar params, got ", params.size(), " (", params, ")");
  for (size_t i = 0; i < params.size(); ++i) {
    const double r = rounded(params[i], compute_dtype(x.scalar_type()));
    TORCH_CHECK(std::isfinite(r), op, ": params[", i, "] of '", name, "' must be finite",
                in_dtype(std::isfinite(params[i])), ", got ", params[i]);
  }
  TORCH_CHECK(info.fixed_dim == 0 || d == info.fixed_dim, op, ": energy '", name, "' needs d == ",
              info.fixed_dim, ", got ", x_name, " of shape ", x.sizes());
  TORCH_CHECK(d >= info.min_dim, op, ": energy '", name, "' needs d >= ", info.min_dim, ", got ",
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
    same_device(*mean, x, op, "mean", x_name);
    same_device(*precision, x, op, "precision", x_name);
  } else {
    TORCH_CHECK(!mean.has_value() && !precision.has_value(), op, ": energy '", name,
                "' takes no mean/precision tensors (those are the gaussian's)");
  }
  return e;
}

// What a schedule's values must be, in the kernels' dtype (x0's compute_dtype).
enum class Values { kFinite, kPositive, kMalaScale };

// A per-step schedule: floating, [n_steps] (every chain) or [n_steps, B] (B = x0.size(0): per
// chain, e.g. per-chain step sizes expanded over the steps), on the host or x0's device. Its
// values are checked (see Values) when it is on the host (one row when it is constant over the
// steps, stride 0).
inline void schedule(const at::Tensor& s, int64_t n_steps, const at::Tensor& x0, const char* op,
                     const char* name, Values rule) {
  TORCH_CHECK(s.dim() == 1 || (s.dim() == 2 && s.size(1) == x0.size(0)), op, ": ", name,
              " must be a per-step tensor [n_steps] or [n_steps, B] (B = ", x0.size(0),
              " chains), got ", s.sizes());
  TORCH_CHECK(s.size(0) == n_steps, op, ": ", name, " must have n_steps = ", n_steps,
              " entries, got ", s.size(0));
  TORCH_CHECK(at::isFloatingType(s.scalar_type()), op, ": ", name,
              " must be a floating tensor, got ", s.scalar_type());
  TORCH_CHECK(s.is_cpu() || s.device() == x0.device(), op, ": ", name, " is on ", s.device(),
              "; expected the CPU or x0's device (", x0.device(), ")");
  if (!s.is_cpu()) return;
  const bool constant_rows = s.dim() == 2 && s.stride(0) == 0 && n_steps > 0;
  const at::Tensor c = (constant_rows ? s.select(0, 0) : s).to(at::kDouble).contiguous();
  const double* v = c.const_data_ptr<double>();
  const at::ScalarType compute = compute_dtype(x0.scalar_type());
  const int64_t per_row = s.dim() == 2 ? s.size(1) : 1;
  for (int64_t t = 0; t < c.numel(); ++t) {
    const double r = rounded(v[t], compute);
    if (std::isfinite(r) && (rule == Values::kFinite || r > 0) &&
        (rule != Values::kMalaScale || (r > 1e-18 && r < 1e18))) {
      continue;  // the common case, without building a message
    }
    const std::string at_t =
        std::string(name) + "[" +
        (s.dim() == 1 ? std::to_string(t)
                      : (constant_rows ? std::string(":") : std::to_string(t / per_row)) + ", " +
                            std::to_string(t % per_row)) +
        "]";
    if (rule == Values::kFinite) finite(v[t], compute, op, at_t.c_str());
    if (rule == Values::kPositive) positive(v[t], compute, op, at_t.c_str());
    if (rule == Values::kMalaScale) mala_scale(v[t], compute, op, at_t.c_str());
  }
}

// A per-chain coefficient of a per-step op (langevin_update's a and b, leapfrog_kick_drift's
// kick and drift, mala_select's a and b): absent, or a tensor [B] (B = x.size(0)) in x's dtype
// on x's device whose entry i replaces the scalar for chain i (broadcast over its event). Its
// values are checked by `rule` when it is on the host; a GPU tensor is not read back (it would
// synchronise), as for caller-supplied uniforms.
inline void chain_coefficient(const std::optional<at::Tensor>& t, const at::Tensor& x,
                              const char* op, const char* name, Values rule) {
  if (!t) return;
  TORCH_CHECK(x.dim() >= 1, op, ": a per-chain ", name,
              " needs x with a leading chain dimension [B, *event], got a 0-d x");
  TORCH_CHECK(t->dim() == 1 && t->size(0) == x.size(0), op, ": ", name,
              " must be a float or a per-chain tensor of shape [", x.size(0), "], got ",
              t->sizes());
  TORCH_CHECK(t->scalar_type() == x.scalar_type(), op, ": per-chain ", name,
              " must have the dtype of x (", x.scalar_type(), "), got ", t->scalar_type());
  same_device(*t, x, op, name, "x");
  if (!t->is_cpu()) return;
  const at::Tensor c = t->to(at::kDouble).contiguous();
  const double* v = c.const_data_ptr<double>();
  const at::ScalarType compute = compute_dtype(x.scalar_type());
  for (int64_t i = 0; i < c.numel(); ++i) {
    const std::string at_i = std::string(name) + "[" + std::to_string(i) + "]";
    if (rule == Values::kFinite) finite(v[i], compute, op, at_i.c_str());
    if (rule == Values::kPositive) positive(v[i], compute, op, at_i.c_str());
    if (rule == Values::kMalaScale) mala_scale(v[i], compute, op, at_i.c_str());
  }
}

// A per-step count shared by the chains (hmc_chain's leapfrog_steps): int64 [n_steps], on the
// host or x0's device, each entry in [1, 2^31 - 1] (an int32 loop count; checked when on the
// host: a device tensor is not read back).
inline void step_counts(const at::Tensor& s, int64_t n_steps, const at::Tensor& x0,
                        const char* op, const char* name) {
  TORCH_CHECK(s.dim() == 1 && s.size(0) == n_steps, op, ": ", name,
              " must be a per-step tensor [n_steps] (n_steps = ", n_steps, "), got shape ",
              s.sizes());
  TORCH_CHECK(s.scalar_type() == at::kLong, op, ": ", name, " must be an int64 tensor, got ",
              s.scalar_type());
  TORCH_CHECK(s.is_cpu() || s.device() == x0.device(), op, ": ", name, " is on ", s.device(),
              "; expected the CPU or x0's device (", x0.device(), ")");
  if (!s.is_cpu()) return;
  const at::Tensor c = s.contiguous();
  const int64_t* v = c.const_data_ptr<int64_t>();
  for (int64_t t = 0; t < n_steps; ++t) {
    TORCH_CHECK(v[t] >= 1 && v[t] <= INT32_MAX, op, ": ", name, "[", t,
                "] must be in [1, 2^31 - 1] (an int32 loop count), got ", v[t]);
  }
}

// ---- per-op checks: each back end's entry point of an op calls its function first -----------

// philox_normal, philox_uniform: returns the output dtype (absent: torch's default dtype).
inline at::ScalarType philox_draw(c10::IntArrayRef size_, int64_t step_,
                                  std::optional<at::ScalarType> dtype,
                                  std::optional<at::Device> device, const char* op,
                                  const Backend& be) {
  size(size_, op);
  step(step_, op);
  if (device) on_backend(*device, op, "device", be);
  const at::ScalarType t = dtype.value_or(c10::typeMetaToScalarType(at::get_default_dtype()));
  state_dtype(t, op, "dtype", be);
  return t;
}

// Returns the step as a Philox counter word.
inline uint32_t langevin_update(const at::Tensor& x, const at::Tensor& grad,
                                const std::optional<at::Tensor>& noise, double a, double b,
                                std::optional<double> clamp_min, std::optional<double> clamp_max,
                                std::optional<double> grad_clip_value, int64_t step_,
                                const Backend& be,
                                const std::optional<at::Tensor>& a_chain = std::nullopt,
                                const std::optional<at::Tensor>& b_chain = std::nullopt) {
  constexpr const char* op = "langevin_update";
  state(x, op, "x", be);
  like(grad, x, op, "grad", "x");
  if (noise) like(*noise, x, op, "noise", "x");
  langevin_coefficients(a, b, clamp_min, clamp_max, grad_clip_value,
                        compute_dtype(x.scalar_type()), op);
  chain_coefficient(a_chain, x, op, "a", Values::kFinite);
  chain_coefficient(b_chain, x, op, "b", Values::kFinite);
  return step(step_, op);
}

// x is updated in place.
inline void langevin_update_graphsafe_(const at::Tensor& x, const at::Tensor& grad, double a,
                                       double b, std::optional<double> clamp_min,
                                       std::optional<double> clamp_max,
                                       std::optional<double> grad_clip_value,
                                       const at::Tensor& seed_state_, const Backend& be) {
  constexpr const char* op = "langevin_update_graphsafe_";
  state(x, op, "x", be);
  TORCH_CHECK(x.is_contiguous(), op, ": x is updated in place and must be contiguous");
  like(grad, x, op, "grad", "x");
  seed_state(seed_state_, x.device(), op);
  langevin_coefficients(a, b, clamp_min, clamp_max, grad_clip_value,
                        compute_dtype(x.scalar_type()), op);
}

inline void philox_state_advance_(const at::Tensor& seed_state_, const Backend& be) {
  constexpr const char* op = "philox_state_advance_";
  on_backend(seed_state_.device(), op, "seed_state", be);
  seed_state(seed_state_, seed_state_.device(), op);
}

// inv_mass: None, 0-d or [x.shape[-1]], in x's dtype, on x's device.
inline void leapfrog_kick_drift(const at::Tensor& x, const at::Tensor& p, const at::Tensor& grad,
                                double kick, double drift,
                                const std::optional<at::Tensor>& inv_mass, const Backend& be,
                                const std::optional<at::Tensor>& kick_chain = std::nullopt,
                                const std::optional<at::Tensor>& drift_chain = std::nullopt) {
  constexpr const char* op = "leapfrog_kick_drift";
  state(x, op, "x", be);
  like(p, x, op, "p", "x");
  like(grad, x, op, "grad", "x");
  finite(kick, compute_dtype(x.scalar_type()), op, "kick");
  finite(drift, compute_dtype(x.scalar_type()), op, "drift");
  chain_coefficient(kick_chain, x, op, "kick", Values::kFinite);
  chain_coefficient(drift_chain, x, op, "drift", Values::kFinite);
  if (!inv_mass) return;
  const int64_t d = x.dim() == 0 ? 1 : x.size(-1);
  TORCH_CHECK(inv_mass->dim() == 0 ||
                  (inv_mass->dim() == 1 && x.dim() >= 1 && inv_mass->size(0) == d),
              op, ": inv_mass must be None, a 0-d tensor, or [", d,
              "] (the last dimension of x), got shape ", inv_mass->sizes());
  TORCH_CHECK(inv_mass->scalar_type() == x.scalar_type(), op,
              ": inv_mass must have the dtype of x (", x.scalar_type(), "), got ",
              inv_mass->scalar_type());
  same_device(*inv_mass, x, op, "inv_mass", "x");
}

// Returns the step as a Philox counter word.
inline uint32_t metropolis_select(const at::Tensor& log_accept_ratio, const at::Tensor& x,
                                  const at::Tensor& x_proposed,
                                  const std::optional<at::Tensor>& uniform, int64_t step_,
                                  const Backend& be) {
  constexpr const char* op = "metropolis_select";
  batched(x, op, "x", be);
  like(x_proposed, x, op, "x_proposed", "x");
  per_chain(log_accept_ratio, x, op, "log_accept_ratio");
  if (uniform) {
    per_chain(*uniform, x, op, "uniform");
    uniforms(*uniform, op);
  }
  return step(step_, op);
}

// Returns the step as a Philox counter word.
inline uint32_t mala_select(const at::Tensor& x, const at::Tensor& y, const at::Tensor& grad_x,
                            const at::Tensor& grad_y, const at::Tensor& energy_x,
                            const at::Tensor& energy_y, double a, double b,
                            const std::optional<at::Tensor>& uniform, int64_t step_,
                            const Backend& be,
                            const std::optional<at::Tensor>& a_chain = std::nullopt,
                            const std::optional<at::Tensor>& b_chain = std::nullopt) {
  constexpr const char* op = "mala_select";
  batched(x, op, "x", be);
  like(y, x, op, "y", "x");
  like(grad_x, x, op, "grad_x", "x");
  like(grad_y, x, op, "grad_y", "x");
  per_chain(energy_x, x, op, "energy_x");
  per_chain(energy_y, x, op, "energy_y");
  finite(a, compute_dtype(x.scalar_type()), op, "a");
  mala_scale(b, compute_dtype(x.scalar_type()), op, "b");
  chain_coefficient(a_chain, x, op, "a", Values::kFinite);
  chain_coefficient(b_chain, x, op, "b", Values::kMalaScale);
  if (uniform) {
    per_chain(*uniform, x, op, "uniform");
    uniforms(*uniform, op);
  }
  return step(step_, op);
}

inline Energy analytic_energy_grad(const std::string& energy_name, const at::Tensor& x,
                                   c10::ArrayRef<double> params,
                                   const std::optional<at::Tensor>& mean,
                                   const std::optional<at::Tensor>& precision, const Backend& be) {
  constexpr const char* op = "analytic_energy_grad";
  state(x, op, "x", be);
  return energy(energy_name, params, mean, precision, x, "x", op);
}

// ---- whole chains ----------------------------------------------------------------------------

struct Chain {
  Energy energy;
  int64_t n_steps;  // the length of the first schedule
};

// What every chain op checks first, in this order: x0 ([B, d], a state), thin, the energy and
// its parameters, then its first per-step schedule, whose length is the chain's n_steps.
inline Chain chain(const std::string& energy_name, const at::Tensor& x0,
                   c10::ArrayRef<double> params, const std::optional<at::Tensor>& mean,
                   const std::optional<at::Tensor>& precision, int64_t thin,
                   const at::Tensor& first_schedule, const char* schedule_name, Values rule,
                   const char* op, const Backend& be) {
  state(x0, op, "x0", be);
  TORCH_CHECK(x0.dim() == 2, op, ": x0 must have shape [B, d], got ", x0.sizes());
  TORCH_CHECK(thin >= 1, op, ": thin must be >= 1, got ", thin);
  Chain c;
  c.energy = energy(energy_name, params, mean, precision, x0, "x0", op);
  c.n_steps = first_schedule.dim() == 1 || first_schedule.dim() == 2 ? first_schedule.size(0) : -1;
  TORCH_CHECK(c.n_steps >= 0, op, ": ", schedule_name,
              " must be a per-step tensor [n_steps] or [n_steps, B], got ",
              first_schedule.sizes());
  TORCH_CHECK(c.n_steps <= static_cast<int64_t>(UINT32_MAX) + 1, op,
              ": n_steps must be <= 2^32 (steps are Philox counter words), got ", c.n_steps);
  schedule(first_schedule, c.n_steps, x0, op, schedule_name, rule);
  return c;
}

// A chain op's first_step: its step t draws the noise of step first_step + t, so a chain run
// in blocks of steps (MCMCSampler._run_chain) draws what one call draws. The counter words of
// all its steps must fit in 32 bits.
inline void first_step(int64_t first, int64_t n_steps, const char* op) {
  TORCH_CHECK(first >= 0, op, ": first_step must be >= 0, got ", first);
  TORCH_CHECK(first + n_steps <= static_cast<int64_t>(UINT32_MAX) + 1, op,
              ": first_step + n_steps must be <= 2^32 (steps are Philox counter words), got ",
              first, " + ", n_steps);
}

// A chain op's optional tempering: beta, a path-position schedule [n_steps + 1] or
// [n_steps + 1, B] (finite; checked as a schedule); base_mean [d] and base_precision [d, d]
// (floating, on x0's device), the Gaussian base E0 = 1/2 (x - m0)^T P0 (x - m0), both or
// neither; log_weight, a float64 [B] contiguous tensor on x0's device that the op adds the AIS
// log weights to. Without beta, none of the others.
inline void tempering(const std::optional<at::Tensor>& beta,
                      const std::optional<at::Tensor>& base_mean,
                      const std::optional<at::Tensor>& base_precision,
                      const std::optional<at::Tensor>& log_weight, int64_t n_steps,
                      const at::Tensor& x0, const char* op) {
  if (!beta) {
    TORCH_CHECK(!base_mean && !base_precision && !log_weight, op,
                ": base_mean, base_precision and log_weight temper a chain: they need beta");
    return;
  }
  TORCH_CHECK(beta->dim() == 1 || beta->dim() == 2, op,
              ": beta must be a path schedule [n_steps + 1] or [n_steps + 1, B], got ",
              beta->sizes());
  TORCH_CHECK(beta->size(0) == n_steps + 1, op, ": beta must have n_steps + 1 = ", n_steps + 1,
              " entries (the path positions before and after each transition), got ",
              beta->size(0));
  schedule(*beta, n_steps + 1, x0, op, "beta", Values::kFinite);
  TORCH_CHECK(base_mean.has_value() == base_precision.has_value(), op,
              ": give both base_mean and base_precision (the Gaussian base), or neither");
  if (base_mean) {
    const int64_t d = x0.size(1);
    TORCH_CHECK(base_mean->dim() == 1 && base_mean->size(0) == d, op,
                ": base_mean must have shape [", d, "], got ", base_mean->sizes());
    TORCH_CHECK(base_precision->dim() == 2 && base_precision->size(0) == d &&
                    base_precision->size(1) == d,
                op, ": base_precision must have shape [", d, ", ", d, "], got ",
                base_precision->sizes());
    floating(*base_mean, op, "base_mean");
    floating(*base_precision, op, "base_precision");
    same_device(*base_mean, x0, op, "base_mean", "x0");
    same_device(*base_precision, x0, op, "base_precision", "x0");
  }
  if (log_weight) {
    TORCH_CHECK(log_weight->dim() == 1 && log_weight->size(0) == x0.size(0), op,
                ": log_weight must have shape [", x0.size(0), "] (one per chain), got ",
                log_weight->sizes());
    TORCH_CHECK(log_weight->scalar_type() == at::kDouble, op,
                ": log_weight must be a float64 tensor (the weights accumulate in float64), got ",
                log_weight->scalar_type());
    TORCH_CHECK(log_weight->is_contiguous(), op,
                ": log_weight is updated in place and must be contiguous");
    same_device(*log_weight, x0, op, "log_weight", "x0");
  }
}

inline Chain langevin_chain(const std::string& energy_name, const at::Tensor& x0,
                            const at::Tensor& a, const at::Tensor& b,
                            c10::ArrayRef<double> params, const std::optional<at::Tensor>& mean,
                            const std::optional<at::Tensor>& precision,
                            std::optional<double> clamp_min, std::optional<double> clamp_max,
                            std::optional<double> grad_clip_value, int64_t thin,
                            const Backend& be) {
  constexpr const char* op = "langevin_chain";
  const Chain c =
      chain(energy_name, x0, params, mean, precision, thin, a, "a", Values::kFinite, op, be);
  schedule(b, c.n_steps, x0, op, "b", Values::kFinite);
  clamp_values(clamp_min, clamp_max, grad_clip_value, compute_dtype(x0.scalar_type()), op);
  return c;
}

inline Chain mala_chain(const std::string& energy_name, const at::Tensor& x0, const at::Tensor& a,
                        const at::Tensor& b, c10::ArrayRef<double> params,
                        const std::optional<at::Tensor>& mean,
                        const std::optional<at::Tensor>& precision, int64_t thin,
                        const Backend& be) {
  constexpr const char* op = "mala_chain";
  const Chain c =
      chain(energy_name, x0, params, mean, precision, thin, a, "a", Values::kFinite, op, be);
  schedule(b, c.n_steps, x0, op, "b", Values::kMalaScale);
  return c;
}

// inv_mass: None, 0-d or [d], floating (a state dtype), on x0's device; finite and > 0 (checked
// when on the host).
inline Chain hmc_chain(const std::string& energy_name, const at::Tensor& x0,
                       const at::Tensor& step_size, int64_t n_leapfrog,
                       const std::optional<at::Tensor>& inv_mass, c10::ArrayRef<double> params,
                       const std::optional<at::Tensor>& mean,
                       const std::optional<at::Tensor>& precision, int64_t thin,
                       const Backend& be,
                       const std::optional<at::Tensor>& leapfrog_steps = std::nullopt) {
  constexpr const char* op = "hmc_chain";
  const Chain c =
      chain(energy_name, x0, params, mean, precision, thin, step_size, "step_size",
            Values::kPositive, op, be);
  TORCH_CHECK(n_leapfrog >= 1, op, ": n_leapfrog must be >= 1, got ", n_leapfrog);
  TORCH_CHECK(n_leapfrog <= INT32_MAX, op,
              ": n_leapfrog must be <= 2^31 - 1 (an int32 loop count), got ", n_leapfrog);
  if (leapfrog_steps) step_counts(*leapfrog_steps, c.n_steps, x0, op, "leapfrog_steps");
  if (inv_mass) {
    const int64_t d = x0.size(1);
    TORCH_CHECK(inv_mass->dim() == 0 || (inv_mass->dim() == 1 && inv_mass->size(0) == d), op,
                ": inv_mass must be None, a 0-d tensor, or [", d, "], got shape ",
                inv_mass->sizes());
    state_dtype(inv_mass->scalar_type(), op, "inv_mass", be);
    same_device(*inv_mass, x0, op, "inv_mass", "x0");
    if (inv_mass->is_cpu()) {
      // In the kernels' dtype: a float64 1e-50 is float32's 0.
      const at::Tensor im = inv_mass->to(compute_dtype(x0.scalar_type()));
      TORCH_CHECK(at::isfinite(im).all().item<bool>() && (im > 0).all().item<bool>(), op,
                  ": inv_mass must be finite and > 0 in ", dtype_name(im.scalar_type()),
                  " (the dtype the kernels compute in), got ", *inv_mass);
    }
  }
  return c;
}

}  // namespace torchebm::checks
