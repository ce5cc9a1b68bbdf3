// What the host side of every CUDA op shares. An op's CUDA implementation is two files: its
// kernels and launcher in <op>_kernel.cu (C++17 for nvcc, raw pointers, no torch headers) and
// its host side in <op>_host.cpp (C++20, torch's headers): checks::<op> on the arguments,
// output allocation, the launcher called on torch's current stream, and the registration for
// the CUDA dispatch key. Nothing on the host side synchronises with the device.
//
// States may be float32, float64, float16 or bfloat16 (the last two computed in float32);
// per-chain tensors have the state's dtype, as on the CPU.
#pragma once

#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "launchers.h"
#include "torchebm/checks.h"

namespace torchebm::cuda {

// The launchers' name for a state dtype that checks::state accepted.
inline Dtype dtype_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return Dtype::kFloat32;
    case at::kDouble: return Dtype::kFloat64;
    case at::kHalf: return Dtype::kFloat16;
    case at::kBFloat16: return Dtype::kBFloat16;
    default: TORCH_INTERNAL_ASSERT(false, "no CUDA kernels for dtype ", t);
  }
}

// The type a state is computed in: float64 for float64 states, float32 for the others.
inline at::ScalarType compute_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

inline Launch current_launch() {
  return Launch{c10::cuda::getCurrentCUDAStream().stream(),
                at::cuda::getCurrentDeviceProperties()->multiProcessorCount};
}

inline void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

inline const void* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr() : nullptr;
}

// `t` copied to `device` as a contiguous `dtype` tensor, without synchronising the host: a CPU
// tensor is staged in pinned memory (an asynchronous copy from pageable memory may block).
inline at::Tensor on_device(const at::Tensor& t, const at::Device& device, at::ScalarType dtype) {
  const at::Tensor src = t.is_cpu() ? t.to(dtype).contiguous().pin_memory() : t;
  return src.to(at::TensorOptions().device(device).dtype(dtype), /*non_blocking=*/true)
      .contiguous();
}

// The per-step ops' per-chain coefficients (a_chain, b_chain, kick_chain, drift_chain), which
// checks::chain_coefficient accepted ([B], x's dtype and device) or absent, as the launchers
// take them: contiguous (a strided view, such as expand(B) of one value, is copied), held in
// `keep` while the launch is enqueued; row = the elements of one chain (x.numel() / B).
inline ChainCoeffs chain_coeffs(const std::optional<at::Tensor>& first,
                                const std::optional<at::Tensor>& second, const at::Tensor& x,
                                at::Tensor (&keep)[2]) {
  keep[0] = first ? first->contiguous() : at::Tensor();
  keep[1] = second ? second->contiguous() : at::Tensor();
  const int64_t B = x.dim() >= 1 ? x.size(0) : 1;
  return ChainCoeffs{data_or_null(keep[0]), data_or_null(keep[1]),
                     B > 0 ? x.numel() / B : 1};
}

// An output back in the state's dtype (float16/bfloat16 rows ran in float32).
inline at::Tensor out_dtype(const at::Tensor& t, at::ScalarType dtype) {
  return t.scalar_type() == dtype ? t : t.to(dtype);
}

}  // namespace torchebm::cuda
