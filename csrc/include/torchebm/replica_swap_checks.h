// Argument checks of replica_swap, shared by its CPU and CUDA entry points (torchebm/checks.h).
#pragma once

#include "torchebm/checks.h"

namespace torchebm::checks {

// x [K, B, *event] (K temperatures, B chains), energy [K, B] like x, betas K finite values (in
// the kernels' dtype), parity 0 or 1, uniform [K-1, B] like x. Returns the step as a Philox
// counter word.
inline uint32_t replica_swap(const at::Tensor& x, const at::Tensor& energy,
                             c10::ArrayRef<double> betas, int64_t parity,
                             const std::optional<at::Tensor>& uniform, int64_t step_,
                             const Backend& be) {
  constexpr const char* op = "replica_swap";
  state(x, op, "x", be);
  TORCH_CHECK(x.dim() >= 2, op, ": x must be [n_temps, n_chains, *event], got shape ",
              x.sizes());
  const int64_t K = x.size(0), B = x.size(1);
  TORCH_CHECK(energy.sizes() == at::IntArrayRef({K, B}), op, ": energy must be [n_temps, n_chains] = [",
              K, ", ", B, "], got ", energy.sizes());
  TORCH_CHECK(energy.scalar_type() == x.scalar_type(), op, ": energy must have x's dtype (",
              x.scalar_type(), "), got ", energy.scalar_type());
  same_device(energy, x, op, "energy", "x");
  TORCH_CHECK(static_cast<int64_t>(betas.size()) == K, op, ": betas must hold one value per "
              "temperature (", K, "), got ", betas.size());
  const at::ScalarType compute = compute_dtype(x.scalar_type());
  for (size_t k = 0; k < betas.size(); ++k) {
    TORCH_CHECK(std::isfinite(rounded(betas[k], compute)), op, ": betas[", k,
                "] must be finite in ", dtype_name(compute), ", got ", betas[k]);
  }
  TORCH_CHECK(parity == 0 || parity == 1, op, ": parity must be 0 (pairs 0-1, 2-3, ...) or 1 "
              "(pairs 1-2, 3-4, ...), got ", parity);
  if (uniform) {
    const int64_t pairs = K > 0 ? K - 1 : 0;
    TORCH_CHECK(uniform->sizes() == at::IntArrayRef({pairs, B}), op,
                ": uniform must be [n_temps - 1, n_chains] = [", pairs, ", ", B, "], got ",
                uniform->sizes());
    TORCH_CHECK(uniform->scalar_type() == x.scalar_type(), op, ": uniform must have x's dtype (",
                x.scalar_type(), "), got ", uniform->scalar_type());
    same_device(*uniform, x, op, "uniform", "x");
    uniforms(*uniform, op);
  }
  return step(step_, op);
}

}  // namespace torchebm::checks
