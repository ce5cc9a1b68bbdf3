// CUDA host side of philox_normal, philox_uniform and philox_state_advance_ (kernels in
// random_kernel.cu, schemas in csrc/ops.cpp).
#include "host_common.h"

namespace torchebm::cuda {
namespace {

template <bool kUniform>
at::Tensor philox_draw(c10::IntArrayRef size, int64_t seed, int64_t step,
                       std::optional<at::ScalarType> dtype, std::optional<at::Device> device) {
  const char* op = kUniform ? "philox_uniform" : "philox_normal";
  const at::ScalarType t = checks::philox_draw(size, step, dtype, device, op, checks::kCuda);
  const at::Device dev = device.value_or(at::Device(at::kCUDA));
  const c10::cuda::CUDAGuard guard(dev);
  at::Tensor out = at::empty(size, at::TensorOptions().dtype(t).device(dev));
  const PhiloxArgs rng{static_cast<uint64_t>(seed), step, nullptr};
  const Launch launch = current_launch();
  const Dtype dt = dtype_of(t);
  check_launch(kUniform ? cuda::philox_uniform(out.data_ptr(), dt, out.numel(), rng, launch)
                        : cuda::philox_normal(out.data_ptr(), dt, out.numel(), rng, launch),
               op);
  return out;
}

void philox_state_advance_(const at::Tensor& seed_state, int64_t increment) {
  checks::philox_state_advance_(seed_state, checks::kCuda);
  const c10::cuda::CUDAGuard guard(seed_state.device());
  check_launch(
      cuda::philox_state_advance(seed_state.data_ptr<int64_t>(), increment, current_launch()),
      "philox_state_advance_");
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CUDA, m) {
  m.impl("philox_normal", &philox_draw<false>);
  m.impl("philox_uniform", &philox_draw<true>);
  m.impl("philox_state_advance_", &philox_state_advance_);
}

}  // namespace torchebm::cuda
