// The dense Gaussian's chains with lanes cooperating per chain (issue 15), for
// langevin_chain, mala_chain and hmc_chain (the kernels are in their *_chain_kernel.cu).
//
// A chain is a group of G lanes of one warp (G = 8, 16 or 32, the smallest that covers d, up to
// d = 128 with R = 4 coordinates per lane): lane l holds coordinates j = l + G r (r < R) of the
// state, gradient, proposal and momentum in registers, and its mean entries. The gradient
// g_j = sum_k (x_k - mu_k) P[k, j] is the CPU kernels' sum, k in increasing order (energies.h:
// Gaussian); lane l computes its rows j, reading z = x - mu from the group's slice of shared
// memory and P[k, j] from global memory: every chain reads the same d x d values, which stay in
// the L1 and read-only caches (32-D float32: 4 KB), and global memory leaves d free of the
// 48 KB static shared-memory bound (the host emulation has no dynamic shared memory). Row sums
// (energy, MALA's log ratio, HMC's kinetic energy) keep ordered_sum's order: lane l adds the
// terms j = l mod 8 (j ascending), and three butterfly shuffles add the 8 partial sums in
// ordered_sum's tree, so every lane of the group holds the same sum, bit for bit. The Philox
// draws are those of the row kernels: element (c, j) of step t is normal c d + j of step t.
//
// Every thread of a block runs the same sequence of barriers and shuffles (the step and
// leapfrog loops are uniform, groups past the batch compute on chain 0's values and write
// nothing), so the barriers need no masks.
#pragma once

#include "chain_common.cuh"

namespace torchebm::cuda::gaussian_chain {

constexpr int kMinDim = 8;    // below, a group would leave most lanes idle: the row kernels
constexpr int kMaxDim = 128;  // above, R would exceed 4 registers per row: the row kernels

// Lanes per chain for the Gaussian at dimension d: 0 (the row kernels) for d outside
// [kMinDim, kMaxDim], else the smallest of 8, 16, 32 covering d (32 past 32).
inline int lanes_for(int energy_id, int64_t d) {
  if (energy_id != static_cast<int>(Energy::kGaussian) || d < kMinDim || d > kMaxDim) return 0;
  return d <= 8 ? 8 : d <= 16 ? 16 : 32;
}

// Registers per row for G lanes.
template <int G>
inline constexpr int kRegs = G == 32 ? kMaxDim / 32 : 1;

// launch(std::integral_constant<int, G>) for the group size `lanes` (8, 16 or 32).
template <class F>
void with_lanes(int lanes, F&& launch) {
  if (lanes == 8) launch(std::integral_constant<int, 8>{});
  if (lanes == 16) launch(std::integral_constant<int, 16>{});
  if (lanes == 32) launch(std::integral_constant<int, 32>{});
}

// A Gaussian as a lane holds it: its mean entries (coordinates lane + G r) and the precision.
template <class C, int R>
struct Model {
  C mu[R];
  const C* prec;  // [d, d] row-major, symmetric
};

// One chain's group of G lanes (this thread's lane) and its two slices of shared memory.
template <class C, int G, int R>
struct Group {
  int lane;
  int64_t d;
  C* zs;  // [G R]: x - mu of the evaluation in progress
  C* ts;  // [G R]: the terms of a row sum

  __device__ __forceinline__ int64_t col(int r) const { return lane + int64_t(G) * r; }
  __device__ __forceinline__ bool has(int r) const { return col(r) < d; }

  // The lane's entries of a row of d values in global memory (0 past d).
  __device__ __forceinline__ void load(const C* row, C (&v)[R]) const {
#pragma unroll
    for (int r = 0; r < R; ++r) v[r] = has(r) ? row[col(r)] : C(0);
  }
  __device__ __forceinline__ void store(C* row, const C (&v)[R]) const {
#pragma unroll
    for (int r = 0; r < R; ++r)
      if (has(r)) row[col(r)] = v[r];
  }
  __device__ __forceinline__ Model<C, R> model(const void* mean, const void* precision) const {
    Model<C, R> m;
    load(static_cast<const C*>(mean), m.mu);
    m.prec = static_cast<const C*>(precision);
    return m;
  }

