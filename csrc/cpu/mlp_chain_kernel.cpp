// CPU kernels of the MLP ops (schemas in csrc/ops.cpp, contracts in docs/kernels.md):
// mlp_energy_grad, mlp_langevin_chain, mlp_mala_chain, mlp_hmc_chain. The network is a chain of
// Linear layers and elementwise activations (torchebm/mlp.h), its weights read once per call.
//
// Chains run in tiles of kTile chains (64 float32 / 32 float64), each tile running every step
// of its chains with all its activations in L1/L2 (mlp_tiles.h), tiles in parallel. The tile
// code is compiled once per x86-64 level (AVX-512, AVX2, baseline) in `#pragma GCC target`
// regions and the best one the CPU supports is picked per call (TORCHEBM_MLP_ISA=avx2|generic
// caps it, for tests). Each chain's values depend only on its own row of x0 and the seed; the
// per-step means are summed per tile in chain order, then over tiles in order: no output
// depends on the thread count.
//
// Schedules are [n_steps] or [n_steps, B] (per chain; chain_common.h's Schedule, a stride-0 one
// read as its one row). The tile code is compiled twice per algorithm: with one value per step
// (a scalar broadcast, as before per-chain schedules existed) and with per-chain values, read
// once per step into a [kTile] lane array that the elementwise passes read; the GEMMs are the
// same in both.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "chain_common.h"
#include "philox_fill.h"
#include "torchebm/energies.h"
#include "torchebm/mlp.h"
#include "torchebm/mlp_checks.h"
#include "torchebm/normal.h"
#include "torchebm/updates.h"

