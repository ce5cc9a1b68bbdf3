// CUDA kernels of the MLP ops (mlp_energy_grad, mlp_langevin_chain, mlp_mala_chain,
// mlp_hmc_chain): the CPU kernels' contracts (csrc/cpu/mlp_chain_kernel.cpp), torchebm/mlp.h's
// maths. C++17 for nvcc, no torch headers; the host side is mlp_chain_host.cpp.
//
// Fully fused per block: a block owns a tile of kChains = 32 chains (one per lane) and runs
// every step of them: each layer is a GEMM whose outputs [width][32] stay in shared memory
// (warp w computes rows w*kRows.. of all 32 chains, kRows accumulators per thread, the weights
// read as aligned vectors through the read-only cache, the same address across the warp), the
// activation and its derivative fused into the GEMM's epilogue; the chains' states, gradients
// and noise live in a per-block workspace in global memory, [d][32] so that lanes access
// consecutive addresses. Blocks loop over tiles (blockIdx.x, + gridDim.x, ...), the grid sized
// to the GPU, and sum their tiles' per-step energies and acceptances in order (then over
// blocks in order: deterministic outputs).
//
// Schedules are [n_steps] or per chain (launchers.h's Schedule). The chain kernels are compiled
// twice: with one value per step read once per step (as before per-chain schedules existed),
// and with per-chain values, which the elementwise passes read for their lane's chain; the
// GEMMs are the same in both.
#include <cstring>
#include <vector>

#include "chain_common.cuh"
#include "mlp_launchers.h"
#include "torchebm/mlp.h"

