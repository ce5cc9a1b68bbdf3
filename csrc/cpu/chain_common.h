// Shared pieces of the CPU whole-chain kernels: their outputs, the split of
// the chains into blocks run in parallel, what a block records (thinned trajectory, per-step
// sums reduced in a fixed order) and the Metropolis-Hastings accept step of MALA and HMC. Each
// kernel keeps only its transition.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "analytic_models.h"
#include "elementwise_blocks.h"
#include "philox_fill.h"
#include "torchebm/checks.h"

namespace torchebm::cpu {

// A per-step schedule (checked by checks::schedule) as the kernels read it, float64: value
// (t, c) of step t for chain c. [n_steps] holds one value per step; [n_steps, B] one per step
// and chain (per_chain), read without a copy of its rows when it is constant over the steps
// (stride 0, as per-chain step sizes expanded over the steps come).
struct Schedule {
  at::Tensor values;  // float64, contiguous: [n_steps], [n_steps, B], or [B] (constant rows)
  int64_t step_stride = 1, chain_stride = 0;
  bool per_chain = false;
  double at(int64_t t, int64_t c) const {
    return values.const_data_ptr<double>()[t * step_stride + c * chain_stride];
  }
};

inline Schedule schedule_values(const at::Tensor& s) {
  Schedule out;
  out.per_chain = s.dim() == 2;
  if (out.per_chain && s.stride(0) == 0 && s.size(0) > 0) {
    out.values = s.select(0, 0).to(at::kDouble).contiguous();
    out.step_stride = 0;
  } else {
    out.values = s.to(at::kDouble).contiguous();
    out.step_stride = out.per_chain ? s.size(1) : 1;
  }
  out.chain_stride = out.per_chain ? 1 : 0;
  return out;
}

// A chain op's outputs and what is recorded into them: x = copy of x0, stepped in place;
// trajectory [B, n_steps / thin, d] or empty; energy_mean [n_steps] or empty; acceptance_rate
// [n_steps] when `with_acceptance`. Step t draws the noise of step first_step + t.
struct ChainOutputs {
  at::Tensor x, trajectory, energy_mean, acceptance_rate;
  int64_t n_steps, thin, first_step;
  bool record_trajectory, record_energy, with_acceptance;
};

inline ChainOutputs chain_outputs(const at::Tensor& x0, int64_t n_steps, int64_t thin,
                                  bool record_trajectory, bool record_energy,
                                  bool with_acceptance, int64_t first_step) {
  ChainOutputs o;
  o.x = x0.contiguous().clone();
  const int64_t kept = n_steps / thin;
  o.trajectory = record_trajectory ? at::empty({x0.size(0), kept, x0.size(1)}, x0.options())
                                   : at::empty({0}, x0.options());
  // Zeros, not empty: with no chains there are no per-step sums to write, and the means are 0.
  o.energy_mean = at::zeros({record_energy ? n_steps : 0}, x0.options());
  if (with_acceptance) o.acceptance_rate = at::zeros({n_steps}, x0.options());
  o.n_steps = n_steps;
  o.thin = thin;
  o.first_step = first_step;
  o.record_trajectory = record_trajectory;
  o.record_energy = record_energy;
  o.with_acceptance = with_acceptance;
  return o;
}

// Chains are processed in blocks of `rows` chains, each block running every step with its state
// in cache. The split depends only on (B, d, dtype), never on the thread count; it only decides
// the order in which per-step means are summed.
struct ChainBlocks {
  int64_t rows = 1;
  int64_t count = 0;
};

template <class T>
ChainBlocks chain_blocks(int64_t B, int64_t d) {
  // Blocks of ~2048 elements; a multiple of `unit` rows keeps each block's noise aligned to
  // whole Philox blocks (no partial blocks generated twice).
  const int64_t E = block_elems<T>();
  const int64_t unit = E / std::gcd(E, d);
  int64_t rows = std::max<int64_t>(1, 2048 / d);
  rows = rows >= unit ? rows / unit * unit : unit;
  // Small problems: at least ~8 blocks, for the threads.
  if (B / rows < 8) rows = std::max<int64_t>(1, (B + 7) / 8);
  ChainBlocks b;
  b.rows = rows;
  b.count = B == 0 ? 0 : (B + rows - 1) / rows;
  return b;
}

// Per-block, per-step partial sums, reduced over blocks in block order.
struct StepSums {
  int64_t n_steps;
  std::vector<double> energy;    // [blocks, n_steps]
  std::vector<int64_t> accepted; // [blocks, n_steps]
  StepSums(int64_t blocks, int64_t steps, bool energy_on, bool accept_on)
      : n_steps(steps),
        energy(energy_on ? static_cast<size_t>(blocks * steps) : 0, 0.0),
        accepted(accept_on ? static_cast<size_t>(blocks * steps) : 0, 0) {}
  double* energy_row(int64_t blk) { return energy.empty() ? nullptr : &energy[blk * n_steps]; }
  int64_t* accept_row(int64_t blk) { return accepted.empty() ? nullptr : &accepted[blk * n_steps]; }

