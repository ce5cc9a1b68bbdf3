// CPU kernel of analytic_energy_grad (schema in csrc/ops.cpp).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "analytic_models.h"
#include "torchebm/checks.h"

namespace torchebm::cpu {
namespace {

std::tuple<at::Tensor, at::Tensor> analytic_energy_grad(const std::string& energy,
                                                        const at::Tensor& x,
                                                        c10::ArrayRef<double> params,
                                                        const std::optional<at::Tensor>& mean,
                                                        const std::optional<at::Tensor>& precision) {
  constexpr const char* op = "analytic_energy_grad";
  const Energy kind =
      checks::analytic_energy_grad(energy, x, params, mean, precision, checks::kCpu);
  const at::Tensor xc = x.contiguous();
  const int64_t B = x.size(0), d = x.size(1);
  at::Tensor e_out = at::empty({B}, x.options());
  at::Tensor g_out = at::empty(x.sizes(), x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), op, [&] {
    using T = scalar_t;
    with_model<T>(kind, params, mean, precision, d, [&](const auto& m) {
      const int64_t rows = std::max<int64_t>(kGemmRows, 4096 / std::max<int64_t>(d, 1));
      at::parallel_for(0, (B + rows - 1) / rows, 1, [&](int64_t w0, int64_t w1) {
        std::vector<T> scratch(static_cast<size_t>(scratch_size<T>(m, rows, d)));
        for (int64_t w = w0; w < w1; ++w) {
          const int64_t r0 = w * rows, nr = std::min(B, r0 + rows) - r0;
          energy_grad_rows<T>(m, xc.const_data_ptr<T>() + r0 * d,
                              g_out.mutable_data_ptr<T>() + r0 * d,
                              e_out.mutable_data_ptr<T>() + r0, nr, d, scratch.data());
        }
      });
    });
  });
  return {e_out, g_out};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) { m.impl("analytic_energy_grad", &analytic_energy_grad); }

}  // namespace torchebm::cpu
