// Argument checks of dsm_perturb (schema in csrc/ops.cpp), shared by its CPU and CUDA entry
// points (host code only). Every message names the op, the argument, the value received and
// what was expected.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <optional>

#include "torchebm/checks.h"

namespace torchebm::dsm_checks {

// x: a state on the back end; noise: None or x's shape, dtype and device; sigma finite and > 0
// with 1 / sigma finite, both in the dtype the kernels compute in (the target divides by
// sigma); step a Philox counter word. Returns the step as that word.
inline uint32_t dsm_perturb(const at::Tensor& x, const std::optional<at::Tensor>& noise,
                            double sigma, int64_t step, const checks::Backend& be) {
  constexpr const char* op = "dsm_perturb";
  checks::state(x, op, "x", be);
  if (noise) checks::like(*noise, x, op, "noise", "x");
  const at::ScalarType compute = checks::compute_dtype(x.scalar_type());
  checks::positive(sigma, compute, op, "sigma");
  const double inv = 1.0 / checks::rounded(sigma, compute);
  TORCH_CHECK(std::isfinite(checks::rounded(inv, compute)), op, ": sigma = ", sigma,
              " gives 1 / sigma = ", inv, ", not finite in ", checks::dtype_name(compute),
              " (the target divides by sigma); expected a larger sigma");
  return checks::step(step, op);
}

}  // namespace torchebm::dsm_checks
