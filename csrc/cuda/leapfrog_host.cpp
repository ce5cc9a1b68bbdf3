// CUDA host side of leapfrog_kick_drift (kernel in leapfrog_kernel.cu, schema in csrc/ops.cpp).
#include "host_common.h"

#include <tuple>

namespace torchebm::cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> leapfrog_kick_drift_op(
    const at::Tensor& x, const at::Tensor& p, const at::Tensor& grad, double kick_size,
    double drift_size, const std::optional<at::Tensor>& inv_mass,
    const std::optional<at::Tensor>& kick_chain, const std::optional<at::Tensor>& drift_chain) {
  checks::leapfrog_kick_drift(x, p, grad, kick_size, drift_size, inv_mass, checks::kCuda,
                              kick_chain, drift_chain);
  const int64_t d = x.dim() == 0 ? 1 : x.size(-1);
  const at::Tensor mc = inv_mass ? inv_mass->contiguous() : at::Tensor();
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), pc = p.contiguous(), gc = grad.contiguous();
  at::Tensor x_out = at::empty(x.sizes(), x.options());
  at::Tensor p_out = at::empty(x.sizes(), x.options());
  at::Tensor keep[2];
  const ChainCoeffs per_chain = chain_coeffs(kick_chain, drift_chain, x, keep);
  check_launch(cuda::leapfrog_kick_drift(xc.const_data_ptr(), pc.const_data_ptr(),
                                         gc.const_data_ptr(), data_or_null(mc),
                                         mc.defined() ? mc.numel() : 0, d, x_out.data_ptr(),
                                         p_out.data_ptr(), dtype_of(x.scalar_type()), xc.numel(),
                                         kick_size, drift_size, current_launch(), per_chain),
               "leapfrog_kick_drift");
  return {x_out, p_out};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CUDA, m) { m.impl("leapfrog_kick_drift", &leapfrog_kick_drift_op); }

}  // namespace torchebm::cuda
