// What the host sides of the CUDA whole-chain ops (langevin_chain_host.cpp, mala_chain_host.cpp,
// hmc_chain_host.cpp) share: the state in its compute type, the model's arguments, the
// schedules on the device, and the outputs and scratch sized by chain_plan.
#pragma once

#include <string>

#include "host_common.h"

namespace torchebm::cuda {

// The model, the state in the compute type, and the outputs of one chain call.
struct ChainCall {
  const char* op;
  at::Tensor x0;  // [B, d] contiguous, compute type
  at::ScalarType out_dtype;
  at::Tensor mean, precision;
  EnergyArgs energy;
  ChainArgs args;
  at::Tensor x, trajectory, energy_mean, acceptance_rate, partial, workspace;
  at::Tensor schedules[3];  // args.a's, args.b's and args.temper.beta's values on the device
  at::Tensor base_mean, base_precision;  // args.temper's base on the device, compute type
  at::Tensor leapfrog_steps;  // args.leapfrog_steps's values on the device (HMC)
};

// A schedule [n_steps] or [n_steps, B] that checks::schedule accepted (on the host or the
// device), as args.a (slot 0), args.b (slot 1) or args.temper.beta (slot 2) take it: float64 on x0's device, kept in the
// call. A [n_steps, B] constant over the steps (stride 0, as per-chain step sizes expanded over
// the steps come) is copied as its one row [B], not as n_steps rows.
inline Schedule device_schedule(ChainCall& call, int slot, const at::Tensor& s) {
  const bool per_chain = s.dim() == 2;
  const bool constant_rows = per_chain && s.stride(0) == 0 && s.size(0) > 0;
  at::Tensor& values = call.schedules[slot];
  values = on_device(constant_rows ? s.select(0, 0) : s, call.x0.device(), at::kDouble);
  const int64_t step_stride = constant_rows ? 0 : (per_chain ? s.size(1) : 1);
  return Schedule{values.const_data_ptr<double>(), step_stride, per_chain ? 1 : 0};
}

// Fills `call` for a chain whose arguments checks::<op> accepted: everything but the sampler's
// own arguments (schedules, clamp, HMC's mass and leapfrog count).
inline void prepare_chain(ChainCall& call, Sampler sampler, const checks::Chain& checked,
                          const at::Tensor& x0, c10::ArrayRef<double> params,
                          const std::optional<at::Tensor>& mean,
                          const std::optional<at::Tensor>& precision, int64_t seed, int64_t thin,
                          bool record_trajectory, bool record_energy, bool acceptance,
                          int64_t first_step, bool tempered = false) {
  const at::Device dev = x0.device();
  const at::ScalarType ct = compute_type(x0.scalar_type());
  const int64_t B = x0.size(0), d = x0.size(1), n_steps = checked.n_steps;
  checks::first_step(first_step, n_steps, call.op);
  call.out_dtype = x0.scalar_type();
  call.x0 = x0.to(ct).contiguous();
  if (mean) call.mean = on_device(*mean, dev, ct);
  if (precision) call.precision = on_device(*precision, dev, ct);
  const int id = static_cast<int>(checked.energy);
  call.energy = EnergyArgs{id, params.data(), static_cast<int>(params.size()),
                           data_or_null(call.mean), data_or_null(call.precision)};
  ChainArgs& args = call.args;
  args = ChainArgs{};
  args.dtype = dtype_of(ct);
  args.batch = B;
  args.dim = d;
  args.n_steps = n_steps;
  args.thin = thin;
  args.seed = static_cast<uint64_t>(seed);
  args.first_step = first_step;
  args.record_energy = record_energy;
  args.temper.on = tempered;  // chain_plan sizes the workspace for it
  const at::TensorOptions o = call.x0.options();
  call.x = at::empty({B, d}, o);
  call.trajectory = record_trajectory ? at::empty({B, n_steps / thin, d}, o) : at::empty({0}, o);
  call.energy_mean = record_energy ? at::empty({n_steps}, o) : at::empty({0}, o);
  call.acceptance_rate = acceptance ? at::empty({n_steps}, o) : at::empty({0}, o);
  const ChainPlan plan = chain_plan(sampler, id, args, current_launch());
  if (record_energy || acceptance) {
    call.partial = at::empty({n_steps * plan.partial_blocks * 2}, o.dtype(at::kDouble));
  }
  if (plan.workspace_elems > 0) call.workspace = at::empty({plan.workspace_elems}, o);
  if (B == 0) {  // no chains: the means are 0, as on the CPU
    call.energy_mean.zero_();
    call.acceptance_rate.zero_();
  }
}

// A chain op's tempering arguments, which checks::tempering accepted, as args.temper takes them
// (after prepare_chain(..., tempered = beta given)); log_weight is updated in place.
inline void set_tempering(ChainCall& call, const std::optional<at::Tensor>& beta,
                          const std::optional<at::Tensor>& base_mean,
                          const std::optional<at::Tensor>& base_precision,
                          const std::optional<at::Tensor>& log_weight) {
  TemperArgs& t = call.args.temper;
  if (!beta) return;
  t.beta = device_schedule(call, 2, *beta);
  if (base_mean) {
    const at::ScalarType ct = call.x0.scalar_type();
    call.base_mean = on_device(*base_mean, call.x0.device(), ct);
    call.base_precision = on_device(*base_precision, call.x0.device(), ct);
    t.base_mean = call.base_mean.const_data_ptr();
    t.base_precision = call.base_precision.const_data_ptr();
  }
  if (log_weight) t.log_weight = log_weight->data_ptr<double>();
}

inline ChainOutputs outputs(ChainCall& call) {
  return ChainOutputs{call.x.data_ptr(),
                      call.trajectory.numel() > 0 ? call.trajectory.data_ptr() : nullptr,
                      call.energy_mean.numel() > 0 ? call.energy_mean.data_ptr() : nullptr,
                      call.acceptance_rate.numel() > 0 ? call.acceptance_rate.data_ptr() : nullptr,
                      call.partial.defined() ? call.partial.data_ptr<double>() : nullptr,
                      call.workspace.defined() ? call.workspace.data_ptr() : nullptr};
}

inline void check_chain_launch(cudaError_t err, const ChainCall& call) {
  TORCH_CHECK(err != cudaErrorInvalidValue, call.op,
              ": no CUDA kernel for this model and dimension (energy id ", call.energy.id,
              ", d = ", call.args.dim, ")");
  check_launch(err, call.op);
}

}  // namespace torchebm::cuda
