// CUDA host side of replica_swap (kernels in replica_swap_kernel.cu, schema in csrc/ops.cpp).
#include "host_common.h"
#include "torchebm/replica_swap_checks.h"

#include <tuple>
#include <vector>

namespace torchebm::cuda {

// replica_swap_kernel.cu. x [K, B, row] and energy [K, B] of `dtype`; betas K values of the
// compute type on the device; uniform [K-1, B] of `dtype` or null (stream 1); accepted [K-1, B].
cudaError_t replica_swap(const void* x, const void* energy, const void* betas,
                         const void* uniform, void* x_out, void* energy_out, bool* accepted,
                         Dtype dtype, int64_t n_temps, int64_t n_chains, int64_t row,
                         int64_t parity, PhiloxArgs rng, Launch launch);

namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> replica_swap_op(
    const at::Tensor& x, const at::Tensor& energy, c10::ArrayRef<double> betas, int64_t parity,
    const std::optional<at::Tensor>& uniform, int64_t seed, int64_t step) {
  checks::replica_swap(x, energy, betas, parity, uniform, step, checks::kCuda);
  const int64_t K = x.size(0), B = x.size(1), pairs = K > 0 ? K - 1 : 0;
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), ec = energy.contiguous();
  const at::Tensor uc = uniform ? uniform->contiguous() : at::Tensor();
  const at::Tensor bt = on_device(at::tensor(std::vector<double>(betas.begin(), betas.end()),
                                             at::TensorOptions().dtype(at::kDouble)),
                                  x.device(), compute_type(x.scalar_type()));
  at::Tensor x_out = at::empty(x.sizes(), x.options());
  at::Tensor e_out = at::empty({K, B}, x.options());
  at::Tensor accepted = at::empty({pairs, B}, x.options().dtype(at::kBool));
  const int64_t rows = K * B;
  const int64_t d = rows == 0 ? 0 : xc.numel() / rows;
  check_launch(cuda::replica_swap(xc.const_data_ptr(), ec.const_data_ptr(), bt.const_data_ptr(),
                                  data_or_null(uc), x_out.data_ptr(), e_out.data_ptr(),
                                  accepted.data_ptr<bool>(), dtype_of(x.scalar_type()), K, B, d,
                                  parity, PhiloxArgs{static_cast<uint64_t>(seed), step, nullptr},
                                  current_launch()),
               "replica_swap");
  return {x_out, e_out, accepted};
}

}  // namespace

TORCH_LIBRARY_IMPL(torchebm, CUDA, m) { m.impl("replica_swap", &replica_swap_op); }

}  // namespace torchebm::cuda
