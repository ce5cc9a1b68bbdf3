// The tile code of the CPU MLP chain kernels, compiled once per instruction set:
// mlp_chain_kernel.cpp includes this file several times, each time inside its own namespace and
// `#pragma GCC target` region, with TORCHEBM_MLP_VBYTES (the vector width in bytes) and
// TORCHEBM_MLP_NV (vectors per column pass of the GEMM micro-kernel) defined. No include guard,
// on purpose. Uses the ISA-independent declarations before the regions (kTile, kMJ, Layer, Net,
// TileScratch, ChainJob).
//
// A tile is kTile chains stored feature-major ([feature][kTile]: chains in the vector lanes),
// so every layer is a small GEMM whose micro-kernel keeps kMJ x TORCHEBM_MLP_NV vector
// accumulators in registers, every activation a vectorised pass over rows still in L1, and the
// whole forward and backward pass of a tile never leaves the L1/L2 caches.

template <class T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(TORCHEBM_MLP_VBYTES)));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(TORCHEBM_MLP_VBYTES)));
};
template <class T>
using Vec = typename VecOf<T>::type;

template <class T>
constexpr int64_t kLanes = TORCHEBM_MLP_VBYTES / static_cast<int64_t>(sizeof(T));

template <class T>
inline __attribute__((always_inline)) Vec<T> vload(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
inline __attribute__((always_inline)) void vstore(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof v);
}
// s in every lane, as a brace initialiser (`s + Vec<T>{}` would add 0.0, which the compiler
// must keep for the sign of zero).
template <class T, size_t... I>
inline __attribute__((always_inline)) Vec<T> vbroadcast_(T s, std::index_sequence<I...>) {
  return Vec<T>{((void)I, s)...};
}
template <class T>
inline __attribute__((always_inline)) Vec<T> vbroadcast(T s) {
  return vbroadcast_(s, std::make_index_sequence<kLanes<T>>{});
}

enum Epilogue { kAddBias, kMulOut, kStore };

// out[m][c] = epilogue(sum_{k < K} a[k][m] in[k][c]) for the kMJ rows m of one panel and all
// kTile columns c; a is the packed panel [K][kMJ]. Each output is summed over k in increasing
// order (multiply-adds). kAddBias adds bias[m]; kMulOut multiplies by the value already in out
// (the activation derivative, for the backward pass); kStore stores.
template <class T, int E>
inline __attribute__((always_inline)) void micro_kernel(const T* __restrict a, int64_t K,
                                                        const T* __restrict in, T* out,
                                                        const T* __restrict bias) {
  constexpr int64_t L = kLanes<T>, NV = TORCHEBM_MLP_NV, R = kTile<T>;
  static_assert(R % (NV * L) == 0, "a tile is a whole number of column passes");
  for (int64_t c0 = 0; c0 < R; c0 += NV * L) {
    Vec<T> acc[kMJ][NV];
#pragma GCC unroll 8
    for (int m = 0; m < kMJ; ++m) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[m][v] = Vec<T>{};
    }
    for (int64_t k = 0; k < K; ++k) {
      Vec<T> x[NV];
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) x[v] = vload(in + k * R + c0 + v * L);
      const T* ak = a + k * kMJ;
#pragma GCC unroll 8
      for (int m = 0; m < kMJ; ++m) {
        const Vec<T> w = vbroadcast(ak[m]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) acc[m][v] += w * x[v];
      }
    }
#pragma GCC unroll 8
    for (int m = 0; m < kMJ; ++m) {
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        T* o = out + m * R + c0 + v * L;
        Vec<T> r = acc[m][v];
        if constexpr (E == kAddBias) {
          r = r + vbroadcast(bias[m]);
        } else if constexpr (E == kMulOut) {
          r = r * vload(o);
        }
        vstore(o, r);
      }
    }
  }
}

// h = act(z) in place and dh = act'(z) over n elements.
template <class T, int K>
void activation_pass(T* __restrict z, T* __restrict dh, int64_t n, const mlp::ActParams<T> p) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    T h, d;
    mlp::activation<K>(z[i], p, h, d);
    z[i] = h;
    dh[i] = d;
  }
}

