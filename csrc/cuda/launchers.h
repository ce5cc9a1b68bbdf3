// The CUDA kernels' host interface: raw pointers, sizes and a stream, no torch types.
//
// The kernels (<op>_kernel.cu) are compiled by nvcc as C++17 and include no torch headers; each
// op's host side (<op>_host.cpp, host_common.h) is compiled as C++20 with torch's headers,
// checks the arguments, allocates the outputs and calls these launchers on torch's current
// stream. Every launcher only enqueues work (no host synchronisation) and returns the launch
// error, if any.
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

// Per-chain coefficients of a per-step op: null, or [B] in the state dtype, entry i replacing
// the scalar for the `row` consecutive elements of chain i (row = n / B, the product of the
// event dimensions).
struct ChainCoeffs {
  const void* first;   // langevin_update's a, leapfrog_kick_drift's kick, mala_select's a
  const void* second;  // b, drift, b
  int64_t row;
};

// out may alias x (each element is read before it is written, by the same thread).
// noise == nullptr: xi is drawn from stream 0 (what philox_normal returns for (seed, step)).
// per_chain: a and b per chain where given (coeffs.a, coeffs.b where not).
cudaError_t langevin_update(const void* x, const void* grad, const void* noise, void* out,
                            Dtype dtype, int64_t n, LangevinCoeffs coeffs, PhiloxArgs rng,
                            Launch launch, ChainCoeffs per_chain = {nullptr, nullptr, 1});

// p' = p - kick * grad; x' = x + drift * inv_mass * p'. inv_mass is null (unit mass) or holds
// `inv_mass_len` values of the state dtype: 1 (a scalar) or `dim` (diagonal, broadcast over the
// last dimension, of size `dim`). per_chain: kick and drift per chain where given.
cudaError_t leapfrog_kick_drift(const void* x, const void* p, const void* grad,
                                const void* inv_mass, int64_t inv_mass_len, int64_t dim,
                                void* x_out, void* p_out, Dtype dtype, int64_t n, double kick,
                                double drift, Launch launch,
                                ChainCoeffs per_chain = {nullptr, nullptr, 1});

// Per-chain Metropolis step: accepted[i] = log(u_i) < log_accept_ratio[i] (NaN rejects);
// x_out row i = x_proposed row i if accepted else x row i. Per-chain tensors (log ratio,
// uniform, energies) have the state dtype; uniform == nullptr draws stream 1 at [B] in the
// compute type (what philox_uniform([B], seed, step) returns in float32 or float64).
cudaError_t metropolis_select(const void* lar, const void* x, const void* x_proposed,
                              const void* uniform, void* x_out, bool* accepted, Dtype dtype,
                              int64_t batch, int64_t row, PhiloxArgs rng, Launch launch);

// MALA acceptance for the proposal y = x - a grad_x + b xi, fused with the selection of state,
// gradient and energy. a_chain, b_chain: null, or [B] in the state dtype (chain i's a, b).
cudaError_t mala_select(const void* x, const void* y, const void* grad_x, const void* grad_y,
                        const void* energy_x, const void* energy_y, void* x_out, void* grad_out,
                        void* energy_out, bool* accepted, Dtype dtype, int64_t batch, int64_t row,
                        double a, double b, const void* uniform, PhiloxArgs rng, Launch launch,
                        const void* a_chain = nullptr, const void* b_chain = nullptr);

// ---- whole chains for the built-in analytic models -------------------------------------------
// A chain runs n_steps inside one kernel; step t draws Philox step t (stream 0 normals at the
// state's shape, stream 1 uniforms at [B]), as the per-step ops do.

enum class Sampler : int { kLangevin, kMala, kHmc };

// The analytic model: Energy id (torchebm/energies.h), its scalar parameters (host array), and
// for the gaussian its mean [d] and precision [d, d] on the device in the compute type.
struct EnergyArgs {
  int id;
  const double* params;
  int n_params;
  const void* mean;
  const void* precision;
};

// A per-step schedule on the device, float64: the value of step t for chain c is
// values[t * step_stride + c * chain_stride]. [n_steps]: (1, 0); [n_steps, B]: (B, 1); a
// [n_steps, B] constant over the steps (a stride-0 view) is its one row [B]: (0, 1).
struct Schedule {
  const double* values;
  int64_t step_stride, chain_stride;
};

// A chain's tempering (csrc/cpu/chain_common.h: Tempering): transition t targets
// beta[t+1] E + (1 - beta[t+1]) E0, E0 = 1/2 (x - base_mean)^T base_precision (x - base_mean)
// (beta[t+1] E without a base), and log_weight[c] (float64) gains
// sum_t (beta[t+1, c] - beta[t, c]) (E0(x_t) - E(x_t)). Tempered chains run the row kernels.
struct TemperArgs {
  bool on;
  Schedule beta;               // [n_steps + 1] or [n_steps + 1, B]
  const void* base_mean;       // [d] in the compute type, or null (no base)
  const void* base_precision;  // [d, d]
  double* log_weight;          // [B], or null
};

struct ChainArgs {
  Dtype dtype;  // kFloat32 or kFloat64 (callers run half/bfloat16 chains in float32)
  int64_t batch, dim, n_steps, thin;
  Schedule a;  // Langevin/MALA drift coefficient; HMC step size
  Schedule b;  // Langevin/MALA noise coefficient; unused by HMC
  LangevinCoeffs clamp;  // Langevin: clamp bounds and gradient clip (its a, b are unused)
  int n_leapfrog;        // HMC
  const int64_t* leapfrog_steps;  // HMC: null (n_leapfrog every step) or [n_steps] on the device
  const void* inv_mass;  // HMC: null (unit mass) or [dim] on the device, compute type
  uint64_t seed;
  int64_t first_step;  // step t draws the noise of step first_step + t
  bool record_energy;
  TemperArgs temper;   // temper.on false: untempered
};

// Outputs and scratch, allocated by the caller as chain_plan says.
struct ChainOutputs {
  void* x;                // [B, dim]: the final state
  void* trajectory;       // [B, n_steps / thin, dim], or null (not recorded)
  void* energy_mean;      // [n_steps], or null (not recorded)
  void* acceptance_rate;  // [n_steps] (MALA, HMC), or null
  double* partial;        // float64 [n_steps * partial_blocks * 2] when any mean is recorded
  void* workspace;        // compute type [workspace_elems]
};

struct ChainPlan {
  int partial_blocks;       // blocks whose per-step partial sums `partial` holds
  int64_t workspace_elems;  // per-chain rows in global memory (0: the row fits in registers)
};

// Energy [B] and gradient [B, dim] of x [B, dim] (compute types only). `workspace`: [B, dim]
// in the compute type for the gaussian with dim != 2, else unused.
cudaError_t analytic_energy_grad(const void* x, EnergyArgs energy, Dtype dtype, int64_t batch,
                                 int64_t dim, void* energy_out, void* grad_out, void* workspace,
                                 Launch launch);

ChainPlan chain_plan(Sampler sampler, int energy_id, const ChainArgs& args, Launch launch);

// Each returns cudaErrorInvalidValue for an energy id or dtype it does not handle.
cudaError_t langevin_chain(const void* x0, EnergyArgs energy, ChainArgs args, ChainOutputs out,
                           Launch launch);
cudaError_t mala_chain(const void* x0, EnergyArgs energy, ChainArgs args, ChainOutputs out,
                       Launch launch);
cudaError_t hmc_chain(const void* x0, EnergyArgs energy, ChainArgs args, ChainOutputs out,
                      Launch launch);

}  // namespace torchebm::cuda