namespace torchebm::cuda::mlp_chain {
namespace {

constexpr int kWarps = kThreads / 32;
constexpr int kStateRows = 6;  // workspace rows per tile: x, g, y, gy, p, xi

#if defined(__CUDACC__)
extern __shared__ __align__(16) unsigned char mlp_smem[];
__device__ __forceinline__ unsigned char* smem_base() { return mlp_smem; }
#else
// Host emulation (scripts/cuda_emulation): blocks run one after another, so one buffer serves.
inline std::vector<double> emu_smem;
inline unsigned char* smem_base() { return reinterpret_cast<unsigned char*>(emu_smem.data()); }
#endif

// w[0..kRows) = p[0..kRows), p aligned to kRows elements: vector loads through the read-only
// cache (every lane of the warp reads the same address).
__device__ __forceinline__ void load_rows(const float* __restrict__ p, float w[kRows]) {
#if defined(__CUDA_ARCH__)
  const float4 a = __ldg(reinterpret_cast<const float4*>(p));
  const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  w[0] = a.x; w[1] = a.y; w[2] = a.z; w[3] = a.w;
  w[4] = b.x; w[5] = b.y; w[6] = b.z; w[7] = b.w;
#else
  for (int r = 0; r < kRows; ++r) w[r] = p[r];
#endif
}
__device__ __forceinline__ void load_rows(const double* __restrict__ p, double w[kRows]) {
#if defined(__CUDA_ARCH__)
#pragma unroll
  for (int i = 0; i < kRows / 2; ++i) {
    const double2 v = __ldg(reinterpret_cast<const double2*>(p) + i);
    w[2 * i] = v.x;
    w[2 * i + 1] = v.y;
  }
#else
  for (int r = 0; r < kRows; ++r) w[r] = p[r];
#endif
}

// out rows j < M (a multiple of kRows) of one layer for the tile's 32 chains:
// epi(j, lane, sum_{k < K} A[k M + j] in[k 32 + lane]), summed over k in order.
template <class C, class Epi>
__device__ __forceinline__ void tile_gemm(const C* __restrict__ A, int K, int M, const C* in,
                                          const Epi& epi) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int j0 = warp * kRows; j0 < M; j0 += kWarps * kRows) {
    C acc[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = C(0);
    for (int k = 0; k < K; ++k) {
      const C hk = in[k * kChains + lane];
      C w[kRows];
      load_rows(A + int64_t(k) * M + j0, w);
#pragma unroll
      for (int r = 0; r < kRows; ++r) acc[r] += w[r] * hk;
    }
#pragma unroll
    for (int r = 0; r < kRows; ++r) epi(j0 + r, lane, acc[r]);
  }
}

// Forward epilogue: z = acc + b_j; h = act(z) into out, act'(z) into dh (unless null).
template <class C>
struct ForwardEpilogue {
  const C* bias;
  C* out;
  C* dh;
  int act;
  ::torchebm::mlp::ActParams<C> p;
  __device__ __forceinline__ void operator()(int j, int c, C acc) const {
    C h, d;
    ::torchebm::mlp::activation<C>(act, acc + bias[j], p, h, d);
    out[j * kChains + c] = h;
    if (dh != nullptr) dh[j * kChains + c] = d;
  }
};

// Backward epilogue: out = acc, times the derivative already in out when `mul`.
template <class C>
struct BackwardEpilogue {
  C* out;
  bool mul;
  __device__ __forceinline__ void operator()(int j, int c, C acc) const {
    C* o = out + j * kChains + c;
    *o = mul ? acc * *o : acc;
  }
};

// A block's buffers for its current tile.
template <class C>
struct Tile {
  C* h[2];              // shared [max_pad][32]: forward activations (ping-pong)
  C* dh[kMaxLayers];    // shared [n_out_pad][32]: act'(z_l), then delta_l
  C *e, *ey, *lr;       // shared [32]: energies, proposal energies, log ratios
  int* accepted;        // shared [32]
  C *x, *g, *y, *gy, *p, *xi;  // global [d_pad][32] (this block's workspace)
};

template <class C>
__device__ __forceinline__ Tile<C> make_tile(const MlpNet& net, C* workspace) {
  Tile<C> t;
  C* s = reinterpret_cast<C*>(smem_base());
  t.h[0] = s;
  t.h[1] = s + net.max_pad * kChains;
  s += 2 * net.max_pad * kChains;
  for (int l = 0; l < net.L; ++l) {
    t.dh[l] = s;
    s += net.layers[l].n_out_pad * kChains;
  }
  t.e = s;
  t.ey = s + kChains;
  t.lr = s + 2 * kChains;
  t.accepted = reinterpret_cast<int*>(s + 3 * kChains);
  const int64_t rows = int64_t(net.d_pad) * kChains;
  C* w = workspace + blockIdx.x * kStateRows * rows;
  t.x = w;
  t.g = w + rows;
  t.y = w + 2 * rows;
  t.gy = w + 3 * rows;
  t.p = w + 4 * rows;
  t.xi = w + 5 * rows;
  return t;
}

// Shared memory of a block (bytes): the activations, derivatives and per-chain values.
inline size_t smem_bytes(const MlpNet& net, size_t elem) {
  int64_t rows = 2 * int64_t(net.max_pad) + 4;
  for (int l = 0; l < net.L; ++l) rows += net.layers[l].n_out_pad;
  return size_t(rows) * kChains * elem;
}

// Gradients g ([d_pad][32]) of the tile's states x ([d][32]), and their energies into e (shared
// [32]) when e is not null. Every thread calls it; it ends with a barrier.
template <class C>
__device__ void energy_grad_tile(const MlpNet& net, const Tile<C>& t, const C* x, C* g, C* e) {
  const C* W = static_cast<const C*>(net.weights);
  const int L = net.L;
  const C* in = x;
  for (int l = 0; l + 1 < L; ++l) {
    const MlpLayer& ly = net.layers[l];
    const ::torchebm::mlp::ActParams<C> p{C(ly.p[0]), C(ly.p[1]), C(ly.p[2])};
    tile_gemm(W + ly.fwd, ly.n_in, ly.n_out_pad, in,
              ForwardEpilogue<C>{W + ly.bias, t.h[l % 2], ly.act == 0 ? nullptr : t.dh[l],
                                 ly.act, p});
    __syncthreads();
    in = t.h[l % 2];
  }
  const MlpLayer& last = net.layers[L - 1];
  if (e != nullptr || !net.const_out_grad) {
    const ::torchebm::mlp::ActParams<C> p{C(last.p[0]), C(last.p[1]), C(last.p[2])};
    C* z = t.h[(L - 1) % 2];
    tile_gemm(W + last.fwd, last.n_in, last.n_out_pad, in,
              ForwardEpilogue<C>{W + last.bias, z, last.act == 0 ? nullptr : t.dh[L - 1],
                                 last.act, p});
    __syncthreads();
    if (e != nullptr && threadIdx.x < kChains) {
      // E = out_scale * sum_j h_j + out_offset, summed over j in order.
      const int c = threadIdx.x;
      C s = z[c];
      for (int j = 1; j < last.n_out; ++j) s += z[j * kChains + c];
      e[c] = s * C(net.out_scale) + C(net.out_offset);
    }
  }
  int l = L - 1;
  if (net.const_out_grad) {
    const C* c_out = W + net.c_out;
    C* target = L == 1 ? g : t.dh[L - 2];
    const int rows = L == 1 ? net.d_pad : last.n_in_pad;
    const bool mul = L > 1 && net.layers[L - 2].act != 0;
    for (int i = threadIdx.x; i < rows * kChains; i += kThreads) {
      const C ck = c_out[i / kChains];
      target[i] = mul ? ck * target[i] : ck;
    }
    __syncthreads();
    if (L == 1) return;
    l = L - 2;
  } else {
    C* dl = t.dh[L - 1];
    const C sc = C(net.out_scale);
    for (int i = threadIdx.x; i < last.n_out_pad * kChains; i += kThreads) dl[i] *= sc;
    __syncthreads();
  }
  for (; l >= 1; --l) {
    const MlpLayer& ly = net.layers[l];
    tile_gemm(W + ly.bwd, ly.n_out, ly.n_in_pad, t.dh[l],
              BackwardEpilogue<C>{t.dh[l - 1], net.layers[l - 1].act != 0});
    __syncthreads();
  }
  const MlpLayer& first = net.layers[0];
  tile_gemm(W + first.bwd, first.n_out, first.n_in_pad, t.dh[0], BackwardEpilogue<C>{g, false});
  __syncthreads();
}

// The tile's rows of x0 ([B, d]) into x ([d][32], 0 in the lanes past `rows`, as the noise xi
// there); ends with a barrier. (Padding lanes compute on finite values, and are never stored.)
template <class C>
__device__ void load_states(C* x, C* xi, const C* __restrict__ x0, int64_t first, int rows, int d) {
  for (int i = threadIdx.x; i < d * kChains; i += kThreads) {
    x[i] = C(0);
    xi[i] = C(0);
  }
  __syncthreads();
  const C* src = x0 + first * d;
  for (int i = threadIdx.x; i < rows * d; i += kThreads) x[(i % d) * kChains + i / d] = src[i];
  __syncthreads();
}

template <class C>
__device__ void store_states(C* __restrict__ out, const C* x, int64_t first, int rows, int d) {
  C* dst = out + first * d;
  for (int i = threadIdx.x; i < rows * d; i += kThreads) dst[i] = x[(i % d) * kChains + i / d];
}

// Normals of stream 0 at `step` for the tile's elements (index chain * d + j over the whole
// batch, as philox_normal) into xi ([d][32]); the padding lanes are left as they are.
template <class C>
__device__ void tile_normals(C* xi, PhiloxKey key, uint32_t step, int64_t first, int rows, int d) {
  constexpr int G = kGroup<C>;
  const int64_t e0 = first * d, e1 = (first + rows) * d;
  const int64_t g0 = e0 / G, g1 = (e1 + G - 1) / G;
  for (int64_t gi = g0 + threadIdx.x; gi < g1; gi += kThreads) {
    C z[G];
    group_normals<C>(key, static_cast<uint64_t>(gi), step, z);
#pragma unroll
    for (int k = 0; k < G; ++k) {
      const int64_t el = gi * G + k;
      if (el >= e0 && el < e1) {
        const int64_t i = el - e0;
        xi[(i % d) * kChains + i / d] = z[k];
      }
    }
  }
}

template <class C>
__device__ void record_tile(C* __restrict__ trajectory, const C* x, int64_t first, int rows, int d,
                            int64_t t, int64_t thin, int64_t n_keep) {
  if (trajectory == nullptr) return;
  const int64_t k = chain::kept_index(t, thin);
  if (k < 0) return;
  for (int i = threadIdx.x; i < rows * d; i += kThreads) {
    const int c = i / d, j = i % d;
    trajectory[((first + c) * n_keep + k) * d + j] = x[j * kChains + c];
  }
}

// Thread 0 adds the tile's sum of e[c] (c < rows, in order) and acceptance count to the
// block's partial of step t (the first tile of the block sets it).
template <class C>
__device__ __forceinline__ void add_partial(double* partial, int64_t t, const C* e, const int* acc,
                                            int rows, bool first_tile) {
  if (threadIdx.x != 0 || partial == nullptr) return;
  double se = 0, sa = 0;
  for (int c = 0; c < rows; ++c) {
    if (e != nullptr) se += double(e[c]);
    if (acc != nullptr) sa += acc[c] ? 1.0 : 0.0;
  }
  double* out = partial + (t * gridDim.x + blockIdx.x) * 2;
  out[0] = first_tile ? se : out[0] + se;
  out[1] = first_tile ? sa : out[1] + sa;
}

// Warp 0, lane c < rows: accepts iff log u < lr[c] (u: stream 1 at chain first + c); the
// accepted chains take the proposal's energy. Then every thread copies the accepted chains'
// proposal states and gradients. Ends with a barrier.
template <class C>
__device__ void accept_tile(const Tile<C>& t, PhiloxKey key, uint32_t step, int64_t first,
                            int rows, int d) {
  if (threadIdx.x < kChains) {
    const int c = threadIdx.x;
    bool a = false;
    if (c < rows) {
      const C u = chain::chain_uniform<C>(key, step, first + c);
      a = metropolis_accept(u, t.lr[c]);
    }
    t.accepted[c] = a ? 1 : 0;
    if (a) t.e[c] = t.ey[c];
  }
  __syncthreads();
  for (int i = threadIdx.x; i < d * kChains; i += kThreads) {
    if (t.accepted[i % kChains]) {
      t.x[i] = t.y[i];
      t.g[i] = t.gy[i];
    }
  }
  __syncthreads();
}

enum class Algo { kEnergyGrad, kLangevin, kMala, kHmc };

// Step s's value of a schedule for lane c of the tile whose first chain is `first` (PerChain: a
// padding lane, c >= rows, reads the tile's first chain, so that it computes on finite values),
// or the one value of step s (then the schedule is [n_steps]: strides (1, 0)).
template <bool PerChain>
__device__ __forceinline__ double step_value(const Schedule& sch, int64_t s, int64_t first, int c,
                                             int rows) {
  if constexpr (PerChain) {
    return chain::schedule_at(sch, s, first + (c < rows ? c : 0));
  } else {
    return sch.values[s];
  }
}

struct KernelArgs {
  MlpNet net;
  int64_t batch, n_steps, thin;
  Schedule a;
  Schedule b;
  LangevinCoeffs clamp;
  int n_leapfrog;
  const int64_t* leapfrog_steps;  // HMC: transition s's L, or null (n_leapfrog)
  PhiloxKey key;
  bool record_energy;
  int64_t first_step;  // step s draws the noise of step first_step + s
};

template <class C, Algo A, bool PerChain>
__global__ void __launch_bounds__(kThreads)
    mlp_kernel(const KernelArgs args, const C* __restrict__ x0, C* __restrict__ x_out,
               C* __restrict__ trajectory, double* __restrict__ partial, C* __restrict__ work,
               const C* __restrict__ inv_mass, C* __restrict__ energy_out) {
  const MlpNet& net = args.net;
  const int d = net.d;
  const Tile<C> t = make_tile<C>(net, work);
  const int64_t tiles = (args.batch + kChains - 1) / kChains;
  const int64_t n_keep = args.n_steps / args.thin;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const bool first_tile = tile == blockIdx.x;
    const int64_t first = tile * kChains;
    const int rows = static_cast<int>(args.batch - first < kChains ? args.batch - first : kChains);
    load_states(t.x, t.xi, x0, first, rows, d);
    if constexpr (A == Algo::kEnergyGrad) {
      energy_grad_tile(net, t, t.x, t.g, t.e);
      store_states(x_out, t.g, first, rows, d);
      if (threadIdx.x < rows) energy_out[first + threadIdx.x] = t.e[threadIdx.x];
      __syncthreads();
      continue;
    }
    if constexpr (A != Algo::kLangevin) energy_grad_tile(net, t, t.x, t.g, t.e);
    for (int64_t s = 0; s < args.n_steps; ++s) {
      const uint32_t step = static_cast<uint32_t>(args.first_step + s);
      if constexpr (A == Algo::kLangevin) {
        // The energy of the state after step s-1 comes with this step's gradient.
        const bool energy_now = args.record_energy && s > 0;
        energy_grad_tile(net, t, t.x, t.g, energy_now ? t.e : nullptr);
        if (energy_now) add_partial<C>(partial, s - 1, t.e, nullptr, rows, first_tile);
        tile_normals(t.xi, args.key, step, first, rows, d);
        __syncthreads();
        const LangevinCoeffs& k = args.clamp;
        LangevinCoef<C> coef{C(step_value<PerChain>(args.a, s, first, 0, rows)),
                             C(step_value<PerChain>(args.b, s, first, 0, rows)),
                             k.has_min ? C(k.clamp_min) : C(-INFINITY),
                             k.has_max ? C(k.clamp_max) : C(INFINITY), C(k.grad_clip),
                             k.has_clip};
        for (int i = threadIdx.x; i < d * kChains; i += kThreads) {
          if constexpr (PerChain) {
            coef.a = C(step_value<true>(args.a, s, first, i % kChains, rows));
            coef.b = C(step_value<true>(args.b, s, first, i % kChains, rows));
          }
          const C v = langevin_point(t.x[i], t.g[i], t.xi[i], coef);
          t.x[i] = i % kChains < rows ? v : C(0);  // padding lanes stay at 0
        }
        __syncthreads();
      } else if constexpr (A == Algo::kMala) {
        // Lane c's a and b (one value for every lane unless PerChain).
        const auto a_of = [&](int c) { return C(step_value<PerChain>(args.a, s, first, c, rows)); };
        const auto b_of = [&](int c) { return C(step_value<PerChain>(args.b, s, first, c, rows)); };
        tile_normals(t.xi, args.key, step, first, rows, d);
        __syncthreads();
        LangevinCoef<C> prop{a_of(0), b_of(0), C(-INFINITY), C(INFINITY), C(0), false};
        for (int i = threadIdx.x; i < d * kChains; i += kThreads) {
          if constexpr (PerChain) {
            prop.a = a_of(i % kChains);
            prop.b = b_of(i % kChains);
          }
          t.y[i] = langevin_point(t.x[i], t.g[i], t.xi[i], prop);
        }
        __syncthreads();
        energy_grad_tile(net, t, t.y, t.gy, t.ey);
        if (threadIdx.x < kChains) {
          const int c = threadIdx.x;
          const C a = a_of(c), b = b_of(c);
          const C fwd = ordered_sum<C>(d, [&](int64_t j) {
            const int64_t i = j * kChains + c;
            return mala_forward_term(t.x[i], t.y[i], t.g[i], a);
          });
          const C bwd = ordered_sum<C>(d, [&](int64_t j) {
            const int64_t i = j * kChains + c;
            return mala_backward_term(t.x[i], t.y[i], t.gy[i], a);
          });
          t.lr[c] = mala_log_ratio_from_sums(fwd, bwd, t.e[c], t.ey[c], b);
        }
        __syncthreads();
        accept_tile(t, args.key, step, first, rows, d);
        add_partial<C>(partial, s, args.record_energy ? t.e : nullptr, t.accepted, rows,
                       first_tile);
      } else {  // HMC, transition s as hmc_chain's
        // Lane c's step size and half step (one value for every lane unless PerChain).
        const auto h_of = [&](int c) { return C(step_value<PerChain>(args.a, s, first, c, rows)); };
        const auto half_of = [&](int c) {
          return C(0.5 * step_value<PerChain>(args.a, s, first, c, rows));
        };
        const C h0 = h_of(0), half0 = half_of(0);
        tile_normals(t.xi, args.key, step, first, rows, d);
        __syncthreads();
        for (int i = threadIdx.x; i < d * kChains; i += kThreads) {
          t.p[i] = inv_mass == nullptr ? t.xi[i] : t.xi[i] / sqrt_ieee(inv_mass[i / kChains]);
        }
        __syncthreads();
        if (threadIdx.x < kChains) {  // H0
          const int c = threadIdx.x;
          const C kin = C(0.5) * ordered_sum<C>(d, [&](int64_t j) {
            return kinetic_term(t.p[j * kChains + c], inv_mass == nullptr ? C(1) : inv_mass[j]);
          });
          t.lr[c] = t.e[c] + kin;
        }
        __syncthreads();
        // The leapfrog: a half kick, then drift / full kick pairs, then a final half kick.
        const C* from = t.x;
        const C* grad = t.g;
        const int n_leapfrog =
            args.leapfrog_steps != nullptr ? int(args.leapfrog_steps[s]) : args.n_leapfrog;
        for (int l = 1; l <= n_leapfrog; ++l) {
          for (int i = threadIdx.x; i < d * kChains; i += kThreads) {
            C h = h0, kick_size = l == 1 ? half0 : h0;
            if constexpr (PerChain) {
              h = h_of(i % kChains);
              kick_size = l == 1 ? half_of(i % kChains) : h;
            }
            const C pn = kick(t.p[i], grad[i], kick_size);
            t.p[i] = pn;
            t.y[i] = inv_mass == nullptr ? drift_unit_mass(from[i], pn, h)
                                         : drift(from[i], pn, inv_mass[i / kChains], h);
          }
          __syncthreads();
          energy_grad_tile(net, t, t.y, t.gy, l == n_leapfrog ? t.ey : nullptr);
          from = t.y;
          grad = t.gy;
        }
        for (int i = threadIdx.x; i < d * kChains; i += kThreads) {
          t.p[i] = kick(t.p[i], t.gy[i], PerChain ? half_of(i % kChains) : half0);
        }
        __syncthreads();
        if (threadIdx.x < kChains) {  // H0 - H1
          const int c = threadIdx.x;
          const C kin = C(0.5) * ordered_sum<C>(d, [&](int64_t j) {
            return kinetic_term(t.p[j * kChains + c], inv_mass == nullptr ? C(1) : inv_mass[j]);
          });
          t.lr[c] = t.lr[c] - (t.ey[c] + kin);
        }
        __syncthreads();
        accept_tile(t, args.key, step, first, rows, d);
        add_partial<C>(partial, s, args.record_energy ? t.e : nullptr, t.accepted, rows,
                       first_tile);
      }
      record_tile(trajectory, t.x, first, rows, d, s, args.thin, n_keep);
      __syncthreads();
    }
    if constexpr (A == Algo::kLangevin) {
      if (args.record_energy && args.n_steps > 0) {
        energy_grad_tile(net, t, t.x, t.g, t.e);
        add_partial<C>(partial, args.n_steps - 1, t.e, nullptr, rows, first_tile);
      }
    }
    store_states(x_out, t.x, first, rows, d);
    __syncthreads();
  }
}

