// CUDA host side of metropolis_select and mala_select (kernels in select_kernel.cu, schemas in
// csrc/ops.cpp).
#include "host_common.h"

#include <tuple>

namespace torchebm::cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> metropolis_select_op(
    const at::Tensor& log_accept_ratio, const at::Tensor& x, const at::Tensor& x_proposed,
    const std::optional<at::Tensor>& uniform, int64_t seed, int64_t step) {
  checks::metropolis_select(log_accept_ratio, x, x_proposed, uniform, step, checks::kCuda);
  const int64_t B = x.size(0);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), yc = x_proposed.contiguous(),
                   lr = log_accept_ratio.contiguous();
  const at::Tensor uc = uniform ? uniform->contiguous() : at::Tensor();
  at::Tensor x_out = at::empty(x.sizes(), x.options());
  at::Tensor accepted = at::empty({B}, x.options().dtype(at::kBool));
  const int64_t d = B == 0 ? 0 : xc.numel() / B;
  check_launch(cuda::metropolis_select(lr.const_data_ptr(), xc.const_data_ptr(),
                                       yc.const_data_ptr(), data_or_null(uc), x_out.data_ptr(),
                                       accepted.data_ptr<bool>(), dtype_of(x.scalar_type()), B,
                                       d, PhiloxArgs{static_cast<uint64_t>(seed), step, nullptr},
                                       current_launch()),
               "metropolis_select");
  return {x_out, accepted};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mala_select_op(
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& grad_x, const at::Tensor& grad_y,
    const at::Tensor& energy_x, const at::Tensor& energy_y, double a, double b,
    const std::optional<at::Tensor>& uniform, int64_t seed, int64_t step,
    const std::optional<at::Tensor>& a_chain, const std::optional<at::Tensor>& b_chain) {
  checks::mala_select(x, y, grad_x, grad_y, energy_x, energy_y, a, b, uniform, step,
                      checks::kCuda, a_chain, b_chain);
  const int64_t B = x.size(0);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), yc = y.contiguous(), gxc = grad_x.contiguous(),
                   gyc = grad_y.contiguous(), exc = energy_x.contiguous(),
                   eyc = energy_y.contiguous();
  const at::Tensor uc = uniform ? uniform->contiguous() : at::Tensor();
  at::Tensor x_out = at::empty(x.sizes(), x.options());
  at::Tensor g_out = at::empty(x.sizes(), x.options());
  at::Tensor e_out = at::empty({B}, x.options());
  at::Tensor accepted = at::empty({B}, x.options().dtype(at::kBool));
  const int64_t d = B == 0 ? 0 : xc.numel() / B;
  at::Tensor keep[2];
  const ChainCoeffs per_chain = chain_coeffs(a_chain, b_chain, x, keep);
  check_launch(cuda::mala_select(xc.const_data_ptr(), yc.const_data_ptr(), gxc.const_data_ptr(),
                                 gyc.const_data_ptr(), exc.const_data_ptr(), eyc.const_data_ptr(),
                                 x_out.data_ptr(), g_out.data_ptr(), e_out.data_ptr(),
                                 accepted.data_ptr<bool>(), dtype_of(x.scalar_type()), B, d, a, b,
                                 data_or_null(uc),
                                 PhiloxArgs{static_cast<uint64_t>(seed), step, nullptr},
                                 current_launch(), per_chain.first, per_chain.second),
               "mala_select");
  return {x_out, g_out, e_out, accepted};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CUDA, m) {
  m.impl("metropolis_select", &metropolis_select_op);
  m.impl("mala_select", &mala_select_op);
}

}  // namespace torchebm::cuda
