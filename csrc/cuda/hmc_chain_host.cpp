// CUDA host side of hmc_chain (kernel in hmc_chain_kernel.cu, schema in csrc/ops.cpp).
#include "chain_host.h"

#include <string>
#include <tuple>

namespace torchebm::cuda {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> hmc_chain_op(
    const std::string& energy, const at::Tensor& x0, const at::Tensor& step_size,
    int64_t n_leapfrog, const std::optional<at::Tensor>& inv_mass, c10::ArrayRef<double> params,
    const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& precision,
    int64_t seed, int64_t thin, bool record_trajectory, bool record_energy,
    int64_t first_step, const std::optional<at::Tensor>& leapfrog_steps,
    const std::optional<at::Tensor>& beta,
    const std::optional<at::Tensor>& base_mean, const std::optional<at::Tensor>& base_precision,
    const std::optional<at::Tensor>& log_weight) {
  const checks::Chain checked = checks::hmc_chain(energy, x0, step_size, n_leapfrog, inv_mass,
                                                  params, mean, precision, thin, checks::kCuda,
                                                  leapfrog_steps);
  ChainCall call{"hmc_chain"};
  checks::tempering(beta, base_mean, base_precision, log_weight, checked.n_steps, x0, call.op);
  const c10::cuda::CUDAGuard guard(x0.device());
  prepare_chain(call, Sampler::kHmc, checked, x0, params, mean, precision, seed, thin,
                record_trajectory, record_energy, true, first_step, beta.has_value());
  set_tempering(call, beta, base_mean, base_precision, log_weight);
  const int64_t d = call.args.dim;
  const at::Tensor mass = inv_mass ? on_device(inv_mass->expand({d}), x0.device(),
                                               call.x0.scalar_type())
                                   : at::Tensor();
  call.args.a = device_schedule(call, 0, step_size);
  call.args.n_leapfrog = static_cast<int>(n_leapfrog);
  if (leapfrog_steps) {
    call.leapfrog_steps = on_device(*leapfrog_steps, x0.device(), at::kLong);
    call.args.leapfrog_steps = call.leapfrog_steps.const_data_ptr<int64_t>();
  }
  call.args.inv_mass = data_or_null(mass);
  check_chain_launch(cuda::hmc_chain(call.x0.const_data_ptr(), call.energy, call.args,
                                     outputs(call), current_launch()),
                     call);
  const at::ScalarType t = call.out_dtype;
  return {out_dtype(call.x, t), out_dtype(call.trajectory, t), out_dtype(call.energy_mean, t),
          out_dtype(call.acceptance_rate, t)};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CUDA, m) { m.impl("hmc_chain", &hmc_chain_op); }

}  // namespace torchebm::cuda
