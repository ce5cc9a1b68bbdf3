// CPU kernel of langevin_chain (schema in csrc/ops.cpp): n_steps of langevin_update with the
// closed-form gradient, each block of chains running every step with its state in cache. With
// beta (chain_common.h: Tempering), step t's gradient is that of its target E_t at the state
// x_t, evaluated with E(x_t) and E0(x_t), which give the log-weight increment.
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

std::tuple<at::Tensor, at::Tensor, at::Tensor> langevin_chain(
    const std::string& energy, const at::Tensor& x0, const at::Tensor& a, const at::Tensor& b,
    c10::ArrayRef<double> params, const std::optional<at::Tensor>& mean,
    const std::optional<at::Tensor>& precision, std::optional<double> clamp_min,
    std::optional<double> clamp_max, std::optional<double> grad_clip, int64_t seed, int64_t thin,
    bool record_trajectory, bool record_energy,
    int64_t first_step, const std::optional<at::Tensor>& beta,
    const std::optional<at::Tensor>& base_mean, const std::optional<at::Tensor>& base_precision,
    const std::optional<at::Tensor>& log_weight) {
  constexpr const char* op = "langevin_chain";
  const checks::Chain c = checks::langevin_chain(energy, x0, a, b, params, mean, precision,
                                                 clamp_min, clamp_max, grad_clip, thin,
                                                 checks::kCpu);
  checks::first_step(first_step, c.n_steps, op);
  checks::tempering(beta, base_mean, base_precision, log_weight, c.n_steps, x0, op);
  const std::optional<Tempering> temper = tempering(beta, base_mean, base_precision, log_weight);
  const int64_t n_steps = c.n_steps, d = x0.size(1);
  const Schedule av = schedule_values(a), bv = schedule_values(b);
  const bool per_chain = av.per_chain || bv.per_chain;

  ChainOutputs out =
      chain_outputs(x0, n_steps, thin, record_trajectory, record_energy, false, first_step);
  AT_DISPATCH_FLOATING_TYPES(x0.scalar_type(), op, [&] {
    using T = scalar_t;
    const T lo = clamp_min ? static_cast<T>(*clamp_min) : -INFINITY;
    const T hi = clamp_max ? static_cast<T>(*clamp_max) : INFINITY;
    const T clip = grad_clip ? static_cast<T>(*grad_clip) : T(0);
    run_chain<T>(out, c.energy, params, mean, precision, temper,
                 [&](const auto& m, const auto& blocks) {
      using M = std::decay_t<decltype(m)>;
      const int64_t cap = blocks.rows * d;
      std::vector<T> g(cap), xi(cap), e(blocks.rows), scratch(scratch_size<T>(m, blocks.rows, d));
      for (const ChainBlock<T>& blk : blocks) {
        double* esum = blk.energy_sum;
        for (int64_t t = 0; t < n_steps; ++t) {
          // The energy of the state after step t-1 comes with this step's gradient.
          const bool energy_now = esum != nullptr && t > 0;
          if constexpr (is_tempered<M>::value) {
            const TemperedBlock<T, typename M::Model> tb{m, *temper, blk};
            tb.retarget(t);
            energy_grad_rows<T>(m, blk.x, g.data(), nullptr, blk.rows, d, scratch.data());
            tb.add_log_weight(t);
            if (energy_now) esum[t - 1] = tb.energy_sum_at(t);  // step t-1's target
          } else {
            energy_grad_rows<T>(m, blk.x, g.data(), energy_now ? e.data() : nullptr, blk.rows,
                                d, scratch.data());
            if (energy_now) esum[t - 1] = block_sum(e.data(), blk.rows);
          }
          blk.normal(xi.data(), seed, t);
          const LangevinCoef<T> k{static_cast<T>(av.at(t, 0)), static_cast<T>(bv.at(t, 0)), lo,
                                  hi, clip, grad_clip.has_value()};
          if (!per_chain) {
            langevin_block(blk.x, blk.x, g.data(), xi.data(), blk.elems, k);
          } else {  // per-chain (a, b): row by row, the same element loop
            for (int64_t i = 0; i < blk.rows; ++i) {
              LangevinCoef<T> ki = k;
              ki.a = static_cast<T>(av.at(t, blk.first + i));
              ki.b = static_cast<T>(bv.at(t, blk.first + i));
              const int64_t o = i * d;
              langevin_block(blk.x + o, blk.x + o, g.data() + o, xi.data() + o, d, ki);
            }
          }
          blk.record(t);
        }
        if (esum != nullptr && n_steps > 0) {
          energy_grad_rows<T>(m, blk.x, g.data(), e.data(), blk.rows, d, scratch.data());
          esum[n_steps - 1] = block_sum(e.data(), blk.rows);  // tempered: beta[n_steps]'s
        }
      }
    });
  });
  return {out.x, out.trajectory, out.energy_mean};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) { m.impl("langevin_chain", &langevin_chain); }

}  // namespace torchebm::cpu
