// CUDA host side of langevin_update and langevin_update_graphsafe_ (kernel in
// langevin_kernel.cu, schemas in csrc/ops.cpp).
#include "host_common.h"

namespace torchebm::cuda {
namespace {

LangevinCoeffs coefficients(double a, double b, std::optional<double> clamp_min,
                            std::optional<double> clamp_max, std::optional<double> grad_clip) {
  return LangevinCoeffs{a,
                        b,
                        clamp_min.has_value(),
                        clamp_max.has_value(),
                        grad_clip.has_value(),
                        clamp_min.value_or(0.0),
                        clamp_max.value_or(0.0),
                        grad_clip.value_or(0.0)};
}

at::Tensor langevin_update_op(const at::Tensor& x, const at::Tensor& grad,
                              const std::optional<at::Tensor>& noise, double a, double b,
                              std::optional<double> clamp_min, std::optional<double> clamp_max,
                              std::optional<double> grad_clip, int64_t seed, int64_t step,
                              const std::optional<at::Tensor>& a_chain,
                              const std::optional<at::Tensor>& b_chain) {
  checks::langevin_update(x, grad, noise, a, b, clamp_min, clamp_max, grad_clip, step,
                          checks::kCuda, a_chain, b_chain);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), gc = grad.contiguous();
  const at::Tensor nc = noise ? noise->contiguous() : at::Tensor();
  at::Tensor out = at::empty(x.sizes(), x.options());
  at::Tensor keep[2];
  const ChainCoeffs per_chain = chain_coeffs(a_chain, b_chain, x, keep);
  check_launch(cuda::langevin_update(xc.const_data_ptr(), gc.const_data_ptr(), data_or_null(nc),
                                     out.data_ptr(), dtype_of(x.scalar_type()), xc.numel(),
                                     coefficients(a, b, clamp_min, clamp_max, grad_clip),
                                     PhiloxArgs{static_cast<uint64_t>(seed), step, nullptr},
                                     current_launch(), per_chain),
               "langevin_update");
  return out;
}

// In place, drawing stream 0 at (seed_state[0], seed_state[1] + step_offset) read on the
// device: a captured CUDA graph replays with the stream position the state holds at replay.
void langevin_update_graphsafe_(const at::Tensor& x, const at::Tensor& grad, double a, double b,
                                std::optional<double> clamp_min, std::optional<double> clamp_max,
                                std::optional<double> grad_clip, const at::Tensor& seed_state,
                                int64_t step_offset) {
  checks::langevin_update_graphsafe_(x, grad, a, b, clamp_min, clamp_max, grad_clip, seed_state,
                                     checks::kCuda);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor gc = grad.contiguous();
  const PhiloxArgs rng{0, step_offset, seed_state.const_data_ptr<int64_t>()};
  check_launch(cuda::langevin_update(x.const_data_ptr(), gc.const_data_ptr(), nullptr,
                                     x.data_ptr(), dtype_of(x.scalar_type()), x.numel(),
                                     coefficients(a, b, clamp_min, clamp_max, grad_clip), rng,
                                     current_launch()),
               "langevin_update_graphsafe_");
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CUDA, m) {
  m.impl("langevin_update", &langevin_update_op);
  m.impl("langevin_update_graphsafe_", &langevin_update_graphsafe_);
}

}  // namespace torchebm::cuda
