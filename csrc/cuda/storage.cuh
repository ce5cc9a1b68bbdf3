// Device-side storage helpers shared by the CUDA kernels: the compute type of each storage
// dtype, conversions, Philox groups with vectorised loads and stores, grid sizing.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <limits>
#include <type_traits>

#include "launchers.h"
#include "torchebm/normal.h"
#include "torchebm/philox.h"
#include "torchebm/updates.h"

namespace torchebm::cuda {

// float32 arithmetic for every storage type except float64.
template <class T>
using compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// Elements per Philox group: four float32 normals/uniforms per call, or two float64 ones
// (normal.h); half and bfloat16 states use float32 groups.
template <class T>
inline constexpr int kGroup = std::is_same_v<compute_t<T>, double> ? 2 : 4;

template <class T>
__device__ __forceinline__ compute_t<T> to_compute(T v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __half2float(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(v);
  } else {
    return v;
  }
}

template <class T>
__device__ __forceinline__ T from_compute(compute_t<T> v) {
  if constexpr (std::is_same_v<T, __half>) {
    return __float2half_rn(v);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(v);
  } else {
    return v;
  }
}

// One group of storage elements as a single aligned vector (16 bytes for float32 and float64,
// 8 bytes for half/bfloat16), so a full, aligned group is one load or store instruction.
template <class T>
struct alignas(sizeof(T) * kGroup<T>) Pack {
  T v[kGroup<T>];
};

// Loads group g (elements g*G .. g*G+G-1, those below n) into compute values; missing tail
// elements read as 0. `aligned`: the base pointer is aligned to a whole Pack.
template <class T>
__device__ __forceinline__ void load_group(const T* __restrict__ p, int64_t g, int64_t n,
                                           bool aligned, compute_t<T> out[kGroup<T>]) {
  constexpr int G = kGroup<T>;
  const int64_t base = g * G;
  if (aligned && base + G <= n) {
    const Pack<T> v = reinterpret_cast<const Pack<T>*>(p)[g];
#pragma unroll
    for (int k = 0; k < G; ++k) out[k] = to_compute(v.v[k]);
  } else {
#pragma unroll
    for (int k = 0; k < G; ++k) out[k] = base + k < n ? to_compute(p[base + k]) : compute_t<T>(0);
  }
}

template <class T>
__device__ __forceinline__ void store_group(T* __restrict__ p, int64_t g, int64_t n, bool aligned,
                                            const compute_t<T> in[kGroup<T>]) {
  constexpr int G = kGroup<T>;
  const int64_t base = g * G;
  if (aligned && base + G <= n) {
    Pack<T> v;
#pragma unroll
    for (int k = 0; k < G; ++k) v.v[k] = from_compute<T>(in[k]);
    reinterpret_cast<Pack<T>*>(p)[g] = v;
  } else {
#pragma unroll
    for (int k = 0; k < G; ++k)
      if (base + k < n) p[base + k] = from_compute<T>(in[k]);
  }
}

template <class T>
inline bool pack_aligned(const void* p) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % sizeof(Pack<T>) == 0;
}

// Seed and step, from the arguments or (graph-safe) from device memory.
struct PhiloxStep {
  PhiloxKey key;
  uint32_t step;
};

__device__ __forceinline__ PhiloxStep resolve(const PhiloxArgs& rng) {
  if (rng.state != nullptr) {
    const int64_t seed = rng.state[0];
    const int64_t step = rng.state[1] + rng.step;
    return {PhiloxKey(static_cast<uint64_t>(seed)), static_cast<uint32_t>(step)};
  }
  return {PhiloxKey(rng.seed), static_cast<uint32_t>(rng.step)};
}

// v[k] for a run-time k < N, by selects: a dynamic index would put v in local memory.
template <class C, int N>
__device__ __forceinline__ C pick(const C (&v)[N], uint32_t k) {
  C r = v[0];
#pragma unroll
  for (int j = 1; j < N; ++j) r = k == uint32_t(j) ? v[j] : r;
  return r;
}

// Standard normals of group g of stream 0 (C: float or double).
template <class C>
__device__ __forceinline__ void group_normals(PhiloxKey key, uint64_t g, uint32_t step,
                                              C z[kGroup<C>]) {
  uint32_t w[4];
  philox_words(key, g, step, kNormalStream, w);
  normals_from_words(w, z);
}

