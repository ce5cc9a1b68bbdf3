// CUDA registrations of the torchebm ops (schemas in csrc/ops.cpp, contracts in
// docs/kernels.md): argument checks, output allocation, and a call to the raw-pointer launcher
// (csrc/cuda/*.cu) on torch's current stream. Nothing here synchronises with the host.
//
// States may be float32, float64, float16 or bfloat16 (the last two computed in float32);
// per-chain tensors have the state's dtype, as on the CPU.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <string>
#include <tuple>

#include "launchers.h"
#include "torchebm/checks.h"

namespace torchebm::cuda {
namespace {

Dtype dtype_of(at::ScalarType t, const char* op, const char* arg) {
  switch (t) {
    case at::kFloat: return Dtype::kFloat32;
    case at::kDouble: return Dtype::kFloat64;
    case at::kHalf: return Dtype::kFloat16;
    case at::kBFloat16: return Dtype::kBFloat16;
    default:
      TORCH_CHECK(false, op, ": ", arg, " must be float32, float64, float16 or bfloat16, got ", t);
  }
}

// A state on a CUDA device with a dtype the kernels take.
Dtype state(const at::Tensor& x, const char* op, const char* arg) {
  TORCH_CHECK(x.is_cuda(), op, ": the CUDA kernel got ", arg, " on ", x.device());
  return dtype_of(x.scalar_type(), op, arg);
}

int64_t batched(const at::Tensor& x, const char* op) {
  state(x, op, "x");
  TORCH_CHECK(x.dim() >= 1, op, ": x must have a leading chain dimension [B, *event], got a 0-d "
              "tensor");
  return x.size(0);
}

// float64 for float64 states, float32 for the others.
at::ScalarType compute_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

Launch current_launch() {
  return Launch{c10::cuda::getCurrentCUDAStream().stream(),
                at::cuda::getCurrentDeviceProperties()->multiProcessorCount};
}

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

const void* data_or_null(const at::Tensor& t) { return t.defined() ? t.const_data_ptr() : nullptr; }

// `t` copied to `device` as a contiguous `dtype` tensor, without synchronising the host: a CPU
// tensor is staged in pinned memory (an asynchronous copy from pageable memory may block).
at::Tensor on_device(const at::Tensor& t, const at::Device& device, at::ScalarType dtype) {
  const at::Tensor src = t.is_cpu() ? t.to(dtype).contiguous().pin_memory() : t;
  return src.to(at::TensorOptions().device(device).dtype(dtype), /*non_blocking=*/true).contiguous();
}

// ---- random numbers -------------------------------------------------------------------------

template <bool kUniform>
at::Tensor philox_draw(c10::IntArrayRef size, int64_t seed, int64_t step,
                       std::optional<at::ScalarType> dtype, std::optional<at::Device> device) {
  const char* op = kUniform ? "philox_uniform" : "philox_normal";
  checks::size(size, op);
  checks::step(step, op);
  const at::Device dev = device.value_or(at::Device(at::kCUDA));
  TORCH_CHECK(dev.is_cuda(), op, ": the CUDA kernel got device ", dev);
  const at::ScalarType t = dtype.value_or(c10::typeMetaToScalarType(at::get_default_dtype()));
  const Dtype dt = dtype_of(t, op, "dtype");
  const c10::cuda::CUDAGuard guard(dev);
  at::Tensor out = at::empty(size, at::TensorOptions().dtype(t).device(dev));
  const PhiloxArgs rng{static_cast<uint64_t>(seed), step, nullptr};
  const Launch launch = current_launch();
  check_launch(kUniform ? philox_uniform(out.data_ptr(), dt, out.numel(), rng, launch)
                        : philox_normal(out.data_ptr(), dt, out.numel(), rng, launch),
               op);
  return out;
}

// seed_state: int64 [2] = {seed, step} on x's device, read by graph-safe kernels when they run.
void check_seed_state(const at::Tensor& s, const at::Device& device, const char* op) {
  TORCH_CHECK(s.device() == device, op, ": seed_state must be on ", device, ", got ", s.device());
  TORCH_CHECK(s.scalar_type() == at::kLong && s.numel() == 2 && s.is_contiguous(), op,
              ": seed_state must be a contiguous int64 tensor of 2 elements {seed, step}, got ",
              s.scalar_type(), " of shape ", s.sizes());
}

void philox_state_advance_(const at::Tensor& seed_state, int64_t increment) {
  const char* op = "philox_state_advance_";
  TORCH_CHECK(seed_state.is_cuda(), op, ": the CUDA kernel got seed_state on ",
              seed_state.device());
  check_seed_state(seed_state, seed_state.device(), op);
  const c10::cuda::CUDAGuard guard(seed_state.device());
  check_launch(philox_state_advance(seed_state.data_ptr<int64_t>(), increment, current_launch()),
               op);
}

// ---- Langevin -------------------------------------------------------------------------------

LangevinCoeffs langevin_coeffs(double a, double b, std::optional<double> clamp_min,
                               std::optional<double> clamp_max, std::optional<double> grad_clip,
                               const char* op) {
  checks::finite(a, op, "a");
  checks::finite(b, op, "b");
  checks::clamp_bounds(clamp_min, clamp_max, op);
  checks::grad_clip(grad_clip, op);
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
                           std::optional<double> grad_clip, int64_t seed, int64_t step) {
  const char* op = "langevin_update";
  const Dtype dt = state(x, op, "x");
  checks::like(grad, x, op, "grad", "x");
  if (noise) checks::like(*noise, x, op, "noise", "x");
  const LangevinCoeffs k = langevin_coeffs(a, b, clamp_min, clamp_max, grad_clip, op);
  checks::step(step, op);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), gc = grad.contiguous();
  const at::Tensor nc = noise ? noise->contiguous() : at::Tensor();
  at::Tensor out = at::empty(x.sizes(), x.options());
  check_launch(cuda::langevin_update(xc.const_data_ptr(), gc.const_data_ptr(), data_or_null(nc),
                                     out.data_ptr(), dt, xc.numel(), k,
                                     PhiloxArgs{static_cast<uint64_t>(seed), step, nullptr},
                                     current_launch()),
               op);
  return out;
}

// In place, drawing stream 0 at (seed_state[0], seed_state[1] + step_offset) read on the
// device: a captured CUDA graph replays with the stream position the state holds at replay.
void langevin_update_graphsafe_(const at::Tensor& x, const at::Tensor& grad, double a, double b,
                                std::optional<double> clamp_min, std::optional<double> clamp_max,
                                std::optional<double> grad_clip, const at::Tensor& seed_state,
                                int64_t step_offset) {
  const char* op = "langevin_update_graphsafe_";
  const Dtype dt = state(x, op, "x");
  TORCH_CHECK(x.is_contiguous(), op, ": x is updated in place and must be contiguous");
  checks::like(grad, x, op, "grad", "x");
  check_seed_state(seed_state, x.device(), op);
  const LangevinCoeffs k = langevin_coeffs(a, b, clamp_min, clamp_max, grad_clip, op);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor gc = grad.contiguous();
  const PhiloxArgs rng{0, step_offset, seed_state.const_data_ptr<int64_t>()};
  check_launch(cuda::langevin_update(x.const_data_ptr(), gc.const_data_ptr(), nullptr,
                                     x.data_ptr(), dt, x.numel(), k, rng, current_launch()),
               op);
}

// ---- leapfrog, Metropolis, MALA ---------------------------------------------------------------

std::tuple<at::Tensor, at::Tensor> leapfrog_kick_drift_op(
    const at::Tensor& x, const at::Tensor& p, const at::Tensor& grad, double kick_size,
    double drift_size, const std::optional<at::Tensor>& inv_mass) {
  const char* op = "leapfrog_kick_drift";
  const Dtype dt = state(x, op, "x");
  checks::like(p, x, op, "p", "x");
  checks::like(grad, x, op, "grad", "x");
  checks::finite(kick_size, op, "kick");
  checks::finite(drift_size, op, "drift");
  const int64_t d = x.dim() == 0 ? 1 : x.size(-1);
  at::Tensor mc;
  if (inv_mass) {
    TORCH_CHECK(inv_mass->dim() == 0 || (inv_mass->dim() == 1 && x.dim() >= 1 &&
                                         inv_mass->size(0) == d),
                op, ": inv_mass must be None, a 0-d tensor, or [", d,
                "] (the last dimension of x), got shape ", inv_mass->sizes());
    TORCH_CHECK(inv_mass->scalar_type() == x.scalar_type(), op,
                ": inv_mass must have the dtype of x (", x.scalar_type(), "), got ",
                inv_mass->scalar_type());
    checks::same_device(*inv_mass, x, op, "inv_mass", "x");
    mc = inv_mass->contiguous();
  }
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), pc = p.contiguous(), gc = grad.contiguous();
  at::Tensor x_out = at::empty(x.sizes(), x.options());
  at::Tensor p_out = at::empty(x.sizes(), x.options());
  check_launch(cuda::leapfrog_kick_drift(xc.const_data_ptr(), pc.const_data_ptr(),
                                         gc.const_data_ptr(), data_or_null(mc),
                                         mc.defined() ? mc.numel() : 0, d, x_out.data_ptr(),
                                         p_out.data_ptr(), dt, xc.numel(), kick_size, drift_size,
                                         current_launch()),
               op);
  return {x_out, p_out};
}

