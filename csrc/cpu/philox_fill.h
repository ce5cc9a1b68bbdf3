// CPU generation of torchebm's Philox streams (layout in csrc/include/torchebm/philox.h and
// docs/kernels.md), shared by every CPU kernel that draws.
//
// Every value is computed by the same vectorised block routine (64 Philox groups at a time,
// blocks aligned to multiples of 64 groups), so a value does not depend on which op, thread or
// chunk produced it: in-kernel draws equal philox_normal / philox_uniform bit for bit.
#pragma once

#include <cstdint>

#include "torchebm/normal.h"

namespace torchebm::cpu {

// Philox groups per generated block.
constexpr int64_t kBlockGroups = 64;

// Elements of a block: 256 float32 or 128 float64 values.
template <class T>
constexpr int64_t block_elems() {
  return kBlockGroups * PhiloxGroup<T>::kElems;
}

// The normals of groups [g0, g0 + 64) (g0 a multiple of 64) in element order.
void normal_block(uint64_t seed, uint32_t step, uint32_t stream, uint64_t g0, float* out);
void normal_block(uint64_t seed, uint32_t step, uint32_t stream, uint64_t g0, double* out);

// Elements [begin, end) of the normal stream (seed, step, stream) into out[0 .. end-begin).
template <class T>
void fill_normal(T* out, int64_t begin, int64_t end, uint64_t seed, uint32_t step,
                 uint32_t stream);

// Elements [begin, end) of the uniform stream into out[0 .. end-begin).
template <class T>
void fill_uniform(T* out, int64_t begin, int64_t end, uint64_t seed, uint32_t step,
                  uint32_t stream);

}  // namespace torchebm::cpu
