// Argument checks of the MLP ops (mlp_energy_grad, mlp_langevin_chain, mlp_mala_chain,
// mlp_hmc_chain), shared by their CPU and CUDA entry points (host code only). Every message
// names the op, the argument, the value received and what was expected.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "torchebm/checks.h"
#include "torchebm/mlp.h"

namespace torchebm::mlp_checks {

// The network of an op call: layer widths n[0] = d, n[l + 1] = rows of weights[l].
struct Network {
  int64_t d = 0;
  std::vector<int64_t> widths;  // [L + 1]
  int64_t L() const { return static_cast<int64_t>(widths.size()) - 1; }
};

// x: [B, d] float32/float64; weights[l]: [n_{l+1}, n_l] and biases[l]: [n_{l+1}] in x's dtype
// on x's device; activations[l] an mlp::Act code; act_params: kActParams per layer, finite;
// out_scale, out_offset finite.
inline Network network(const at::Tensor& x, const char* x_name, at::TensorList weights,
                       at::TensorList biases, c10::IntArrayRef activations,
                       c10::ArrayRef<double> act_params, double out_scale, double out_offset,
                       const char* op) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op, ": ", x_name,
              " must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(x.dim() == 2, op, ": ", x_name, " must have shape [B, d], got ", x.sizes());
  const int64_t L = static_cast<int64_t>(weights.size());
  TORCH_CHECK(L >= 1, op, ": weights must hold at least one layer, got an empty list");
  TORCH_CHECK(static_cast<int64_t>(biases.size()) == L, op, ": biases must have one tensor per "
              "layer (", L, "), got ", biases.size());
  TORCH_CHECK(static_cast<int64_t>(activations.size()) == L, op, ": activations must have one "
              "code per layer (", L, "), got ", activations.size());
  TORCH_CHECK(static_cast<int64_t>(act_params.size()) == L * mlp::kActParams, op,
              ": act_params must have ", mlp::kActParams, " values per layer (", L * mlp::kActParams,
              "), got ", act_params.size());
  // Values are checked as the kernels see them, rounded to x's dtype (checks.h).
  const at::ScalarType compute = checks::compute_dtype(x.scalar_type());
  Network net;
  net.d = x.size(1);
  net.widths.push_back(net.d);
  for (int64_t l = 0; l < L; ++l) {
    const at::Tensor& w = weights[l];
    const at::Tensor& b = biases[l];
    const int64_t n_in = net.widths.back();
    TORCH_CHECK(w.dim() == 2 && w.size(1) == n_in && w.size(0) >= 1, op, ": weights[", l,
                "] must have shape [n_out >= 1, ", n_in, "], got ", w.sizes());
    TORCH_CHECK(b.dim() == 1 && b.size(0) == w.size(0), op, ": biases[", l, "] must have shape [",
                w.size(0), "], got ", b.sizes());
    TORCH_CHECK(w.scalar_type() == x.scalar_type(), op, ": weights[", l, "] must have ", x_name,
                "'s dtype (", x.scalar_type(), "), got ", w.scalar_type());
    TORCH_CHECK(b.scalar_type() == x.scalar_type(), op, ": biases[", l, "] must have ", x_name,
                "'s dtype (", x.scalar_type(), "), got ", b.scalar_type());
    checks::same_device(w, x, op, "weights", x_name);
    checks::same_device(b, x, op, "biases", x_name);
    TORCH_CHECK(activations[l] >= 0 && activations[l] < mlp::kActCount, op, ": activations[", l,
                "] must be an activation code in [0, ", mlp::kActCount, "), got ", activations[l]);
    for (int i = 0; i < mlp::kActParams; ++i) {
      const int64_t k = l * mlp::kActParams + i;
      if (!std::isfinite(checks::rounded(act_params[k], compute))) {
        const std::string name = "act_params[" + std::to_string(k) + "]";
        checks::finite(act_params[k], compute, op, name.c_str());
      }
    }
    if (activations[l] == mlp::kSoftplus) {
      const int64_t k = l * mlp::kActParams;
      checks::positive(act_params[k], compute, op,
                       ("softplus beta (act_params[" + std::to_string(k) + "])").c_str());
    }
    net.widths.push_back(w.size(0));
  }
  checks::finite(out_scale, compute, op, "out_scale");
  checks::finite(out_offset, compute, op, "out_offset");
  return net;
}

// A whole chain's common arguments: thin and the first schedule (its length is n_steps; its
// shape, dtype, device and values are checks::schedule's, called by each back end).
inline int64_t chain_steps(const at::Tensor& schedule, const char* name, int64_t thin,
                           const char* op) {
  TORCH_CHECK(thin >= 1, op, ": thin must be >= 1, got ", thin);
  TORCH_CHECK(schedule.dim() == 1 || schedule.dim() == 2, op, ": ", name,
              " must be a per-step tensor [n_steps] or [n_steps, B], got ", schedule.sizes());
  const int64_t n = schedule.size(0);
  TORCH_CHECK(n <= static_cast<int64_t>(UINT32_MAX) + 1, op,
              ": n_steps must be <= 2^32 (steps are Philox counter words), got ", n);
  return n;
}