  // sum_{j<d} v_j, v_j held by lane j mod G in slot j / G, in ordered_sum's order (acc[k] the
  // terms j = k mod 8 in increasing j, then ((acc0 + acc4) + (acc1 + acc5)) + ((acc2 + acc6) +
  // (acc3 + acc7))); every lane of the group returns it. The butterflies pair lane k with
  // k ^ 4, then k ^ 1, then k ^ 2: by commutativity each lane forms the same sums.
  __device__ __forceinline__ C sum(const C (&v)[R]) const {
    __syncthreads();  // earlier readers of ts are done
#pragma unroll
    for (int r = 0; r < R; ++r)
      if (has(r)) ts[col(r)] = v[r];
    __syncthreads();
    C acc = C(0);
    for (int64_t j = lane % 8; j < d; j += 8) acc += ts[j];
    acc += __shfl_xor_sync(0xffffffffu, acc, 4);
    acc += __shfl_xor_sync(0xffffffffu, acc, 1);
    acc += __shfl_xor_sync(0xffffffffu, acc, 2);
    return acc;
  }

  // Gradient g = P (x - mu) (lane rows) and, when `want_energy`, E = 1/2 sum_j z_j g_j
  // (energies.h: Gaussian::energy_grad); 0 otherwise. Every thread of the block calls it with
  // the same want_energy.
  __device__ __forceinline__ C gaussian(const Model<C, R>& m, const C (&x)[R], C (&g)[R],
                                        bool want_energy) const {
    C z[R];
    __syncthreads();  // earlier readers of zs are done
#pragma unroll
    for (int r = 0; r < R; ++r) {
      z[r] = has(r) ? x[r] - m.mu[r] : C(0);
      if (has(r)) zs[col(r)] = z[r];
      g[r] = C(0);
    }
    __syncthreads();
    for (int64_t k = 0; k < d; ++k) {
      const C zk = zs[k];
      const C* row = m.prec + k * d;
#pragma unroll
      for (int r = 0; r < R; ++r)
        if (has(r)) g[r] += zk * row[col(r)];
    }
    if (!want_energy) return C(0);
    C t[R];
#pragma unroll
    for (int r = 0; r < R; ++r) t[r] = z[r] * g[r];
    return C(0.5) * sum(t);
  }

