// CPU kernel of mala_chain (schema in csrc/ops.cpp). Step t equals the per-step loop
//   y = langevin_update(x, gx, None, a[t], b[t], seed=seed, step=t)
//   (ey, gy) = analytic_energy_grad(y)
//   x, gx, ex, accepted = mala_select(x, y, gx, gy, ex, ey, a[t], b[t], None, seed, t)
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

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mala_chain(
    const std::string& energy, const at::Tensor& x0, const at::Tensor& a, const at::Tensor& b,
    c10::ArrayRef<double> params, const std::optional<at::Tensor>& mean,
    const std::optional<at::Tensor>& precision, int64_t seed, int64_t thin,
    bool record_trajectory, bool record_energy) {
  constexpr const char* op = "mala_chain";
  check_chain_args(x0, thin, op);
  const Energy kind = checks::energy(energy, params, mean, precision, x0, op);
  const int64_t n_steps = a.dim() == 1 ? a.size(0) : -1;
  TORCH_CHECK(n_steps >= 0, op, ": a must be a 1-D per-step tensor [n_steps], got ", a.sizes());
  chain_step_limit(n_steps, op);
  const std::vector<double> av = schedule_values(a, n_steps, op, "a", false);
  const std::vector<double> bv = schedule_values(b, n_steps, op, "b", true);

  ChainOutputs out = chain_outputs(x0, n_steps, thin, record_trajectory, record_energy, true);
  const int64_t B = x0.size(0), d = x0.size(1), kept = n_steps / thin;
  AT_DISPATCH_FLOATING_TYPES(x0.scalar_type(), op, [&] {
    using T = scalar_t;
    const ChainBlocks blocks = chain_blocks<T>(B, d);
    StepSums sums(blocks.count, n_steps, record_energy, true);
    T* px = out.x.mutable_data_ptr<T>();
    T* ptraj = record_trajectory ? out.trajectory.mutable_data_ptr<T>() : nullptr;
    with_model<T>(kind, params, mean, precision, d, [&](const auto& m) {
      at::parallel_for(0, blocks.count, 1, [&](int64_t k0, int64_t k1) {
        const int64_t cap = blocks.rows * d;
        std::vector<T> gx(cap), y(cap), gy(cap), xi(cap), ex(blocks.rows), ey(blocks.rows),
            log_r(blocks.rows), u(blocks.rows), ratio_scratch(2 * cap),
            scratch(scratch_size<T>(m, blocks.rows, d));
        std::vector<char> accepted(blocks.rows);
        for (int64_t blk = k0; blk < k1; ++blk) {
          const int64_t r0 = blk * blocks.rows, nr = std::min(B, r0 + blocks.rows) - r0;
          const int64_t ne = nr * d;
          T* x = px + r0 * d;
          double* esum = sums.energy_row(blk);
          int64_t* asum = sums.accept_row(blk);
          energy_grad_rows<T>(m, x, gx.data(), ex.data(), nr, d, scratch.data());
          for (int64_t t = 0; t < n_steps; ++t) {
            const uint32_t st = static_cast<uint32_t>(t);
            const T ta = static_cast<T>(av[t]), tb = static_cast<T>(bv[t]);
            fill_normal(xi.data(), r0 * d, r0 * d + ne, static_cast<uint64_t>(seed), st,
                        kNormalStream);
            const LangevinCoef<T> k{ta, tb, -INFINITY, INFINITY, T(0), false};
            langevin_block(y.data(), x, gx.data(), xi.data(), ne, k);
            energy_grad_rows<T>(m, y.data(), gy.data(), ey.data(), nr, d, scratch.data());
            mala_log_ratio_block(log_r.data(), x, y.data(), gx.data(), gy.data(), ex.data(),
                                 ey.data(), ta, tb, nr, d, ratio_scratch.data());
            fill_uniform(u.data(), r0, r0 + nr, static_cast<uint64_t>(seed), st, kUniformStream);
            bool* acc = reinterpret_cast<bool*>(accepted.data());
            asum[t] = accept_block(acc, u.data(), log_r.data(), nr);
            for (int64_t i = 0; i < nr; ++i) {
              if (acc[i]) {
                std::memcpy(x + i * d, y.data() + i * d, sizeof(T) * d);
                std::memcpy(gx.data() + i * d, gy.data() + i * d, sizeof(T) * d);
                ex[i] = ey[i];
              }
            }
            if (esum) esum[t] = block_sum(ex.data(), nr);
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

TORCH_LIBRARY_IMPL(torchebm, CPU, m) { m.impl("mala_chain", &mala_chain); }

}  // namespace torchebm::cpu