std::tuple<at::Tensor, at::Tensor> metropolis_select_op(
    const at::Tensor& log_accept_ratio, const at::Tensor& x, const at::Tensor& x_proposed,
    const std::optional<at::Tensor>& uniform, int64_t seed, int64_t step) {
  const char* op = "metropolis_select";
  const int64_t B = batched(x, op);
  const Dtype dt = state(x, op, "x");
  checks::like(x_proposed, x, op, "x_proposed", "x");
  checks::per_chain(log_accept_ratio, x, op, "log_accept_ratio");
  if (uniform) checks::per_chain(*uniform, x, op, "uniform");
  checks::step(step, op);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), yc = x_proposed.contiguous(),
                   lr = log_accept_ratio.contiguous();
  const at::Tensor uc = uniform ? uniform->contiguous() : at::Tensor();
  at::Tensor x_out = at::empty(x.sizes(), x.options());
  at::Tensor accepted = at::empty({B}, x.options().dtype(at::kBool));
  const int64_t d = B == 0 ? 0 : xc.numel() / B;
  check_launch(cuda::metropolis_select(lr.const_data_ptr(), xc.const_data_ptr(),
                                       yc.const_data_ptr(), data_or_null(uc), x_out.data_ptr(),
                                       accepted.data_ptr<bool>(), dt, B, d,
                                       PhiloxArgs{static_cast<uint64_t>(seed), step, nullptr},
                                       current_launch()),
               op);
  return {x_out, accepted};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mala_select_op(
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& grad_x, const at::Tensor& grad_y,
    const at::Tensor& energy_x, const at::Tensor& energy_y, double a, double b,
    const std::optional<at::Tensor>& uniform, int64_t seed, int64_t step) {
  const char* op = "mala_select";
  const int64_t B = batched(x, op);
  const Dtype dt = state(x, op, "x");
  checks::like(y, x, op, "y", "x");
  checks::like(grad_x, x, op, "grad_x", "x");
  checks::like(grad_y, x, op, "grad_y", "x");
  checks::per_chain(energy_x, x, op, "energy_x");
  checks::per_chain(energy_y, x, op, "energy_y");
  checks::finite(a, op, "a");
  checks::positive(b, op, "b");
  if (uniform) checks::per_chain(*uniform, x, op, "uniform");
  checks::step(step, op);
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
  check_launch(cuda::mala_select(xc.const_data_ptr(), yc.const_data_ptr(), gxc.const_data_ptr(),
                                 gyc.const_data_ptr(), exc.const_data_ptr(), eyc.const_data_ptr(),
                                 x_out.data_ptr(), g_out.data_ptr(), e_out.data_ptr(),
                                 accepted.data_ptr<bool>(), dt, B, d, a, b, data_or_null(uc),
                                 PhiloxArgs{static_cast<uint64_t>(seed), step, nullptr},
                                 current_launch()),
               op);
  return {x_out, g_out, e_out, accepted};
}

