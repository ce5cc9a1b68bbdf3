// Autograd of the torchebm ops (one registration for every back end: the Autograd key).
//
// langevin_update and leapfrog_kick_drift are linear in their tensor inputs, so their backward
// is registered here (in C++: a Python autograd kernel would add ~9 us to every call of the
// fused path). Every other op with tensor inputs refuses an input that requires grad, with an
// error naming the op and the argument, instead of returning outputs whose backward silently
// leaves the inputs' .grad unset (torch's default for an op without an autograd kernel).
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/variable.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

namespace torchebm::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Whether a call must record a graph node. Function::apply costs ~2 us even when nothing
// requires grad, which the fused path's per-step calls should not pay.
bool needs_graph(std::initializer_list<at::Tensor> inputs) {
  if (!at::GradMode::is_enabled()) return false;
  for (const at::Tensor& t : inputs) {
    if (t.defined() && t.requires_grad()) return true;
  }
  return false;
}

// g * v, or g * t[i] in row i when the per-chain coefficient t [B] is defined.
at::Tensor times(const at::Tensor& g, double v, const at::Tensor& t) {
  if (!t.defined()) return g * v;
  std::vector<int64_t> shape(static_cast<size_t>(g.dim()), 1);
  shape[0] = t.size(0);
  return g * t.view(shape);
}

at::Tensor defined_or_empty(const std::optional<at::Tensor>& t) { return t ? *t : at::Tensor(); }

// The per-chain step sizes are settings, not inputs to differentiate.
void refuse_grad_of(const std::optional<at::Tensor>& t, const char* op, const char* name) {
  TORCH_CHECK(!(t && t->requires_grad() && at::GradMode::is_enabled()), op,
              ": the op is not differentiable in its per-chain ", name,
              ", which requires grad; pass a detached tensor (.detach())");
}

// ---- langevin_update: out = clamp(x - a * clip(grad, -c, c) + b * xi, lo, hi) ---------------
// d out / d x = m, d out / d grad = -a * m * [|grad| <= c], d out / d noise = b * m, where m is
// 1 where the output is strictly inside the clamp bounds and 0 where it sits on one (a valid
// subgradient at the kink; the in-kernel noise (noise = None) gets no gradient).

at::Tensor langevin_update_call(const at::Tensor& x, const at::Tensor& grad,
                                const std::optional<at::Tensor>& noise, double a, double b,
                                std::optional<double> lo, std::optional<double> hi,
                                std::optional<double> clip, int64_t seed, int64_t step,
                                const std::optional<at::Tensor>& a_chain,
                                const std::optional<at::Tensor>& b_chain) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("torchebm::langevin_update", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&,
                                         const std::optional<at::Tensor>&, double, double,
                                         std::optional<double>, std::optional<double>,
                                         std::optional<double>, int64_t, int64_t,
                                         const std::optional<at::Tensor>&,
                                         const std::optional<at::Tensor>&)>();
  return op.call(x, grad, noise, a, b, lo, hi, clip, seed, step, a_chain, b_chain);
}