// HMC's inverse mass, without reading its values: None, 0-d or [d], floating, on x0's device.
inline void inv_mass_shape(const std::optional<at::Tensor>& inv_mass, const at::Tensor& x0,
                           const char* op) {
  if (!inv_mass) return;
  const int64_t d = x0.size(1);
  TORCH_CHECK(inv_mass->dim() == 0 || (inv_mass->dim() == 1 && inv_mass->size(0) == d), op,
              ": inv_mass must be None, a 0-d tensor, or [", d, "], got shape ",
              inv_mass->sizes());
  TORCH_CHECK(at::isFloatingType(inv_mass->scalar_type()), op,
              ": inv_mass must be a floating tensor, got ", inv_mass->scalar_type());
  checks::same_device(*inv_mass, x0, op, "inv_mass", "x0");
}

// HMC's inverse mass as inv_mass_shape checks it, and finite and > 0 in x0's dtype (the kernels
// cast it). Returns it as d float64 host values (empty when None).
inline std::vector<double> inv_mass_values(const std::optional<at::Tensor>& inv_mass,
                                           const at::Tensor& x0, const char* op) {
  if (!inv_mass) return {};
  inv_mass_shape(inv_mass, x0, op);
  const int64_t d = x0.size(1);
  const at::Tensor im = inv_mass->to(at::kCPU, at::kDouble).expand({d}).contiguous();
  std::vector<double> v(im.const_data_ptr<double>(), im.const_data_ptr<double>() + d);
  const at::ScalarType compute = checks::compute_dtype(x0.scalar_type());
  for (int64_t j = 0; j < d; ++j) {
    const double r = checks::rounded(v[j], compute);
    TORCH_CHECK(std::isfinite(r) && r > 0, op, ": inv_mass must be finite and > 0",
                checks::in_dtype(std::isfinite(v[j]) && v[j] > 0), ", got ", *inv_mass);
  }
  return v;
}

// ---- the checks of each chain op, called by its CPU and CUDA entry points alike (the values of
// the schedules and of inv_mass are then read where each back end reads them) ----------------
// Schedules are [n_steps] (every chain) or [n_steps, B] (per chain), as the analytic chain ops
// take them (checks::schedule: values checked when on the host, one row when constant over the
// steps).

// The network and the number of steps of a chain call.
struct Chain {
  Network net;
  int64_t n_steps = 0;
};

inline Chain langevin_chain(const at::Tensor& x0, at::TensorList weights, at::TensorList biases,
                            c10::IntArrayRef activations, c10::ArrayRef<double> act_params,
                            double out_scale, double out_offset, const at::Tensor& a,
                            const at::Tensor& b, std::optional<double> clamp_min,
                            std::optional<double> clamp_max, std::optional<double> grad_clip,
                            int64_t thin) {
  constexpr const char* op = "mlp_langevin_chain";
  Chain c{network(x0, "x0", weights, biases, activations, act_params, out_scale, out_offset, op),
          chain_steps(a, "a", thin, op)};
  checks::clamp_values(clamp_min, clamp_max, grad_clip, checks::compute_dtype(x0.scalar_type()),
                       op);
  checks::schedule(a, c.n_steps, x0, op, "a", checks::Values::kFinite);
  checks::schedule(b, c.n_steps, x0, op, "b", checks::Values::kFinite);
  return c;
}

inline Chain mala_chain(const at::Tensor& x0, at::TensorList weights, at::TensorList biases,
                        c10::IntArrayRef activations, c10::ArrayRef<double> act_params,
                        double out_scale, double out_offset, const at::Tensor& a,
                        const at::Tensor& b, int64_t thin) {
  constexpr const char* op = "mlp_mala_chain";
  Chain c{network(x0, "x0", weights, biases, activations, act_params, out_scale, out_offset, op),
          chain_steps(a, "a", thin, op)};
  checks::schedule(a, c.n_steps, x0, op, "a", checks::Values::kFinite);
  checks::schedule(b, c.n_steps, x0, op, "b", checks::Values::kMalaScale);
  return c;
}

inline Chain hmc_chain(const at::Tensor& x0, at::TensorList weights, at::TensorList biases,
                       c10::IntArrayRef activations, c10::ArrayRef<double> act_params,
                       double out_scale, double out_offset, const at::Tensor& step_size,
                       int64_t n_leapfrog, const std::optional<at::Tensor>& inv_mass,
                       int64_t thin, const std::optional<at::Tensor>& leapfrog_steps) {
  constexpr const char* op = "mlp_hmc_chain";
  Chain c{network(x0, "x0", weights, biases, activations, act_params, out_scale, out_offset, op),
          chain_steps(step_size, "step_size", thin, op)};
  TORCH_CHECK(n_leapfrog >= 1 && n_leapfrog <= INT32_MAX, op,
              ": n_leapfrog must be in [1, 2^31 - 1], got ", n_leapfrog);
  inv_mass_shape(inv_mass, x0, op);
  checks::schedule(step_size, c.n_steps, x0, op, "step_size", checks::Values::kPositive);
  if (leapfrog_steps) checks::step_counts(*leapfrog_steps, c.n_steps, x0, op, "leapfrog_steps");
  return c;
}

}  // namespace torchebm::mlp_checks