// ---- analytic models --------------------------------------------------------------------------

// Outputs back in the state's dtype (half/bfloat16 rows ran in float32).
at::Tensor out_dtype(const at::Tensor& t, at::ScalarType dtype) {
  return t.scalar_type() == dtype ? t : t.to(dtype);
}

std::tuple<at::Tensor, at::Tensor> analytic_energy_grad_op(
    const std::string& energy, const at::Tensor& x, c10::ArrayRef<double> params,
    const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& precision) {
  const char* op = "analytic_energy_grad";
  state(x, op, "x");
  const Energy e = checks::energy(energy, params, mean, precision, x, op);
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
      xc.const_data_ptr(), args, ct == at::kDouble ? Dtype::kFloat64 : Dtype::kFloat32, B, d,
      e_out.data_ptr(), g_out.data_ptr(), work.defined() ? work.data_ptr() : nullptr,
      current_launch());
  TORCH_CHECK(err != cudaErrorInvalidValue, op, ": no CUDA kernel for energy '", energy,
              "' with d = ", d);
  check_launch(err, op);
  return {out_dtype(e_out, x.scalar_type()), out_dtype(g_out, x.scalar_type())};
}

// ---- whole chains -----------------------------------------------------------------------------

// A schedule's values are checked when it is on the host (finite, and > 0 when `positive`);
// one already on the GPU is not read back, which would synchronise.
void check_schedule(const at::Tensor& s, int64_t n_steps, const char* op, const char* name,
                    bool positive) {
  checks::schedule(s, n_steps, op, name);
  if (!s.is_cpu()) return;
  const at::Tensor c = s.to(at::kDouble).contiguous();
  const double* v = c.const_data_ptr<double>();
  for (int64_t t = 0; t < n_steps; ++t) {
    TORCH_CHECK(std::isfinite(v[t]) && (!positive || v[t] > 0), op, ": ", name, "[", t,
                "] must be finite", positive ? " and > 0" : "", ", got ", v[t]);
  }
}