template <class C, Algo A, bool PerChain>
struct Launcher {
  static int blocks_per_sm(size_t smem) {
#if defined(__CUDACC__)
    if (smem > 48 * 1024 &&
        cudaFuncSetAttribute(mlp_kernel<C, A, PerChain>,
                             cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)) != cudaSuccess) {
      cudaGetLastError();  // clear it: the network does not fit
      return 0;
    }
#endif
    int n = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, mlp_kernel<C, A, PerChain>, kThreads,
                                                      smem) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }
};

inline size_t max_smem_per_block() {
#if defined(__CUDACC__)
  int dev = 0, v = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) {
    cudaGetLastError();
    return 48 * 1024;
  }
  return static_cast<size_t>(v);
#else
  return 227 * 1024;  // as an H100/H200
#endif
}

Algo algo_of(Sampler s) {
  return s == Sampler::kLangevin ? Algo::kLangevin : s == Sampler::kMala ? Algo::kMala : Algo::kHmc;
}

template <class C, bool PerChain>
int occupancy(Algo a, size_t smem) {
  switch (a) {
    case Algo::kEnergyGrad: return Launcher<C, Algo::kEnergyGrad, false>::blocks_per_sm(smem);
    case Algo::kLangevin: return Launcher<C, Algo::kLangevin, PerChain>::blocks_per_sm(smem);
    case Algo::kMala: return Launcher<C, Algo::kMala, PerChain>::blocks_per_sm(smem);
    case Algo::kHmc: return Launcher<C, Algo::kHmc, PerChain>::blocks_per_sm(smem);
  }
  return 0;
}