// Uniforms in (0, 1) of group g of stream 1.
template <class C>
__device__ __forceinline__ void group_uniforms(PhiloxKey key, uint64_t g, uint32_t step,
                                               C u[kGroup<C>]) {
  uint32_t w[4];
  philox_words(key, g, step, kUniformStream, w);
  uniforms_from_words(w, u);
}

// Row reductions of the update rules (torchebm/updates.h), summed in ordered_sum's fixed
// 8-way order, the order of the CPU kernels' sum8 over the same terms.
template <class C, class X>
__device__ __forceinline__ C row_mala_log_ratio(const X* x, const X* y, const X* gx, const X* gy,
                                                C ex, C ey, C a, C b, int64_t d) {
  const C fwd = ordered_sum<C>(d, [&](int64_t j) {
    return mala_forward_term(to_compute(x[j]), to_compute(y[j]), to_compute(gx[j]), a);
  });
  const C bwd = ordered_sum<C>(d, [&](int64_t j) {
    return mala_backward_term(to_compute(x[j]), to_compute(y[j]), to_compute(gy[j]), a);
  });
  return mala_log_ratio_from_sums(fwd, bwd, ex, ey, b);
}

// Kinetic energy 1/2 sum_j m_j p_j^2 (m = inverse mass; 1 when null).
template <class C>
__device__ __forceinline__ C row_kinetic_energy(const C* p, const C* inv_mass, int64_t d) {
  return C(0.5) * ordered_sum<C>(d, [&](int64_t j) {
    return kinetic_term(p[j], inv_mass == nullptr ? C(1) : inv_mass[j]);
  });
}

// Grid of a grid-stride loop over `work` items: `blocks_per_sm` blocks per multiprocessor at
// most, no more than the work needs.
inline unsigned grid_for(int64_t work, int threads, const Launch& launch, int blocks_per_sm) {
  const int64_t needed = (work + threads - 1) / threads;
  const int64_t sms = launch.sm_count > 0 ? launch.sm_count : 132;
  const int64_t cap = sms * blocks_per_sm;
  const int64_t blocks = needed < cap ? needed : cap;
  return static_cast<unsigned>(blocks > 0 ? blocks : 1);
}

// Grid of a streaming launch: one thread per work item, so that blocks which retire are
// replaced at once and keep loads in flight (the kernels' grid-stride loops also accept any
// smaller grid). On an H100, the 2^26-element float32 Langevin update reached 2998 GB/s this
// way, against 2713 GB/s for one resident wave of 792 blocks looping over the work.
inline unsigned streaming_grid(int64_t work, int threads) {
  const int64_t needed = (work + threads - 1) / threads;
  const int64_t cap = 0x7FFFFFFF;  // gridDim.x limit
  return static_cast<unsigned>(needed < 1 ? 1 : (needed < cap ? needed : cap));
}

// f(static_cast<T*>(nullptr)) for the storage type T of `dtype` (the launchers' dtype switch).
template <class F>
cudaError_t with_dtype(Dtype dtype, F&& f) {
  switch (dtype) {
    case Dtype::kFloat32: return f(static_cast<float*>(nullptr));
    case Dtype::kFloat64: return f(static_cast<double*>(nullptr));
    case Dtype::kFloat16: return f(static_cast<__half*>(nullptr));
    case Dtype::kBFloat16: return f(static_cast<__nv_bfloat16*>(nullptr));
  }
  return cudaErrorInvalidValue;
}

// The update rule's coefficients in the compute type; absent clamp bounds are -inf / +inf.
template <class C>
inline LangevinCoef<C> langevin_coef(const LangevinCoeffs& c) {
  const C inf = std::numeric_limits<C>::infinity();
  return LangevinCoef<C>{C(c.a), C(c.b), c.has_min ? C(c.clamp_min) : -inf,
                         c.has_max ? C(c.clamp_max) : inf, c.has_clip ? C(c.grad_clip) : C(0),
                         c.has_clip};
}

inline cudaError_t launch_status() { return cudaGetLastError(); }

}  // namespace torchebm::cuda
