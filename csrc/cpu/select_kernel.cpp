// CPU kernels of the Metropolis and MALA selections (schemas in csrc/ops.cpp).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <optional>
#include <tuple>
#include <vector>

#include "elementwise_blocks.h"
#include "philox_fill.h"
#include "torchebm/checks.h"

namespace torchebm::cpu {
namespace {

constexpr int64_t kWorkElems = 8192;

// Per-chain uniforms: the given tensor, or stream 1 at (seed, step) in x's dtype.
template <class T>
std::vector<T> chain_uniforms(const std::optional<at::Tensor>& uniform, int64_t B, int64_t seed,
                              uint32_t step) {
  std::vector<T> u(static_cast<size_t>(B));
  if (uniform) {
    const at::Tensor uc = uniform->contiguous();
    if (B > 0) std::memcpy(u.data(), uc.const_data_ptr<T>(), sizeof(T) * B);
  } else if (B > 0) {
    fill_uniform(u.data(), 0, B, static_cast<uint64_t>(seed), step, kUniformStream);
  }
  return u;
}

// Rows of `d` elements: out[r] = accepted[r] ? new[r] : old[r].
template <class T>
void select_rows(T* out, const T* new_rows, const T* old_rows, const bool* accepted, int64_t r0,
                 int64_t r1, int64_t d) {
  if (d == 0) return;  // empty rows: memcpy must not see the null data pointer of a [B, 0] tensor
  for (int64_t r = r0; r < r1; ++r) {
    const T* src = (accepted[r] ? new_rows : old_rows) + r * d;
    std::memcpy(out + r * d, src, sizeof(T) * d);
  }
}

int64_t work_rows(int64_t d) { return std::max<int64_t>(1, kWorkElems / std::max<int64_t>(d, 1)); }

std::tuple<at::Tensor, at::Tensor> metropolis_select(const at::Tensor& log_accept_ratio,
                                                     const at::Tensor& x,
                                                     const at::Tensor& x_proposed,
                                                     const std::optional<at::Tensor>& uniform,
                                                     int64_t seed, int64_t step) {
  constexpr const char* op = "metropolis_select";
  const uint32_t st =
      checks::metropolis_select(log_accept_ratio, x, x_proposed, uniform, step, checks::kCpu);
  const int64_t B = x.size(0);

  const at::Tensor xc = x.contiguous(), yc = x_proposed.contiguous();
  const at::Tensor lr = log_accept_ratio.contiguous();
  at::Tensor x_out = at::empty(x.sizes(), x.options());
  at::Tensor accepted = at::empty({B}, x.options().dtype(at::kBool));
  const int64_t d = B == 0 ? 0 : xc.numel() / B;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), op, [&] {
    const std::vector<scalar_t> u = chain_uniforms<scalar_t>(uniform, B, seed, st);
    bool* acc = accepted.mutable_data_ptr<bool>();
    accept_block(acc, u.data(), lr.const_data_ptr<scalar_t>(), B);
    const int64_t rows = work_rows(d);
    at::parallel_for(0, (B + rows - 1) / rows, 1, [&](int64_t w0, int64_t w1) {
      for (int64_t w = w0; w < w1; ++w) {
        select_rows(x_out.mutable_data_ptr<scalar_t>(), yc.const_data_ptr<scalar_t>(),
                    xc.const_data_ptr<scalar_t>(), acc, w * rows, std::min(B, (w + 1) * rows), d);
      }
    });
  });
  return {x_out, accepted};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> mala_select(
    const at::Tensor& x, const at::Tensor& y, const at::Tensor& grad_x, const at::Tensor& grad_y,
    const at::Tensor& energy_x, const at::Tensor& energy_y, double a, double b,
    const std::optional<at::Tensor>& uniform, int64_t seed, int64_t step,
    const std::optional<at::Tensor>& a_chain, const std::optional<at::Tensor>& b_chain) {
  constexpr const char* op = "mala_select";
  const uint32_t st = checks::mala_select(x, y, grad_x, grad_y, energy_x, energy_y, a, b, uniform,
                                          step, checks::kCpu, a_chain, b_chain);
  const at::Tensor ac = a_chain ? a_chain->contiguous() : at::Tensor();
  const at::Tensor bc = b_chain ? b_chain->contiguous() : at::Tensor();
  const int64_t B = x.size(0);

  const at::Tensor xc = x.contiguous(), yc = y.contiguous(), gxc = grad_x.contiguous(),
                   gyc = grad_y.contiguous(), exc = energy_x.contiguous(),
                   eyc = energy_y.contiguous();
  at::Tensor x_out = at::empty(x.sizes(), x.options());
  at::Tensor g_out = at::empty(x.sizes(), x.options());
  at::Tensor e_out = at::empty({B}, x.options());
  at::Tensor accepted = at::empty({B}, x.options().dtype(at::kBool));
  const int64_t d = B == 0 ? 0 : xc.numel() / B;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), op, [&] {
    using T = scalar_t;
    const std::vector<T> u = chain_uniforms<T>(uniform, B, seed, st);
    const T *px = xc.const_data_ptr<T>(), *py = yc.const_data_ptr<T>(),
            *pgx = gxc.const_data_ptr<T>(), *pgy = gyc.const_data_ptr<T>(),
            *pex = exc.const_data_ptr<T>(), *pey = eyc.const_data_ptr<T>();
    bool* acc = accepted.mutable_data_ptr<bool>();
    T* pe = e_out.mutable_data_ptr<T>();
    const T ta = static_cast<T>(a), tb = static_cast<T>(b);
    const T* pa = a_chain ? ac.const_data_ptr<T>() : nullptr;
    const T* pb = b_chain ? bc.const_data_ptr<T>() : nullptr;
    const int64_t rows = work_rows(d);
    at::parallel_for(0, (B + rows - 1) / rows, 1, [&](int64_t w0, int64_t w1) {
      std::vector<T> log_r(static_cast<size_t>(rows)), scratch(static_cast<size_t>(2 * rows * d));
      for (int64_t w = w0; w < w1; ++w) {
        const int64_t r0 = w * rows, r1 = std::min(B, r0 + rows), o = r0 * d;
        if (!pa && !pb) {
          mala_log_ratio_block(log_r.data(), px + o, py + o, pgx + o, pgy + o, pex + r0, pey + r0,
                               ta, tb, r1 - r0, d, scratch.data());
        } else {  // per-chain (a, b): row by row, the same loops
          for (int64_t r = r0; r < r1; ++r) {
            const int64_t q = r * d;
            mala_log_ratio_block(log_r.data() + (r - r0), px + q, py + q, pgx + q, pgy + q,
                                 pex + r, pey + r, pa ? pa[r] : ta, pb ? pb[r] : tb, 1, d,
                                 scratch.data());
          }
        }
        accept_block(acc + r0, u.data() + r0, log_r.data(), r1 - r0);
        for (int64_t r = r0; r < r1; ++r) pe[r] = acc[r] ? pey[r] : pex[r];
        select_rows(x_out.mutable_data_ptr<T>(), py, px, acc, r0, r1, d);
        select_rows(g_out.mutable_data_ptr<T>(), pgy, pgx, acc, r0, r1, d);
      }
    });
  });
  return {x_out, g_out, e_out, accepted};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CPU, m) {
  m.impl("metropolis_select", &metropolis_select);
  m.impl("mala_select", &mala_select);
}

}  // namespace torchebm::cpu
