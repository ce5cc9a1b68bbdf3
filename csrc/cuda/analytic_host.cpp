// CUDA host side of analytic_energy_grad (kernel in analytic_kernel.cu, schema in
// csrc/ops.cpp).
#include "host_common.h"

#include <string>
#include <tuple>

namespace torchebm::cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> analytic_energy_grad_op(
    const std::string& energy, const at::Tensor& x, c10::ArrayRef<double> params,
    const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& precision) {
  constexpr const char* op = "analytic_energy_grad";
  const Energy e = checks::analytic_energy_grad(energy, x, params, mean, precision, checks::kCuda);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::ScalarType ct = compute_type(x.scalar_type());
  const at::Tensor xc = x.to(ct).contiguous();
  const int64_t B = x.size(0), d = x.size(1);
  const at::Tensor mc = mean ? on_device(*mean, x.device(), ct) : at::Tensor();
  const at::Tensor pc = precision ? on_device(*precision, x.device(), ct) : at::Tensor();
  at::Tensor e_out = at::empty({B}, xc.options());
  at::Tensor g_out = at::empty({B, d}, xc.options());
  const at::Tensor work =
      e == Energy::kGaussian && d != 2 ? at::empty({B * d}, xc.options()) : at::Tensor();
  const EnergyArgs args{static_cast<int>(e), params.data(), static_cast<int>(params.size()),
                        data_or_null(mc), data_or_null(pc)};
  const cudaError_t err = cuda::analytic_energy_grad(
      xc.const_data_ptr(), args, dtype_of(ct), B, d, e_out.data_ptr(), g_out.data_ptr(),
      work.defined() ? work.data_ptr() : nullptr, current_launch());
  TORCH_CHECK(err != cudaErrorInvalidValue, op, ": no CUDA kernel for energy '", energy,
              "' with d = ", d);
  check_launch(err, op);
  return {out_dtype(e_out, x.scalar_type()), out_dtype(g_out, x.scalar_type())};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CUDA, m) {
  m.impl("analytic_energy_grad", &analytic_energy_grad_op);
}

}  // namespace torchebm::cuda
