// CPU kernel of hmc_chain (schema in csrc/ops.cpp). Transition t (eps = step_size[t], m the
// inverse mass) equals the per-step loop
//   p = philox_normal(x.shape, seed, t) / sqrt(m);  H0 = E(x) + 1/2 sum m p^2
//   x', p = leapfrog_kick_drift(x, p, g, eps/2, eps, m); g' = grad E(x')
//   L-1 times: x', p = leapfrog_kick_drift(x', p, g', eps, eps, m); g' = grad E(x')
//   p = p - eps/2 g' (the p of leapfrog_kick_drift(x', p, g', eps/2, 0, m));  H1 = E(x') + K(p)
//   x, accepted = metropolis_select(H0 - H1, x, x', None, seed, t)
// with the gradient (and energy) of the accepted state carried over: L gradient evaluations per
// transition, plus one of x0 at the start of the call. L = n_leapfrog, or leapfrog_steps[t] when
// that per-step count is given. With beta (chain_common.h: Tempering) the energies are transition
// t's target's, (E, grad) of x evaluated again at the start of a transition whose target moved
// (which gives E(x_t) and E0(x_t) for the log weight).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "analytic_models.h"
#include "chain_common.h"
#include "elementwise_blocks.h"

namespace torchebm::cpu {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> hmc_chain(
    const std::string& energy, const at::Tensor& x0, const at::Tensor& step_size,
    int64_t n_leapfrog, const std::optional<at::Tensor>& inv_mass, c10::ArrayRef<double> params,
    const std::optional<at::Tensor>& mean, const std::optional<at::Tensor>& precision,
    int64_t seed, int64_t thin, bool record_trajectory, bool record_energy,
    int64_t first_step, const std::optional<at::Tensor>& leapfrog_steps,
    const std::optional<at::Tensor>& beta, const std::optional<at::Tensor>& base_mean,
    const std::optional<at::Tensor>& base_precision, const std::optional<at::Tensor>& log_weight) {
  constexpr const char* op = "hmc_chain";
  const checks::Chain c = checks::hmc_chain(energy, x0, step_size, n_leapfrog, inv_mass, params,
                                            mean, precision, thin, checks::kCpu, leapfrog_steps);
  checks::first_step(first_step, c.n_steps, op);
  checks::tempering(beta, base_mean, base_precision, log_weight, c.n_steps, x0, op);
  const std::optional<Tempering> temper = tempering(beta, base_mean, base_precision, log_weight);
  const int64_t n_steps = c.n_steps, d = x0.size(1);
  const Schedule eps = schedule_values(step_size);
  const at::Tensor steps_l = leapfrog_steps ? leapfrog_steps->contiguous() : at::Tensor();
  const int64_t* steps_at = leapfrog_steps ? steps_l.const_data_ptr<int64_t>() : nullptr;

  ChainOutputs out =
      chain_outputs(x0, n_steps, thin, record_trajectory, record_energy, true, first_step);
  AT_DISPATCH_FLOATING_TYPES(x0.scalar_type(), op, [&] {
    using T = scalar_t;
    // Inverse mass as a [d] vector in x's dtype, and 1/sqrt of it for the momentum.
    std::vector<T> m_vec, m_sqrt;
    if (inv_mass) {
      const at::Tensor im = inv_mass->to(x0.scalar_type()).expand({d}).contiguous();
      m_vec.assign(im.const_data_ptr<T>(), im.const_data_ptr<T>() + d);
      for (int64_t j = 0; j < d; ++j) m_sqrt.push_back(sqrt_ieee(m_vec[j]));
    }
    const T* pm = inv_mass ? m_vec.data() : nullptr;
    run_chain<T>(out, c.energy, params, mean, precision, temper,
                 [&](const auto& m, const auto& blocks) {
      using M = std::decay_t<decltype(m)>;
      const int64_t cap = blocks.rows * d;
      MetropolisBuffers<T> mh(blocks.rows, d);
      T *g = mh.g.data(), *e = mh.e.data(), *y = mh.y.data(), *gy = mh.gy.data(),
        *ey = mh.ey.data(), *log_r = mh.log_r.data();
      // kin_scratch is allocated before p: kinetic_block stores to it while loading p, and with
      // p's buffer just below it the loads wait on those stores (4 KiB aliasing of the heap
      // addresses), measured at ~3% of an HMC chain with d = 2.
      std::vector<T> kin_scratch(cap), p(cap), kin(blocks.rows),
          scratch(scratch_size<T>(m, blocks.rows, d));
      for (const ChainBlock<T>& blk : blocks) {
        const int64_t nr = blk.rows;
        T* x = blk.x;
        if constexpr (!is_tempered<M>::value) {
          energy_grad_rows<T>(m, x, g, e, nr, d, scratch.data());
        }
        for (int64_t t = 0; t < n_steps; ++t) {
          if constexpr (is_tempered<M>::value) {
            const TemperedBlock<T, typename M::Model> tb{m, *temper, blk};
            if (tb.retarget(t)) {
              energy_grad_rows<T>(m, x, g, e, nr, d, scratch.data());
              tb.add_log_weight(t);
            }
          }
          const T h = static_cast<T>(eps.at(t, 0)), half = static_cast<T>(0.5 * eps.at(t, 0));
          const int64_t n_leap = steps_at ? steps_at[t] : n_leapfrog;
          // Per-chain step sizes: the same loops row by row, chain i with eps.at(t, i).
          const auto kick_drift_rows = [&](T* xo, T* po, const T* xi, const T* pi, const T* gi,
                                           bool half_kick) {
            if (!eps.per_chain) {
              kick_drift_block(xo, po, xi, pi, gi, nr, d, half_kick ? half : h, h, pm, false);
              return;
            }
            for (int64_t i = 0; i < nr; ++i) {
              const double ei = eps.at(t, blk.first + i);
              const T hi = static_cast<T>(ei), ki = half_kick ? static_cast<T>(0.5 * ei) : hi;
              const int64_t o = i * d;
              kick_drift_block(xo + o, po + o, xi + o, pi + o, gi + o, 1, d, ki, hi, pm, false);
            }
          };
          // Momentum p ~ N(0, M): stream 0 at step t, divided by sqrt(m).
          blk.normal(p.data(), seed, t);
          if (pm) {
            for (int64_t i = 0; i < nr; ++i) {
              for (int64_t j = 0; j < d; ++j) p[i * d + j] = p[i * d + j] / m_sqrt[j];
            }
          }
          kinetic_block(kin.data(), p.data(), pm, nr, d, kin_scratch.data());
          for (int64_t i = 0; i < nr; ++i) log_r[i] = e[i] + kin[i];  // H0
          // Leapfrog: the half kicks between drifts merge into full kicks.
          kick_drift_rows(y, p.data(), x, p.data(), g, true);
          for (int64_t l = 1; l <= n_leap; ++l) {
            const bool last = l == n_leap;
            energy_grad_rows<T>(m, y, gy, last ? ey : nullptr, nr, d, scratch.data());
            if (!last) kick_drift_rows(y, p.data(), y, p.data(), gy, false);
          }
          if (!eps.per_chain) {
            kick_block(p.data(), p.data(), gy, blk.elems, half);
          } else {
            for (int64_t i = 0; i < nr; ++i) {
              const T hi = static_cast<T>(0.5 * eps.at(t, blk.first + i));
              kick_block(p.data() + i * d, p.data() + i * d, gy + i * d, d, hi);
            }
          }
          kinetic_block(kin.data(), p.data(), pm, nr, d, kin_scratch.data());
          for (int64_t i = 0; i < nr; ++i) log_r[i] = log_r[i] - (ey[i] + kin[i]);  // H0 - H1
          mh.accept(blk, seed, t);
          blk.record(t);
        }
      }
    });
  });
  return {out.x, out.trajectory, out.energy_mean, out.acceptance_rate};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) { m.impl("hmc_chain", &hmc_chain); }

}  // namespace torchebm::cpu