template <class C>
int occupancy(Algo a, size_t smem, bool per_chain) {
  return per_chain ? occupancy<C, true>(a, smem) : occupancy<C, false>(a, smem);
}

MlpPlan plan_for(Algo algo, const MlpNet& net, Dtype dtype, int64_t batch, Launch launch,
                 bool per_chain) {
  const size_t elem = dtype == Dtype::kFloat64 ? sizeof(double) : sizeof(float);
  MlpPlan plan{1, smem_bytes(net, elem), 0, false};
  if (plan.smem_bytes > max_smem_per_block()) return plan;
  const int per_sm = dtype == Dtype::kFloat64
                         ? occupancy<double>(algo, plan.smem_bytes, per_chain)
                         : occupancy<float>(algo, plan.smem_bytes, per_chain);
  if (per_sm < 1) return plan;
  plan.fits = true;
  const int64_t tiles = (batch + kChains - 1) / kChains;
  const int64_t sms = launch.sm_count > 0 ? launch.sm_count : 132;
  const int64_t cap = sms * per_sm;
  plan.blocks = static_cast<int>(tiles < cap ? (tiles > 0 ? tiles : 1) : cap);
  plan.workspace_elems = int64_t(plan.blocks) * kStateRows * net.d_pad * kChains;
  return plan;
}

