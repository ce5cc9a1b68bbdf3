// CUDA host side of dsm_perturb (kernel in dsm_kernel.cu, schema in csrc/ops.cpp).
#include "dsm_launchers.h"
#include "host_common.h"
#include "torchebm/dsm_checks.h"

namespace torchebm::cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> dsm_perturb_op(const at::Tensor& x,
                                                  const std::optional<at::Tensor>& noise,
                                                  double sigma, int64_t seed, int64_t step) {
  dsm_checks::dsm_perturb(x, noise, sigma, step, checks::kCuda);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  const at::Tensor nc = noise ? noise->contiguous() : at::Tensor();
  at::Tensor x_tilde = at::empty(x.sizes(), x.options());
  at::Tensor target = at::empty(x.sizes(), x.options());
  check_launch(cuda::dsm_perturb(xc.const_data_ptr(), data_or_null(nc), x_tilde.data_ptr(),
                                 target.data_ptr(), dtype_of(x.scalar_type()), xc.numel(), sigma,
                                 PhiloxArgs{static_cast<uint64_t>(seed), step, nullptr},
                                 current_launch()),
               "dsm_perturb");
  return {x_tilde, target};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CUDA, m) { m.impl("dsm_perturb", &dsm_perturb_op); }

}  // namespace torchebm::cuda
