// Pieces shared by the CUDA whole-chain kernels (langevin_chain, mala_chain, hmc_chain): the
// analytic model of a thread's chain, its energy and gradient, the Philox draws of a row, the
// recording of trajectories and per-step means.
//
// A chain is one thread ("row kernels"): its row lives in registers when the dimension is a
// compile-time 2 (the 2-D test landscapes), else in a per-chain slice of a global workspace.
// Langevin on a separable model needs no per-chain reduction and runs one thread per Philox
// group instead ("element kernel", langevin_chain_kernel.cu).
//
// Per-step means are deterministic: each block reduces its chains in a fixed order and writes
// one partial sum per step; a final kernel adds the blocks' partials in block order.
#pragma once

#include <type_traits>

#include "launchers.h"
#include "storage.cuh"
#include "torchebm/energies.h"
#include "torchebm/updates.h"

namespace torchebm::cuda::chain {

constexpr int kMaxThreads = 128;  // block size bound of every chain kernel

// The model's arguments as the kernel receives them (by value: scalars in parameter space).
struct ModelArgs {
  static constexpr int kMaxParams = 4;
  double params[kMaxParams];
  const void* mean;       // gaussian: [d] in the compute type
  const void* precision;  // gaussian: [d, d]
};
static_assert(max_energy_params() <= ModelArgs::kMaxParams,
              "ModelArgs::params must hold the scalar parameters of every model in energies.h");

template <class C, class M>
__device__ __forceinline__ M make_model(const ModelArgs& a) {
  if constexpr (std::is_same_v<M, Gaussian<C>>) {
    return M(static_cast<const C*>(a.mean), static_cast<const C*>(a.precision));
  } else {
    return M(a.params);
  }
}

// Gradient of a row into g; returns the row's energy (only computed when `want_energy` for the
// separable models, whose gradient does not need it). `scratch` is the gaussian's d values.
template <class C, class M>
__device__ __forceinline__ C energy_grad(const M& m, const C* x, C* g, C* scratch, int64_t d,
                                         bool want_energy) {
  if constexpr (M::kSeparable) {
    for (int64_t j = 0; j < d; ++j) g[j] = m.elem_grad(x[j]);
    return want_energy ? separable_row_energy<C>(m, x, d) : C(0);
  } else if constexpr (std::is_same_v<M, Gaussian<C>>) {
    return m.energy_grad(x, g, scratch, d);
  } else {
    (void)scratch;
    return m.energy_grad(x, g, d);
  }
}

// Step t's value of a schedule (launchers.h) for chain c (c < B: inactive threads pass 0).
__device__ __forceinline__ double schedule_at(const Schedule& s, int64_t t, int64_t c) {
  return s.values[t * s.step_stride + c * s.chain_stride];
}

// A row kernel's tempered chain c (launchers.h: TemperArgs): the target at path position beta
// and, from the last evaluation, the untempered E and E0 (0 without a base) of the AIS weights.
template <class C>
struct Temper {
  TemperArgs args;
  int64_t c;
  C* g0;  // [d]: the base's gradient
  C beta = C(1), energy = C(0), base_energy = C(0);

  // Sets beta to transition t's (beta[t + 1]); true when the state must be evaluated again
  // (t = 0, or the chain's target moved).
  __device__ __forceinline__ bool retarget(int64_t t) {
    const double b1 = schedule_at(args.beta, t + 1, c);
    beta = C(b1);
    return t == 0 || b1 != schedule_at(args.beta, t, c);
  }

  // After the evaluation of x_t at transition t: the chain's log-weight increment.
  __device__ __forceinline__ void add_log_weight(int64_t t) const {
    if (args.log_weight == nullptr) return;
    const double step = schedule_at(args.beta, t + 1, c) - schedule_at(args.beta, t, c);
    if (step != 0.0) args.log_weight[c] += step * (double(base_energy) - double(energy));
  }
};

// Energy and gradient of transition's target at x: the model's (energy_grad), or with `tp` the
// tempered b E + (1 - b) E0 (b E without a base), keeping E and E0 in *tp. `scratch` serves the
// model, then the base.
template <class C, class M>
__device__ __forceinline__ C target_energy_grad(const M& m, Temper<C>* tp, const C* x, C* g,
                                                C* scratch, int64_t d, bool want_energy) {
  if (tp == nullptr) return energy_grad<C>(m, x, g, scratch, d, want_energy);
  tp->energy = energy_grad<C>(m, x, g, scratch, d, true);
  const C b = tp->beta, rest = C(1) - b;
  if (tp->args.base_mean == nullptr) {
    tp->base_energy = C(0);
    for (int64_t j = 0; j < d; ++j) g[j] = b * g[j];
    return b * tp->energy;
  }
  const Gaussian<C> base(static_cast<const C*>(tp->args.base_mean),
                         static_cast<const C*>(tp->args.base_precision));
  tp->base_energy = base.energy_grad(x, tp->g0, scratch, d);
  for (int64_t j = 0; j < d; ++j) g[j] = b * g[j] + rest * tp->g0[j];
  return b * tp->energy + rest * tp->base_energy;
}

// Normals of stream 0 at one step, element by element in increasing flat index: one Philox call
// per group, reused by the group's next elements.
template <class C>
struct NormalCursor {
  PhiloxKey key;
  uint32_t step;
  uint64_t group;
  C z[kGroup<C>];