template <class C, Algo A, bool PerChain = false>
cudaError_t launch_kernel(const MlpPlan& plan, const KernelArgs& args, const void* x0, void* x_out,
                   void* trajectory, double* partial, void* work, const void* inv_mass,
                   void* energy_out, Launch launch) {
#if !defined(__CUDACC__)
  emu_smem.assign(plan.smem_bytes / sizeof(double) + 1, 0.0);
#endif
  mlp_kernel<C, A, PerChain><<<plan.blocks, kThreads, plan.smem_bytes, launch.stream>>>(
      args, static_cast<const C*>(x0), static_cast<C*>(x_out), static_cast<C*>(trajectory),
      partial, static_cast<C*>(work), static_cast<const C*>(inv_mass),
      static_cast<C*>(energy_out));
  return launch_status();
}

template <class C, Algo A>
cudaError_t launch_chain(const MlpPlan& plan, const KernelArgs& k, const void* x0,
                         const MlpChainArgs& a, const ChainOutputs& out, double* partial,
                         Launch l) {
  return per_chain(a) ? launch_kernel<C, A, true>(plan, k, x0, out.x, out.trajectory, partial,
                                                  out.workspace, a.inv_mass, nullptr, l)
                      : launch_kernel<C, A, false>(plan, k, x0, out.x, out.trajectory, partial,
                                                   out.workspace, a.inv_mass, nullptr, l);
}

