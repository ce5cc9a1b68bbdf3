// CUDA registrations of the torchebm ops (schemas in csrc/ops.cpp, contracts in
// docs/kernels.md): argument checks, output allocation, and a call to the raw-pointer launcher
// (csrc/cuda/*.cu) on torch's current stream. Nothing here synchronises with the host.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "launchers.h"

namespace torchebm::cuda {
namespace {

Dtype state_dtype(const at::Tensor& t, const char* op, const char* arg) {
  switch (t.scalar_type()) {
    case at::kFloat: return Dtype::kFloat32;
    case at::kDouble: return Dtype::kFloat64;
    case at::kHalf: return Dtype::kFloat16;
    case at::kBFloat16: return Dtype::kBFloat16;
    default:
      TORCH_CHECK(false, op, ": ", arg, " must be float32, float64, float16 or bfloat16, got ",
                  t.scalar_type());
  }
}

// The arithmetic type of a storage dtype: float64 stays, everything else computes in float32.
at::ScalarType compute_type(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

Launch current_launch() {
  return Launch{c10::cuda::getCurrentCUDAStream().stream(),
                at::cuda::getCurrentDeviceProperties()->multiProcessorCount};
}

void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

void check_cuda(const at::Tensor& t, const at::Tensor& ref, const char* op, const char* arg) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", arg, " must be on ", ref.device(),
              " like x, got ", t.device());
}

void check_like(const at::Tensor& t, const at::Tensor& x, const char* op, const char* arg) {
  check_cuda(t, x, op, arg);
  TORCH_CHECK(t.sizes() == x.sizes(), op, ": ", arg, " must have the shape of x ", x.sizes(),
              ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", arg, " dtype ", t.scalar_type(),
              " differs from x dtype ", x.scalar_type());
}

// Per-chain tensor [B] on x's device, any floating dtype the kernels take.
void check_per_chain(const at::Tensor& t, const at::Tensor& x, int64_t batch, const char* op,
                     const char* arg) {
  check_cuda(t, x, op, arg);
  TORCH_CHECK(t.dim() == 1 && t.size(0) == batch, op, ": ", arg, " must have shape [", batch,
              "] (one value per chain), got ", t.sizes());
}

int64_t chains_of(const at::Tensor& x, const char* op) {
  TORCH_CHECK(x.dim() >= 1, op, ": x must be [B, *event], got a 0-d tensor");
  return x.size(0);
}

// ---- random numbers -------------------------------------------------------------------------

at::Tensor philox_fill(c10::IntArrayRef size, int64_t seed, int64_t step,
                       std::optional<at::ScalarType> dtype, std::optional<at::Device> device,
                       bool uniform) {
  const char* op = uniform ? "philox_uniform" : "philox_normal";
  const at::Device dev = device.value_or(at::Device(at::kCUDA));
  TORCH_CHECK(dev.is_cuda(), op, ": the CUDA kernel was called for device ", dev);
  const c10::cuda::CUDAGuard guard(dev);
  at::Tensor out = at::empty(size, at::TensorOptions().dtype(dtype.value_or(at::kFloat)).device(dev));
  const Dtype dt = state_dtype(out, op, "dtype");
  const PhiloxArgs rng{static_cast<uint64_t>(seed), step, nullptr};
  check_launch(uniform ? philox_uniform(out.data_ptr(), dt, out.numel(), rng, current_launch())
                       : philox_normal(out.data_ptr(), dt, out.numel(), rng, current_launch()),
               op);
  return out;
}

at::Tensor philox_normal_cuda(c10::IntArrayRef size, int64_t seed, int64_t step,
                              std::optional<at::ScalarType> dtype,
                              std::optional<at::Device> device) {
  return philox_fill(size, seed, step, dtype, device, false);
}

at::Tensor philox_uniform_cuda(c10::IntArrayRef size, int64_t seed, int64_t step,
                               std::optional<at::ScalarType> dtype,
                               std::optional<at::Device> device) {
  return philox_fill(size, seed, step, dtype, device, true);
}

// seed_state: int64 [2] = {seed, step} on the GPU (read by graph-safe kernels at run time).
void check_seed_state(const at::Tensor& s, const at::Tensor& x, const char* op) {
  check_cuda(s, x, op, "seed_state");
  TORCH_CHECK(s.scalar_type() == at::kLong && s.numel() == 2 && s.is_contiguous(), op,
              ": seed_state must be a contiguous int64 tensor of 2 elements {seed, step}, got ",
              s.scalar_type(), " ", s.sizes());
}

void philox_state_advance_cuda(const at::Tensor& seed_state, int64_t increment) {
  const char* op = "philox_state_advance_";
  TORCH_CHECK(seed_state.is_cuda(), op, ": seed_state must be on a CUDA device");
  check_seed_state(seed_state, seed_state, op);
  const c10::cuda::CUDAGuard guard(seed_state.device());
  check_launch(philox_state_advance(seed_state.data_ptr<int64_t>(), increment, current_launch()), op);
}

// ---- Langevin -------------------------------------------------------------------------------

LangevinCoeffs langevin_coeffs(double a, double b, std::optional<double> clamp_min,
                               std::optional<double> clamp_max, std::optional<double> grad_clip) {
  return LangevinCoeffs{a,
                        b,
                        clamp_min.has_value(),
                        clamp_max.has_value(),
                        grad_clip.has_value(),
                        clamp_min.value_or(0.0),
                        clamp_max.value_or(0.0),
                        grad_clip.value_or(0.0)};
}

at::Tensor langevin_update_cuda(const at::Tensor& x, const at::Tensor& grad,
                                const std::optional<at::Tensor>& noise, double a, double b,
                                std::optional<double> clamp_min, std::optional<double> clamp_max,
                                std::optional<double> grad_clip, int64_t seed, int64_t step) {
  const char* op = "langevin_update";
  const Dtype dt = state_dtype(x, op, "x");
  check_like(grad, x, op, "grad");
  if (noise.has_value()) check_like(*noise, x, op, "noise");
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), gc = grad.contiguous();
  const at::Tensor nc = noise.has_value() ? noise->contiguous() : at::Tensor();
  at::Tensor out = at::empty_like(xc, at::MemoryFormat::Contiguous);
  check_launch(langevin_update(xc.const_data_ptr(), gc.const_data_ptr(),
                               nc.defined() ? nc.const_data_ptr() : nullptr, out.data_ptr(), dt,
                               xc.numel(), langevin_coeffs(a, b, clamp_min, clamp_max, grad_clip),
                               PhiloxArgs{static_cast<uint64_t>(seed), step, nullptr},
                               current_launch()),
               op);
  return out;
}