// z_l = W_l in + b_l into `out` ([n_out_pad][kTile]), then h = act(z) in place and act'(z) into
// `dh`, panel by panel while the panel is in L1.
template <class T, int K>
void forward_layer(const Layer<T>& ly, const T* in, T* out, T* dh) {
  constexpr int64_t R = kTile<T>;
  const int64_t panels = ly.n_out_pad / kMJ;
  for (int64_t q = 0; q < panels; ++q) {
    T* o = out + q * kMJ * R;
    micro_kernel<T, kAddBias>(ly.fwd + q * ly.n_in * kMJ, ly.n_in, in, o, ly.bias + q * kMJ);
    if constexpr (K != mlp::kIdentity) activation_pass<T, K>(o, dh + q * kMJ * R, kMJ * R, ly.p);
  }
}

template <class T>
void forward_layer(const Layer<T>& ly, const T* in, T* out, T* dh) {
  switch (ly.act) {
    case mlp::kReLU: forward_layer<T, mlp::kReLU>(ly, in, out, dh); break;
    case mlp::kLeakyReLU: forward_layer<T, mlp::kLeakyReLU>(ly, in, out, dh); break;
    case mlp::kELU: forward_layer<T, mlp::kELU>(ly, in, out, dh); break;
    case mlp::kSiLU: forward_layer<T, mlp::kSiLU>(ly, in, out, dh); break;
    case mlp::kGELU: forward_layer<T, mlp::kGELU>(ly, in, out, dh); break;
    case mlp::kGELUTanh: forward_layer<T, mlp::kGELUTanh>(ly, in, out, dh); break;
    case mlp::kTanh: forward_layer<T, mlp::kTanh>(ly, in, out, dh); break;
    case mlp::kSigmoid: forward_layer<T, mlp::kSigmoid>(ly, in, out, dh); break;
    case mlp::kSoftplus: forward_layer<T, mlp::kSoftplus>(ly, in, out, dh); break;
    case mlp::kCELU: forward_layer<T, mlp::kCELU>(ly, in, out, dh); break;
    default: forward_layer<T, mlp::kIdentity>(ly, in, out, dh); break;
  }
}

// out = W_l^T delta ([n_in_pad][kTile]), times the derivative already in `out` when `mul`.
template <class T>
void backward_layer(const Layer<T>& ly, const T* delta, T* out, bool mul) {
  constexpr int64_t R = kTile<T>;
  const int64_t panels = ly.n_in_pad / kMJ;
  for (int64_t q = 0; q < panels; ++q) {
    const T* a = ly.bwd + q * ly.n_out * kMJ;
    if (mul) {
      micro_kernel<T, kMulOut>(a, ly.n_out, delta, out + q * kMJ * R, nullptr);
    } else {
      micro_kernel<T, kStore>(a, ly.n_out, delta, out + q * kMJ * R, nullptr);
    }
  }
}

