// CPU kernels of philox_normal and philox_uniform (schemas in csrc/ops.cpp).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>
#include <string>

#include "philox_fill.h"
#include "torchebm/checks.h"

namespace torchebm::cpu {
namespace {

// Elements per parallel work item: a multiple of every block size, so work items never split a
// Philox block (not needed for correctness: values do not depend on the split; for speed).
constexpr int64_t kWorkElems = 8192;

template <bool kNormal>
at::Tensor philox_draw(c10::IntArrayRef size, int64_t seed, int64_t step,
                       std::optional<c10::ScalarType> dtype, std::optional<c10::Device> device,
                       const char* op) {
  const at::ScalarType t = checks::philox_draw(size, step, dtype, device, op, checks::kCpu);
  const uint32_t st = static_cast<uint32_t>(step);
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

at::Tensor rng_math(const std::string& fn, const at::Tensor& x) {
  constexpr const char* op = "_rng_math";
  if (fn == "philox") {
    TORCH_CHECK(x.scalar_type() == at::kLong && x.dim() == 2 && x.size(1) == 6, op,
                ": fn 'philox' takes int64 [N, 6] (counter words, key words), got ",
                x.scalar_type(), " ", x.sizes());
    const at::Tensor xc = x.contiguous();
    at::Tensor out = at::empty({x.size(0), 4}, x.options());
    const int64_t* in = xc.const_data_ptr<int64_t>();
    int64_t* po = out.mutable_data_ptr<int64_t>();
    for (int64_t i = 0; i < x.size(0); ++i) {
      const int64_t* r = in + 6 * i;
      uint32_t c0 = static_cast<uint32_t>(r[0]), c1 = static_cast<uint32_t>(r[1]),
               c2 = static_cast<uint32_t>(r[2]), c3 = static_cast<uint32_t>(r[3]);
      philox4x32_10(c0, c1, c2, c3, static_cast<uint32_t>(r[4]), static_cast<uint32_t>(r[5]));
      po[4 * i + 0] = c0;
      po[4 * i + 1] = c1;
      po[4 * i + 2] = c2;
      po[4 * i + 3] = c3;
    }
    return out;
  }
  TORCH_CHECK(fn == "log" || fn == "sin2pi" || fn == "cos2pi", op,
              ": fn must be 'log', 'sin2pi', 'cos2pi' or 'philox', got '", fn, "'");
  checks::floating(x, op, "x");
  const at::Tensor xc = x.contiguous();
  at::Tensor out = at::empty_like(xc);
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "_rng_math", [&] {
    const scalar_t* in = xc.const_data_ptr<scalar_t>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    for (int64_t i = 0; i < xc.numel(); ++i) {
      scalar_t s, c;
      if (fn == "log") {
        po[i] = log_approx(in[i]);
      } else {
        sincos_2pi(in[i], s, c);
        po[i] = fn == "sin2pi" ? s : c;
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) {
  m.impl("philox_normal", &philox_normal);
  m.impl("philox_uniform", &philox_uniform);
  m.impl("_rng_math", &rng_math);
}

}  // namespace torchebm::cpu
