// Output tensors of the CPU kernels.
//
// A large fresh allocation is mapped lazily by the OS: the kernel that fills it takes one page
// fault per 4 KiB page, which for 2^24 float32 normals on two cores cost as much as generating
// them. Advising transparent huge pages before the first touch replaces 512 of those faults by
// one, where the OS allows it (THP mode "madvise" or "always"); elsewhere the advice is a no-op.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace torchebm::cpu {

inline constexpr int64_t kHugePageBytes = int64_t(2) << 20;

// at::empty(size, options), with huge pages advised for the whole 2 MiB pages it spans when it
// holds at least two.
inline at::Tensor empty_output(at::IntArrayRef size, const at::TensorOptions& options) {
  at::Tensor out = at::empty(size, options);
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const int64_t bytes = static_cast<int64_t>(out.nbytes());
  if (bytes >= 2 * kHugePageBytes) {
    const uintptr_t begin = reinterpret_cast<uintptr_t>(out.data_ptr());
    const uintptr_t mask = static_cast<uintptr_t>(kHugePageBytes - 1);
    const uintptr_t lo = (begin + mask) & ~mask;
    const uintptr_t hi = (begin + static_cast<uintptr_t>(bytes)) & ~mask;
    if (hi > lo) (void)madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);  // advice
  }
#endif
  return out;
}

}  // namespace torchebm::cpu
