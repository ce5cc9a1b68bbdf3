// CUDA host side of mala_chain (kernel in mala_chain_kernel.cu, schema in csrc/ops.cpp).
#include "chain_host.h"

#include <string>
#include <tuple>

namespace torchebm::cuda {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mala_chain_op(
    const std::string& energy, const at::Tensor& x0, const at::Tensor& a, const at::Tensor& b,
    c10::ArrayRef<double> params, const std::optional<at::Tensor>& mean,
    const std::optional<at::Tensor>& precision, int64_t seed, int64_t thin,
    bool record_trajectory, bool record_energy,
    int64_t first_step, const std::optional<at::Tensor>& beta,
    const std::optional<at::Tensor>& base_mean, const std::optional<at::Tensor>& base_precision,
    const std::optional<at::Tensor>& log_weight) {
  const checks::Chain checked =
      checks::mala_chain(energy, x0, a, b, params, mean, precision, thin, checks::kCuda);
  ChainCall call{"mala_chain"};
  checks::tempering(beta, base_mean, base_precision, log_weight, checked.n_steps, x0, call.op);
  const c10::cuda::CUDAGuard guard(x0.device());
  prepare_chain(call, Sampler::kMala, checked, x0, params, mean, precision, seed, thin,
                record_trajectory, record_energy, true, first_step, beta.has_value());
  set_tempering(call, beta, base_mean, base_precision, log_weight);
  call.args.a = device_schedule(call, 0, a);
  call.args.b = device_schedule(call, 1, b);
  check_chain_launch(cuda::mala_chain(call.x0.const_data_ptr(), call.energy, call.args,
                                      outputs(call), current_launch()),
                     call);
  const at::ScalarType t = call.out_dtype;
  return {out_dtype(call.x, t), out_dtype(call.trajectory, t), out_dtype(call.energy_mean, t),
          out_dtype(call.acceptance_rate, t)};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CUDA, m) { m.impl("mala_chain", &mala_chain_op); }

}  // namespace torchebm::cuda
