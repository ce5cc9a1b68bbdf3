// Every torchebm op schema, in one place (contracts in docs/kernels.md). Back ends register
// their kernels with TORCH_LIBRARY_IMPL in csrc/cpu/ and csrc/cuda/; Python fake kernels live in
// python/torchebm/kernels/ops.py.
#include <Python.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/TensorOptions.h>
#include <torch/library.h>

#include <optional>

extern "C" {
// `import torchebm._C` loads this library, and with it the op registrations below.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(torchebm, m) {
  // ---- random numbers: Philox4x32-10, key = seed, counter = (group, step, stream) ----------
  // Standard normals (stream 0) / uniforms in (0, 1) (stream 1) of the given size.
  m.def(
      "philox_normal(int[] size, int seed, int step, ScalarType? dtype=None, "
      "Device? device=None) -> Tensor");
  m.def(
      "philox_uniform(int[] size, int seed, int step, ScalarType? dtype=None, "
      "Device? device=None) -> Tensor");

  // Test hook for the RNG maths: fn = "log", "sin2pi", "cos2pi" apply normal.h's polynomial
  // approximations elementwise to a float tensor; fn = "philox" maps int64 [N, 6] rows
  // (four counter words, two key words) to int64 [N, 4] Philox4x32-10 output words.
  m.def("_rng_math(str fn, Tensor x) -> Tensor");

  // ---- per-step ops ------------------------------------------------------------------------
  // x' = clamp(x - a * clip(grad) + b * xi); xi = noise, or stream 0 at (seed, step).
  // a_chain / b_chain [B], when given, replace a / b chain by chain (per-chain step sizes).
  m.def(
      "langevin_update(Tensor x, Tensor grad, Tensor? noise, float a, float b, "
      "float? clamp_min, float? clamp_max, float? grad_clip, int seed, int step, "
      "Tensor? a_chain=None, Tensor? b_chain=None) -> Tensor");
  // p' = p - kick * grad; x' = x + drift * inv_mass * p'. Returns (x', p').
  // kick_chain / drift_chain [B], when given, replace kick / drift chain by chain.
  m.def(
      "leapfrog_kick_drift(Tensor x, Tensor p, Tensor grad, float kick, float drift, "
      "Tensor? inv_mass, Tensor? kick_chain=None, Tensor? drift_chain=None) -> (Tensor, Tensor)");
  // Row i takes x_proposed[i] iff log(u_i) < log_accept_ratio[i]; u = uniform or stream 1.
  // Returns (x_out, accepted).
  m.def(
      "metropolis_select(Tensor log_accept_ratio, Tensor x, Tensor x_proposed, Tensor? uniform, "
      "int seed, int step) -> (Tensor, Tensor)");
  // MALA acceptance of y = x - a grad_x + b xi fused with the selection.
  // Returns (x_out, grad_out, energy_out, accepted). a_chain / b_chain [B] as in langevin_update.
  m.def(
      "mala_select(Tensor x, Tensor y, Tensor grad_x, Tensor grad_y, Tensor energy_x, "
      "Tensor energy_y, float a, float b, Tensor? uniform, int seed, int step, "
      "Tensor? a_chain=None, Tensor? b_chain=None) -> (Tensor, Tensor, Tensor, Tensor)");
  // Denoising score matching: x_tilde = x + sigma * xi, target = -xi / sigma (the score of
  // N(x_tilde; x, sigma^2 I)); xi = noise, or stream 0 at (seed, step). Returns (x_tilde, target).
  m.def("dsm_perturb(Tensor x, Tensor? noise, float sigma, int seed, int step) -> (Tensor, Tensor)");
  // Closed-form (energy [B], grad [B, d]) of a built-in analytic model.
  m.def(
      "analytic_energy_grad(str energy, Tensor x, float[] params, Tensor? mean, "
      "Tensor? precision) -> (Tensor, Tensor)");

  // ---- whole-chain ops for the analytic models ---------------------------------------------
  // Step t of a chain op draws the noise of step first_step + t (a chain run in blocks).
  // Tempering (optional; checks::tempering): with beta [n_steps + 1] or [n_steps + 1, B],
  // transition t targets beta[t+1] E + (1 - beta[t+1]) E0, E0 the Gaussian base
  // 1/2 (x - base_mean)^T base_precision (x - base_mean) (or beta[t+1] E without a base), the
  // energy means are the tempered targets', and log_weight (float64 [B]) is added
  // sum_t (beta[t+1] - beta[t]) (E0(x_t) - E(x_t)), x_t the state before transition t.
  // Returns (x, trajectory, energy_mean).
  m.def(
      "langevin_chain(str energy, Tensor x0, Tensor a, Tensor b, float[] params, Tensor? mean, "
      "Tensor? precision, float? clamp_min, float? clamp_max, float? grad_clip, int seed, "
      "int thin, bool record_trajectory, bool record_energy, int first_step=0, "
      "Tensor? beta=None, Tensor? base_mean=None, Tensor? base_precision=None, "
      "Tensor(a!)? log_weight=None) -> (Tensor, Tensor, Tensor)");
  // Returns (x, trajectory, energy_mean, acceptance_rate). hmc_chain's leapfrog_steps (int64
  // [n_steps], shared by the chains), when given, replaces n_leapfrog: transition t takes
  // leapfrog_steps[t] leapfrog steps.
  m.def(
      "mala_chain(str energy, Tensor x0, Tensor a, Tensor b, float[] params, Tensor? mean, "
      "Tensor? precision, int seed, int thin, bool record_trajectory, bool record_energy, "
      "int first_step=0, Tensor? beta=None, Tensor? base_mean=None, "
      "Tensor? base_precision=None, Tensor(a!)? log_weight=None) -> "
      "(Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "hmc_chain(str energy, Tensor x0, Tensor step_size, int n_leapfrog, Tensor? inv_mass, "
      "float[] params, Tensor? mean, Tensor? precision, int seed, int thin, "
      "bool record_trajectory, bool record_energy, int first_step=0, "
      "Tensor? leapfrog_steps=None, Tensor? beta=None, Tensor? base_mean=None, "
      "Tensor? base_precision=None, Tensor(a!)? log_weight=None) -> "
      "(Tensor, Tensor, Tensor, Tensor)");

  // ---- CUDA-graph-safe RNG (CUDA kernels only; docs/kernels.md, "CUDA graphs") -------------
  // In place: the Langevin update drawing stream 0 at (seed_state[0], seed_state[1] +
  // step_offset), both read on the device, so a captured graph replays with fresh noise.
  m.def(
      "langevin_update_graphsafe_(Tensor(a!) x, Tensor grad, float a, float b, float? clamp_min, "
      "float? clamp_max, float? grad_clip, Tensor seed_state, int step_offset) -> ()");
  // seed_state[1] += increment, on the device.
  m.def("philox_state_advance_(Tensor(a!) seed_state, int increment) -> ()");

  // ---- whole-chain ops for MLP energies (torchebm/mlp.h; python/torchebm/kernels/mlp.py) -----
  // The network: weights[l] [n_out, n_in], biases[l] [n_out], activations[l] an mlp.h Act code
  // with act_params[3 l .. 3 l + 2]; E(x) = out_scale * sum_j h_{L-1,j}(x) + out_offset.
  // (E [B], grad [B, d]) of x [B, d], forward and backward fused.
  m.def(
      "mlp_energy_grad(Tensor x, Tensor[] weights, Tensor[] biases, int[] activations, "
      "float[] act_params, float out_scale, float out_offset) -> (Tensor, Tensor)");
  // As langevin_chain / mala_chain / hmc_chain with the network's energy and gradient.
  m.def(
      "mlp_langevin_chain(Tensor x0, Tensor[] weights, Tensor[] biases, int[] activations, "
      "float[] act_params, float out_scale, float out_offset, Tensor a, Tensor b, "
      "float? clamp_min, float? clamp_max, float? grad_clip, int seed, int thin, "
      "bool record_trajectory, bool record_energy, int first_step=0) -> "
      "(Tensor, Tensor, Tensor)");
  m.def(
      "mlp_mala_chain(Tensor x0, Tensor[] weights, Tensor[] biases, int[] activations, "
      "float[] act_params, float out_scale, float out_offset, Tensor a, Tensor b, int seed, "
      "int thin, bool record_trajectory, bool record_energy, int first_step=0) -> "
      "(Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "mlp_hmc_chain(Tensor x0, Tensor[] weights, Tensor[] biases, int[] activations, "
      "float[] act_params, float out_scale, float out_offset, Tensor step_size, int n_leapfrog, "
      "Tensor? inv_mass, int seed, int thin, bool record_trajectory, bool record_energy, "
      "int first_step=0, Tensor? leapfrog_steps=None) -> (Tensor, Tensor, Tensor, Tensor)");

  // ---- replica exchange (parallel tempering; torchebm/replica_swap.h) ---------------------
  // x [K, B, *event], energy [K, B] (untempered), betas [K]: pairs (k, k+1) with k % 2 == parity
  // swap rows b with probability min(1, exp((beta_k - beta_{k+1}) (E[k,b] - E[k+1,b]))), u =
  // uniform [K-1, B] or stream 1 at (seed, step). Returns (x_out, energy_out, accepted [K-1, B]).
  m.def(
      "replica_swap(Tensor x, Tensor energy, float[] betas, int parity, Tensor? uniform, "
      "int seed, int step) -> (Tensor, Tensor, Tensor)");
}

namespace {

// The factory ops take no tensor, so the dispatcher cannot see a device: route them to the
// back end of `device` (CPU when absent), as torch's own factories do.
template <const char* kName>
at::Tensor factory_backend_select(c10::IntArrayRef size, int64_t seed, int64_t step,
                                  std::optional<c10::ScalarType> dtype,
                                  std::optional<c10::Device> device) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow(kName, "")
                       .typed<at::Tensor(c10::IntArrayRef, int64_t, int64_t,
                                         std::optional<c10::ScalarType>,
                                         std::optional<c10::Device>)>();
  const c10::Device dev = device.value_or(c10::Device(c10::kCPU));
  const c10::DispatchKeySet ks(c10::computeDispatchKey(dtype, c10::kStrided, dev));
  return op.redispatch(ks, size, seed, step, dtype, device);
}

constexpr char kPhiloxNormal[] = "torchebm::philox_normal";
constexpr char kPhiloxUniform[] = "torchebm::philox_uniform";

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, BackendSelect, m) {
  m.impl("philox_normal", &factory_backend_select<kPhiloxNormal>);
  m.impl("philox_uniform", &factory_backend_select<kPhiloxUniform>);
}
