// CPU kernel of dsm_perturb (schema in csrc/ops.cpp): the denoising-score-matching noise and
// target in one pass,
//   x_tilde = x + sigma * xi,   target = -xi / sigma   (= -(x_tilde - x) / sigma^2),
// xi given or drawn in-kernel from Philox stream 0 at (seed, step), exactly the values
// philox_normal(x.shape, seed, step, x.dtype) returns.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "philox_fill.h"
#include "torchebm/dsm_checks.h"

namespace torchebm::cpu {
namespace {

// Elements per work item (a multiple of the Philox block): values never depend on the split.
constexpr int64_t kWorkElems = 4096;

std::tuple<at::Tensor, at::Tensor> dsm_perturb(const at::Tensor& x,
                                               const std::optional<at::Tensor>& noise,
                                               double sigma, int64_t seed, int64_t step) {
  constexpr const char* op = "dsm_perturb";
  const uint32_t st = dsm_checks::dsm_perturb(x, noise, sigma, step, checks::kCpu);
  const at::Tensor xc = x.contiguous();
  const at::Tensor nc = noise ? noise->contiguous() : at::Tensor();
  at::Tensor x_tilde = at::empty(x.sizes(), x.options());
  at::Tensor target = at::empty(x.sizes(), x.options());
  const int64_t n = xc.numel();
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), op, [&] {
    const scalar_t* px = xc.const_data_ptr<scalar_t>();
    const scalar_t* pn = noise ? nc.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* pxt = x_tilde.mutable_data_ptr<scalar_t>();
    scalar_t* pt = target.mutable_data_ptr<scalar_t>();
    const scalar_t s = static_cast<scalar_t>(sigma);
    const int64_t n_work = (n + kWorkElems - 1) / kWorkElems;
    at::parallel_for(0, n_work, 1, [&](int64_t w0, int64_t w1) {
      alignas(64) scalar_t xi[kWorkElems];
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t lo = w * kWorkElems, hi = std::min(n, lo + kWorkElems);
        const scalar_t* z = pn ? pn + lo : xi;
        if (!pn) fill_normal(xi, lo, hi, static_cast<uint64_t>(seed), st, kNormalStream);
        for (int64_t i = 0; i < hi - lo; ++i) {
          const scalar_t e = s * z[i];  // eps ~ N(0, sigma^2)
          pxt[lo + i] = px[lo + i] + e;
          pt[lo + i] = -z[i] / s;
        }
      }
    });
  });
  return {x_tilde, target};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) { m.impl("dsm_perturb", &dsm_perturb); }

}  // namespace torchebm::cpu