// Energies e[c] (when e) and gradients g ([d_pad][kTile]) of the kTile states x ([d][kTile]).
// With want_grad false only the forward pass runs (e must be given).
template <class T>
void energy_grad_tile(const Net<T>& net, TileScratch<T>& s, const T* x, T* g, T* e,
                      bool want_grad = true) {
  constexpr int64_t R = kTile<T>;
  const int64_t L = net.L;
  const bool need_out = e != nullptr || !net.const_out_grad;
  const T* in = x;
  // Forward: hidden layers into the ping-pong buffers, derivatives into s.dh[l].
  for (int64_t l = 0; l + 1 < L; ++l) {
    T* out = s.h[l % 2];
    forward_layer(net.layers[l], in, out, s.dh[l]);
    in = out;
  }
  if (need_out) {
    const Layer<T>& last = net.layers[L - 1];
    T* z = s.h[(L - 1) % 2];
    forward_layer(last, in, z, s.dh[L - 1]);
    if (e != nullptr) {
      // E = out_scale * sum_j h_j + out_offset, summed over j in order.
      T acc[R];
      for (int64_t c = 0; c < R; ++c) acc[c] = z[c];
      for (int64_t j = 1; j < last.n_out; ++j) {
#pragma omp simd
        for (int64_t c = 0; c < R; ++c) acc[c] += z[j * R + c];
      }
#pragma omp simd
      for (int64_t c = 0; c < R; ++c) e[c] = acc[c] * net.out_scale + net.out_offset;
    }
  }
  if (!want_grad) return;
  // Backward.
  int64_t l = L - 1;
  if (net.const_out_grad) {
    // The last activation is the identity: delta_{L-1} = out_scale everywhere, and its product
    // with W_{L-1} is the constant c_out[k].
    T* target = L == 1 ? g : s.dh[L - 2];
    const int64_t rows = L == 1 ? net.d_pad : net.layers[L - 1].n_in_pad;
    const bool mul = L > 1 && net.layers[L - 2].act != mlp::kIdentity;
    for (int64_t k = 0; k < rows; ++k) {
      const T ck = net.c_out[k];
      T* row = target + k * R;
      if (mul) {
#pragma omp simd
        for (int64_t c = 0; c < R; ++c) row[c] *= ck;
      } else {
#pragma omp simd
        for (int64_t c = 0; c < R; ++c) row[c] = ck;
      }
    }
    if (L == 1) return;
    l = L - 2;
  } else {
    // delta_{L-1} = out_scale * act'(z_{L-1}), in place in dh[L-1].
    T* dl = s.dh[L - 1];
    const T sc = net.out_scale;
#pragma omp simd
    for (int64_t i = 0; i < net.layers[L - 1].n_out_pad * R; ++i) dl[i] *= sc;
  }
  for (; l >= 1; --l) {
    backward_layer(net.layers[l], s.dh[l], s.dh[l - 1], net.layers[l - 1].act != mlp::kIdentity);
  }
  backward_layer(net.layers[0], s.dh[0], g, false);
}

// ---- moving rows between the [B, d] tensors and a tile ----------------------------------------

// tile[j][c] = x[(first + c) d + j] for c < rows, 0 for the padding lanes.
template <class T>
void load_tile(T* tile, const T* x, int64_t rows, int64_t d) {
  constexpr int64_t R = kTile<T>;
  for (int64_t j = 0; j < d; ++j) {
    T* row = tile + j * R;
    for (int64_t c = 0; c < rows; ++c) row[c] = x[c * d + j];
    for (int64_t c = rows; c < R; ++c) row[c] = T(0);
  }
}

template <class T>
void store_tile(T* x, const T* tile, int64_t rows, int64_t d) {
  constexpr int64_t R = kTile<T>;
  for (int64_t c = 0; c < rows; ++c) {
    for (int64_t j = 0; j < d; ++j) x[c * d + j] = tile[j * R + c];
  }
}

// The tile's elements of step t's normal stream (element index = chain * d + j over the whole
// batch, as philox_normal), transposed into xi[j][c]; 0 in the padding lanes.
template <class T>
void normal_tile(T* xi, T* scratch, int64_t first, int64_t rows, int64_t d, int64_t seed,
                 int64_t t) {
  fill_normal(scratch, first * d, (first + rows) * d, static_cast<uint64_t>(seed),
              static_cast<uint32_t>(t), kNormalStream);
  load_tile(xi, scratch, rows, d);
}

// Per-lane sum8 over the d rows of terms[j][c] (the row order of energies.h's sum8: partial
// sums j mod 8, combined as ((s0+s4)+(s1+s5))+((s2+s6)+(s3+s7))).
template <class T>
void lane_sum8(T* out, const T* terms, int64_t d) {
  constexpr int64_t R = kTile<T>;
  T acc[8][R];
  for (int k = 0; k < 8; ++k) {
#pragma omp simd
    for (int64_t c = 0; c < R; ++c) acc[k][c] = T(0);
  }
  for (int64_t j = 0; j < d; ++j) {
    T* a = acc[j % 8];
    const T* tj = terms + j * R;
#pragma omp simd
    for (int64_t c = 0; c < R; ++c) a[c] += tj[c];
  }
#pragma omp simd
  for (int64_t c = 0; c < R; ++c) {
    out[c] = ((acc[0][c] + acc[4][c]) + (acc[1][c] + acc[5][c])) +
             ((acc[2][c] + acc[6][c]) + (acc[3][c] + acc[7][c]));
  }
}

