// CPU kernel of the fused leapfrog kick + drift (schema in csrc/ops.cpp).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "elementwise_blocks.h"
#include "torchebm/checks.h"

namespace torchebm::cpu {
namespace {

constexpr int64_t kWorkElems = 8192;

std::tuple<at::Tensor, at::Tensor> leapfrog_kick_drift(const at::Tensor& x, const at::Tensor& p,
                                                       const at::Tensor& grad, double kick_size,
                                                       double drift_size,
                                                       const std::optional<at::Tensor>& inv_mass,
                                                       const std::optional<at::Tensor>& kick_chain,
                                                       const std::optional<at::Tensor>& drift_chain) {
  constexpr const char* op = "leapfrog_kick_drift";
  checks::leapfrog_kick_drift(x, p, grad, kick_size, drift_size, inv_mass, checks::kCpu,
                              kick_chain, drift_chain);
  const at::Tensor kc = kick_chain ? kick_chain->contiguous() : at::Tensor();
  const at::Tensor dc = drift_chain ? drift_chain->contiguous() : at::Tensor();
  const int64_t d = x.dim() == 0 ? 1 : x.size(-1);
  const bool scalar_mass = inv_mass && inv_mass->dim() == 0;
  const at::Tensor mc = inv_mass ? inv_mass->contiguous() : at::Tensor();
  const at::Tensor xc = x.contiguous(), pc = p.contiguous(), gc = grad.contiguous();
  at::Tensor x_out = at::empty(x.sizes(), x.options());
  at::Tensor p_out = at::empty(x.sizes(), x.options());
  const int64_t n = xc.numel();
  const int64_t rows = d == 0 ? 0 : n / d;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), op, [&] {
    const scalar_t* pm = inv_mass ? mc.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t kk = static_cast<scalar_t>(kick_size), dd = static_cast<scalar_t>(drift_size);
    const scalar_t* pk = kick_chain ? kc.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* pd = drift_chain ? dc.const_data_ptr<scalar_t>() : nullptr;
    const int64_t chains = (pk || pd) ? x.size(0) : 1;
    const int64_t rows_per_chain = chains > 0 && rows > 0 ? rows / chains : 1;
    const int64_t rows_per_work = std::max<int64_t>(1, kWorkElems / std::max<int64_t>(d, 1));
    const int64_t n_work = (rows + rows_per_work - 1) / rows_per_work;
    at::parallel_for(0, n_work, 1, [&](int64_t w0, int64_t w1) {
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t r0 = w * rows_per_work, r1 = std::min(rows, r0 + rows_per_work);
        if (!pk && !pd) {
          const int64_t o = r0 * d;
          kick_drift_block(x_out.mutable_data_ptr<scalar_t>() + o,
                           p_out.mutable_data_ptr<scalar_t>() + o,
                           xc.const_data_ptr<scalar_t>() + o, pc.const_data_ptr<scalar_t>() + o,
                           gc.const_data_ptr<scalar_t>() + o, r1 - r0, d, kk, dd, pm, scalar_mass);
          continue;
        }
        // Per-chain kick/drift: row by row (a chain is rows_per_chain rows of d), the same
        // element loop.
        for (int64_t r = r0; r < r1; ++r) {
          if (x.dim() == 1) {  // x [B]: its one row holds every chain, an element each
            for (int64_t c = 0; c < d; ++c) {
              kick_drift_block(x_out.mutable_data_ptr<scalar_t>() + c,
                               p_out.mutable_data_ptr<scalar_t>() + c,
                               xc.const_data_ptr<scalar_t>() + c, pc.const_data_ptr<scalar_t>() + c,
                               gc.const_data_ptr<scalar_t>() + c, 1, 1, pk ? pk[c] : kk,
                               pd ? pd[c] : dd, pm && !scalar_mass ? pm + c : pm, scalar_mass);
            }
            continue;
          }
          const int64_t o = r * d, c = r / rows_per_chain;
          kick_drift_block(x_out.mutable_data_ptr<scalar_t>() + o,
                           p_out.mutable_data_ptr<scalar_t>() + o,
                           xc.const_data_ptr<scalar_t>() + o, pc.const_data_ptr<scalar_t>() + o,
                           gc.const_data_ptr<scalar_t>() + o, 1, d, pk ? pk[c] : kk,
                           pd ? pd[c] : dd, pm, scalar_mass);
        }
      }
    });
  });
  return {x_out, p_out};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) { m.impl("leapfrog_kick_drift", &leapfrog_kick_drift); }

}  // namespace torchebm::cpu