template <Algo A>
cudaError_t run_chain(const void* x0, const MlpNet& net, const MlpChainArgs& a,
                      const ChainOutputs& out, Launch l) {
  if (a.dtype != Dtype::kFloat32 && a.dtype != Dtype::kFloat64) return cudaErrorInvalidValue;
  if (a.batch == 0) return cudaSuccess;
  const MlpPlan plan = plan_for(A, net, a.dtype, a.batch, l, per_chain(a));
  if (!plan.fits) return cudaErrorInvalidValue;
  KernelArgs k{net,          a.batch,          a.n_steps,         a.thin,
               a.a,          a.b,              a.clamp,           a.n_leapfrog,
               a.leapfrog_steps, PhiloxKey(a.seed), a.record_energy, a.first_step};
  const bool means = a.record_energy || A != Algo::kLangevin;
  double* partial = means ? out.partial : nullptr;
  const bool f64 = a.dtype == Dtype::kFloat64;
  cudaError_t err = f64 ? launch_chain<double, A>(plan, k, x0, a, out, partial, l)
                        : launch_chain<float, A>(plan, k, x0, a, out, partial, l);
  if (err != cudaSuccess || !means) return err;
  void* em = a.record_energy ? out.energy_mean : nullptr;
  return f64 ? chain::finalize<double>(partial, plan.blocks, a.n_steps, a.batch, 0.0, em,
                                       out.acceptance_rate, l)
             : chain::finalize<float>(partial, plan.blocks, a.n_steps, a.batch, 0.0, em,
                                      out.acceptance_rate, l);
}

}  // namespace

