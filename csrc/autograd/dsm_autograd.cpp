// Autograd of dsm_perturb (schema in csrc/ops.cpp; one registration for every back end: the
// Autograd key). The op is linear in its tensor inputs:
//   x_tilde = x + sigma * xi,   target = -xi / sigma,
// so with upstream gradients (g_x_tilde, g_target): d x = g_x_tilde and, when the noise is
// passed in, d noise = sigma * g_x_tilde - g_target / sigma. In-kernel noise (noise = None) is
// not an input and gets no gradient.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

namespace torchebm::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<at::Tensor, at::Tensor> dsm_perturb_call(const at::Tensor& x,
                                                    const std::optional<at::Tensor>& noise,
                                                    double sigma, int64_t seed, int64_t step) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("torchebm::dsm_perturb", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(
                           const at::Tensor&, const std::optional<at::Tensor>&, double, int64_t,
                           int64_t)>();
  return op.call(x, noise, sigma, seed, step);
}

struct DsmPerturb : public torch::autograd::Function<DsmPerturb> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x,
                               const std::optional<at::Tensor>& noise, double sigma, int64_t seed,
                               int64_t step) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [x_tilde, target] = dsm_perturb_call(x, noise, sigma, seed, step);
    ctx->saved_data["sigma"] = sigma;
    ctx->saved_data["has_noise"] = noise.has_value();
    return {x_tilde, target};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const double sigma = ctx->saved_data["sigma"].toDouble();
    const at::Tensor& g_xt = grad_outputs[0];
    const at::Tensor& g_t = grad_outputs[1];
    at::Tensor g_noise;
    if (ctx->saved_data["has_noise"].toBool()) {
      g_noise = g_xt.defined() ? g_xt * sigma : at::Tensor();
      if (g_t.defined()) g_noise = g_noise.defined() ? g_noise - g_t / sigma : g_t / -sigma;
    }
    return {g_xt, g_noise, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

std::tuple<at::Tensor, at::Tensor> dsm_perturb_autograd(const at::Tensor& x,
                                                        const std::optional<at::Tensor>& noise,
                                                        double sigma, int64_t seed,
                                                        int64_t step) {
  const bool needs_graph = at::GradMode::is_enabled() &&
                           (x.requires_grad() || (noise && noise->requires_grad()));
  if (!needs_graph) {
    at::AutoDispatchBelowADInplaceOrView guard;
    return dsm_perturb_call(x, noise, sigma, seed, step);
  }
  const variable_list out = DsmPerturb::apply(x, noise, sigma, seed, step);
  return {out[0], out[1]};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, Autograd, m) { m.impl("dsm_perturb", &dsm_perturb_autograd); }

}  // namespace torchebm::autograd