  template <class T>
  void write(ChainOutputs& o, int64_t blocks, int64_t B) const {
    if (!energy.empty()) {
      T* pe = o.energy_mean.mutable_data_ptr<T>();
      for (int64_t t = 0; t < n_steps; ++t) {
        double s = 0;
        for (int64_t k = 0; k < blocks; ++k) s += energy[k * n_steps + t];
        pe[t] = static_cast<T>(B > 0 ? s / B : 0.0);
      }
    }
    if (!accepted.empty()) {
      T* pa = o.acceptance_rate.mutable_data_ptr<T>();
      for (int64_t t = 0; t < n_steps; ++t) {
        int64_t s = 0;
        for (int64_t k = 0; k < blocks; ++k) s += accepted[k * n_steps + t];
        pa[t] = static_cast<T>(B > 0 ? static_cast<double>(s) / B : 0.0);
      }
    }
  }
};

// Sum of a block's per-chain energies, in chain order.
template <class T>
double block_sum(const T* e, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(e[i]);
  return s;
}

// One block of chains, as a kernel steps it.
template <class T>
struct ChainBlock {
  int64_t first;       // index of the block's first chain
  int64_t rows;        // its number of chains
  int64_t d;
  int64_t elems;       // rows * d
  T* x;                // its states [rows, d]: rows of the output x, stepped in place
  double* energy_sum;  // [n_steps]: sum of its energies after each step, or null (not recorded)
  int64_t* accepted;   // [n_steps]: its acceptances at each step, or null (no accept test)
  T* trajectory;       // the whole output trajectory [B, kept, d], or null (not recorded)
  int64_t thin, kept;
  int64_t first_step;  // step t draws the noise of step first_step + t

  // out[0, elems): the block's elements of step first_step + t's normal stream, indexed as in
  // philox_normal over the whole [B, d] batch, so a draw does not depend on the blocking.
  void normal(T* out, int64_t seed, int64_t t) const {
    fill_normal(out, first * d, first * d + elems, static_cast<uint64_t>(seed),
                static_cast<uint32_t>(first_step + t), kNormalStream);
  }

  // out[0, rows): the block's per-chain values of step first_step + t's uniform stream (indexed
  // by chain).
  void uniform(T* out, int64_t seed, int64_t t) const {
    fill_uniform(out, first, first + rows, static_cast<uint64_t>(seed),
                 static_cast<uint32_t>(first_step + t), kUniformStream);
  }

  // Called after step t: copies the states into the trajectory when t is a kept (thinned) step.
  void record(int64_t t) const {
    if (trajectory == nullptr || (t + 1) % thin != 0) return;
    for (int64_t i = 0; i < rows; ++i) {
      std::memcpy(trajectory + ((first + i) * kept + t / thin) * d, x + i * d, sizeof(T) * d);
    }
  }
};

// The blocks [k0, k1) that one thread runs, one after the other:
// `for (const ChainBlock<T>& blk : range)`. No block has more than `rows` chains, the size of the
// thread's buffers.
template <class T>
struct ChainBlockRange {
  int64_t rows, k0, k1;
  int64_t B, d, thin, kept, first_step;
  T* x;
  T* trajectory;
  StepSums* sums;