  // The transition's target at x (chain_common.cuh: target_energy_grad): the model's energy and
  // gradient untempered (tq null), else b E + (1 - b) E0 (b E without a base), keeping E and
  // E0 in *tq. `base` is used only when `has_base`.
  __device__ __forceinline__ C target(const Model<C, R>& m, const Model<C, R>& base, bool has_base,
                                      chain::Temper<C>* tq, const C (&x)[R], C (&g)[R],
                                      bool want_energy) const {
    if (tq == nullptr) return gaussian(m, x, g, want_energy);
    tq->energy = gaussian(m, x, g, true);
    const C b = tq->beta, rest = C(1) - b;
    if (!has_base) {
      tq->base_energy = C(0);
#pragma unroll
      for (int r = 0; r < R; ++r) g[r] = b * g[r];
      return b * tq->energy;
    }
    C g0[R];
    tq->base_energy = gaussian(base, x, g0, true);
#pragma unroll
    for (int r = 0; r < R; ++r) g[r] = b * g[r] + rest * g0[r];
    return b * tq->energy + rest * tq->base_energy;
  }
};

// True on every thread when `v` holds on any thread of the block (all threads call it).
__device__ __forceinline__ bool block_any(bool v) {
  __shared__ int flag;
  __syncthreads();  // earlier readers of flag are done
  if (threadIdx.x == 0) flag = 0;
  __syncthreads();
  if (v) flag = 1;
  __syncthreads();
  return flag != 0;
}

// Threads and blocks of a group kernel over `batch` chains of `lanes` lanes: chain_threads over
// the batch's lanes (a multiple of 32, so of every group size).
inline int threads_for(int64_t batch, int lanes, const Launch& launch) {
  return chain::chain_threads(batch * lanes, launch);
}
inline int blocks_for(int64_t batch, int lanes, const Launch& launch) {
  const int threads = threads_for(batch, lanes, launch);
  const int64_t blocks = (batch * lanes + threads - 1) / threads;
  return static_cast<int>(blocks < 1 ? 1 : blocks);
}

// This thread's chain: (global thread index) / G.
template <int G>
__device__ __forceinline__ int64_t chain_index() {
  return (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / G;
}

// This thread's lane in its chain's group, with the group's two slices of the block's shared
// memory (2 G R values per group, kMaxThreads / G groups per block at most).
template <class C, int G, int R>
__device__ __forceinline__ Group<C, G, R> group_of(int64_t d) {
  __shared__ C rows[2 * chain::kMaxThreads * R];
  C* mine = rows + (threadIdx.x / G) * 2 * G * R;
  return Group<C, G, R>{static_cast<int>(threadIdx.x % G), d, mine, mine + G * R};
}

// What every lane of a dense-Gaussian chain kernel holds: its group, its chain c (cs: the
// chain whose values it reads, chain 0 past the batch, where the lane computes but writes
// nothing), the target and the base (the target again without one) as the lane holds them, and
// the chain's tempering.
template <class C, int G>
struct Lanes {
  static constexpr int R = kRegs<G>;
  Group<C, G, R> L;
  int64_t c, cs;
  bool active, has_base, tempered;
  Model<C, R> model, base;
  chain::Temper<C> tq;

  __device__ __forceinline__ Lanes(int64_t d, int64_t batch, const chain::ModelArgs& margs,
                                   const TemperArgs& temper)
      : L(group_of<C, G, R>(d)),
        c(chain_index<G>()),
        cs(c < batch ? c : 0),
        active(c < batch),
        has_base(temper.on && temper.base_mean != nullptr),
        tempered(temper.on),
        model(L.model(margs.mean, margs.precision)),
        base(L.model(has_base ? temper.base_mean : margs.mean,
                     has_base ? temper.base_precision : margs.precision)),
        tq{temper, cs, nullptr} {}

  // The transition's target at x (Group::target), tempered when the chain is.
  __device__ __forceinline__ C target(const C (&x)[R], C (&g)[R], bool want_energy) {
    return L.target(model, base, has_base, tempered ? &tq : nullptr, x, g, want_energy);
  }

  // Normal of the lane's coordinate r from step t's cursor (0 past d).
  __device__ __forceinline__ C normal(chain::NormalCursor<C>& z, int r) const {
    return L.has(r) ? z.at(static_cast<uint64_t>(cs * L.d + L.col(r))) : C(0);
  }

  // Start of step t of a tempered chain: when any chain of the block has a new target, (e, g)
  // of the target at x (a chain whose target did not move gets its values again, bit for bit)
  // and the chain's log-weight increment. Every thread calls it.
  __device__ __forceinline__ void retarget(int64_t t, const C (&x)[R], C (&g)[R], C& e) {
    if (!tempered || !block_any(tq.retarget(t))) return;
    e = target(x, g, true);
    if (active && L.lane == 0) tq.add_log_weight(t);
  }

  // End of step t: the state into the thinned trajectory (when t is a kept step).
  __device__ __forceinline__ void keep(C* trajectory, const C (&x)[R], int64_t t, int64_t thin,
                                       int64_t n_keep) const {
    if (!active || trajectory == nullptr) return;
    const int64_t kept = chain::kept_index(t, thin);
    if (kept >= 0) L.store(trajectory + (c * n_keep + kept) * L.d, x);
  }

  // The chain's energy (when recorded) and acceptance into the block's step-t sums, from one
  // lane per chain. Every thread calls it.
  __device__ __forceinline__ void add_sums(double* partial, C e, bool record_energy, bool accepted,
                                           int64_t t) const {
    const bool counts = active && L.lane == 0;
    chain::block_partial(counts && record_energy ? double(e) : 0.0, counts && accepted ? 1.0 : 0.0,
                         partial, t);
  }
};

// A Metropolis step's outcome: an accepted chain takes the proposal's state, gradient, energy.
template <class C, int R>
__device__ __forceinline__ void take_if(bool accepted, C (&x)[R], C (&g)[R], C& e,
                                        const C (&y)[R], const C (&gy)[R], C ey) {
  if (!accepted) return;
#pragma unroll
  for (int r = 0; r < R; ++r) {
    x[r] = y[r];
    g[r] = gy[r];
  }
  e = ey;
}

}  // namespace torchebm::cuda::gaussian_chain