namespace torchebm::cpu::mlp_chain {

// Chains per tile: 256 bytes of lanes, 4 AVX-512 vectors.
template <class T>
constexpr int64_t kTile = 256 / static_cast<int64_t>(sizeof(T));
// Output rows per GEMM micro-kernel call (a packed weight panel): 4 rows x 4 AVX-512 vectors of
// accumulators measured 6% faster than 6 x 4 on the 2-64-64-1 benchmark (no padding of 64).
constexpr int64_t kMJ = 4;

inline int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// One layer, its weights packed in panels of kMJ rows for the micro-kernel:
//   fwd[q][k][m] = W[q kMJ + m][k]  (z = W h + b; rows beyond n_out are 0)
//   bwd[q][j][m] = W[j][q kMJ + m]  (W^T delta; columns beyond n_in are 0)
template <class T>
struct Layer {
  int64_t n_in, n_out, n_in_pad, n_out_pad;
  int act;
  mlp::ActParams<T> p;
  const T* fwd;
  const T* bias;  // [n_out_pad]
  const T* bwd;
};

template <class T>
struct Net {
  int64_t d = 0, d_pad = 0, L = 0, max_pad = 0;
  std::vector<Layer<T>> layers;
  T out_scale = 1, out_offset = 0;
  // The last activation is the identity, so delta_{L-1} = out_scale everywhere and
  // W_{L-1}^T delta_{L-1} is the constant c_out = out_scale * (column sums of W_{L-1}).
  bool const_out_grad = false;
  const T* c_out = nullptr;  // [n_in_pad of the last layer]
  std::vector<T> storage;
};

template <class T>
Net<T> pack_net(const mlp_checks::Network& shape, at::TensorList weights, at::TensorList biases,
                c10::IntArrayRef activations, c10::ArrayRef<double> act_params, double out_scale,
                double out_offset) {
  Net<T> net;
  net.d = shape.d;
  net.d_pad = round_up(shape.d, kMJ);
  net.L = shape.L();
  net.out_scale = static_cast<T>(out_scale);
  net.out_offset = static_cast<T>(out_offset);
  net.const_out_grad = activations[net.L - 1] == mlp::kIdentity;
  std::vector<size_t> offsets;
  size_t total = 0;
  for (int64_t l = 0; l < net.L; ++l) {
    const int64_t n_in = shape.widths[l], n_out = shape.widths[l + 1];
    const int64_t n_in_pad = round_up(n_in, kMJ), n_out_pad = round_up(n_out, kMJ);
    offsets.push_back(total);
    total += n_out_pad * n_in + n_out_pad + n_in_pad * n_out;
    net.max_pad = std::max({net.max_pad, n_out_pad, n_in_pad});
  }
  const size_t c_out_offset = total;
  total += round_up(shape.widths[net.L - 1], kMJ);
  net.storage.assign(total, T(0));
  T* base = net.storage.data();
  for (int64_t l = 0; l < net.L; ++l) {
    Layer<T> ly;
    ly.n_in = shape.widths[l];
    ly.n_out = shape.widths[l + 1];
    ly.n_in_pad = round_up(ly.n_in, kMJ);
    ly.n_out_pad = round_up(ly.n_out, kMJ);
    ly.act = static_cast<int>(activations[l]);
    ly.p = {static_cast<T>(act_params[l * mlp::kActParams]),
            static_cast<T>(act_params[l * mlp::kActParams + 1]),
            static_cast<T>(act_params[l * mlp::kActParams + 2])};
    T* fwd = base + offsets[l];
    T* bias = fwd + ly.n_out_pad * ly.n_in;
    T* bwd = bias + ly.n_out_pad;
    const at::Tensor w = weights[l].to(at::kCPU).contiguous();
    const at::Tensor b = biases[l].to(at::kCPU).contiguous();
    const T* W = w.const_data_ptr<T>();
    for (int64_t j = 0; j < ly.n_out; ++j) {
      for (int64_t k = 0; k < ly.n_in; ++k) {
        const T v = W[j * ly.n_in + k];
        fwd[((j / kMJ) * ly.n_in + k) * kMJ + j % kMJ] = v;
        bwd[((k / kMJ) * ly.n_out + j) * kMJ + k % kMJ] = v;
      }
    }
    std::memcpy(bias, b.const_data_ptr<T>(), sizeof(T) * ly.n_out);
    ly.fwd = fwd;
    ly.bias = bias;
    ly.bwd = bwd;
    net.layers.push_back(ly);
  }
  if (net.const_out_grad) {
    const at::Tensor w = weights[net.L - 1].to(at::kCPU).contiguous();
    const T* W = w.const_data_ptr<T>();
    const Layer<T>& last = net.layers[net.L - 1];
    T* c = base + c_out_offset;
    for (int64_t k = 0; k < last.n_in; ++k) {
      T acc = T(0);
      for (int64_t j = 0; j < last.n_out; ++j) acc += net.out_scale * W[j * last.n_in + k];
      c[k] = acc;
    }
    net.c_out = c;
  }
  return net;
}

// One thread's tile buffers ([rows][kTile] each, 64-byte aligned), allocated once for all its
// tiles.
template <class T>
struct TileScratch {
  T *x, *g, *e, *y, *gy, *ey, *xi, *rows_scratch, *terms, *sum_f, *sum_b, *log_r, *u;
  T *lane_a, *lane_b;  // [kTile]: step t's per-chain schedule values (per-chain schedules)
  T* h[2];
  std::vector<T*> dh;
  bool accepted[kTile<T>];
  std::unique_ptr<T, void (*)(void*)> arena{nullptr, std::free};