  ChainBlock<T> block(int64_t k) const {
    const int64_t first = k * rows, n = std::min(B, first + rows) - first;
    return {first, n, d, n * d, x + first * d, sums->energy_row(k), sums->accept_row(k),
            trajectory, thin, kept, first_step};
  }

  struct iterator {
    const ChainBlockRange* range;
    int64_t k;
    ChainBlock<T> operator*() const { return range->block(k); }
    iterator& operator++() {
      ++k;
      return *this;
    }
    bool operator!=(const iterator& o) const { return k != o.k; }
  };
  iterator begin() const { return {this, k0}; }
  iterator end() const { return {this, k1}; }
};

// A chain op's tempering (checks::tempering accepted it): transition t targets
//   E_t = beta[t+1] E + (1 - beta[t+1]) E0   (E_t = beta[t+1] E without a base)
// and, with log_weight, adds to log_weight[c] (float64, accumulated in float64)
//   sum_t (beta[t+1, c] - beta[t, c]) (E0(x_t) - E(x_t)),  x_t the state before transition t,
// the log weight of annealed importance sampling (Neal 2001).
struct Tempering {
  Schedule beta;  // [n_steps + 1] or [n_steps + 1, B]
  std::optional<at::Tensor> base_mean, base_precision;
  double* log_weight = nullptr;  // [B], or null
};

inline std::optional<Tempering> tempering(const std::optional<at::Tensor>& beta,
                                          const std::optional<at::Tensor>& base_mean,
                                          const std::optional<at::Tensor>& base_precision,
                                          const std::optional<at::Tensor>& log_weight) {
  if (!beta) return std::nullopt;
  Tempering t;
  t.beta = schedule_values(*beta);
  t.base_mean = base_mean;
  t.base_precision = base_precision;
  if (log_weight) t.log_weight = log_weight->mutable_data_ptr<double>();
  return t;
}

// What a kernel does with a Tempered model at transition t of a block, in its own thread.
template <class T, class M>
struct TemperedBlock {
  const Tempered<T, M>& model;
  const Tempering& temper;
  const ChainBlock<T>& blk;

  // Sets the rows' beta to transition t's (beta[t + 1]); true when the state's energy and
  // gradient must be evaluated again (t = 0, or the target moved for a chain of the block).
  bool retarget(int64_t t) const {
    bool moved = t == 0;
    for (int64_t i = 0; i < blk.rows; ++i) {
      const double b1 = temper.beta.at(t + 1, blk.first + i);
      moved = moved || b1 != temper.beta.at(t, blk.first + i);
      model.beta[i] = static_cast<T>(b1);
    }
    return moved;
  }

  // After an evaluation of the state x_t at transition t: adds the log-weight increments.
  void add_log_weight(int64_t t) const {
    if (temper.log_weight == nullptr) return;
    for (int64_t i = 0; i < blk.rows; ++i) {
      const int64_t c = blk.first + i;
      const double step = temper.beta.at(t + 1, c) - temper.beta.at(t, c);
      if (step != 0.0) {
        temper.log_weight[c] += step * (static_cast<double>(model.base_energy[i]) -
                                        static_cast<double>(model.energy[i]));
      }
    }
  }