// Sum of the first `rows` energies, in chain order.
template <class T>
double tile_sum(const T* e, int64_t rows) {
  double s = 0;
  for (int64_t c = 0; c < rows; ++c) s += static_cast<double>(e[c]);
  return s;
}

template <class T>
void record_tile(const ChainJob<T>& job, const T* x, int64_t first, int64_t rows, int64_t t) {
  if (job.trajectory == nullptr || (t + 1) % job.thin != 0) return;
  constexpr int64_t R = kTile<T>;
  const int64_t d = job.d, kept = job.kept, k = t / job.thin;
  for (int64_t c = 0; c < rows; ++c) {
    T* dst = job.trajectory + ((first + c) * kept + k) * d;
    for (int64_t j = 0; j < d; ++j) dst[j] = x[j * R + c];
  }
}

// The accept step of MALA and HMC on a tile: chain c takes the proposal (state, gradient,
// energy) iff log u_c < log_r[c], u from stream 1 at (seed, first_step + t) indexed by chain.
template <class T>
int64_t accept_tile(const ChainJob<T>& job, TileScratch<T>& s, int64_t first, int64_t rows,
                    int64_t t, T* x, T* g, T* e, const T* y, const T* gy, const T* ey) {
  constexpr int64_t R = kTile<T>;
  fill_uniform(s.u, first, first + rows, static_cast<uint64_t>(job.seed),
               static_cast<uint32_t>(job.first_step + t), kUniformStream);
  int64_t count = 0;
  for (int64_t c = 0; c < rows; ++c) {
    const bool a = metropolis_accept(s.u[c], s.log_r[c]);
    s.accepted[c] = a;
    count += a ? 1 : 0;
  }
  for (int64_t j = 0; j < job.d; ++j) {
#pragma omp simd
    for (int64_t c = 0; c < R; ++c) {
      const bool a = c < rows && s.accepted[c];
      x[j * R + c] = a ? y[j * R + c] : x[j * R + c];
      g[j * R + c] = a ? gy[j * R + c] : g[j * R + c];
    }
  }
#pragma omp simd
  for (int64_t c = 0; c < R; ++c) e[c] = (c < rows && s.accepted[c]) ? ey[c] : e[c];
  return count;
}

// ---- schedules --------------------------------------------------------------------------------

// A step's schedule value as the tile's lanes read it: one value for every lane
// (StepValue<T, false>: [n_steps] schedules, a scalar the compiler broadcasts, as it did before
// per-chain schedules) or one per lane (StepValue<T, true>: a [kTile] array, per-chain schedules).
template <class T, bool PerChain>
struct StepValue;
template <class T>
struct StepValue<T, false> {
  T v;
  inline __attribute__((always_inline)) T operator[](int64_t) const { return v; }
};
template <class T>
struct StepValue<T, true> {
  const T* v;
  inline __attribute__((always_inline)) T operator[](int64_t c) const { return v[c]; }
};

// Step t's value of the schedule (values, step_stride, chain_stride) (ChainJob's layout) for the
// tile's chains first .. first + rows - 1, rounded to T as the per-step ops round a float: for
// PerChain, written into lanes[kTile] (the padding lanes take the tile's first chain's value, so
// that they compute on finite values) and read from there; else the one value of step t (the
// strides are then (1, 0)). `scale` multiplies the value in float64 before the rounding (HMC's
// half step: 0.5 eps).
template <class T, bool PerChain>
inline StepValue<T, PerChain> step_value(const double* values, int64_t step_stride,
                                         int64_t chain_stride, int64_t t, int64_t first,
                                         int64_t rows, T* lanes, double scale = 1.0) {
  if constexpr (PerChain) {
    constexpr int64_t R = kTile<T>;
    const double* row = values + t * step_stride + first * chain_stride;
    for (int64_t c = 0; c < R; ++c) {
      lanes[c] = static_cast<T>(scale * row[(c < rows ? c : 0) * chain_stride]);
    }
    return {lanes};
  } else {
    (void)step_stride, (void)chain_stride, (void)first, (void)rows, (void)lanes;
    return {static_cast<T>(scale * values[t])};
  }
}

// ---- the chains -------------------------------------------------------------------------------

