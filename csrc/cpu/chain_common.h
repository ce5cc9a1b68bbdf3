// Shared pieces of the CPU whole-chain kernels: how chains are split into blocks, the outputs,
// and the fixed-order reductions of the per-step statistics.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <optional>
#include <vector>

#include "philox_fill.h"
#include "torchebm/checks.h"

namespace torchebm::cpu {

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

struct ChainOutputs {
  at::Tensor x, trajectory, energy_mean, acceptance_rate;
};

// x = copy of x0; trajectory [B, n_steps / thin, d] or empty; energy_mean [n_steps] or empty;
// acceptance_rate [n_steps] when `with_acceptance`.
inline ChainOutputs chain_outputs(const at::Tensor& x0, int64_t n_steps, int64_t thin,
                                  bool record_trajectory, bool record_energy,
                                  bool with_acceptance) {
  ChainOutputs o;
  o.x = x0.contiguous().clone();
  const int64_t kept = n_steps / thin;
  o.trajectory = record_trajectory ? at::empty({x0.size(0), kept, x0.size(1)}, x0.options())
                                   : at::empty({0}, x0.options());
  o.energy_mean = at::empty({record_energy ? n_steps : 0}, x0.options());
  if (with_acceptance) o.acceptance_rate = at::empty({n_steps}, x0.options());
  return o;
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

// Copies a block's rows into the trajectory slot `kept_index`.
template <class T>
void record_rows(T* traj, const T* x, int64_t r0, int64_t nr, int64_t d, int64_t kept,
                 int64_t kept_index) {
  for (int64_t i = 0; i < nr; ++i) {
    std::memcpy(traj + ((r0 + i) * kept + kept_index) * d, x + i * d, sizeof(T) * d);
  }
}

// A per-step schedule as float64 values on the host, all finite (and > 0 when `positive`).
inline std::vector<double> schedule_values(const at::Tensor& s, int64_t n_steps, const char* op,
                                           const char* name, bool positive) {
  checks::schedule(s, n_steps, op, name);
  const at::Tensor c = s.to(at::kCPU, at::kDouble).contiguous();
  std::vector<double> v(c.const_data_ptr<double>(), c.const_data_ptr<double>() + n_steps);
  for (int64_t t = 0; t < n_steps; ++t) {
    TORCH_CHECK(std::isfinite(v[t]) && (!positive || v[t] > 0), op, ": ", name, "[", t,
                "] must be finite", positive ? " and > 0" : "", ", got ", v[t]);
  }
  return v;
}

inline void check_chain_args(const at::Tensor& x0, int64_t thin, const char* op) {
  checks::floating(x0, op, "x0");
  TORCH_CHECK(x0.dim() == 2, op, ": x0 must have shape [B, d], got ", x0.sizes());
  TORCH_CHECK(thin >= 1, op, ": thin must be >= 1, got ", thin);
}

inline uint32_t chain_step_limit(int64_t n_steps, const char* op) {
  TORCH_CHECK(n_steps <= static_cast<int64_t>(UINT32_MAX) + 1, op,
              ": n_steps must be <= 2^32 (steps are Philox counter words), got ", n_steps);
  return 0;
}

}  // namespace torchebm::cpu