// In place, with (seed, step + step_offset) read from seed_state on the device: a captured
// CUDA graph replays with the stream position the state holds at replay time.
void langevin_update_graphsafe_cuda(const at::Tensor& x, const at::Tensor& grad, double a,
                                    double b, std::optional<double> clamp_min,
                                    std::optional<double> clamp_max,
                                    std::optional<double> grad_clip, const at::Tensor& seed_state,
                                    int64_t step_offset) {
  const char* op = "langevin_update_graphsafe_";
  const Dtype dt = state_dtype(x, op, "x");
  TORCH_CHECK(x.is_contiguous(), op, ": x is updated in place and must be contiguous");
  check_like(grad, x, op, "grad");
  check_seed_state(seed_state, x, op);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor gc = grad.contiguous();
  check_launch(langevin_update(x.const_data_ptr(), gc.const_data_ptr(), nullptr, x.data_ptr(), dt,
                               x.numel(), langevin_coeffs(a, b, clamp_min, clamp_max, grad_clip),
                               PhiloxArgs{0, step_offset, seed_state.const_data_ptr<int64_t>()},
                               current_launch()),
               op);
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CUDA, m) {
  m.impl("philox_normal", &philox_normal_cuda);
  m.impl("philox_uniform", &philox_uniform_cuda);
  m.impl("philox_state_advance_", &philox_state_advance_cuda);
  m.impl("langevin_update", &langevin_update_cuda);
  m.impl("langevin_update_graphsafe_", &langevin_update_graphsafe_cuda);
}

}  // namespace torchebm::cuda