  // Sum over the block of the tempered energies at beta[s] of the last evaluation.
  double energy_sum_at(int64_t s) const {
    double sum = 0;
    for (int64_t i = 0; i < blk.rows; ++i) {
      const T b = static_cast<T>(temper.beta.at(s, blk.first + i));
      sum += static_cast<double>(b * model.energy[i] + (T(1) - b) * model.base_energy[i]);
    }
    return sum;
  }
};

// Element-steps (chains x dimensions x steps) below which a thread is not worth waking.
constexpr int64_t kMinThreadWork = int64_t{1} << 15;

// Runs a chain kernel on out.x: splits the chains into blocks (chain_blocks), calls
// run(model, range) on each thread with the concrete model (a Tempered one, with the thread's
// buffers, when `temper` is given) and that thread's blocks, so the thread allocates its buffers
// once for all its blocks, then writes the per-step means from the blocks' sums.
template <class T, class Run>
void run_chain(ChainOutputs& out, Energy energy, c10::ArrayRef<double> params,
               const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& precision,
               const std::optional<Tempering>& temper, Run&& run) {
  const int64_t B = out.x.size(0), d = out.x.size(1);
  const ChainBlocks blocks = chain_blocks<T>(B, d);
  StepSums sums(blocks.count, out.n_steps, out.record_energy, out.with_acceptance);
  ChainBlockRange<T> all{};
  all.rows = blocks.rows;
  all.B = B;
  all.d = d;
  all.thin = out.thin;
  all.kept = out.n_steps / out.thin;
  all.first_step = out.first_step;
  all.x = out.x.mutable_data_ptr<T>();
  all.trajectory = out.record_trajectory ? out.trajectory.mutable_data_ptr<T>() : nullptr;
  all.sums = &sums;
  std::optional<GaussianStorage<T>> base;
  if (temper && temper->base_mean) base.emplace(*temper->base_mean, *temper->base_precision, d);
  // Blocks per thread: at least kMinThreadWork element-steps each, so that a small chain (a
  // few chains, or a few steps) runs in the calling thread instead of waking the pool for
  // microseconds of work (the results do not depend on the split: see chain_blocks).
  const int64_t block_work = std::max<int64_t>(1, blocks.rows * d * std::max<int64_t>(out.n_steps, 1));
  const int64_t grain = std::max<int64_t>(1, kMinThreadWork / block_work);
  with_model<T>(energy, params, mean, precision, d, [&](const auto& m) {
    at::parallel_for(0, blocks.count, grain, [&](int64_t k0, int64_t k1) {
      ChainBlockRange<T> mine = all;
      mine.k0 = k0;
      mine.k1 = k1;
      if (temper) {
        using M = std::decay_t<decltype(m)>;
        const Tempered<T, M> tm(m, base ? std::optional(base->model()) : std::nullopt,
                                blocks.rows, d);
        run(tm, mine);
      } else {
        run(m, mine);
      }
    });
  });
  sums.write<T>(out, blocks.count, B);
}

// One thread's buffers of a Metropolis-Hastings kernel (MALA, HMC), for blocks of up to `rows`
// chains: the current gradients g and energies e, the proposal y with its gradients gy and
// energies ey, and the accept test's log ratios and uniforms.
template <class T>
struct MetropolisBuffers {
  std::vector<T> g, e, y, gy, ey, log_r, u;
  std::vector<char> accepted;  // bools: std::vector<bool> is packed and has no bool*

  MetropolisBuffers(int64_t rows, int64_t d)
      : g(rows * d), e(rows), y(rows * d), gy(rows * d), ey(rows), log_r(rows), u(rows),
        accepted(rows) {}

  // The accept test of step t once log_r holds the block's log ratios: the accepted chains take
  // the proposal's state, gradient and energy (so the gradient of the kept state is carried over,
  // never recomputed); stores the block's acceptance count and energy sum of step t.
  void accept(const ChainBlock<T>& b, int64_t seed, int64_t t) {
    b.uniform(u.data(), seed, t);
    bool* acc = reinterpret_cast<bool*>(accepted.data());
    b.accepted[t] = accept_block(acc, u.data(), log_r.data(), b.rows);
    for (int64_t i = 0; i < b.rows; ++i) {
      if (acc[i]) {
        std::memcpy(b.x + i * b.d, y.data() + i * b.d, sizeof(T) * b.d);
        std::memcpy(g.data() + i * b.d, gy.data() + i * b.d, sizeof(T) * b.d);
        e[i] = ey[i];
      }
    }
    if (b.energy_sum) b.energy_sum[t] = block_sum(e.data(), b.rows);
  }
};

}  // namespace torchebm::cpu
