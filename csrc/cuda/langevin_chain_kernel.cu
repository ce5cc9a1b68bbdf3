// CUDA whole-chain unadjusted Langevin for the built-in analytic models (docs/kernels.md):
// for t < n_steps, x <- clamp(x - a[t] clip(grad E(x)) + b[t] xi_t), xi_t = Philox stream 0
// at step t, exactly the per-step langevin_update loop, with the state kept on chip. Schedules
// [n_steps, B] give chain c the values a[t, c], b[t, c].
//
// Separable models (double well, harmonic, Rastrigin, Styblinski-Tang) run one thread per
// Philox group of elements: no chain ever needs another element's value. The others run one
// thread per chain (chain_common.cuh), as do tempered chains (TemperArgs): step t's gradient is
// that of its target at x_t, evaluated again when the chain's target moved (giving its
// log-weight increment), and the energy recorded after step t is step t's target's.
#include "chain_common.cuh"
#include "gaussian_chain.cuh"

namespace torchebm::cuda {
namespace {

using chain::ModelArgs;

// Per-element chain of a separable model. Thread = Philox group g of the flat state.
// kRecord: a trajectory or the per-step energy is written; without, the step loop has no
// branches besides the bounds test (those branches cost about 10% of the loop on an H100).
template <class C, class M, bool kRecord>
__global__ void __launch_bounds__(chain::kMaxThreads)
    langevin_chain_elem_kernel(const C* __restrict__ x0, C* __restrict__ x_out,
                               C* __restrict__ trajectory, double* __restrict__ partial,
                               Schedule a, Schedule b, LangevinCoef<C> coef, ModelArgs margs,
                               int64_t n, int64_t d, int64_t n_steps, int64_t thin, PhiloxKey key, uint32_t step0,
                               bool record_energy, bool aligned) {
  constexpr int G = kGroup<C>;
  const M m = chain::make_model<C, M>(margs);
  const int64_t groups = (n + G - 1) / G;
  const int64_t g = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const bool active = g < groups;
  C x[G];
  load_group(x0, active ? g : 0, active ? n : 0, aligned, x);
  // Trajectory offsets of the group's elements: [B, n_keep, d] layout.
  const int64_t n_keep = n_steps / thin;
  int64_t toff[G];
  if (kRecord && trajectory != nullptr) {
#pragma unroll
    for (int k = 0; k < G; ++k) {
      const int64_t i = g * G + k, c = i / d;
      toff[k] = c * n_keep * d + (i - c * d);
    }
  }
  // Per-chain schedules: the chain of each of the group's elements (0 past n).
  const bool per_chain = a.chain_stride != 0 || b.chain_stride != 0;
  int64_t chain_of[G];
#pragma unroll
  for (int k = 0; k < G; ++k) chain_of[k] = per_chain && g * G + k < n ? (g * G + k) / d : 0;
  for (int64_t t = 0; t < n_steps; ++t) {
    coef.a = C(chain::schedule_at(a, t, 0));
    coef.b = C(chain::schedule_at(b, t, 0));
    if (active) {
      C z[G];
      group_normals<C>(key, static_cast<uint64_t>(g), step0 + static_cast<uint32_t>(t), z);
      if (!per_chain) {
#pragma unroll
        for (int k = 0; k < G; ++k) x[k] = langevin_point(x[k], m.elem_grad(x[k]), z[k], coef);
      } else {
#pragma unroll
        for (int k = 0; k < G; ++k) {
          LangevinCoef<C> ck = coef;
          ck.a = C(chain::schedule_at(a, t, chain_of[k]));
          ck.b = C(chain::schedule_at(b, t, chain_of[k]));
          x[k] = langevin_point(x[k], m.elem_grad(x[k]), z[k], ck);
        }
      }
      if (kRecord && trajectory != nullptr) {
        const int64_t kept = chain::kept_index(t, thin);
        if (kept >= 0) {
#pragma unroll
          for (int k = 0; k < G; ++k)
            if (g * G + k < n) trajectory[toff[k] + kept * d] = x[k];
        }
      }
    }
    if (kRecord && record_energy) {
      double e = 0;
      if (active) {
#pragma unroll
        for (int k = 0; k < G; ++k)
          if (g * G + k < n) e += double(m.elem_energy(x[k]));
      }
      chain::block_partial(e, 0.0, partial, t);
    }
  }
  if (active) store_group(x_out, g, n, aligned, x);
}

// Per-chain Langevin. kD = 2: the row in registers; kD = 0: rows in `work` ([B, 3, d]; [B, 4, d]
// tempered).
template <class C, class M, int kD>
__global__ void __launch_bounds__(chain::kMaxThreads)
    langevin_chain_row_kernel(const C* __restrict__ x0, C* __restrict__ x_out,
                              C* __restrict__ trajectory, double* __restrict__ partial,
                              C* __restrict__ work, Schedule a, Schedule b, LangevinCoef<C> coef,
                              ModelArgs margs,
                              int64_t batch, int64_t d_arg, int64_t n_steps, int64_t thin,
                              PhiloxKey key, uint32_t step0, bool record_energy,
                              TemperArgs temper) {
  const M m = chain::make_model<C, M>(margs);
  const int64_t d = kD > 0 ? kD : d_arg;
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const bool active = c < batch;
  C xl[kD > 0 ? kD : 1], gl[kD > 0 ? kD : 1], sl[kD > 0 ? kD : 1], g0l[kD > 0 ? kD : 1];
  C *x = xl, *g = gl, *s = sl, *g0 = g0l;
  if constexpr (kD == 0) {
    const int64_t o = (active ? c : 0) * (temper.on ? 4 : 3) * d;
    x = work + o;
    g = x + d;
    s = g + d;
    g0 = s + d;
  }
  chain::Temper<C> tq{temper, active ? c : 0, g0};
  chain::Temper<C>* tp = temper.on && active ? &tq : nullptr;
  const int64_t n_keep = n_steps / thin;
  C e = C(0);
  if (active) {
    for (int64_t j = 0; j < d; ++j) x[j] = x0[c * d + j];
    if (tp == nullptr) e = chain::energy_grad<C>(m, x, g, s, d, record_energy);
  }
  const int64_t cs = active ? c : 0;  // the chain whose schedule column the thread reads
  for (int64_t t = 0; t < n_steps; ++t) {
    coef.a = C(chain::schedule_at(a, t, cs));
    coef.b = C(chain::schedule_at(b, t, cs));
    if (tp != nullptr && tp->retarget(t)) {
      chain::target_energy_grad<C>(m, tp, x, g, s, d, true);
      tp->add_log_weight(t);
    }
    if (active) {
      chain::NormalCursor<C> z(key, step0 + static_cast<uint32_t>(t));
      for (int64_t j = 0; j < d; ++j)
        x[j] = langevin_point(x[j], g[j], z.at(static_cast<uint64_t>(c * d + j)), coef);
      e = chain::target_energy_grad<C>(m, tp, x, g, s, d, record_energy);
      chain::record_row(trajectory, x, c, t, thin, n_keep, d);
    }
    if (record_energy) chain::block_partial(active ? double(e) : 0.0, 0.0, partial, t);
  }
  if (active) {
    for (int64_t j = 0; j < d; ++j) x_out[c * d + j] = x[j];
  }
}

// The dense Gaussian's Langevin chains, G lanes per chain (gaussian_chain.cuh): the row
// kernel's steps with the chain's coordinates spread over its lanes.
template <class C, int G>
__global__ void __launch_bounds__(chain::kMaxThreads)
    langevin_chain_gaussian_kernel(const C* __restrict__ x0, C* __restrict__ x_out,
                                   C* __restrict__ trajectory, double* __restrict__ partial,
                                   Schedule a, Schedule b, LangevinCoef<C> coef, ModelArgs margs,
                                   int64_t batch, int64_t d, int64_t n_steps, int64_t thin,
                                   PhiloxKey key, uint32_t step0, bool record_energy,
                                   TemperArgs temper) {
  gaussian_chain::Lanes<C, G> k(d, batch, margs, temper);
  constexpr int R = gaussian_chain::Lanes<C, G>::R;
  const int64_t n_keep = n_steps / thin;
  C x[R], g[R];
  k.L.load(x0 + k.cs * d, x);
  C e = C(0);
  if (!k.tempered) e = k.target(x, g, record_energy);
  for (int64_t t = 0; t < n_steps; ++t) {
    coef.a = C(chain::schedule_at(a, t, k.cs));
    coef.b = C(chain::schedule_at(b, t, k.cs));
    k.retarget(t, x, g, e);
    chain::NormalCursor<C> z(key, step0 + static_cast<uint32_t>(t));
#pragma unroll
    for (int r = 0; r < R; ++r)
      if (k.L.has(r)) x[r] = langevin_point(x[r], g[r], k.normal(z, r), coef);
    e = k.target(x, g, record_energy);
    k.keep(trajectory, x, t, thin, n_keep);
    if (record_energy) k.add_sums(partial, e, true, false, t);
  }
  if (k.active) k.L.store(x_out + k.c * d, x);
}

template <class C, class M>
cudaError_t run(const void* x0, const EnergyArgs& energy, const ChainArgs& args,
                const ChainOutputs& out, Launch launch) {
  const int64_t B = args.batch, d = args.dim, n = B * d;
  LangevinCoef<C> coef = langevin_coef<C>(args.clamp);
  const PhiloxKey key(args.seed);
  const ModelArgs margs = chain::model_args(energy);
  const C* xp = static_cast<const C*>(x0);
  C* xo = static_cast<C*>(out.x);
  C* traj = static_cast<C*>(out.trajectory);
  const ChainPlan plan = chain_plan(Sampler::kLangevin, energy.id, args, launch);
  bool elem_kernel = false;  // the separable models' element kernel (untempered only)
  if constexpr (M::kSeparable) {
    elem_kernel = !args.temper.on;
    if (elem_kernel) {
      const int64_t groups = (n + kGroup<C> - 1) / kGroup<C>;
      const int threads = chain::chain_threads(groups, launch);
      const bool aligned = pack_aligned<C>(x0) && pack_aligned<C>(out.x);
      if (traj != nullptr || args.record_energy) {
        langevin_chain_elem_kernel<C, M, true><<<plan.partial_blocks, threads, 0, launch.stream>>>(
            xp, xo, traj, out.partial, args.a, args.b, coef, margs, n, d, args.n_steps, args.thin,
            key, static_cast<uint32_t>(args.first_step), args.record_energy, aligned);
      } else {
        langevin_chain_elem_kernel<C, M, false><<<plan.partial_blocks, threads, 0, launch.stream>>>(
            xp, xo, nullptr, out.partial, args.a, args.b, coef, margs, n, d, args.n_steps,
            args.thin, key, static_cast<uint32_t>(args.first_step), false, aligned);
      }
    }
  }
  const int lanes = gaussian_chain::lanes_for(energy.id, d);
  if (!elem_kernel && lanes > 0) {
    const int threads = gaussian_chain::threads_for(B, lanes, launch);
    gaussian_chain::with_lanes(lanes, [&](auto lanes_tag) {
      constexpr int G = decltype(lanes_tag)::value;
      langevin_chain_gaussian_kernel<C, G><<<plan.partial_blocks, threads, 0, launch.stream>>>(
          xp, xo, traj, out.partial, args.a, args.b, coef, margs, B, d, args.n_steps, args.thin,
          key, static_cast<uint32_t>(args.first_step), args.record_energy, args.temper);
    });
  } else if (!elem_kernel) {
    const int threads = chain::chain_threads(B, launch);
    C* work = static_cast<C*>(out.workspace);
    const cudaError_t unsupported = chain::launch_rows<M>(d, [&](auto kd) {
      constexpr int kD = decltype(kd)::value;
      langevin_chain_row_kernel<C, M, kD><<<plan.partial_blocks, threads, 0, launch.stream>>>(
          xp, xo, traj, out.partial, work, args.a, args.b, coef, margs, B, d, args.n_steps,
          args.thin, key, static_cast<uint32_t>(args.first_step), args.record_energy,
          args.temper);
    });
    if (unsupported != cudaSuccess) return unsupported;
  }
  cudaError_t err = launch_status();
  if (err != cudaSuccess || !args.record_energy) return err;
  double offset = 0;
  if constexpr (M::kSeparable) {
    if (elem_kernel) offset = double(M(margs.params).constant(d));  // its sums omit the constant
  }
  return chain::finalize<C>(out.partial, plan.partial_blocks, args.n_steps, B, offset,
                            out.energy_mean, nullptr, launch);
}

}  // namespace

cudaError_t langevin_chain(const void* x0, EnergyArgs energy, ChainArgs args, ChainOutputs out,
                           Launch launch) {
  return chain::dispatch_chain(args, energy.id, [&](auto* type_tag, auto* model_tag) {
    using C = std::remove_pointer_t<decltype(type_tag)>;
    using M = std::remove_pointer_t<decltype(model_tag)>;
    return run<C, M>(x0, energy, args, out, launch);
  });
}

}  // namespace torchebm::cuda