MlpPlan mlp_plan(Sampler sampler, const MlpNet& net, Dtype dtype, int64_t batch, Launch launch,
                 bool per_chain) {
  return plan_for(algo_of(sampler), net, dtype, batch, launch, per_chain);
}

cudaError_t mlp_energy_grad(const void* x, const MlpNet& net, Dtype dtype, int64_t batch,
                            void* energy, void* grad, void* workspace, Launch l) {
  if (dtype != Dtype::kFloat32 && dtype != Dtype::kFloat64) return cudaErrorInvalidValue;
  if (batch == 0) return cudaSuccess;
  const MlpPlan plan = plan_for(Algo::kEnergyGrad, net, dtype, batch, l, false);
  if (!plan.fits) return cudaErrorInvalidValue;
  KernelArgs k{net, batch, 0, 1, Schedule{}, Schedule{}, LangevinCoeffs{}, 0, nullptr,
               PhiloxKey(0), false};
  return dtype == Dtype::kFloat64
             ? launch_kernel<double, Algo::kEnergyGrad>(plan, k, x, grad, nullptr, nullptr, workspace,
                                                 nullptr, energy, l)
             : launch_kernel<float, Algo::kEnergyGrad>(plan, k, x, grad, nullptr, nullptr, workspace,
                                                nullptr, energy, l);
}

cudaError_t mlp_langevin_chain(const void* x0, const MlpNet& net, const MlpChainArgs& args,
                               ChainOutputs out, Launch launch) {
  return run_chain<Algo::kLangevin>(x0, net, args, out, launch);
}

cudaError_t mlp_mala_chain(const void* x0, const MlpNet& net, const MlpChainArgs& args,
                           ChainOutputs out, Launch launch) {
  return run_chain<Algo::kMala>(x0, net, args, out, launch);
}

cudaError_t mlp_hmc_chain(const void* x0, const MlpNet& net, const MlpChainArgs& args,
                          ChainOutputs out, Launch launch) {
  return run_chain<Algo::kHmc>(x0, net, args, out, launch);
}

}  // namespace torchebm::cuda::mlp_chain