template <class T, bool PerChain>
void langevin_tiles(const ChainJob<T>& job, int64_t k0, int64_t k1) {
  constexpr int64_t R = kTile<T>;
  const int64_t d = job.d;
  TileScratch<T> s(*job.net);
  T *x = s.x, *g = s.g, *xi = s.xi;
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t first = k * R, rows = std::min<int64_t>(R, job.B - first);
    double* esum = job.energy_sum ? job.energy_sum + k * job.n_steps : nullptr;
    load_tile(x, job.x + first * d, rows, d);
    for (int64_t t = 0; t < job.n_steps; ++t) {
      // The energy of the state after step t-1 comes with this step's gradient.
      const bool energy_now = esum != nullptr && t > 0;
      energy_grad_tile(*job.net, s, x, g, energy_now ? s.e : nullptr);
      if (energy_now) esum[t - 1] = tile_sum(s.e, rows);
      normal_tile(xi, s.rows_scratch, first, rows, d, job.seed, job.first_step + t);
      const auto a = step_value<T, PerChain>(job.a, job.a_step, job.a_chain, t, first, rows,
                                             s.lane_a);
      const auto b = step_value<T, PerChain>(job.b, job.b_step, job.b_chain, t, first, rows,
                                             s.lane_b);
      const LangevinCoef<T> coef{a[0], b[0], job.lo, job.hi, job.clip, job.has_clip};
      for (int64_t j = 0; j < d; ++j) {
        if constexpr (PerChain) {
          const T lo = coef.lo, hi = coef.hi, clip = coef.c;
          const bool has_clip = coef.clip;
#pragma omp simd
          for (int64_t c = 0; c < R; ++c) {
            const LangevinCoef<T> k{a[c], b[c], lo, hi, clip, has_clip};
            const T v = langevin_point(x[j * R + c], g[j * R + c], xi[j * R + c], k);
            x[j * R + c] = c < rows ? v : T(0);  // padding lanes stay at 0
          }
        } else {
#pragma omp simd
          for (int64_t c = 0; c < R; ++c) {
            const T v = langevin_point(x[j * R + c], g[j * R + c], xi[j * R + c], coef);
            x[j * R + c] = c < rows ? v : T(0);  // padding lanes stay at 0
          }
        }
      }
      record_tile(job, x, first, rows, t);
    }
    if (esum != nullptr && job.n_steps > 0) {
      energy_grad_tile(*job.net, s, x, g, s.e, false);
      esum[job.n_steps - 1] = tile_sum(s.e, rows);
    }
    store_tile(job.x + first * d, x, rows, d);
  }
}

// Step t equals y = langevin_update(x, g_x, None, a[t], b[t], seed=seed, step=t);
// (E_y, g_y) = mlp_energy_grad(y); x, g_x, E_x, _ = mala_select(x, y, g_x, g_y, E_x, E_y, a[t],
// b[t], None, seed, t).
template <class T, bool PerChain>
void mala_tiles(const ChainJob<T>& job, int64_t k0, int64_t k1) {
  constexpr int64_t R = kTile<T>;
  const int64_t d = job.d;
  TileScratch<T> s(*job.net);
  T *x = s.x, *g = s.g, *e = s.e, *y = s.y, *gy = s.gy, *ey = s.ey, *xi = s.xi;
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t first = k * R, rows = std::min<int64_t>(R, job.B - first);
    load_tile(x, job.x + first * d, rows, d);
    energy_grad_tile(*job.net, s, x, g, e);
    for (int64_t t = 0; t < job.n_steps; ++t) {
      const auto a = step_value<T, PerChain>(job.a, job.a_step, job.a_chain, t, first, rows,
                                             s.lane_a);
      const auto b = step_value<T, PerChain>(job.b, job.b_step, job.b_chain, t, first, rows,
                                             s.lane_b);
      normal_tile(xi, s.rows_scratch, first, rows, d, job.seed, job.first_step + t);
      // Element i = j kTile + c is lane c's (i % R: unused, so free, for one value per step).
      for (int64_t i = 0; i < d * R; ++i) {
        const LangevinCoef<T> coef{a[i % R], b[i % R], -INFINITY, INFINITY, T(0), false};
        y[i] = langevin_point(x[i], g[i], xi[i], coef);
      }
      energy_grad_tile(*job.net, s, y, gy, ey);
      // log r = E(x) - E(y) + (|y - x + a g_x|^2 - |x - y + a g_y|^2) / (2 b^2), row sums sum8.
      T* tf = s.terms;
      T* tb = s.terms + d * R;
#pragma omp simd
      for (int64_t i = 0; i < d * R; ++i) {
        tf[i] = mala_forward_term(x[i], y[i], g[i], a[i % R]);
        tb[i] = mala_backward_term(x[i], y[i], gy[i], a[i % R]);
      }
      lane_sum8(s.sum_f, tf, d);
      lane_sum8(s.sum_b, tb, d);
      for (int64_t c = 0; c < R; ++c) {
        s.log_r[c] = mala_log_ratio_from_sums(s.sum_f[c], s.sum_b[c], e[c], ey[c], b[c]);
      }
      const int64_t n = accept_tile(job, s, first, rows, t, x, g, e, y, gy, ey);
      job.accepted[k * job.n_steps + t] = n;
      if (job.energy_sum) job.energy_sum[k * job.n_steps + t] = tile_sum(e, rows);
      record_tile(job, x, first, rows, t);
    }
    store_tile(job.x + first * d, x, rows, d);
  }
}

