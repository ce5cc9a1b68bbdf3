// CPU kernel of hmc_chain (schema in csrc/ops.cpp). Transition t (eps = step_size[t], m the
// inverse mass) equals the per-step loop
//   p = philox_normal(x.shape, seed, t) / sqrt(m);  H0 = E(x) + 1/2 sum m p^2
//   x', p = leapfrog_kick_drift(x, p, g, eps/2, eps, m); g' = grad E(x')
//   L-1 times: x', p = leapfrog_kick_drift(x', p, g', eps, eps, m); g' = grad E(x')
//   p = p - eps/2 g' (the p of leapfrog_kick_drift(x', p, g', eps/2, 0, m));  H1 = E(x') + K(p)
//   x, accepted = metropolis_select(H0 - H1, x, x', None, seed, t)
// with the gradient (and energy) of the accepted state carried over: L + 1 gradient
// evaluations per transition.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <cstring>
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
    int64_t seed, int64_t thin, bool record_trajectory, bool record_energy) {
  constexpr const char* op = "hmc_chain";
  check_chain_args(x0, thin, op);
  const Energy kind = checks::energy(energy, params, mean, precision, x0, op);
  const int64_t n_steps = step_size.dim() == 1 ? step_size.size(0) : -1;
  TORCH_CHECK(n_steps >= 0, op, ": step_size must be a 1-D per-step tensor [n_steps], got ",
              step_size.sizes());
  chain_step_limit(n_steps, op);
  const std::vector<double> eps = schedule_values(step_size, n_steps, op, "step_size", true);
  TORCH_CHECK(n_leapfrog >= 1, op, ": n_leapfrog must be >= 1, got ", n_leapfrog);
  const int64_t B = x0.size(0), d = x0.size(1), kept = n_steps / thin;
  if (inv_mass) {
    TORCH_CHECK(inv_mass->dim() == 0 || (inv_mass->dim() == 1 && inv_mass->size(0) == d), op,
                ": inv_mass must be None, a 0-d tensor or [", d, "], got shape ",
                inv_mass->sizes());
    checks::floating(*inv_mass, op, "inv_mass");
    checks::same_device(*inv_mass, x0, op, "inv_mass", "x0");
    const at::Tensor im = inv_mass->to(at::kDouble);
    TORCH_CHECK(at::isfinite(im).all().item<bool>() && (im > 0).all().item<bool>(), op,
                ": inv_mass must be finite and > 0, got ", *inv_mass);
  }

  ChainOutputs out = chain_outputs(x0, n_steps, thin, record_trajectory, record_energy, true);
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
    const ChainBlocks blocks = chain_blocks<T>(B, d);
    StepSums sums(blocks.count, n_steps, record_energy, true);
    T* px = out.x.mutable_data_ptr<T>();
    T* ptraj = record_trajectory ? out.trajectory.mutable_data_ptr<T>() : nullptr;
    with_model<T>(kind, params, mean, precision, d, [&](const auto& m) {
      at::parallel_for(0, blocks.count, 1, [&](int64_t k0, int64_t k1) {
        const int64_t cap = blocks.rows * d;
        std::vector<T> g(cap), xn(cap), gn(cap), p(cap), e(blocks.rows), en(blocks.rows),
            kin(blocks.rows), log_r(blocks.rows), u(blocks.rows), kin_scratch(cap),
            scratch(scratch_size<T>(m, blocks.rows, d));
        std::vector<char> accepted(blocks.rows);
        for (int64_t blk = k0; blk < k1; ++blk) {
          const int64_t r0 = blk * blocks.rows, nr = std::min(B, r0 + blocks.rows) - r0;
          const int64_t ne = nr * d;
          T* x = px + r0 * d;
          double* esum = sums.energy_row(blk);
          int64_t* asum = sums.accept_row(blk);
          energy_grad_rows<T>(m, x, g.data(), e.data(), nr, d, scratch.data());
          for (int64_t t = 0; t < n_steps; ++t) {
            const uint32_t st = static_cast<uint32_t>(t);
            const T h = static_cast<T>(eps[t]), half = static_cast<T>(0.5 * eps[t]);
            // Momentum p ~ N(0, M): stream 0 at step t, divided by sqrt(m).
            fill_normal(p.data(), r0 * d, r0 * d + ne, static_cast<uint64_t>(seed), st,
                        kNormalStream);
            if (pm) {
              for (int64_t i = 0; i < nr; ++i) {
                for (int64_t j = 0; j < d; ++j) p[i * d + j] = p[i * d + j] / m_sqrt[j];
              }
            }
            kinetic_block(kin.data(), p.data(), pm, nr, d, kin_scratch.data());
            for (int64_t i = 0; i < nr; ++i) log_r[i] = e[i] + kin[i];  // H0
            // Leapfrog: the half kicks between drifts merge into full kicks.
            kick_drift_block(xn.data(), p.data(), x, p.data(), g.data(), nr, d, half, h, pm, false);
            for (int64_t l = 1; l <= n_leapfrog; ++l) {
              const bool last = l == n_leapfrog;
              energy_grad_rows<T>(m, xn.data(), gn.data(), last ? en.data() : nullptr, nr, d,
                                  scratch.data());
              if (!last) {
                kick_drift_block(xn.data(), p.data(), xn.data(), p.data(), gn.data(), nr, d, h, h,
                                 pm, false);
              }
            }
            kick_block(p.data(), p.data(), gn.data(), ne, half);
            kinetic_block(kin.data(), p.data(), pm, nr, d, kin_scratch.data());
            for (int64_t i = 0; i < nr; ++i) log_r[i] = log_r[i] - (en[i] + kin[i]);  // H0 - H1
            fill_uniform(u.data(), r0, r0 + nr, static_cast<uint64_t>(seed), st, kUniformStream);
            bool* acc = reinterpret_cast<bool*>(accepted.data());
            asum[t] = accept_block(acc, u.data(), log_r.data(), nr);
            for (int64_t i = 0; i < nr; ++i) {
              if (acc[i]) {
                std::memcpy(x + i * d, xn.data() + i * d, sizeof(T) * d);
                std::memcpy(g.data() + i * d, gn.data() + i * d, sizeof(T) * d);
                e[i] = en[i];
              }
            }
            if (esum) esum[t] = block_sum(e.data(), nr);
            if (ptraj && (t + 1) % thin == 0) record_rows(ptraj, x, r0, nr, d, kept, t / thin);
          }
        }
      });
    });
    sums.write<T>(out, blocks.count, B);
  });
  return {out.x, out.trajectory, out.energy_mean, out.acceptance_rate};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) { m.impl("hmc_chain", &hmc_chain); }

}  // namespace torchebm::cpu