// The model, the state in the compute type, and the outputs of one chain call.
struct ChainCall {
  const char* op;
  at::Tensor x0;  // [B, d] contiguous, compute type
  at::ScalarType out_dtype;
  at::Tensor mean, precision;
  EnergyArgs energy;
  ChainArgs args;
  at::Tensor x, trajectory, energy_mean, acceptance_rate, partial, workspace;
};

void prepare_chain(ChainCall& call, Sampler sampler, const std::string& energy,
                   const at::Tensor& x0, int64_t n_steps,
                   c10::ArrayRef<double> params, const std::optional<at::Tensor>& mean,
                   const std::optional<at::Tensor>& precision, int64_t seed, int64_t thin,
                   bool record_trajectory, bool record_energy, bool acceptance) {
  const char* op = call.op;
  state(x0, op, "x0");
  const Energy e = checks::energy(energy, params, mean, precision, x0, op);
  TORCH_CHECK(thin >= 1, op, ": thin must be >= 1, got ", thin);
  TORCH_CHECK(n_steps <= static_cast<int64_t>(UINT32_MAX) + 1, op,
              ": n_steps must be <= 2^32 (the step is a Philox counter word), got ", n_steps);
  const at::Device dev = x0.device();
  const at::ScalarType ct = compute_type(x0.scalar_type());
  const int64_t B = x0.size(0), d = x0.size(1);
  call.out_dtype = x0.scalar_type();
  call.x0 = x0.to(ct).contiguous();
  if (mean) call.mean = on_device(*mean, dev, ct);
  if (precision) call.precision = on_device(*precision, dev, ct);
  call.energy = EnergyArgs{static_cast<int>(e), params.data(), static_cast<int>(params.size()),
                           data_or_null(call.mean), data_or_null(call.precision)};
  ChainArgs& args = call.args;
  args = ChainArgs{};
  args.dtype = ct == at::kDouble ? Dtype::kFloat64 : Dtype::kFloat32;
  args.batch = B;
  args.dim = d;
  args.n_steps = n_steps;
  args.thin = thin;
  args.seed = static_cast<uint64_t>(seed);
  args.record_energy = record_energy;
  const at::TensorOptions o = call.x0.options();
  call.x = at::empty({B, d}, o);
  call.trajectory = record_trajectory ? at::empty({B, n_steps / thin, d}, o) : at::empty({0}, o);
  call.energy_mean = record_energy ? at::empty({n_steps}, o) : at::empty({0}, o);
  call.acceptance_rate = acceptance ? at::empty({n_steps}, o) : at::empty({0}, o);
  const ChainPlan plan = chain_plan(sampler, static_cast<int>(e), args, current_launch());
  if (record_energy || acceptance) {
    call.partial = at::empty({n_steps * plan.partial_blocks * 2}, o.dtype(at::kDouble));
  }
  if (plan.workspace_elems > 0) call.workspace = at::empty({plan.workspace_elems}, o);
  if (B == 0) {  // no chains: the means are 0, as on the CPU
    call.energy_mean.zero_();
    call.acceptance_rate.zero_();
  }
}