  __device__ __forceinline__ NormalCursor(PhiloxKey k, uint32_t s)
      : key(k), step(s), group(~uint64_t(0)) {}

  __device__ __forceinline__ C at(uint64_t i) {
    const uint64_t g = i / kGroup<C>;
    if (g != group) {
      group_normals<C>(key, g, step, z);
      group = g;
    }
    return pick(z, static_cast<uint32_t>(i % kGroup<C>));
  }
};

// Chain c's uniform of stream 1 at one step: element c of philox_uniform([B], seed, step).
template <class C>
__device__ __forceinline__ C chain_uniform(PhiloxKey key, uint32_t step, int64_t c) {
  C u[kGroup<C>];
  group_uniforms<C>(key, static_cast<uint64_t>(c) / kGroup<C>, step, u);
  return pick(u, static_cast<uint32_t>(c % kGroup<C>));
}

// Sums of (energy, accepted) over the block's threads, in a fixed order, written as the block's
// partial of step t: partial[(t * gridDim.x + blockIdx.x) * 2 + {0, 1}]. Every thread of the
// block calls it.
__device__ __forceinline__ void block_partial(double energy, double accepted, double* partial,
                                              int64_t t) {
  __shared__ double warp_sums[kMaxThreads / 32][2];
  for (int off = 16; off > 0; off /= 2) {
    energy += __shfl_down_sync(0xffffffffu, energy, off);
    accepted += __shfl_down_sync(0xffffffffu, accepted, off);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    warp_sums[warp][0] = energy;
    warp_sums[warp][1] = accepted;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double e = 0, a = 0;
    for (int w = 0; w < int(blockDim.x / 32); ++w) {
      e += warp_sums[w][0];
      a += warp_sums[w][1];
    }
    double* out = partial + (t * gridDim.x + blockIdx.x) * 2;
    out[0] = e;
    out[1] = a;
  }
  __syncthreads();
}

// Threads per block of a chain kernel over `work` threads: the largest of 128, 64, 32 that
// still gives two blocks per multiprocessor, so small batches spread over the whole GPU.
inline int chain_threads(int64_t work, const Launch& launch) {
  const int64_t sms = launch.sm_count > 0 ? launch.sm_count : 132;
  int threads = kMaxThreads;
  while (threads > 32 && (work + threads - 1) / threads < 2 * sms) threads /= 2;
  return threads;
}

// Trajectory slot of step t (0-based) with thinning: steps thin-1, 2 thin-1, ... are kept.
__device__ __forceinline__ int64_t kept_index(int64_t t, int64_t thin) {
  return (t + 1) % thin == 0 ? (t + 1) / thin - 1 : -1;
}

// Row kernels: chain c's row x (d values) into trajectory[c, kept(t)] ([B, n_keep, d]) when
// step t is kept; nothing when no trajectory is recorded.
template <class C>
__device__ __forceinline__ void record_row(C* trajectory, const C* x, int64_t c, int64_t t,
                                           int64_t thin, int64_t n_keep, int64_t d) {
  if (trajectory == nullptr) return;
  const int64_t kept = kept_index(t, thin);
  if (kept < 0) return;
  C* row = trajectory + (c * n_keep + kept) * d;
  for (int64_t j = 0; j < d; ++j) row[j] = x[j];
}

// Row kernels, Metropolis acceptance: the proposal (y, its gradient gy, energy ey) becomes the
// state (x, g, e). Rows in registers (kD > 0) are copied; rows in the workspace swap pointers,
// the old state's storage becoming the next proposal's.
template <int kD, class C>
__device__ __forceinline__ void take_proposal(C*& x, C*& g, C& e, C*& y, C*& gy, C ey,
                                              int64_t d) {
  if constexpr (kD > 0) {
    for (int64_t j = 0; j < d; ++j) {
      x[j] = y[j];
      g[j] = gy[j];
    }
  } else {
    C* tmp = x;
    x = y;
    y = tmp;
    tmp = g;
    g = gy;
    gy = tmp;
  }
  e = ey;
}

// energy_mean[t] = (sum of the blocks' energy partials) / B + offset;
// acceptance_rate[t] = (sum of the accepted partials) / B. Blocks are summed in order.
template <class C>
__global__ void finalize_kernel(const double* __restrict__ partial, int blocks, int64_t n_steps,
                                int64_t batch, double offset, C* __restrict__ energy_mean,
                                C* __restrict__ acceptance_rate) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < n_steps;
       t += int64_t(gridDim.x) * blockDim.x) {
    double e = 0, a = 0;
    for (int b = 0; b < blocks; ++b) {
      e += partial[(t * blocks + b) * 2];
      a += partial[(t * blocks + b) * 2 + 1];
    }
    if (energy_mean != nullptr) energy_mean[t] = C(e / double(batch) + offset);
    if (acceptance_rate != nullptr) acceptance_rate[t] = C(a / double(batch));
  }
}

