// CPU kernel of replica_swap (schema in csrc/ops.cpp, maths in torchebm/replica_swap.h).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <optional>
#include <tuple>
#include <vector>

#include "philox_fill.h"
#include "torchebm/replica_swap.h"
#include "torchebm/replica_swap_checks.h"

namespace torchebm::cpu {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> replica_swap(
    const at::Tensor& x, const at::Tensor& energy, c10::ArrayRef<double> betas, int64_t parity,
    const std::optional<at::Tensor>& uniform, int64_t seed, int64_t step) {
  constexpr const char* op = "replica_swap";
  const uint32_t st = checks::replica_swap(x, energy, betas, parity, uniform, step, checks::kCpu);
  const int64_t K = x.size(0), B = x.size(1), pairs = K > 0 ? K - 1 : 0;
  const at::Tensor xc = x.contiguous(), ec = energy.contiguous();
  at::Tensor x_out = at::empty(x.sizes(), x.options());
  at::Tensor e_out = at::empty({K, B}, x.options());
  at::Tensor accepted = at::zeros({pairs, B}, x.options().dtype(at::kBool));
  const int64_t rows = K * B;
  const int64_t d = rows == 0 ? 0 : xc.numel() / rows;
  if (rows == 0) return {x_out, e_out, accepted};
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), op, [&] {
    using T = scalar_t;
    const int64_t n_u = pairs * B;
    std::vector<T> u(static_cast<size_t>(n_u));
    if (uniform) {
      const at::Tensor uc = uniform->contiguous();
      if (n_u > 0) std::memcpy(u.data(), uc.const_data_ptr<T>(), sizeof(T) * n_u);
    } else if (n_u > 0) {
      fill_uniform(u.data(), 0, n_u, static_cast<uint64_t>(seed), st, kUniformStream);
    }
    const T* pe = ec.const_data_ptr<T>();
    bool* acc = accepted.mutable_data_ptr<bool>();
    for (int64_t k = parity; k + 1 < K; k += 2) {
      const T lo = static_cast<T>(betas[k]), hi = static_cast<T>(betas[k + 1]);
      for (int64_t b = 0; b < B; ++b) {
        const T log_r = swap_log_ratio(lo, hi, pe[k * B + b], pe[(k + 1) * B + b]);
        acc[k * B + b] = metropolis_accept(u[k * B + b], log_r);
      }
    }
    const T* px = xc.const_data_ptr<T>();
    T* po = x_out.mutable_data_ptr<T>();
    T* peo = e_out.mutable_data_ptr<T>();
    const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(d, 1));
    at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t k = r / B, b = r % B;
        const int64_t src = swap_source(k, b, K, B, parity, acc) * B + b;
        std::memcpy(po + r * d, px + src * d, sizeof(T) * d);
        peo[r] = pe[src];
      }
    });
  });
  return {x_out, e_out, accepted};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) { m.impl("replica_swap", &replica_swap); }

}  // namespace torchebm::cpu