ChainOutputs outputs(ChainCall& call) {
  return ChainOutputs{call.x.data_ptr(),
                      call.trajectory.numel() > 0 ? call.trajectory.data_ptr() : nullptr,
                      call.energy_mean.numel() > 0 ? call.energy_mean.data_ptr() : nullptr,
                      call.acceptance_rate.numel() > 0 ? call.acceptance_rate.data_ptr() : nullptr,
                      call.partial.defined() ? call.partial.data_ptr<double>() : nullptr,
                      call.workspace.defined() ? call.workspace.data_ptr() : nullptr};
}

void check_chain(cudaError_t err, const ChainCall& call) {
  TORCH_CHECK(err != cudaErrorInvalidValue, call.op,
              ": no CUDA kernel for this model and dimension (energy id ", call.energy.id,
              ", d = ", call.args.dim, ")");
  check_launch(err, call.op);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> langevin_chain_op(
    const std::string& energy, const at::Tensor& x0, const at::Tensor& a, const at::Tensor& b,
    c10::ArrayRef<double> params, const std::optional<at::Tensor>& mean,
    const std::optional<at::Tensor>& precision, std::optional<double> clamp_min,
    std::optional<double> clamp_max, std::optional<double> grad_clip, int64_t seed, int64_t thin,
    bool record_trajectory, bool record_energy) {
  ChainCall call{"langevin_chain"};
  const int64_t n_steps = a.dim() == 1 ? a.size(0) : 0;
  check_schedule(a, n_steps, call.op, "a", false);
  check_schedule(b, n_steps, call.op, "b", false);
  checks::clamp_bounds(clamp_min, clamp_max, call.op);
  checks::grad_clip(grad_clip, call.op);
  const c10::cuda::CUDAGuard guard(x0.device());
  prepare_chain(call, Sampler::kLangevin, energy, x0, n_steps, params, mean, precision, seed,
                thin, record_trajectory, record_energy, false);
  const at::Tensor ad = on_device(a, x0.device(), at::kDouble);
  const at::Tensor bd = on_device(b, x0.device(), at::kDouble);
  call.args.a = ad.const_data_ptr<double>();
  call.args.b = bd.const_data_ptr<double>();
  call.args.clamp = LangevinCoeffs{0,
                                   0,
                                   clamp_min.has_value(),
                                   clamp_max.has_value(),
                                   grad_clip.has_value(),
                                   clamp_min.value_or(0.0),
                                   clamp_max.value_or(0.0),
                                   grad_clip.value_or(0.0)};
  check_chain(cuda::langevin_chain(call.x0.const_data_ptr(), call.energy, call.args,
                                   outputs(call), current_launch()),
              call);
  const at::ScalarType t = call.out_dtype;
  return {out_dtype(call.x, t), out_dtype(call.trajectory, t), out_dtype(call.energy_mean, t)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mala_chain_op(
    const std::string& energy, const at::Tensor& x0, const at::Tensor& a, const at::Tensor& b,
    c10::ArrayRef<double> params, const std::optional<at::Tensor>& mean,
    const std::optional<at::Tensor>& precision, int64_t seed, int64_t thin,
    bool record_trajectory, bool record_energy) {
  ChainCall call{"mala_chain"};
  const int64_t n_steps = a.dim() == 1 ? a.size(0) : 0;
  check_schedule(a, n_steps, call.op, "a", false);
  check_schedule(b, n_steps, call.op, "b", true);
  const c10::cuda::CUDAGuard guard(x0.device());
  prepare_chain(call, Sampler::kMala, energy, x0, n_steps, params, mean, precision, seed, thin,
                record_trajectory, record_energy, true);
  const at::Tensor ad = on_device(a, x0.device(), at::kDouble);
  const at::Tensor bd = on_device(b, x0.device(), at::kDouble);
  call.args.a = ad.const_data_ptr<double>();
  call.args.b = bd.const_data_ptr<double>();
  check_chain(cuda::mala_chain(call.x0.const_data_ptr(), call.energy, call.args, outputs(call),
                               current_launch()),
              call);
  const at::ScalarType t = call.out_dtype;
  return {out_dtype(call.x, t), out_dtype(call.trajectory, t), out_dtype(call.energy_mean, t),
          out_dtype(call.acceptance_rate, t)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> hmc_chain_op(
    const std::string& energy, const at::Tensor& x0, const at::Tensor& step_size,
    int64_t n_leapfrog, const std::optional<at::Tensor>& inv_mass, c10::ArrayRef<double> params,
    const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& precision,
    int64_t seed, int64_t thin, bool record_trajectory, bool record_energy) {
  ChainCall call{"hmc_chain"};
  const int64_t n_steps = step_size.dim() == 1 ? step_size.size(0) : 0;
  check_schedule(step_size, n_steps, call.op, "step_size", true);
  TORCH_CHECK(n_leapfrog >= 1 && n_leapfrog <= INT32_MAX, call.op,
              ": n_leapfrog must be >= 1, got ", n_leapfrog);
  const c10::cuda::CUDAGuard guard(x0.device());
  prepare_chain(call, Sampler::kHmc, energy, x0, n_steps, params, mean, precision,
                seed, thin, record_trajectory, record_energy, true);
  const int64_t d = call.args.dim;
  at::Tensor mass;
  if (inv_mass) {
    TORCH_CHECK(inv_mass->dim() == 0 || (inv_mass->dim() == 1 && inv_mass->size(0) == d),
                call.op, ": inv_mass must be None, a 0-d tensor, or [", d, "], got shape ",
                inv_mass->sizes());
    checks::same_device(*inv_mass, x0, call.op, "inv_mass", "x0");
    mass = on_device(inv_mass->expand({d}), x0.device(), call.x0.scalar_type());
  }
  const at::Tensor sd = on_device(step_size, x0.device(), at::kDouble);
  call.args.a = sd.const_data_ptr<double>();
  call.args.n_leapfrog = static_cast<int>(n_leapfrog);
  call.args.inv_mass = data_or_null(mass);
  check_chain(cuda::hmc_chain(call.x0.const_data_ptr(), call.energy, call.args, outputs(call),
                              current_launch()),
              call);
  const at::ScalarType t = call.out_dtype;
  return {out_dtype(call.x, t), out_dtype(call.trajectory, t), out_dtype(call.energy_mean, t),
          out_dtype(call.acceptance_rate, t)};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CUDA, m) {
  m.impl("philox_normal", &philox_draw<false>);
  m.impl("philox_uniform", &philox_draw<true>);
  m.impl("langevin_update", &langevin_update_op);
  m.impl("leapfrog_kick_drift", &leapfrog_kick_drift_op);
  m.impl("metropolis_select", &metropolis_select_op);
  m.impl("mala_select", &mala_select_op);
  m.impl("analytic_energy_grad", &analytic_energy_grad_op);
  m.impl("langevin_chain", &langevin_chain_op);
  m.impl("mala_chain", &mala_chain_op);
  m.impl("hmc_chain", &hmc_chain_op);
  // Graph-safe Langevin (docs/kernels.md, "CUDA graphs").
  m.impl("langevin_update_graphsafe_", &langevin_update_graphsafe_);
  m.impl("philox_state_advance_", &philox_state_advance_);
}

}  // namespace torchebm::cuda
