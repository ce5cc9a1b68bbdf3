// The CUDA kernels' host interface: raw pointers, sizes and a stream, no torch types.
//
// The kernels (*.cu) are compiled by nvcc as C++17 and include no torch headers; the
// registration file (ops_cuda.cpp) is compiled as C++20 with torch's headers, checks the
// arguments, allocates the outputs and calls these launchers on torch's current stream. Every
// launcher only enqueues work (no host synchronisation) and returns the launch error, if any.
//
// Shapes: states are [B, *event] and contiguous; `row` is the number of elements per chain
// (the product of the event dimensions); per-chain tensors are [B].
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace torchebm::cuda {

// Storage dtypes of states. Half and bfloat16 states compute in float32.
enum class Dtype : int { kFloat32, kFloat64, kFloat16, kBFloat16 };

struct Launch {
  cudaStream_t stream;
  int sm_count;  // multiprocessors of the current device, to size grid-stride grids
};

// Seed and step of the Philox stream: literal values, or read on the device from
// `state` = {seed, step} (int64) when `state` is not null (CUDA-graph replays), in which case
// the step used is state[1] + step.
struct PhiloxArgs {
  uint64_t seed;
  int64_t step;
  const int64_t* state;
};

// ---- random numbers (stream 0: normals, stream 1: uniforms) ---------------------------------
cudaError_t philox_normal(void* out, Dtype dtype, int64_t n, PhiloxArgs rng, Launch launch);
cudaError_t philox_uniform(void* out, Dtype dtype, int64_t n, PhiloxArgs rng, Launch launch);
// state[1] += increment, on the device (one thread): advances a graph-safe stream.
cudaError_t philox_state_advance(int64_t* state, int64_t increment, Launch launch);

// ---- per-step ops ----------------------------------------------------------------------------
struct LangevinCoeffs {
  double a, b;                     // x' = x - a * clip(grad) + b * xi
  bool has_min, has_max, has_clip;
  double clamp_min, clamp_max, grad_clip;
};

// out may alias x (each element is read before it is written, by the same thread).
// noise == nullptr: xi is drawn from stream 0 (what philox_normal returns for (seed, step)).
cudaError_t langevin_update(const void* x, const void* grad, const void* noise, void* out,
                            Dtype dtype, int64_t n, LangevinCoeffs coeffs, PhiloxArgs rng,
                            Launch launch);

// p' = p - kick * grad; x' = x + drift * inv_mass * p'. inv_mass is null (unit mass) or holds
// `inv_mass_len` values of the state dtype: 1 (a scalar) or `dim` (diagonal, broadcast over the
// last dimension, of size `dim`).
cudaError_t leapfrog_kick_drift(const void* x, const void* p, const void* grad,
                                const void* inv_mass, int64_t inv_mass_len, int64_t dim,
                                void* x_out, void* p_out, Dtype dtype, int64_t n, double kick,
                                double drift, Launch launch);

// Per-chain Metropolis step: accepted[i] = log(u_i) < log_accept_ratio[i] (NaN rejects);
// x_out row i = x_proposed row i if accepted else x row i. Per-chain tensors (log ratio,
// uniform, energies) have the state dtype; uniform == nullptr draws stream 1 at [B] in the
// compute type (what philox_uniform([B], seed, step) returns in float32 or float64).
cudaError_t metropolis_select(const void* lar, const void* x, const void* x_proposed,
                              const void* uniform, void* x_out, bool* accepted, Dtype dtype,
                              int64_t batch, int64_t row, PhiloxArgs rng, Launch launch);

// MALA acceptance for the proposal y = x - a grad_x + b xi, fused with the selection of state,
// gradient and energy.
cudaError_t mala_select(const void* x, const void* y, const void* grad_x, const void* grad_y,
                        const void* energy_x, const void* energy_y, void* x_out, void* grad_out,
                        void* energy_out, bool* accepted, Dtype dtype, int64_t batch, int64_t row,
                        double a, double b, const void* uniform, PhiloxArgs rng, Launch launch);

// ---- whole chains for the built-in analytic models -------------------------------------------
// The energy: its kernel id, scalar parameters, and the Gaussian's mean [dim] and precision
// [dim, dim] (compute type, may be null for other models).
struct EnergyArgs {
  int id;
  const double* params;  // host array, copied into the kernel's arguments
  int n_params;
  const void* mean;
  const void* precision;
};

// Output buffers of a chain: trajectory [B, n_steps / thin, *event] (null: not recorded),
// energy_mean [n_steps] in the state dtype (null: not recorded), acceptance_rate [n_steps]
// (MALA, HMC), and `scratch`: float64 [n_steps * 2] zero-initialised by the caller, the
// per-step sums accumulated by the kernel before the final division.
struct ChainOutputs {
  void* x;
  void* trajectory;
  void* energy_mean;
  void* acceptance_rate;
  double* scratch;
};

struct ChainArgs {
  Dtype dtype;
  int64_t batch, dim, n_steps, thin;
  const double* a;  // device, float64 [n_steps] (Langevin, MALA) or step sizes (HMC)
  const double* b;  // device, float64 [n_steps] (Langevin, MALA); null for HMC
  LangevinCoeffs clamp;  // clamp and gradient clip (Langevin only; a, b ignored)
  int n_leapfrog;        // HMC
  const void* inv_mass;  // HMC: null, 1 or dim values in the compute type
  int64_t inv_mass_len;
  uint64_t seed;
};

// Returns cudaErrorInvalidValue for an energy id the CUDA kernels do not know.
cudaError_t langevin_chain(const void* x0, EnergyArgs energy, ChainArgs args, ChainOutputs out,
                           Launch launch);
cudaError_t mala_chain(const void* x0, EnergyArgs energy, ChainArgs args, ChainOutputs out,
                       Launch launch);
cudaError_t hmc_chain(const void* x0, EnergyArgs energy, ChainArgs args, ChainOutputs out,
                      Launch launch);

}  // namespace torchebm::cuda
