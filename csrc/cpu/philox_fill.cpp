// Vectorised Philox + Box-Muller blocks for the CPU (declarations in philox_fill.h).
#include "philox_fill.h"

#include <algorithm>
#include <cstring>

#include "multiversion.h"

namespace torchebm::cpu {
namespace {

// Philox words of 64 consecutive groups, planar (w[k][j] = word k of group g0 + j), so the loop
// vectorises across groups. g0 is a multiple of 64, so the low counter word never carries.
TORCHEBM_HD void philox_block_words(uint64_t seed, uint32_t step, uint32_t stream, uint64_t g0,
                                    uint32_t (*w)[kBlockGroups]) {
  const PhiloxKey key(seed);
  const uint32_t lo = static_cast<uint32_t>(g0), hi = static_cast<uint32_t>(g0 >> 32);
#pragma omp simd
  for (int j = 0; j < kBlockGroups; ++j) {
    uint64_t c0 = lo + static_cast<uint32_t>(j), c1 = hi, c2 = step, c3 = stream;
    philox4x32_10_wide(c0, c1, c2, c3, key.k0, key.k1);
    w[0][j] = static_cast<uint32_t>(c0);
    w[1][j] = static_cast<uint32_t>(c1);
    w[2][j] = static_cast<uint32_t>(c2);
    w[3][j] = static_cast<uint32_t>(c3);
  }
}

TORCHEBM_MULTIVERSION
void normal_block_f32(uint64_t seed, uint32_t step, uint32_t stream, uint64_t g0,
                      float* __restrict out) {
  alignas(64) uint32_t w[4][kBlockGroups];
  philox_block_words(seed, step, stream, g0, w);
  alignas(64) float z[4][kBlockGroups];
#pragma omp simd
  for (int j = 0; j < kBlockGroups; ++j) {
    box_muller(uniform_f32(w[0][j]), uniform_f32(w[1][j]), z[0][j], z[1][j]);
    box_muller(uniform_f32(w[2][j]), uniform_f32(w[3][j]), z[2][j], z[3][j]);
  }
  // Element 4j + k is word k of group j: interleave the planes.
#pragma omp simd
  for (int j = 0; j < kBlockGroups; ++j) {
    out[4 * j + 0] = z[0][j];
    out[4 * j + 1] = z[1][j];
    out[4 * j + 2] = z[2][j];
    out[4 * j + 3] = z[3][j];
  }
}

TORCHEBM_MULTIVERSION
void normal_block_f64(uint64_t seed, uint32_t step, uint32_t stream, uint64_t g0,
                      double* __restrict out) {
  alignas(64) uint32_t w[4][kBlockGroups];
  philox_block_words(seed, step, stream, g0, w);
  alignas(64) double z[2][kBlockGroups];
#pragma omp simd
  for (int j = 0; j < kBlockGroups; ++j) {
    box_muller(uniform_f64(w[0][j], w[1][j]), uniform_f64(w[2][j], w[3][j]), z[0][j], z[1][j]);
  }
#pragma omp simd
  for (int j = 0; j < kBlockGroups; ++j) {
    out[2 * j + 0] = z[0][j];
    out[2 * j + 1] = z[1][j];
  }
}

}  // namespace

void normal_block(uint64_t seed, uint32_t step, uint32_t stream, uint64_t g0, float* out) {
  normal_block_f32(seed, step, stream, g0, out);
}
void normal_block(uint64_t seed, uint32_t step, uint32_t stream, uint64_t g0, double* out) {
  normal_block_f64(seed, step, stream, g0, out);
}

template <class T>
void fill_normal(T* out, int64_t begin, int64_t end, uint64_t seed, uint32_t step,
                 uint32_t stream) {
  constexpr int64_t E = block_elems<T>();
  constexpr int64_t G = PhiloxGroup<T>::kElems;
  alignas(64) T buf[E];
  for (int64_t b = begin / E * E; b < end; b += E) {
    const int64_t lo = std::max(begin, b), hi = std::min(end, b + E);
    if (lo == b && hi == b + E) {
      normal_block(seed, step, stream, static_cast<uint64_t>(b / G), out + (b - begin));
    } else {
      normal_block(seed, step, stream, static_cast<uint64_t>(b / G), buf);
      std::memcpy(out + (lo - begin), buf + (lo - b), sizeof(T) * (hi - lo));
    }
  }
}

template <class T>
void fill_uniform(T* out, int64_t begin, int64_t end, uint64_t seed, uint32_t step,
                  uint32_t stream) {
  constexpr int64_t G = PhiloxGroup<T>::kElems;
  const PhiloxKey key(seed);
  for (int64_t g = begin / G; g * G < end; ++g) {
    uint32_t w[4];
    philox_words(key, static_cast<uint64_t>(g), step, stream, w);
    T u[G];
    uniforms_from_words(w, u);
    for (int64_t k = 0; k < G; ++k) {
      const int64_t i = g * G + k;
      if (i >= begin && i < end) out[i - begin] = u[k];
    }
  }
}

template void fill_normal<float>(float*, int64_t, int64_t, uint64_t, uint32_t, uint32_t);
template void fill_normal<double>(double*, int64_t, int64_t, uint64_t, uint32_t, uint32_t);
template void fill_uniform<float>(float*, int64_t, int64_t, uint64_t, uint32_t, uint32_t);
template void fill_uniform<double>(double*, int64_t, int64_t, uint64_t, uint32_t, uint32_t);

}  // namespace torchebm::cpu
