// CPU kernel of the fused Langevin update (schema in csrc/ops.cpp).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <optional>

#include "elementwise_blocks.h"
#include "philox_fill.h"
#include "torchebm/checks.h"

namespace torchebm::cpu {
namespace {

// Elements per work item (a multiple of the Philox block): values never depend on the split.
constexpr int64_t kWorkElems = 4096;

at::Tensor langevin_update(const at::Tensor& x, const at::Tensor& grad,
                           const std::optional<at::Tensor>& noise, double a, double b,
                           std::optional<double> clamp_min, std::optional<double> clamp_max,
                           std::optional<double> grad_clip, int64_t seed, int64_t step,
                           const std::optional<at::Tensor>& a_chain,
                           const std::optional<at::Tensor>& b_chain) {
  constexpr const char* op = "langevin_update";
  const uint32_t st = checks::langevin_update(x, grad, noise, a, b, clamp_min, clamp_max,
                                              grad_clip, step, checks::kCpu, a_chain, b_chain);
  const bool per_chain = a_chain || b_chain;
  const at::Tensor ac = a_chain ? a_chain->contiguous() : at::Tensor();
  const at::Tensor bc = b_chain ? b_chain->contiguous() : at::Tensor();

  const at::Tensor xc = x.contiguous(), gc = grad.contiguous();
  const at::Tensor nc = noise ? noise->contiguous() : at::Tensor();
  at::Tensor out = at::empty(x.sizes(), x.options());
  const int64_t n = xc.numel();
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), op, [&] {
    const scalar_t* px = xc.const_data_ptr<scalar_t>();
    const scalar_t* pg = gc.const_data_ptr<scalar_t>();
    const scalar_t* pn = noise ? nc.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    const scalar_t* pa = a_chain ? ac.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* pb = b_chain ? bc.const_data_ptr<scalar_t>() : nullptr;
    const int64_t d = per_chain && x.size(0) > 0 ? n / x.size(0) : 1;
    const LangevinCoef<scalar_t> k{
        static_cast<scalar_t>(a), static_cast<scalar_t>(b),
        clamp_min ? static_cast<scalar_t>(*clamp_min) : -INFINITY,
        clamp_max ? static_cast<scalar_t>(*clamp_max) : INFINITY,
        grad_clip ? static_cast<scalar_t>(*grad_clip) : scalar_t(0), grad_clip.has_value()};
    const int64_t n_work = (n + kWorkElems - 1) / kWorkElems;
    at::parallel_for(0, n_work, 1, [&](int64_t w0, int64_t w1) {
      alignas(64) scalar_t xi[kWorkElems];
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t lo = w * kWorkElems, hi = std::min(n, lo + kWorkElems);
        const scalar_t* noise_ptr = pn ? pn + lo : xi;
        if (!pn) fill_normal(xi, lo, hi, static_cast<uint64_t>(seed), st, kNormalStream);
        if (!per_chain) {
          langevin_block(po + lo, px + lo, pg + lo, noise_ptr, hi - lo, k);
          continue;
        }
        // Per-chain coefficients: the work item's pieces of rows of d elements, each with its
        // chain's (a, b) and the same element loop.
        for (int64_t r = lo / d; r * d < hi; ++r) {
          const int64_t s0 = std::max(lo, r * d), s1 = std::min(hi, (r + 1) * d);
          LangevinCoef<scalar_t> kr = k;
          if (pa) kr.a = pa[r];
          if (pb) kr.b = pb[r];
          langevin_block(po + s0, px + s0, pg + s0, noise_ptr + (s0 - lo), s1 - s0, kr);
        }
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) { m.impl("langevin_update", &langevin_update); }

}  // namespace torchebm::cpu
