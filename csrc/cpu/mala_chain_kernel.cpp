// CPU kernel of mala_chain (schema in csrc/ops.cpp). Step t equals the per-step loop
//   y = langevin_update(x, gx, None, a[t], b[t], seed=seed, step=t)
//   (ey, gy) = analytic_energy_grad(y)
//   x, gx, ex, accepted = mala_select(x, y, gx, gy, ex, ey, a[t], b[t], None, seed, t)
// With beta (chain_common.h: Tempering) the energies are transition t's target's, (ex, gx)
// evaluated again at the start of a transition whose target moved (which gives E(x_t) and
// E0(x_t) for the log weight).
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

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mala_chain(
    const std::string& energy, const at::Tensor& x0, const at::Tensor& a, const at::Tensor& b,
    c10::ArrayRef<double> params, const std::optional<at::Tensor>& mean,
    const std::optional<at::Tensor>& precision, int64_t seed, int64_t thin,
    bool record_trajectory, bool record_energy,
    int64_t first_step, const std::optional<at::Tensor>& beta,
    const std::optional<at::Tensor>& base_mean, const std::optional<at::Tensor>& base_precision,
    const std::optional<at::Tensor>& log_weight) {
  constexpr const char* op = "mala_chain";
  const checks::Chain c =
      checks::mala_chain(energy, x0, a, b, params, mean, precision, thin, checks::kCpu);
  checks::first_step(first_step, c.n_steps, op);
  checks::tempering(beta, base_mean, base_precision, log_weight, c.n_steps, x0, op);
  const std::optional<Tempering> temper = tempering(beta, base_mean, base_precision, log_weight);
  const int64_t n_steps = c.n_steps, d = x0.size(1);
  const Schedule av = schedule_values(a), bv = schedule_values(b);
  const bool per_chain = av.per_chain || bv.per_chain;

  ChainOutputs out =
      chain_outputs(x0, n_steps, thin, record_trajectory, record_energy, true, first_step);
  AT_DISPATCH_FLOATING_TYPES(x0.scalar_type(), op, [&] {
    using T = scalar_t;
    run_chain<T>(out, c.energy, params, mean, precision, temper,
                 [&](const auto& m, const auto& blocks) {
      using M = std::decay_t<decltype(m)>;
      const int64_t cap = blocks.rows * d;
      MetropolisBuffers<T> mh(blocks.rows, d);
      T *gx = mh.g.data(), *ex = mh.e.data(), *y = mh.y.data(), *gy = mh.gy.data(),
        *ey = mh.ey.data();
      std::vector<T> xi(cap), ratio_scratch(2 * cap), scratch(scratch_size<T>(m, blocks.rows, d));
      for (const ChainBlock<T>& blk : blocks) {
        if constexpr (!is_tempered<M>::value) {
          energy_grad_rows<T>(m, blk.x, gx, ex, blk.rows, d, scratch.data());
        }
        for (int64_t t = 0; t < n_steps; ++t) {
          if constexpr (is_tempered<M>::value) {
            const TemperedBlock<T, typename M::Model> tb{m, *temper, blk};
            if (tb.retarget(t)) {
              energy_grad_rows<T>(m, blk.x, gx, ex, blk.rows, d, scratch.data());
              tb.add_log_weight(t);
            }
          }
          blk.normal(xi.data(), seed, t);
          if (!per_chain) {
            const T ta = static_cast<T>(av.at(t, 0)), tb = static_cast<T>(bv.at(t, 0));
            const LangevinCoef<T> k{ta, tb, -INFINITY, INFINITY, T(0), false};
            langevin_block(y, blk.x, gx, xi.data(), blk.elems, k);
            energy_grad_rows<T>(m, y, gy, ey, blk.rows, d, scratch.data());
            mala_log_ratio_block(mh.log_r.data(), blk.x, y, gx, gy, ex, ey, ta, tb, blk.rows, d,
                                 ratio_scratch.data());
          } else {  // per-chain (a, b): row by row, the same loops
            for (int64_t i = 0; i < blk.rows; ++i) {
              const T ta = static_cast<T>(av.at(t, blk.first + i));
              const T tb = static_cast<T>(bv.at(t, blk.first + i));
              const LangevinCoef<T> k{ta, tb, -INFINITY, INFINITY, T(0), false};
              const int64_t o = i * d;
              langevin_block(y + o, blk.x + o, gx + o, xi.data() + o, d, k);
            }
            energy_grad_rows<T>(m, y, gy, ey, blk.rows, d, scratch.data());
            for (int64_t i = 0; i < blk.rows; ++i) {
              const T ta = static_cast<T>(av.at(t, blk.first + i));
              const T tb = static_cast<T>(bv.at(t, blk.first + i));
              const int64_t o = i * d;
              mala_log_ratio_block(mh.log_r.data() + i, blk.x + o, y + o, gx + o, gy + o, ex + i,
                                   ey + i, ta, tb, 1, d, ratio_scratch.data());
            }
          }
          mh.accept(blk, seed, t);
          blk.record(t);
        }
      }
    });
  });
  return {out.x, out.trajectory, out.energy_mean, out.acceptance_rate};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) { m.impl("mala_chain", &mala_chain); }

}  // namespace torchebm::cpu
