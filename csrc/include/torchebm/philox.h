// Philox4x32-10 counter-based random numbers (Salmon et al., "Parallel random numbers: as easy
// as 1, 2, 3", SC'11): 128-bit counter, 64-bit key, ten rounds of two 32x32->64 multiplies.
//
// torchebm's stream layout (docs/kernels.md): key = the 64-bit seed as two words (lo, hi);
// counter = (i_lo, i_hi, step, stream), where i is the index of a group of output elements
// (four float32 values, or two float64 values, per call), `step` the sampler step and `stream`
// the purpose (0: normal noise, 1: acceptance uniforms). All four output words are used.
//
// Written once for both back ends: plain C++ on the host, `__host__ __device__` under nvcc.
#pragma once

#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define TORCHEBM_HD __host__ __device__ __forceinline__
#else
// always_inline: the CPU hot loops are compiled once per instruction set (function
// multi-versioning), and the maths must be inlined into each clone to be vectorised for it.
#define TORCHEBM_HD inline __attribute__((always_inline))
#endif

namespace torchebm {

enum Stream : uint32_t { kNormalStream = 0, kUniformStream = 1 };

// Round multipliers and Weyl key increments of Philox4x32 (from the paper).
constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

// One Philox4x32-10 block: counter (c0..c3), key (k0, k1) -> four output words, in place.
TORCHEBM_HD void philox4x32_10(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3,
                               uint32_t k0, uint32_t k1) {
#if defined(__CUDACC__) || defined(__HIPCC__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

// The same ten rounds with each 32-bit word held in the low half of a 64-bit lane (the high half
// is don't-care): the multiply becomes one 32x32->64 lane multiply and the hi/lo split a shift,
// with no packing of 32-bit lanes. Twice as fast as the 32-bit form when a CPU loop over
// counters is vectorised; the words are identical (tests compare both with the reference).
TORCHEBM_HD void philox4x32_10_wide(uint64_t& c0, uint64_t& c1, uint64_t& c2, uint64_t& c3,
                                    uint32_t k0, uint32_t k1) {
  constexpr uint64_t kLow = 0xFFFFFFFFull;
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = (c0 & kLow) * kPhiloxM0;
    const uint64_t p1 = (c2 & kLow) * kPhiloxM1;
    c0 = (p1 >> 32) ^ c1 ^ k0;
    c1 = p1;
    c2 = (p0 >> 32) ^ c3 ^ k1;
    c3 = p0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

// The counter of group `i` at (step, stream), and the key of `seed`, as torchebm lays them out.
struct PhiloxKey {
  uint32_t k0, k1;
  TORCHEBM_HD explicit PhiloxKey(uint64_t seed)
      : k0(static_cast<uint32_t>(seed)), k1(static_cast<uint32_t>(seed >> 32)) {}
};

// Four output words of group `i` at (step, stream).
TORCHEBM_HD void philox_words(PhiloxKey key, uint64_t i, uint32_t step, uint32_t stream,
                              uint32_t out[4]) {
  uint32_t c0 = static_cast<uint32_t>(i), c1 = static_cast<uint32_t>(i >> 32), c2 = step,
           c3 = stream;
  philox4x32_10(c0, c1, c2, c3, key.k0, key.k1);
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

}  // namespace torchebm