struct LangevinUpdate : public torch::autograd::Function<LangevinUpdate> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& grad,
                            const std::optional<at::Tensor>& noise, double a, double b,
                            std::optional<double> lo, std::optional<double> hi,
                            std::optional<double> clip, int64_t seed, int64_t step,
                            const std::optional<at::Tensor>& a_chain,
                            const std::optional<at::Tensor>& b_chain) {
    at::AutoDispatchBelowADInplaceOrView guard;
    at::Tensor out =
        langevin_update_call(x, grad, noise, a, b, lo, hi, clip, seed, step, a_chain, b_chain);
    ctx->saved_data["a"] = a;
    ctx->saved_data["b"] = b;
    ctx->saved_data["lo"] = lo;
    ctx->saved_data["hi"] = hi;
    ctx->saved_data["clip"] = clip;
    ctx->saved_data["has_noise"] = noise.has_value();
    ctx->save_for_backward({out, clip ? grad : at::Tensor(), defined_or_empty(a_chain),
                            defined_or_empty(b_chain)});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& out = saved[0];
    at::Tensor g = grad_outputs[0];
    const auto lo = ctx->saved_data["lo"].toOptional<double>();
    const auto hi = ctx->saved_data["hi"].toOptional<double>();
    if (lo) g = at::where(out > *lo, g, at::zeros_like(g));
    if (hi) g = at::where(out < *hi, g, at::zeros_like(g));
    const double a = ctx->saved_data["a"].toDouble();
    const double b = ctx->saved_data["b"].toDouble();
    at::Tensor g_grad = -times(g, a, saved[2]);
    if (const auto clip = ctx->saved_data["clip"].toOptional<double>()) {
      const at::Tensor& grad = saved[1];
      g_grad = at::where((grad >= -*clip) & (grad <= *clip), g_grad, at::zeros_like(g_grad));
    }
    at::Tensor g_noise = ctx->saved_data["has_noise"].toBool() ? times(g, b, saved[3]) : at::Tensor();
    return {g,           g_grad,      g_noise,     at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor langevin_update_autograd(const at::Tensor& x, const at::Tensor& grad,
                                    const std::optional<at::Tensor>& noise, double a, double b,
                                    std::optional<double> lo, std::optional<double> hi,
                                    std::optional<double> clip, int64_t seed, int64_t step,
                                    const std::optional<at::Tensor>& a_chain,
                                    const std::optional<at::Tensor>& b_chain) {
  refuse_grad_of(a_chain, "langevin_update", "a");
  refuse_grad_of(b_chain, "langevin_update", "b");
  if (!needs_graph({x, grad, noise ? *noise : at::Tensor()})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return langevin_update_call(x, grad, noise, a, b, lo, hi, clip, seed, step, a_chain, b_chain);
  }
  return LangevinUpdate::apply(x, grad, noise, a, b, lo, hi, clip, seed, step, a_chain, b_chain);
}

// ---- leapfrog_kick_drift: p' = p - kick * grad; x' = x + drift * m * p' ---------------------
// With upstream (gx, gp) and t = gp + drift * m * gx: dx = gx, dp = t, dgrad = -kick * t,
// dm = drift * sum(p' * gx) over every dimension that m is broadcast over.

std::tuple<at::Tensor, at::Tensor> kick_drift_call(const at::Tensor& x, const at::Tensor& p,
                                                   const at::Tensor& grad, double kick,
                                                   double drift,
                                                   const std::optional<at::Tensor>& inv_mass,
                                                   const std::optional<at::Tensor>& kick_chain,
                                                   const std::optional<at::Tensor>& drift_chain) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("torchebm::leapfrog_kick_drift", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                           double, const std::optional<at::Tensor>&,
                           const std::optional<at::Tensor>&, const std::optional<at::Tensor>&)>();
  return op.call(x, p, grad, kick, drift, inv_mass, kick_chain, drift_chain);
}

struct KickDrift : public torch::autograd::Function<KickDrift> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& p,
                               const at::Tensor& grad, double kick, double drift,
                               const std::optional<at::Tensor>& inv_mass,
                               const std::optional<at::Tensor>& kick_chain,
                               const std::optional<at::Tensor>& drift_chain) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [x_out, p_out] =
        kick_drift_call(x, p, grad, kick, drift, inv_mass, kick_chain, drift_chain);
    ctx->saved_data["kick"] = kick;
    ctx->saved_data["drift"] = drift;
    ctx->save_for_backward({p_out, defined_or_empty(inv_mass), defined_or_empty(kick_chain),
                            defined_or_empty(drift_chain)});
    return {x_out, p_out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& p_out = saved[0];
    const at::Tensor& m = saved[1];
    const double kick = ctx->saved_data["kick"].toDouble();
    const double drift = ctx->saved_data["drift"].toDouble();
    const at::Tensor& gx = grad_outputs[0];
    const at::Tensor& gp = grad_outputs[1];
    const at::Tensor t = gp + times(m.defined() ? gx * m : gx, drift, saved[3]);
    at::Tensor g_m;
    if (m.defined()) {
      const at::Tensor prod = times(p_out * gx, drift, saved[3]);
      g_m = m.dim() == 0 ? prod.sum() : prod.reshape({-1, m.size(0)}).sum(0);
    }
    return {gx, t, -times(t, kick, saved[2]), at::Tensor(), at::Tensor(), g_m,
            at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> kick_drift_autograd(const at::Tensor& x, const at::Tensor& p,
                                                       const at::Tensor& grad, double kick,
                                                       double drift,
                                                       const std::optional<at::Tensor>& inv_mass,
                                                       const std::optional<at::Tensor>& kick_chain,
                                                       const std::optional<at::Tensor>& drift_chain) {
  refuse_grad_of(kick_chain, "leapfrog_kick_drift", "kick");
  refuse_grad_of(drift_chain, "leapfrog_kick_drift", "drift");
  if (!needs_graph({x, p, grad, inv_mass ? *inv_mass : at::Tensor()})) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return kick_drift_call(x, p, grad, kick, drift, inv_mass, kick_chain, drift_chain);
  }
  auto out = KickDrift::apply(x, p, grad, kick, drift, inv_mass, kick_chain, drift_chain);
  return {out[0], out[1]};
}

// ---- every other op: refuse an input that requires grad -------------------------------------

void refuse_grad(const c10::OperatorHandle& op, c10::DispatchKeySet keys,
                 torch::jit::Stack* stack) {
  const auto& args = op.schema().arguments();
  const auto inputs = torch::jit::last(*stack, args.size());
  if (at::GradMode::is_enabled()) {
    const std::string& full = op.schema().name();  // "torchebm::<op>"
    const std::string name = full.substr(full.find("::") + 2);
    for (size_t i = 0; i < args.size(); ++i) {
      const c10::IValue& v = inputs[i];
      const bool requires_grad = v.isTensor() && v.toTensor().requires_grad();
      TORCH_CHECK(!requires_grad, name, ": the op is not differentiable, but its argument ",
                  args[i].name(),
                  " requires grad; pass a detached tensor (.detach()) or call it under "
                  "torch.no_grad()");
    }
  }
  // In-place ops (langevin_update_graphsafe_, philox_state_advance_): autograd must see the
  // mutation, as torch's own fallback records it.
  std::vector<at::Tensor> written;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].alias_info() && args[i].alias_info()->isWrite() && inputs[i].isTensor()) {
      written.push_back(inputs[i].toTensor());
    }
  }
  {
    at::AutoDispatchBelowADInplaceOrView guard;
    op.redispatchBoxed(keys & c10::after_ADInplaceOrView_keyset, stack);
  }
  for (const at::Tensor& t : written) torch::autograd::impl::bump_version(t);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, Autograd, m) {
  m.impl("langevin_update", &langevin_update_autograd);
  m.impl("leapfrog_kick_drift", &kick_drift_autograd);
  // Not differentiable: the Metropolis decisions are piecewise constant, the closed-form
  // gradients would need their Hessians, and the chains are many steps of all of these.
  for (const char* name :
       {"metropolis_select", "mala_select", "analytic_energy_grad", "langevin_chain",
        "mala_chain", "hmc_chain", "langevin_update_graphsafe_", "philox_state_advance_",
        "_rng_math", "replica_swap"}) {
    m.impl(name, torch::CppFunction::makeFromBoxedFunction<&refuse_grad>());
  }
}

}  // namespace torchebm::autograd
