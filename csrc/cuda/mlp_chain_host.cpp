// CUDA host side of the MLP ops (kernels in mlp_chain_kernel.cu, schemas in csrc/ops.cpp): the
// checks the CPU kernels make (torchebm/mlp_checks.h), the network packed into one device
// buffer as mlp_layout says, the outputs, and the registration for the CUDA dispatch key.
// Nothing here synchronises with the device (schedules given on the GPU are not read back).
#include <algorithm>
#include <tuple>
#include <vector>

#include "host_common.h"
#include "mlp_launchers.h"
#include "torchebm/mlp_checks.h"

namespace torchebm::cuda::mlp_chain {
namespace {

struct PackedNet {
  MlpNet net;
  at::Tensor storage;  // keeps net.weights alive
};

// The network's weights in the compute type on x's device, packed as mlp_layout says.
PackedNet pack(const mlp_checks::Network& shape, at::TensorList weights, at::TensorList biases,
               c10::IntArrayRef activations, c10::ArrayRef<double> act_params, double out_scale,
               double out_offset, const at::Tensor& x, const char* op) {
  const int L = static_cast<int>(shape.L());
  TORCH_CHECK(L <= kMaxLayers, op, ": the CUDA kernels take at most ", kMaxLayers,
              " layers, got ", L);
  PackedNet p;
  p.net = mlp_layout(L, shape.widths.data(), activations.data(), act_params.data(), out_scale,
                     out_offset);
  p.storage = at::zeros({p.net.packed_elems}, x.options());
  for (int l = 0; l < L; ++l) {
    const MlpLayer& ly = p.net.layers[l];
    const at::Tensor w = weights[l].to(x.scalar_type());
    p.storage.narrow(0, ly.fwd, int64_t(ly.n_in) * ly.n_out_pad)
        .view({ly.n_in, ly.n_out_pad})
        .narrow(1, 0, ly.n_out)
        .copy_(w.t());
    p.storage.narrow(0, ly.bwd, int64_t(ly.n_out) * ly.n_in_pad)
        .view({ly.n_out, ly.n_in_pad})
        .narrow(1, 0, ly.n_in)
        .copy_(w);
    p.storage.narrow(0, ly.bias, ly.n_out).copy_(biases[l].to(x.scalar_type()));
  }
  if (p.net.const_out_grad) {
    const MlpLayer& last = p.net.layers[L - 1];
    const at::Tensor w = weights[L - 1].to(x.scalar_type());
    p.storage.narrow(0, p.net.c_out, last.n_in).copy_((w * out_scale).sum(0));
  }
  p.net.weights = p.storage.const_data_ptr();
  return p;
}

void check_state(const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK(x.is_cuda(), op, ": ", name, " must be on a CUDA device for the CUDA kernels, got ",
              x.device());
}

void check_fits(const MlpPlan& plan, const char* op) {
  TORCH_CHECK(plan.fits, op, ": the network is too wide for the CUDA MLP kernels (a tile of ",
              kChains, " chains needs ", plan.smem_bytes,
              " bytes of shared memory for its activations, more than one block of this GPU has)");
}

struct Call {
  PackedNet packed;
  MlpChainArgs args{};
  at::Tensor x0, x, trajectory, energy_mean, acceptance_rate, partial, workspace;
  std::vector<at::Tensor> keep;  // device copies the kernels read
};

// A schedule that mlp_checks accepted ([n_steps] or [n_steps, B], on the host or x0's device)
// as the kernels read it: float64 on x0's device, kept in the call. A [n_steps, B] constant over
// the steps (stride 0, as per-chain step sizes expanded over the steps come) goes up as its one
// row [B], not as n_steps rows.
Schedule device_schedule(Call& call, const at::Tensor& s, const at::Tensor& x0) {
  const bool per_chain = s.dim() == 2;
  const bool constant_rows = per_chain && s.stride(0) == 0 && s.size(0) > 0;
  call.keep.push_back(on_device(constant_rows ? s.select(0, 0) : s, x0.device(), at::kDouble));
  const int64_t step_stride = constant_rows ? 0 : (per_chain ? s.size(1) : 1);
  return Schedule{call.keep.back().const_data_ptr<double>(), step_stride, per_chain ? 1 : 0};
}

// Fills the call's outputs and scratch; the schedules (args.a, args.b) are set before it.
void prepare(Call& call, Sampler sampler, const at::Tensor& x0, int64_t n_steps, int64_t seed,
             int64_t thin, bool record_trajectory, bool record_energy, bool acceptance,
             int64_t first_step, const char* op) {
  const int64_t B = x0.size(0), d = x0.size(1);
  call.x0 = x0.contiguous();
  const at::TensorOptions o = call.x0.options();
  MlpChainArgs& a = call.args;
  a.dtype = x0.scalar_type() == at::kDouble ? Dtype::kFloat64 : Dtype::kFloat32;
  a.batch = B;
  a.n_steps = n_steps;
  a.thin = thin;
  a.seed = static_cast<uint64_t>(seed);
  checks::first_step(first_step, n_steps, op);
  a.first_step = first_step;
  a.record_energy = record_energy;
  call.x = B > 0 ? at::empty({B, d}, o) : call.x0.clone();
  call.trajectory = record_trajectory ? at::empty({B, n_steps / thin, d}, o) : at::empty({0}, o);
  call.energy_mean = at::zeros({record_energy ? n_steps : 0}, o);
  call.acceptance_rate = acceptance ? at::zeros({n_steps}, o) : at::empty({0}, o);
  const MlpPlan plan =
      mlp_plan(sampler, call.packed.net, a.dtype, B, current_launch(), per_chain(a));
  if (B > 0) check_fits(plan, op);
  call.partial = at::empty({std::max<int64_t>(1, n_steps * plan.blocks * 2)}, o.dtype(at::kDouble));
  call.workspace = at::empty({std::max<int64_t>(1, plan.workspace_elems)}, o);
}

ChainOutputs outputs(Call& call) {
  return ChainOutputs{call.x.data_ptr(),
                      call.trajectory.numel() > 0 ? call.trajectory.data_ptr() : nullptr,
                      call.energy_mean.numel() > 0 ? call.energy_mean.data_ptr() : nullptr,
                      call.acceptance_rate.numel() > 0 ? call.acceptance_rate.data_ptr() : nullptr,
                      call.partial.data_ptr<double>(), call.workspace.data_ptr()};
}

void check_status(cudaError_t err, const Call& call, const char* op) {
  if (err == cudaErrorInvalidValue) {
    check_fits(mlp_plan(Sampler::kLangevin, call.packed.net, call.args.dtype, call.args.batch,
                        current_launch(), per_chain(call.args)),
               op);
  }
  check_launch(err, op);
}

std::tuple<at::Tensor, at::Tensor> mlp_energy_grad_op(const at::Tensor& x, at::TensorList weights,
                                                      at::TensorList biases,
                                                      c10::IntArrayRef activations,
                                                      c10::ArrayRef<double> act_params,
                                                      double out_scale, double out_offset) {
  constexpr const char* op = "mlp_energy_grad";
  const mlp_checks::Network shape = mlp_checks::network(x, "x", weights, biases, activations,
                                                        act_params, out_scale, out_offset, op);
  check_state(x, op, "x");
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  const PackedNet packed =
      pack(shape, weights, biases, activations, act_params, out_scale, out_offset, xc, op);
  const int64_t B = x.size(0);
  at::Tensor energy = at::empty({B}, xc.options());
  at::Tensor grad = at::empty_like(xc);
  const Dtype dt = x.scalar_type() == at::kDouble ? Dtype::kFloat64 : Dtype::kFloat32;
  const MlpPlan plan = mlp_plan(Sampler::kLangevin, packed.net, dt, B, current_launch());
  if (B > 0) check_fits(plan, op);
  at::Tensor work = at::empty({std::max<int64_t>(1, plan.workspace_elems)}, xc.options());
  check_launch(mlp_chain::mlp_energy_grad(xc.const_data_ptr(), packed.net, dt, B,
                                          energy.data_ptr(), grad.data_ptr(), work.data_ptr(),
                                          current_launch()),
               op);
  return {energy, grad};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mlp_langevin_chain_op(
    const at::Tensor& x0, at::TensorList weights, at::TensorList biases,
    c10::IntArrayRef activations, c10::ArrayRef<double> act_params, double out_scale,
    double out_offset, const at::Tensor& a, const at::Tensor& b, std::optional<double> clamp_min,
    std::optional<double> clamp_max, std::optional<double> grad_clip, int64_t seed, int64_t thin,
    bool record_trajectory, bool record_energy, int64_t first_step) {
  constexpr const char* op = "mlp_langevin_chain";
  const mlp_checks::Chain checked =
      mlp_checks::langevin_chain(x0, weights, biases, activations, act_params, out_scale,
                                 out_offset, a, b, clamp_min, clamp_max, grad_clip, thin);
  const mlp_checks::Network& shape = checked.net;
  const int64_t n_steps = checked.n_steps;
  check_state(x0, op, "x0");
  const c10::cuda::CUDAGuard guard(x0.device());
  Call call;
  call.packed = pack(shape, weights, biases, activations, act_params, out_scale, out_offset, x0, op);
  call.args.a = device_schedule(call, a, x0);
  call.args.b = device_schedule(call, b, x0);
  prepare(call, Sampler::kLangevin, x0, n_steps, seed, thin, record_trajectory, record_energy,
          false, first_step, op);
  LangevinCoeffs& k = call.args.clamp;
  k.has_min = clamp_min.has_value();
  k.has_max = clamp_max.has_value();
  k.has_clip = grad_clip.has_value();
  k.clamp_min = clamp_min.value_or(0.0);
  k.clamp_max = clamp_max.value_or(0.0);
  k.grad_clip = grad_clip.value_or(0.0);
  check_status(mlp_chain::mlp_langevin_chain(call.x0.const_data_ptr(), call.packed.net, call.args,
                                             outputs(call), current_launch()),
               call, op);
  return {call.x, call.trajectory, call.energy_mean};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlp_mala_chain_op(
    const at::Tensor& x0, at::TensorList weights, at::TensorList biases,
    c10::IntArrayRef activations, c10::ArrayRef<double> act_params, double out_scale,
    double out_offset, const at::Tensor& a, const at::Tensor& b, int64_t seed, int64_t thin,
    bool record_trajectory, bool record_energy, int64_t first_step) {
  constexpr const char* op = "mlp_mala_chain";
  const mlp_checks::Chain checked = mlp_checks::mala_chain(
      x0, weights, biases, activations, act_params, out_scale, out_offset, a, b, thin);
  const mlp_checks::Network& shape = checked.net;
  const int64_t n_steps = checked.n_steps;
  check_state(x0, op, "x0");
  const c10::cuda::CUDAGuard guard(x0.device());
  Call call;
  call.packed = pack(shape, weights, biases, activations, act_params, out_scale, out_offset, x0, op);
  call.args.a = device_schedule(call, a, x0);
  call.args.b = device_schedule(call, b, x0);
  prepare(call, Sampler::kMala, x0, n_steps, seed, thin, record_trajectory, record_energy, true,
          first_step, op);
  check_status(mlp_chain::mlp_mala_chain(call.x0.const_data_ptr(), call.packed.net, call.args,
                                         outputs(call), current_launch()),
               call, op);
  return {call.x, call.trajectory, call.energy_mean, call.acceptance_rate};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlp_hmc_chain_op(
    const at::Tensor& x0, at::TensorList weights, at::TensorList biases,
    c10::IntArrayRef activations, c10::ArrayRef<double> act_params, double out_scale,
    double out_offset, const at::Tensor& step_size, int64_t n_leapfrog,
    const std::optional<at::Tensor>& inv_mass, int64_t seed, int64_t thin,
    bool record_trajectory, bool record_energy, int64_t first_step,
    const std::optional<at::Tensor>& leapfrog_steps) {
  constexpr const char* op = "mlp_hmc_chain";
  const mlp_checks::Chain checked =
      mlp_checks::hmc_chain(x0, weights, biases, activations, act_params, out_scale, out_offset,
                            step_size, n_leapfrog, inv_mass, thin, leapfrog_steps);
  const mlp_checks::Network& shape = checked.net;
  const int64_t n_steps = checked.n_steps;
  check_state(x0, op, "x0");
  const int64_t d = x0.size(1);
  at::Tensor mass;
  // Values are checked where they are on the host: a GPU inv_mass is not read back.
  if (inv_mass && inv_mass->is_cpu()) mlp_checks::inv_mass_values(inv_mass, x0, op);
  const c10::cuda::CUDAGuard guard(x0.device());
  Call call;
  call.packed = pack(shape, weights, biases, activations, act_params, out_scale, out_offset, x0, op);
  call.args.a = device_schedule(call, step_size, x0);
  prepare(call, Sampler::kHmc, x0, n_steps, seed, thin, record_trajectory, record_energy, true,
          first_step, op);
  call.args.n_leapfrog = static_cast<int>(n_leapfrog);
  if (leapfrog_steps) {
    call.keep.push_back(on_device(*leapfrog_steps, x0.device(), at::kLong));
    call.args.leapfrog_steps = call.keep.back().const_data_ptr<int64_t>();
  }
  if (inv_mass) {
    mass = on_device(inv_mass->expand({d}), x0.device(), x0.scalar_type());
    call.args.inv_mass = mass.const_data_ptr();
  }
  check_status(mlp_chain::mlp_hmc_chain(call.x0.const_data_ptr(), call.packed.net, call.args,
                                        outputs(call), current_launch()),
               call, op);
  return {call.x, call.trajectory, call.energy_mean, call.acceptance_rate};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CUDA, m) {
  m.impl("mlp_energy_grad", &mlp_energy_grad_op);
  m.impl("mlp_langevin_chain", &mlp_langevin_chain_op);
  m.impl("mlp_mala_chain", &mlp_mala_chain_op);
  m.impl("mlp_hmc_chain", &mlp_hmc_chain_op);
}

}  // namespace torchebm::cuda::mlp_chain
