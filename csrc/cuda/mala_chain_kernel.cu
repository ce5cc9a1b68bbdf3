// CUDA whole-chain MALA for the built-in analytic models (docs/kernels.md): at step t, the
// proposal y = x - a[t] grad E(x) + b[t] xi_t (stream 0), accepted iff
// log u_t < E(x) - E(y) + (|y - x + a gx|^2 - |x - y + a gy|^2) / (2 b^2) (u_t: stream 1 at [B]),
// the per-step loop of langevin_update + mala_select with the state, its energy and its
// gradient kept on chip. One thread per chain (chain_common.cuh); schedules [n_steps, B] give
// chain c the values a[t, c], b[t, c]. Tempered (TemperArgs), the energies are transition t's
// target's, (e, g) evaluated again when a chain's target moves (giving its log-weight increment).
#include "chain_common.cuh"
#include "gaussian_chain.cuh"

namespace torchebm::cuda {
namespace {

using chain::ModelArgs;

// kD = 2: the rows in registers; kD = 0: rows in `work` ([B, 5, d]; [B, 6, d] tempered).
template <class C, class M, int kD>
__global__ void __launch_bounds__(chain::kMaxThreads)
    mala_chain_kernel(const C* __restrict__ x0, C* __restrict__ x_out, C* __restrict__ trajectory,
                      double* __restrict__ partial, C* __restrict__ work,
                      Schedule a, Schedule b, ModelArgs margs,
                      int64_t batch, int64_t d_arg, int64_t n_steps, int64_t thin, PhiloxKey key,
                      uint32_t step0, bool record_energy, TemperArgs temper) {
  const M m = chain::make_model<C, M>(margs);
  const int64_t d = kD > 0 ? kD : d_arg;
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const bool active = c < batch;
  constexpr int L = kD > 0 ? kD : 1;
  C xl[L], gl[L], yl[L], gyl[L], sl[L], g0l[L];
  C *x = xl, *g = gl, *y = yl, *gy = gyl, *s = sl, *g0 = g0l;
  if constexpr (kD == 0) {
    x = work + (active ? c : 0) * (temper.on ? 6 : 5) * d;
    g = x + d;
    y = g + d;
    gy = y + d;
    s = gy + d;
    g0 = s + d;
  }
  chain::Temper<C> tq{temper, active ? c : 0, g0};
  chain::Temper<C>* tp = temper.on && active ? &tq : nullptr;
  const C inf = C(INFINITY);
  const int64_t n_keep = n_steps / thin;
  C e = C(0);
  if (active) {
    for (int64_t j = 0; j < d; ++j) x[j] = x0[c * d + j];
    if (tp == nullptr) e = chain::energy_grad<C>(m, x, g, s, d, true);
  }
  const int64_t cs = active ? c : 0;  // the chain whose schedule column the thread reads
  for (int64_t t = 0; t < n_steps; ++t) {
    const C at = C(chain::schedule_at(a, t, cs)), bt = C(chain::schedule_at(b, t, cs));
    bool accepted = false;
    if (tp != nullptr && tp->retarget(t)) {
      e = chain::target_energy_grad<C>(m, tp, x, g, s, d, true);
      tp->add_log_weight(t);
    }
    if (active) {
      // The proposal is langevin_update without clamp or clip.
      const LangevinCoef<C> prop{at, bt, -inf, inf, C(0), false};
      chain::NormalCursor<C> z(key, step0 + static_cast<uint32_t>(t));
      for (int64_t j = 0; j < d; ++j)
        y[j] = langevin_point(x[j], g[j], z.at(static_cast<uint64_t>(c * d + j)), prop);
      const C ey = chain::target_energy_grad<C>(m, tp, y, gy, s, d, true);
      const C log_r = row_mala_log_ratio<C>(x, y, g, gy, e, ey, at, bt, d);
      const C u = chain::chain_uniform<C>(key, step0 + static_cast<uint32_t>(t), c);
      accepted = metropolis_accept(u, log_r);
      if (accepted) chain::take_proposal<kD>(x, g, e, y, gy, ey, d);
      chain::record_row(trajectory, x, c, t, thin, n_keep, d);
    }
    chain::block_partial(active && record_energy ? double(e) : 0.0, accepted ? 1.0 : 0.0, partial,
                         t);
  }
  if (active) {
    for (int64_t j = 0; j < d; ++j) x_out[c * d + j] = x[j];
  }
}

// The dense Gaussian's MALA chains, G lanes per chain (gaussian_chain.cuh): the row kernel's
// steps with the chain's coordinates spread over its lanes; every lane of a group forms the
// same log ratio and so takes the same decision.
template <class C, int G>
__global__ void __launch_bounds__(chain::kMaxThreads)
    mala_chain_gaussian_kernel(const C* __restrict__ x0, C* __restrict__ x_out,
                               C* __restrict__ trajectory, double* __restrict__ partial,
                               Schedule a, Schedule b, ModelArgs margs, int64_t batch, int64_t d,
                               int64_t n_steps, int64_t thin, PhiloxKey key, uint32_t step0,
                               bool record_energy, TemperArgs temper) {
  gaussian_chain::Lanes<C, G> k(d, batch, margs, temper);
  constexpr int R = gaussian_chain::Lanes<C, G>::R;
  const C inf = C(INFINITY);
  const int64_t n_keep = n_steps / thin;
  C x[R], g[R], y[R], gy[R];
  k.L.load(x0 + k.cs * d, x);
  C e = C(0);
  if (!k.tempered) e = k.target(x, g, true);
  for (int64_t t = 0; t < n_steps; ++t) {
    const C at = C(chain::schedule_at(a, t, k.cs)), bt = C(chain::schedule_at(b, t, k.cs));
    k.retarget(t, x, g, e);
    // The proposal is langevin_update without clamp or clip.
    const LangevinCoef<C> prop{at, bt, -inf, inf, C(0), false};
    chain::NormalCursor<C> z(key, step0 + static_cast<uint32_t>(t));
    C fwd[R], bwd[R];
#pragma unroll
    for (int r = 0; r < R; ++r)
      y[r] = k.L.has(r) ? langevin_point(x[r], g[r], k.normal(z, r), prop) : C(0);
    const C ey = k.target(y, gy, true);
#pragma unroll
    for (int r = 0; r < R; ++r) {
      fwd[r] = mala_forward_term(x[r], y[r], g[r], at);
      bwd[r] = mala_backward_term(x[r], y[r], gy[r], at);
    }
    const C log_r = mala_log_ratio_from_sums(k.L.sum(fwd), k.L.sum(bwd), e, ey, bt);
    const C u = chain::chain_uniform<C>(key, step0 + static_cast<uint32_t>(t), k.cs);
    const bool accepted = metropolis_accept(u, log_r);
    gaussian_chain::take_if(accepted, x, g, e, y, gy, ey);
    k.keep(trajectory, x, t, thin, n_keep);
    k.add_sums(partial, e, record_energy, accepted, t);
  }
  if (k.active) k.L.store(x_out + k.c * d, x);
}

template <class C, class M>
cudaError_t run(const void* x0, const EnergyArgs& energy, const ChainArgs& args,
                const ChainOutputs& out, Launch launch) {
  const int64_t B = args.batch, d = args.dim;
  const ChainPlan plan = chain_plan(Sampler::kMala, energy.id, args, launch);
  const int threads = chain::chain_threads(B, launch);
  const ModelArgs margs = chain::model_args(energy);
  const PhiloxKey key(args.seed);
  const C* xp = static_cast<const C*>(x0);
  C *xo = static_cast<C*>(out.x), *traj = static_cast<C*>(out.trajectory),
    *work = static_cast<C*>(out.workspace);
  const int lanes = gaussian_chain::lanes_for(energy.id, d);
  if (lanes > 0) {
    const int group_threads = gaussian_chain::threads_for(B, lanes, launch);
    gaussian_chain::with_lanes(lanes, [&](auto lanes_tag) {
      constexpr int G = decltype(lanes_tag)::value;
      mala_chain_gaussian_kernel<C, G><<<plan.partial_blocks, group_threads, 0, launch.stream>>>(
          xp, xo, traj, out.partial, args.a, args.b, margs, B, d, args.n_steps, args.thin, key,
          static_cast<uint32_t>(args.first_step), args.record_energy, args.temper);
    });
  }
  const cudaError_t unsupported = lanes > 0 ? cudaSuccess : chain::launch_rows<M>(d, [&](auto kd) {
    constexpr int kD = decltype(kd)::value;
    mala_chain_kernel<C, M, kD><<<plan.partial_blocks, threads, 0, launch.stream>>>(
        xp, xo, traj, out.partial, work, args.a, args.b, margs, B, d, args.n_steps, args.thin, key,
        static_cast<uint32_t>(args.first_step), args.record_energy, args.temper);
  });
  if (unsupported != cudaSuccess) return unsupported;
  const cudaError_t err = launch_status();
  if (err != cudaSuccess) return err;
  return chain::finalize<C>(out.partial, plan.partial_blocks, args.n_steps, B, 0.0,
                            args.record_energy ? out.energy_mean : nullptr, out.acceptance_rate,
                            launch);
}

}  // namespace

cudaError_t mala_chain(const void* x0, EnergyArgs energy, ChainArgs args, ChainOutputs out,
                       Launch launch) {
  return chain::dispatch_chain(args, energy.id, [&](auto* type_tag, auto* model_tag) {
    using C = std::remove_pointer_t<decltype(type_tag)>;
    using M = std::remove_pointer_t<decltype(model_tag)>;
    return run<C, M>(x0, energy, args, out, launch);
  });
}

}  // namespace torchebm::cuda