// Kinetic energies 1/2 sum8_j (m_j p_j^2) of the tile's momenta p[j][c].
template <class T>
void kinetic_tile(T* out, const T* p, const T* inv_mass, int64_t d, T* terms) {
  constexpr int64_t R = kTile<T>;
  for (int64_t j = 0; j < d; ++j) {
    const T m = inv_mass ? inv_mass[j] : T(1);
#pragma omp simd
    for (int64_t c = 0; c < R; ++c) terms[j * R + c] = kinetic_term(p[j * R + c], m);
  }
  lane_sum8(out, terms, d);
#pragma omp simd
  for (int64_t c = 0; c < R; ++c) out[c] = T(0.5) * out[c];
}

// p' = p - kick g; y = x + drift (m p') (m = 1 when inv_mass is null); y may alias x. The
// kick and drift sizes are StepValues (lane c reads kick_size[c]).
template <class T, class K>
void kick_drift_tile(T* y, T* p, const T* x, const T* g, const T* inv_mass, int64_t d,
                     K kick_size, K drift_size) {
  constexpr int64_t R = kTile<T>;
  for (int64_t j = 0; j < d; ++j) {
    const T m = inv_mass ? inv_mass[j] : T(1);
    T* yj = y + j * R;
    T* pj = p + j * R;
    const T* xj = x + j * R;
    const T* gj = g + j * R;
    if (inv_mass) {
#pragma omp simd
      for (int64_t c = 0; c < R; ++c) {
        const T pn = kick(pj[c], gj[c], kick_size[c]);
        pj[c] = pn;
        yj[c] = drift(xj[c], pn, m, drift_size[c]);
      }
    } else {
#pragma omp simd
      for (int64_t c = 0; c < R; ++c) {
        const T pn = kick(pj[c], gj[c], kick_size[c]);
        pj[c] = pn;
        yj[c] = drift_unit_mass(xj[c], pn, drift_size[c]);
      }
    }
  }
}

