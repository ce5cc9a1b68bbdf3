// CPU kernel of langevin_chain (schema in csrc/ops.cpp): n_steps of langevin_update with the
// closed-form gradient, each block of chains running every step with its state in cache.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
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
    bool record_trajectory, bool record_energy) {
  constexpr const char* op = "langevin_chain";
  check_chain_args(x0, thin, op);
  const Energy kind = checks::energy(energy, params, mean, precision, x0, op);
  const int64_t n_steps = a.dim() == 1 ? a.size(0) : -1;
  TORCH_CHECK(n_steps >= 0, op, ": a must be a 1-D per-step tensor [n_steps], got ", a.sizes());
  chain_step_limit(n_steps, op);
  const std::vector<double> av = schedule_values(a, n_steps, op, "a", false);
  const std::vector<double> bv = schedule_values(b, n_steps, op, "b", false);
  checks::clamp_bounds(clamp_min, clamp_max, op);
  checks::grad_clip(grad_clip, op);

  ChainOutputs out = chain_outputs(x0, n_steps, thin, record_trajectory, record_energy, false);
  const int64_t B = x0.size(0), d = x0.size(1), kept = n_steps / thin;
  AT_DISPATCH_FLOATING_TYPES(x0.scalar_type(), op, [&] {
    using T = scalar_t;
    const ChainBlocks blocks = chain_blocks<T>(B, d);
    StepSums sums(blocks.count, n_steps, record_energy, false);
    const T lo = clamp_min ? static_cast<T>(*clamp_min) : -INFINITY;
    const T hi = clamp_max ? static_cast<T>(*clamp_max) : INFINITY;
    const T clip = grad_clip ? static_cast<T>(*grad_clip) : T(0);
    T* px = out.x.mutable_data_ptr<T>();
    T* ptraj = record_trajectory ? out.trajectory.mutable_data_ptr<T>() : nullptr;
    with_model<T>(kind, params, mean, precision, d, [&](const auto& m) {
      at::parallel_for(0, blocks.count, 1, [&](int64_t k0, int64_t k1) {
        const int64_t cap = blocks.rows * d;
        std::vector<T> g(cap), xi(cap), e(blocks.rows), scratch(scratch_size<T>(m, blocks.rows, d));
        for (int64_t blk = k0; blk < k1; ++blk) {
          const int64_t r0 = blk * blocks.rows, nr = std::min(B, r0 + blocks.rows) - r0;
          const int64_t ne = nr * d;
          T* x = px + r0 * d;
          double* esum = sums.energy_row(blk);
          for (int64_t t = 0; t < n_steps; ++t) {
            // The energy of the state after step t-1 comes with this step's gradient.
            const bool energy_now = esum != nullptr && t > 0;
            energy_grad_rows<T>(m, x, g.data(), energy_now ? e.data() : nullptr, nr, d,
                                scratch.data());
            if (energy_now) esum[t - 1] = block_sum(e.data(), nr);
            fill_normal(xi.data(), r0 * d, r0 * d + ne, static_cast<uint64_t>(seed),
                        static_cast<uint32_t>(t), kNormalStream);
            const LangevinCoef<T> k{static_cast<T>(av[t]), static_cast<T>(bv[t]), lo, hi, clip,
                                    grad_clip.has_value()};
            langevin_block(x, x, g.data(), xi.data(), ne, k);
            if (ptraj && (t + 1) % thin == 0) record_rows(ptraj, x, r0, nr, d, kept, t / thin);
          }
          if (esum != nullptr && n_steps > 0) {
            energy_grad_rows<T>(m, x, g.data(), e.data(), nr, d, scratch.data());
            esum[n_steps - 1] = block_sum(e.data(), nr);
          }
        }
      });
    });
    sums.write<T>(out, blocks.count, B);
  });
  return {out.x, out.trajectory, out.energy_mean};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) { m.impl("langevin_chain", &langevin_chain); }

}  // namespace torchebm::cpu
