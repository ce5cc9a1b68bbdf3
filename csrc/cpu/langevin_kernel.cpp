// CPU kernel of the fused Langevin update (schema in csrc/ops.cpp).
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <optional>

namespace torchebm::cpu {
namespace {

at::Tensor langevin_update(const at::Tensor& x, const at::Tensor& grad,
                           const std::optional<at::Tensor>& noise, double a, double b,
                           std::optional<double> clamp_min, std::optional<double> clamp_max,
                           std::optional<double> grad_clip, int64_t seed, int64_t step) {
  TORCH_CHECK(x.sizes() == grad.sizes(), "langevin_update: grad must have the shape of x ",
              x.sizes(), ", got ", grad.sizes());
  TORCH_CHECK(x.scalar_type() == grad.scalar_type(), "langevin_update: grad dtype ",
              grad.scalar_type(), " differs from x dtype ", x.scalar_type());
  TORCH_CHECK(noise.has_value(), "langevin_update: in-kernel noise is not built yet; pass noise");
  TORCH_CHECK(noise->sizes() == x.sizes() && noise->scalar_type() == x.scalar_type(),
              "langevin_update: noise must match x in shape and dtype");
  (void)seed;
  (void)step;
  at::Tensor xc = x.contiguous(), gc = grad.contiguous(), nc = noise->contiguous();
  at::Tensor out = at::empty_like(xc);
  const int64_t n = xc.numel();
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "langevin_update", [&] {
    const scalar_t *px = xc.const_data_ptr<scalar_t>(), *pg = gc.const_data_ptr<scalar_t>(),
                   *pn = nc.const_data_ptr<scalar_t>();
    scalar_t* po = out.mutable_data_ptr<scalar_t>();
    const scalar_t sa = a, sb = b;
    const bool clip = grad_clip.has_value();
    const scalar_t c = clip ? static_cast<scalar_t>(*grad_clip) : scalar_t(0);
    const scalar_t lo = clamp_min ? static_cast<scalar_t>(*clamp_min) : -INFINITY;
    const scalar_t hi = clamp_max ? static_cast<scalar_t>(*clamp_max) : INFINITY;
    at::parallel_for(0, n, 4096, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        scalar_t g = pg[i];
        if (clip) g = std::min(std::max(g, -c), c);
        scalar_t v = px[i] - sa * g + sb * pn[i];
        po[i] = std::min(std::max(v, lo), hi);
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) { m.impl("langevin_update", &langevin_update); }

}  // namespace torchebm::cpu