// Transition t as hmc_chain's (docs/kernels.md): L gradients per transition, plus one at the
// start; L = leapfrog_steps[t] when given, else n_leapfrog.
template <class T, bool PerChain>
void hmc_tiles(const ChainJob<T>& job, int64_t k0, int64_t k1) {
  constexpr int64_t R = kTile<T>;
  const int64_t d = job.d;
  TileScratch<T> s(*job.net);
  T *x = s.x, *g = s.g, *e = s.e, *y = s.y, *gy = s.gy, *ey = s.ey, *p = s.xi;
  const T* m = job.inv_mass;
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t first = k * R, rows = std::min<int64_t>(R, job.B - first);
    load_tile(x, job.x + first * d, rows, d);
    energy_grad_tile(*job.net, s, x, g, e);
    for (int64_t t = 0; t < job.n_steps; ++t) {
      const auto h = step_value<T, PerChain>(job.a, job.a_step, job.a_chain, t, first, rows,
                                             s.lane_a);
      const auto half = step_value<T, PerChain>(job.a, job.a_step, job.a_chain, t, first, rows,
                                                s.lane_b, 0.5);
      // Momentum p ~ N(0, M): stream 0 at step t, divided by sqrt(m).
      normal_tile(p, s.rows_scratch, first, rows, d, job.seed, job.first_step + t);
      if (m) {
        for (int64_t j = 0; j < d; ++j) {
          const T sm = job.inv_mass_sqrt[j];
#pragma omp simd
          for (int64_t c = 0; c < R; ++c) p[j * R + c] = p[j * R + c] / sm;
        }
      }
      kinetic_tile(s.sum_f, p, m, d, s.terms);
      for (int64_t c = 0; c < R; ++c) s.log_r[c] = e[c] + s.sum_f[c];  // H0
      kick_drift_tile(y, p, x, g, m, d, half, h);
      const int64_t n_leapfrog = job.leapfrog_steps ? job.leapfrog_steps[t] : job.n_leapfrog;
      for (int64_t l = 1; l <= n_leapfrog; ++l) {
        const bool last = l == n_leapfrog;
        energy_grad_tile(*job.net, s, y, gy, last ? ey : nullptr);
        if (!last) kick_drift_tile(y, p, y, gy, m, d, h, h);
      }
#pragma omp simd
      for (int64_t i = 0; i < d * R; ++i) p[i] = kick(p[i], gy[i], half[i % R]);
      kinetic_tile(s.sum_f, p, m, d, s.terms);
      for (int64_t c = 0; c < R; ++c) s.log_r[c] = s.log_r[c] - (ey[c] + s.sum_f[c]);  // H0 - H1
      const int64_t n = accept_tile(job, s, first, rows, t, x, g, e, y, gy, ey);
      job.accepted[k * job.n_steps + t] = n;
      if (job.energy_sum) job.energy_sum[k * job.n_steps + t] = tile_sum(e, rows);
      record_tile(job, x, first, rows, t);
    }
    store_tile(job.x + first * d, x, rows, d);
  }
}

// mlp_energy_grad over tiles [k0, k1): e[B] and g[B, d] of x[B, d].
template <class T>
void energy_grad_tiles(const ChainJob<T>& job, int64_t k0, int64_t k1) {
  constexpr int64_t R = kTile<T>;
  const int64_t d = job.d;
  TileScratch<T> s(*job.net);
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t first = k * R, rows = std::min<int64_t>(R, job.B - first);
    load_tile(s.x, job.x + first * d, rows, d);
    energy_grad_tile(*job.net, s, s.x, s.g, s.e);
    store_tile(job.grad_out + first * d, s.g, rows, d);
    for (int64_t c = 0; c < rows; ++c) job.energy_out[first + c] = s.e[c];
  }
}

template void langevin_tiles<float, false>(const ChainJob<float>&, int64_t, int64_t);
template void langevin_tiles<double, false>(const ChainJob<double>&, int64_t, int64_t);
template void mala_tiles<float, false>(const ChainJob<float>&, int64_t, int64_t);
template void mala_tiles<double, false>(const ChainJob<double>&, int64_t, int64_t);
template void hmc_tiles<float, false>(const ChainJob<float>&, int64_t, int64_t);
template void hmc_tiles<double, false>(const ChainJob<double>&, int64_t, int64_t);
template void langevin_tiles<float, true>(const ChainJob<float>&, int64_t, int64_t);
template void langevin_tiles<double, true>(const ChainJob<double>&, int64_t, int64_t);
template void mala_tiles<float, true>(const ChainJob<float>&, int64_t, int64_t);
template void mala_tiles<double, true>(const ChainJob<double>&, int64_t, int64_t);
template void hmc_tiles<float, true>(const ChainJob<float>&, int64_t, int64_t);
template void hmc_tiles<double, true>(const ChainJob<double>&, int64_t, int64_t);
template void energy_grad_tiles<float>(const ChainJob<float>&, int64_t, int64_t);
template void energy_grad_tiles<double>(const ChainJob<double>&, int64_t, int64_t);