  explicit TileScratch(const Net<T>& net) {
    constexpr int64_t R = kTile<T>;
    const int64_t rows_d = net.d_pad * R;
    std::vector<std::pair<T**, int64_t>> parts = {
        {&x, rows_d}, {&g, rows_d}, {&e, R}, {&y, rows_d}, {&gy, rows_d}, {&ey, R},
        {&xi, rows_d}, {&rows_scratch, net.d * R}, {&terms, 2 * rows_d}, {&sum_f, R},
        {&sum_b, R}, {&log_r, R}, {&u, R}, {&lane_a, R}, {&lane_b, R},
        {&h[0], net.max_pad * R}, {&h[1], net.max_pad * R}};
    dh.assign(net.L, nullptr);
    for (int64_t l = 0; l < net.L; ++l) parts.push_back({&dh[l], net.layers[l].n_out_pad * R});
    int64_t total = 0;
    for (auto& p : parts) total += round_up(p.second, 64 / static_cast<int64_t>(sizeof(T)));
    void* mem = std::aligned_alloc(64, sizeof(T) * total);
    TORCH_CHECK(mem != nullptr, "MLP chain kernels: out of memory for tile buffers");
    std::memset(mem, 0, sizeof(T) * total);
    arena.reset(static_cast<T*>(mem));
    T* cur = arena.get();
    for (auto& p : parts) {
      *p.first = cur;
      cur += round_up(p.second, 64 / static_cast<int64_t>(sizeof(T)));
    }
  }
};

// Everything a thread needs to run its tiles of one op call.
template <class T>
struct ChainJob {
  const Net<T>* net = nullptr;
  int64_t B = 0, d = 0, n_steps = 0, thin = 1, kept = 0, n_leapfrog = 0;
  const int64_t* leapfrog_steps = nullptr;  // HMC: [n_steps] (transition t's L), or null
  T* x = nullptr;                  // [B, d]: x0 on entry, the final states on exit
  T* trajectory = nullptr;         // [B, kept, d] or null
  double* energy_sum = nullptr;    // [tiles, n_steps] or null
  int64_t* accepted = nullptr;     // [tiles, n_steps] (MALA, HMC)
  // Langevin/MALA a, b; HMC step sizes (a): step t's value for chain c is
  // a[t * a_step + c * a_chain] (Schedule's layout: [n_steps] is (1, 0)).
  const double* a = nullptr;
  const double* b = nullptr;
  int64_t a_step = 1, a_chain = 0, b_step = 1, b_chain = 0;
  bool per_chain = false;          // a or b has a value per chain
  T lo = -INFINITY, hi = INFINITY, clip = 0;
  bool has_clip = false;
  int64_t seed = 0;
  int64_t first_step = 0;          // step t draws the noise of step first_step + t
  const T* inv_mass = nullptr;       // [d] or null
  const T* inv_mass_sqrt = nullptr;  // [d] or null
  T* energy_out = nullptr;           // mlp_energy_grad
  T* grad_out = nullptr;
};

// ---- the tile code, once per instruction set --------------------------------------------------

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define TORCHEBM_MLP_X86 1
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
#pragma GCC optimize("fp-contract=fast")
namespace avx512 {
#define TORCHEBM_MLP_VBYTES 64
#define TORCHEBM_MLP_NV 4
#include "mlp_tiles.h"
#undef TORCHEBM_MLP_VBYTES
#undef TORCHEBM_MLP_NV
}  // namespace avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
#pragma GCC optimize("fp-contract=fast")
namespace avx2 {
#define TORCHEBM_MLP_VBYTES 32
#define TORCHEBM_MLP_NV 2
#include "mlp_tiles.h"
#undef TORCHEBM_MLP_VBYTES
#undef TORCHEBM_MLP_NV
}  // namespace avx2
#pragma GCC pop_options
#endif

namespace generic {
#define TORCHEBM_MLP_VBYTES 16
#define TORCHEBM_MLP_NV 2
#include "mlp_tiles.h"
#undef TORCHEBM_MLP_VBYTES
#undef TORCHEBM_MLP_NV
}  // namespace generic

// ---- dispatch ---------------------------------------------------------------------------------

enum class Isa { kGeneric, kAvx2, kAvx512 };

// The best instruction set of this CPU, capped by TORCHEBM_MLP_ISA (read per call).
inline Isa isa() {
  Isa best = Isa::kGeneric;
#ifdef TORCHEBM_MLP_X86
  if (__builtin_cpu_supports("x86-64-v4")) {
    best = Isa::kAvx512;
  } else if (__builtin_cpu_supports("x86-64-v3")) {
    best = Isa::kAvx2;
  }
#endif
  if (const char* cap = std::getenv("TORCHEBM_MLP_ISA")) {
    const std::string c(cap);
    if (c == "generic") best = Isa::kGeneric;
    if (c == "avx2" && best == Isa::kAvx512) best = Isa::kAvx2;
  }
  return best;
}

enum class Algo { kEnergyGrad, kLangevin, kMala, kHmc };

template <class T>
using TilesFn = void (*)(const ChainJob<T>&, int64_t, int64_t);

#define TORCHEBM_MLP_TILES(ns)                                                              \
  switch (algo) {                                                                            \
    case Algo::kEnergyGrad: return &ns::energy_grad_tiles<T>;                               \
    case Algo::kLangevin:                                                                    \
      return per_chain ? &ns::langevin_tiles<T, true> : &ns::langevin_tiles<T, false>;      \
    case Algo::kMala: return per_chain ? &ns::mala_tiles<T, true> : &ns::mala_tiles<T, false>; \
    case Algo::kHmc: return per_chain ? &ns::hmc_tiles<T, true> : &ns::hmc_tiles<T, false>;    \
  }

template <class T>
TilesFn<T> tiles_fn(Algo algo, bool per_chain) {
#ifdef TORCHEBM_MLP_X86
  switch (isa()) {
    case Isa::kAvx512: TORCHEBM_MLP_TILES(avx512) break;
    case Isa::kAvx2: TORCHEBM_MLP_TILES(avx2) break;
    default: break;
  }
#endif
  TORCHEBM_MLP_TILES(generic)
  return nullptr;
}
#undef TORCHEBM_MLP_TILES

// Runs `algo` over all tiles of job.B chains, tiles in parallel.
template <class T>
void run_tiles(Algo algo, const ChainJob<T>& job) {
  const int64_t tiles = (job.B + kTile<T> - 1) / kTile<T>;
  const TilesFn<T> fn = tiles_fn<T>(algo, job.per_chain);
  at::parallel_for(0, tiles, 1, [&](int64_t k0, int64_t k1) { fn(job, k0, k1); });
}

// ---- outputs ----------------------------------------------------------------------------------

struct ChainResult {
  at::Tensor x, trajectory, energy_mean, acceptance_rate;
};

template <class T>
struct ChainRun {
  ChainResult out;
  std::vector<double> energy_sum;
  std::vector<int64_t> accepted;
  int64_t tiles = 0;

