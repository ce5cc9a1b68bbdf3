// Launch geometry of the whole-chain kernels, which the caller needs before the call to size
// the per-step partial sums and the per-chain workspace (launchers.h: ChainPlan).
#include "chain_common.cuh"
#include "gaussian_chain.cuh"

namespace torchebm::cuda {

ChainPlan chain_plan(Sampler sampler, int energy_id, const ChainArgs& args, Launch launch) {
  const int64_t B = args.batch, d = args.dim;
  bool separable = false;
  chain::with_model<float>(energy_id, [&](auto* tag) {
    using M = std::remove_pointer_t<decltype(tag)>;
    separable = M::kSeparable;
  });
  int64_t work = B;  // threads: one per chain ...
  const bool elem_kernel = sampler == Sampler::kLangevin && separable && !args.temper.on;
  if (elem_kernel) {
    work = (B * d + kGroup<float> - 1) / kGroup<float>;  // ... or one per Philox group
    if (args.dtype == Dtype::kFloat64) work = (B * d + kGroup<double> - 1) / kGroup<double>;
  }
  // The dense Gaussian's group kernels (gaussian_chain.cuh): G lanes per chain, rows in
  // registers (no workspace).
  const int lanes = elem_kernel ? 0 : gaussian_chain::lanes_for(energy_id, d);
  if (lanes > 0) return ChainPlan{gaussian_chain::blocks_for(B, lanes, launch), 0};
  const int threads = chain::chain_threads(work, launch);
  ChainPlan plan{static_cast<int>((work + threads - 1) / threads), 0};
  if (plan.partial_blocks < 1) plan.partial_blocks = 1;
  // Rows per chain in the workspace: x, grad, gaussian scratch (+ proposal and its gradient for
  // MALA; + proposal, its gradient and the momentum for HMC; + the base's gradient when
  // tempered).
  if (!elem_kernel && d != 2) {
    const int rows = (sampler == Sampler::kLangevin ? 3 : sampler == Sampler::kMala ? 5 : 6) +
                     (args.temper.on ? 1 : 0);
    plan.workspace_elems = B * rows * d;
  }
  return plan;
}

}  // namespace torchebm::cuda
