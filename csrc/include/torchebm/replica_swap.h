// Replica exchange between neighbouring temperatures (the replica_swap op), written once for the
// CPU and CUDA kernels and mirrored in python/torchebm/kernels/reference.py.
//
// Replicas x [K, B, *event] at inverse temperatures beta_0 > ... (any order works), energies
// E [K, B] of the untempered model. Pair k (rows k and k+1 of chain b) is proposed when
// k % 2 == parity; it swaps with probability min(1, r),
//   log r = (beta_k - beta_{k+1}) * (E[k, b] - E[k+1, b]),
// the ratio pi_k(x_{k+1}) pi_{k+1}(x_k) / (pi_k(x_k) pi_{k+1}(x_{k+1})) of pi_k ~ exp(-beta_k E).
// Its uniform is element k * B + b of Philox stream 1 at (seed, step) (philox_uniform([K-1, B])).
#pragma once

#include <cstdint>

#include "torchebm/updates.h"

namespace torchebm {

template <class T>
TORCHEBM_HD T swap_log_ratio(T beta_lo, T beta_hi, T e_lo, T e_hi) {
  return (beta_lo - beta_hi) * (e_lo - e_hi);
}

// Whether pair k (rows k, k+1) is proposed in a round of this parity.
TORCHEBM_HD bool swap_pair_proposed(int64_t k, int64_t n_temps, int64_t parity) {
  return k >= 0 && k + 1 < n_temps && (k & 1) == parity;
}

// The row temperature k of chain b takes its state from after the round: k + 1 or k - 1 when its
// pair swapped, else k. `accepted` is [K-1, B].
TORCHEBM_HD int64_t swap_source(int64_t k, int64_t b, int64_t n_temps, int64_t n_chains,
                                       int64_t parity, const bool* accepted) {
  if (swap_pair_proposed(k, n_temps, parity) && accepted[k * n_chains + b]) return k + 1;
  if (swap_pair_proposed(k - 1, n_temps, parity) && accepted[(k - 1) * n_chains + b]) return k - 1;
  return k;
}

}  // namespace torchebm