  ChainRun(ChainJob<T>& job, const at::Tensor& x0, int64_t n_steps, int64_t thin,
           bool record_trajectory, bool record_energy, bool with_acceptance) {
    const int64_t B = x0.size(0), d = x0.size(1), kept = n_steps / thin;
    out.x = x0.contiguous().clone();
    out.trajectory = record_trajectory ? at::empty({B, kept, d}, x0.options())
                                       : at::empty({0}, x0.options());
    // Zeros, not empty: with no chains there is nothing to sum, and the means are 0.
    out.energy_mean = at::zeros({record_energy ? n_steps : 0}, x0.options());
    if (with_acceptance) out.acceptance_rate = at::zeros({n_steps}, x0.options());
    tiles = (B + kTile<T> - 1) / kTile<T>;
    if (record_energy) energy_sum.assign(tiles * n_steps, 0.0);
    if (with_acceptance) accepted.assign(tiles * n_steps, 0);
    job.B = B;
    job.d = d;
    job.n_steps = n_steps;
    job.thin = thin;
    job.kept = kept;
    job.x = out.x.mutable_data_ptr<T>();
    job.trajectory = record_trajectory ? out.trajectory.mutable_data_ptr<T>() : nullptr;
    job.energy_sum = record_energy ? energy_sum.data() : nullptr;
    job.accepted = with_acceptance ? accepted.data() : nullptr;
  }

