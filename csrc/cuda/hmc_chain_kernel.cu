// CUDA whole-chain HMC for the built-in analytic models (docs/kernels.md). Step t draws the
// momentum p = xi_t / sqrt(inv_mass) (stream 0), runs n_leapfrog leapfrog steps of size
// step_size[t] (half kick, then drift / full kick pairs, then a final half kick: the per-step
// leapfrog_kick_drift sequence), and accepts iff log u_t < H(x, p) - H(x', p') (u_t: stream 1
// at [B]), H = E + 1/2 sum inv_mass p^2. The gradient at the end of each trajectory, accepted or
// not, is reused: n_leapfrog gradient evaluations per step (leapfrog_steps[t] at step t when that
// per-step count is given). One thread per chain; a schedule
// [n_steps, B] gives chain c the step size step_size[t, c]. Tempered (TemperArgs), the energies
// are transition t's target's, (e, g) evaluated again when a chain's target moves (giving its
// log-weight increment).
#include "chain_common.cuh"
#include "gaussian_chain.cuh"

namespace torchebm::cuda {
namespace {

using chain::ModelArgs;

// kD = 2: the rows in registers; kD = 0: rows in `work` ([B, 6, d]; [B, 7, d] tempered).
template <class C, class M, int kD>
__global__ void __launch_bounds__(chain::kMaxThreads)
    hmc_chain_kernel(const C* __restrict__ x0, C* __restrict__ x_out, C* __restrict__ trajectory,
                     double* __restrict__ partial, C* __restrict__ work,
                     Schedule step_size, const C* __restrict__ inv_mass,
                     int n_leapfrog, const int64_t* __restrict__ leapfrog_steps, ModelArgs margs, int64_t batch, int64_t d_arg,
                     int64_t n_steps, int64_t thin, PhiloxKey key, uint32_t step0,
                     bool record_energy, TemperArgs temper) {
  const M m = chain::make_model<C, M>(margs);
  const int64_t d = kD > 0 ? kD : d_arg;
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const bool active = c < batch;
  constexpr int L = kD > 0 ? kD : 1;
  C xl[L], gl[L], xnl[L], gnl[L], pl[L], sl[L], g0l[L];
  C *x = xl, *g = gl, *xn = xnl, *gn = gnl, *p = pl, *s = sl, *g0 = g0l;
  if constexpr (kD == 0) {
    x = work + (active ? c : 0) * (temper.on ? 7 : 6) * d;
    g = x + d;
    xn = g + d;
    gn = xn + d;
    p = gn + d;
    s = p + d;
    g0 = s + d;
  }
  chain::Temper<C> tq{temper, active ? c : 0, g0};
  chain::Temper<C>* tp = temper.on && active ? &tq : nullptr;
  const int64_t n_keep = n_steps / thin;
  C e = C(0);
  if (active) {
    for (int64_t j = 0; j < d; ++j) x[j] = x0[c * d + j];
    if (tp == nullptr) e = chain::energy_grad<C>(m, x, g, s, d, true);
  }
  const int64_t cs = active ? c : 0;  // the chain whose schedule column the thread reads
  for (int64_t t = 0; t < n_steps; ++t) {
    const C eps = C(chain::schedule_at(step_size, t, cs)), half = C(0.5) * eps;
    const int n_leap = leapfrog_steps == nullptr ? n_leapfrog : static_cast<int>(leapfrog_steps[t]);
    bool accepted = false;
    if (tp != nullptr && tp->retarget(t)) {
      e = chain::target_energy_grad<C>(m, tp, x, g, s, d, true);
      tp->add_log_weight(t);
    }
    if (active) {
      chain::NormalCursor<C> z(key, step0 + static_cast<uint32_t>(t));
      for (int64_t j = 0; j < d; ++j) {
        const C xi = z.at(static_cast<uint64_t>(c * d + j));
        p[j] = inv_mass == nullptr ? xi : xi / sqrt_ieee(inv_mass[j]);
        xn[j] = x[j];
        gn[j] = g[j];
      }
      const C h0 = e + row_kinetic_energy(p, inv_mass, d);
      C en = e;
      for (int l = 0; l < n_leap; ++l) {
        const C k = l == 0 ? half : eps;
        for (int64_t j = 0; j < d; ++j) {
          p[j] = kick(p[j], gn[j], k);
          xn[j] = inv_mass == nullptr ? drift_unit_mass(xn[j], p[j], eps)
                                      : drift(xn[j], p[j], inv_mass[j], eps);
        }
        en = chain::target_energy_grad<C>(m, tp, xn, gn, s, d, true);
      }
      for (int64_t j = 0; j < d; ++j) p[j] = kick(p[j], gn[j], half);
      const C h1 = en + row_kinetic_energy(p, inv_mass, d);
      const C u = chain::chain_uniform<C>(key, step0 + static_cast<uint32_t>(t), c);
      accepted = metropolis_accept(u, h0 - h1);
      if (accepted) chain::take_proposal<kD>(x, g, e, xn, gn, en, d);
      chain::record_row(trajectory, x, c, t, thin, n_keep, d);
    }
    chain::block_partial(active && record_energy ? double(e) : 0.0, accepted ? 1.0 : 0.0, partial,
                         t);
  }
  if (active) {
    for (int64_t j = 0; j < d; ++j) x_out[c * d + j] = x[j];
  }
}

// The dense Gaussian's HMC chains, G lanes per chain (gaussian_chain.cuh): the row kernel's
// steps with the chain's coordinates spread over its lanes; every lane of a group forms the
// same Hamiltonians and so takes the same decision. The leapfrog count is the same for every
// chain, so the barriers stay uniform.
template <class C, int G>
__global__ void __launch_bounds__(chain::kMaxThreads)
    hmc_chain_gaussian_kernel(const C* __restrict__ x0, C* __restrict__ x_out,
                              C* __restrict__ trajectory, double* __restrict__ partial,
                              Schedule step_size, const C* __restrict__ inv_mass, int n_leapfrog,
                              const int64_t* __restrict__ leapfrog_steps, ModelArgs margs,
                              int64_t batch, int64_t d, int64_t n_steps, int64_t thin,
                              PhiloxKey key, uint32_t step0, bool record_energy,
                              TemperArgs temper) {
  gaussian_chain::Lanes<C, G> k(d, batch, margs, temper);
  constexpr int R = gaussian_chain::Lanes<C, G>::R;
  const int64_t n_keep = n_steps / thin;
  C m[R];  // inverse mass entries (1: unit mass)
#pragma unroll
  for (int r = 0; r < R; ++r)
    m[r] = inv_mass != nullptr && k.L.has(r) ? inv_mass[k.L.col(r)] : C(1);
  C x[R], g[R], xn[R], gn[R], p[R], kin[R];
  k.L.load(x0 + k.cs * d, x);
  C e = C(0);
  if (!k.tempered) e = k.target(x, g, true);
  for (int64_t t = 0; t < n_steps; ++t) {
    const C eps = C(chain::schedule_at(step_size, t, k.cs)), half = C(0.5) * eps;
    const int n_leap = leapfrog_steps == nullptr ? n_leapfrog : static_cast<int>(leapfrog_steps[t]);
    k.retarget(t, x, g, e);
    chain::NormalCursor<C> z(key, step0 + static_cast<uint32_t>(t));
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const C xi = k.normal(z, r);
      p[r] = inv_mass == nullptr ? xi : xi / sqrt_ieee(m[r]);
      xn[r] = x[r];
      gn[r] = g[r];
      kin[r] = kinetic_term(p[r], m[r]);
    }
    const C h0 = e + C(0.5) * k.L.sum(kin);
    C en = e;
    for (int l = 0; l < n_leap; ++l) {
      const C kick_size = l == 0 ? half : eps;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        p[r] = kick(p[r], gn[r], kick_size);
        xn[r] = inv_mass == nullptr ? drift_unit_mass(xn[r], p[r], eps)
                                    : drift(xn[r], p[r], m[r], eps);
      }
      en = k.target(xn, gn, true);
    }
#pragma unroll
    for (int r = 0; r < R; ++r) {
      p[r] = kick(p[r], gn[r], half);
      kin[r] = kinetic_term(p[r], m[r]);
    }
    const C h1 = en + C(0.5) * k.L.sum(kin);
    const C u = chain::chain_uniform<C>(key, step0 + static_cast<uint32_t>(t), k.cs);
    const bool accepted = metropolis_accept(u, h0 - h1);
    gaussian_chain::take_if(accepted, x, g, e, xn, gn, en);
    k.keep(trajectory, x, t, thin, n_keep);
    k.add_sums(partial, e, record_energy, accepted, t);
  }
  if (k.active) k.L.store(x_out + k.c * d, x);
}