template <class C>
cudaError_t finalize(const double* partial, int blocks, int64_t n_steps, int64_t batch,
                     double offset, void* energy_mean, void* acceptance_rate, Launch launch) {
  if (n_steps == 0 || (energy_mean == nullptr && acceptance_rate == nullptr)) return cudaSuccess;
  finalize_kernel<C><<<grid_for(n_steps, 128, launch, 1), 128, 0, launch.stream>>>(
      partial, blocks, n_steps, batch, offset, static_cast<C*>(energy_mean),
      static_cast<C*>(acceptance_rate));
  return launch_status();
}

// Calls f(M*) (a null tag) with the model type of `id` in compute type C (one case per row of
// energies.h's table); false for an unknown id.
template <class C, class F>
bool with_model(int id, F&& f) {
  switch (static_cast<Energy>(id)) {
#define TORCHEBM_MODEL_CASE(name, id, Model, ...) \
  case Energy::id: f(static_cast<Model<C>*>(nullptr)); return true;
    TORCHEBM_ANALYTIC_MODELS(TORCHEBM_MODEL_CASE)
#undef TORCHEBM_MODEL_CASE
  }
  return false;
}

// A chain op's entry: f(C*, M*) (null tags) for the compute type of `args.dtype` and the model
// of `energy_id`; cudaSuccess for an empty batch, cudaErrorInvalidValue for an unknown case.
template <class F>
cudaError_t dispatch_chain(const ChainArgs& args, int energy_id, F&& f) {
  if (args.batch == 0 || args.dim == 0) return cudaSuccess;
  cudaError_t err = cudaErrorInvalidValue;
  auto for_type = [&](auto* type_tag) {
    using C = std::remove_pointer_t<decltype(type_tag)>;
    with_model<C>(energy_id, [&](auto* model_tag) { err = f(type_tag, model_tag); });
  };
  switch (args.dtype) {
    case Dtype::kFloat32: for_type(static_cast<float*>(nullptr)); break;
    case Dtype::kFloat64: for_type(static_cast<double*>(nullptr)); break;
    default: break;
  }
  return err;
}

// Models defined only for d = 2 (energies.h's table) get no dynamic-dimension kernel.
template <class M>
inline constexpr bool kOnly2d = energy_info(EnergyOf<M>::value).fixed_dim == 2;

// launch(std::integral_constant<int, kD>) for the row-kernel instantiation of dimension d:
// kD = 2 (rows in registers) or 0 (rows in the workspace; none for the 2-D-only models, which
// get cudaErrorInvalidValue).
template <class M, class F>
cudaError_t launch_rows(int64_t d, F&& launch) {
  if (d == 2) {
    launch(std::integral_constant<int, 2>{});
    return cudaSuccess;
  }
  if constexpr (!kOnly2d<M>) {
    launch(std::integral_constant<int, 0>{});
    return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}

inline ModelArgs model_args(const EnergyArgs& e) {
  ModelArgs m{{0, 0, 0, 0}, e.mean, e.precision};
  for (int i = 0; i < e.n_params && i < ModelArgs::kMaxParams; ++i) m.params[i] = e.params[i];
  return m;
}

}  // namespace torchebm::cuda::chain