  // Per-step means: per-tile sums added in tile order.
  void finish(int64_t n_steps) {
    const int64_t B = out.x.size(0);
    if (!energy_sum.empty()) {
      T* pe = out.energy_mean.mutable_data_ptr<T>();
      for (int64_t t = 0; t < n_steps; ++t) {
        double s = 0;
        for (int64_t k = 0; k < tiles; ++k) s += energy_sum[k * n_steps + t];
        pe[t] = static_cast<T>(B > 0 ? s / B : 0.0);
      }
    }
    if (!accepted.empty()) {
      T* pa = out.acceptance_rate.mutable_data_ptr<T>();
      for (int64_t t = 0; t < n_steps; ++t) {
        int64_t s = 0;
        for (int64_t k = 0; k < tiles; ++k) s += accepted[k * n_steps + t];
        pa[t] = static_cast<T>(B > 0 ? static_cast<double>(s) / B : 0.0);
      }
    }
  }
};

// ---- ops --------------------------------------------------------------------------------------

// The job's schedules: a (Langevin/MALA a, HMC step sizes) and b (null for HMC).
template <class T>
void set_schedules(ChainJob<T>& job, const Schedule& a, const Schedule* b) {
  job.a = a.values.const_data_ptr<double>();
  job.a_step = a.step_stride;
  job.a_chain = a.chain_stride;
  job.per_chain = a.per_chain;
  if (b != nullptr) {
    job.b = b->values.const_data_ptr<double>();
    job.b_step = b->step_stride;
    job.b_chain = b->chain_stride;
    job.per_chain = job.per_chain || b->per_chain;
  }
}

std::tuple<at::Tensor, at::Tensor> mlp_energy_grad(const at::Tensor& x, at::TensorList weights,
                                                   at::TensorList biases,
                                                   c10::IntArrayRef activations,
                                                   c10::ArrayRef<double> act_params,
                                                   double out_scale, double out_offset) {
  constexpr const char* op = "mlp_energy_grad";
  const mlp_checks::Network shape = mlp_checks::network(x, "x", weights, biases, activations,
                                                        act_params, out_scale, out_offset, op);
  const at::Tensor xc = x.contiguous();
  at::Tensor energy = at::empty({x.size(0)}, x.options());
  at::Tensor grad = at::empty_like(xc);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), op, [&] {
    using T = scalar_t;
    const Net<T> net = pack_net<T>(shape, weights, biases, activations, act_params, out_scale,
                                   out_offset);
    ChainJob<T> job;
    job.net = &net;
    job.B = x.size(0);
    job.d = x.size(1);
    job.x = const_cast<T*>(xc.const_data_ptr<T>());  // read only
    job.energy_out = energy.mutable_data_ptr<T>();
    job.grad_out = grad.mutable_data_ptr<T>();
    run_tiles(Algo::kEnergyGrad, job);
  });
  return {energy, grad};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> mlp_langevin_chain(
    const at::Tensor& x0, at::TensorList weights, at::TensorList biases,
    c10::IntArrayRef activations, c10::ArrayRef<double> act_params, double out_scale,
    double out_offset, const at::Tensor& a, const at::Tensor& b, std::optional<double> clamp_min,
    std::optional<double> clamp_max, std::optional<double> grad_clip, int64_t seed, int64_t thin,
    bool record_trajectory, bool record_energy, int64_t first_step) {
  constexpr const char* op = "mlp_langevin_chain";
  const mlp_checks::Chain checked =
      mlp_checks::langevin_chain(x0, weights, biases, activations, act_params, out_scale,
                                 out_offset, a, b, clamp_min, clamp_max, grad_clip, thin);
  const mlp_checks::Network& shape = checked.net;
  const int64_t n_steps = checked.n_steps;
  checks::first_step(first_step, n_steps, op);
  const Schedule av = schedule_values(a), bv = schedule_values(b);
  ChainResult result;
  AT_DISPATCH_FLOATING_TYPES(x0.scalar_type(), op, [&] {
    using T = scalar_t;
    const Net<T> net = pack_net<T>(shape, weights, biases, activations, act_params, out_scale,
                                   out_offset);
    ChainJob<T> job;
    ChainRun<T> run(job, x0, n_steps, thin, record_trajectory, record_energy, false);
    job.net = &net;
    set_schedules(job, av, &bv);
    job.lo = clamp_min ? static_cast<T>(*clamp_min) : -INFINITY;
    job.hi = clamp_max ? static_cast<T>(*clamp_max) : INFINITY;
    job.clip = grad_clip ? static_cast<T>(*grad_clip) : T(0);
    job.has_clip = grad_clip.has_value();
    job.seed = seed;
    job.first_step = first_step;
    run_tiles(Algo::kLangevin, job);
    run.finish(n_steps);
    result = run.out;
  });
  return {result.x, result.trajectory, result.energy_mean};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlp_mala_chain(
    const at::Tensor& x0, at::TensorList weights, at::TensorList biases,
    c10::IntArrayRef activations, c10::ArrayRef<double> act_params, double out_scale,
    double out_offset, const at::Tensor& a, const at::Tensor& b, int64_t seed, int64_t thin,
    bool record_trajectory, bool record_energy, int64_t first_step) {
  constexpr const char* op = "mlp_mala_chain";
  const mlp_checks::Chain checked = mlp_checks::mala_chain(
      x0, weights, biases, activations, act_params, out_scale, out_offset, a, b, thin);
  const mlp_checks::Network& shape = checked.net;
  const int64_t n_steps = checked.n_steps;
  checks::first_step(first_step, n_steps, op);
  const Schedule av = schedule_values(a), bv = schedule_values(b);
  ChainResult result;
  AT_DISPATCH_FLOATING_TYPES(x0.scalar_type(), op, [&] {
    using T = scalar_t;
    const Net<T> net = pack_net<T>(shape, weights, biases, activations, act_params, out_scale,
                                   out_offset);
    ChainJob<T> job;
    ChainRun<T> run(job, x0, n_steps, thin, record_trajectory, record_energy, true);
    job.net = &net;
    set_schedules(job, av, &bv);
    job.seed = seed;
    job.first_step = first_step;
    run_tiles(Algo::kMala, job);
    run.finish(n_steps);
    result = run.out;
  });
  return {result.x, result.trajectory, result.energy_mean, result.acceptance_rate};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mlp_hmc_chain(
    const at::Tensor& x0, at::TensorList weights, at::TensorList biases,
    c10::IntArrayRef activations, c10::ArrayRef<double> act_params, double out_scale,
    double out_offset, const at::Tensor& step_size, int64_t n_leapfrog,
    const std::optional<at::Tensor>& inv_mass, int64_t seed, int64_t thin,
    bool record_trajectory, bool record_energy, int64_t first_step,
    const std::optional<at::Tensor>& leapfrog_steps) {
  constexpr const char* op = "mlp_hmc_chain";
  const mlp_checks::Chain checked =
      mlp_checks::hmc_chain(x0, weights, biases, activations, act_params, out_scale, out_offset,
                            step_size, n_leapfrog, inv_mass, thin, leapfrog_steps);
  const mlp_checks::Network& shape = checked.net;
  const int64_t n_steps = checked.n_steps;
  checks::first_step(first_step, n_steps, op);
  const Schedule eps = schedule_values(step_size);
  const at::Tensor steps = leapfrog_steps ? leapfrog_steps->contiguous() : at::Tensor();
  const std::vector<double> im = mlp_checks::inv_mass_values(inv_mass, x0, op);
  ChainResult result;
  AT_DISPATCH_FLOATING_TYPES(x0.scalar_type(), op, [&] {
    using T = scalar_t;
    const Net<T> net = pack_net<T>(shape, weights, biases, activations, act_params, out_scale,
                                   out_offset);
    // The inverse mass in x's dtype (as hmc_chain: the tensor cast to x's dtype), and its sqrt.
    std::vector<T> m, m_sqrt;
    for (double v : im) {
      m.push_back(static_cast<T>(v));
      m_sqrt.push_back(sqrt_ieee(static_cast<T>(v)));
    }
    ChainJob<T> job;
    ChainRun<T> run(job, x0, n_steps, thin, record_trajectory, record_energy, true);
    job.net = &net;
    set_schedules(job, eps, nullptr);
    job.n_leapfrog = n_leapfrog;
    job.leapfrog_steps = leapfrog_steps ? steps.const_data_ptr<int64_t>() : nullptr;
    job.inv_mass = m.empty() ? nullptr : m.data();
    job.inv_mass_sqrt = m.empty() ? nullptr : m_sqrt.data();
    job.seed = seed;
    job.first_step = first_step;
    run_tiles(Algo::kHmc, job);
    run.finish(n_steps);
    result = run.out;
  });
  return {result.x, result.trajectory, result.energy_mean, result.acceptance_rate};
}

}  // namespace torchebm::cpu::mlp_chain

TORCH_LIBRARY_IMPL(torchebm, CPU, m) {
  m.impl("mlp_energy_grad", &torchebm::cpu::mlp_chain::mlp_energy_grad);
  m.impl("mlp_langevin_chain", &torchebm::cpu::mlp_chain::mlp_langevin_chain);
  m.impl("mlp_mala_chain", &torchebm::cpu::mlp_chain::mlp_mala_chain);
  m.impl("mlp_hmc_chain", &torchebm::cpu::mlp_chain::mlp_hmc_chain);
}