template <class C, class M>
cudaError_t run(const void* x0, const EnergyArgs& energy, const ChainArgs& args,
                const ChainOutputs& out, Launch launch) {
  const int64_t B = args.batch, d = args.dim;
  const ChainPlan plan = chain_plan(Sampler::kHmc, energy.id, args, launch);
  const int threads = chain::chain_threads(B, launch);
  const ModelArgs margs = chain::model_args(energy);
  const PhiloxKey key(args.seed);
  const C* xp = static_cast<const C*>(x0);
  const C* mass = static_cast<const C*>(args.inv_mass);
  C *xo = static_cast<C*>(out.x), *traj = static_cast<C*>(out.trajectory),
    *work = static_cast<C*>(out.workspace);
  const int lanes = gaussian_chain::lanes_for(energy.id, d);
  if (lanes > 0) {
    const int group_threads = gaussian_chain::threads_for(B, lanes, launch);
    gaussian_chain::with_lanes(lanes, [&](auto lanes_tag) {
      constexpr int G = decltype(lanes_tag)::value;
      hmc_chain_gaussian_kernel<C, G><<<plan.partial_blocks, group_threads, 0, launch.stream>>>(
          xp, xo, traj, out.partial, args.a, mass, args.n_leapfrog, args.leapfrog_steps, margs, B,
          d, args.n_steps, args.thin, key, static_cast<uint32_t>(args.first_step),
          args.record_energy, args.temper);
    });
  }
  const cudaError_t unsupported = lanes > 0 ? cudaSuccess : chain::launch_rows<M>(d, [&](auto kd) {
    constexpr int kD = decltype(kd)::value;
    hmc_chain_kernel<C, M, kD><<<plan.partial_blocks, threads, 0, launch.stream>>>(
        xp, xo, traj, out.partial, work, args.a, mass, args.n_leapfrog, args.leapfrog_steps, margs, B, d, args.n_steps,
        args.thin, key, static_cast<uint32_t>(args.first_step), args.record_energy, args.temper);
  });
  if (unsupported != cudaSuccess) return unsupported;
  const cudaError_t err = launch_status();
  if (err != cudaSuccess) return err;
  return chain::finalize<C>(out.partial, plan.partial_blocks, args.n_steps, B, 0.0,
                            args.record_energy ? out.energy_mean : nullptr, out.acceptance_rate,
                            launch);
}

}  // namespace

cudaError_t hmc_chain(const void* x0, EnergyArgs energy, ChainArgs args, ChainOutputs out,
                      Launch launch) {
  return chain::dispatch_chain(args, energy.id, [&](auto* type_tag, auto* model_tag) {
    using C = std::remove_pointer_t<decltype(type_tag)>;
    using M = std::remove_pointer_t<decltype(model_tag)>;
    return run<C, M>(x0, energy, args, out, launch);
  });
}

}  // namespace torchebm::cuda
