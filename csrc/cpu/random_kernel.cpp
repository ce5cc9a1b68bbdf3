// CPU kernels of philox_normal and philox_uniform (schemas in csrc/ops.cpp).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>

#include "philox_fill.h"
#include "torchebm/checks.h"

namespace torchebm::cpu {
namespace {

// Elements per parallel work item: a multiple of every block size, so work items never split a
// Philox block (not needed for correctness: values do not depend on the split; for speed).
constexpr int64_t kWorkElems = 8192;

at::ScalarType resolve_dtype(std::optional<c10::ScalarType> dtype, const char* op) {
  const c10::ScalarType t = dtype.value_or(c10::typeMetaToScalarType(at::get_default_dtype()));
  TORCH_CHECK(t == at::kFloat || t == at::kDouble, op, ": dtype must be float32 or float64, got ",
              t);
  return t;
}

template <bool kNormal>
at::Tensor philox_draw(c10::IntArrayRef size, int64_t seed, int64_t step,
                       std::optional<c10::ScalarType> dtype, std::optional<c10::Device> device,
                       const char* op) {
  checks::size(size, op);
  const uint32_t st = checks::step(step, op);
  const at::ScalarType t = resolve_dtype(dtype, op);
  TORCH_CHECK(!device || device->is_cpu(), op, ": the CPU kernel got device ", *device);
  at::Tensor out = at::empty(size, at::TensorOptions().dtype(t).device(at::kCPU));
  const int64_t n = out.numel();
  const uint64_t key = static_cast<uint64_t>(seed);
  AT_DISPATCH_FLOATING_TYPES(t, "philox_draw", [&] {
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    const int64_t n_work = (n + kWorkElems - 1) / kWorkElems;
    at::parallel_for(0, n_work, 1, [&](int64_t w0, int64_t w1) {
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t lo = w * kWorkElems, hi = std::min(n, lo + kWorkElems);
        if (kNormal) {
          fill_normal(po + lo, lo, hi, key, st, kNormalStream);
        } else {
          fill_uniform(po + lo, lo, hi, key, st, kUniformStream);
        }
      }
    });
  });
  return out;
}

at::Tensor philox_normal(c10::IntArrayRef size, int64_t seed, int64_t step,
                         std::optional<c10::ScalarType> dtype, std::optional<c10::Device> device) {
  return philox_draw<true>(size, seed, step, dtype, device, "philox_normal");
}

at::Tensor philox_uniform(c10::IntArrayRef size, int64_t seed, int64_t step,
                          std::optional<c10::ScalarType> dtype,
                          std::optional<c10::Device> device) {
  return philox_draw<false>(size, seed, step, dtype, device, "philox_uniform");
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) {
  m.impl("philox_normal", &philox_normal);
  m.impl("philox_uniform", &philox_uniform);
}

}  // namespace torchebm::cpu
