// CUDA kernel of analytic_energy_grad (docs/kernels.md): the closed-form energy [B] and
// gradient [B, d] of a built-in analytic model (torchebm/energies.h), one thread per row.
#include "chain_common.cuh"

namespace torchebm::cuda {
namespace {

using chain::ModelArgs;

// kD = 2: the row in registers; kD = 0: read and written in place in global memory, with the
// gaussian's scratch row in `work` ([B, d]).
template <class C, class M, int kD>
__global__ void __launch_bounds__(chain::kMaxThreads)
    analytic_kernel(const C* __restrict__ x, C* __restrict__ energy, C* __restrict__ grad,
                    C* __restrict__ work, ModelArgs margs, int64_t batch, int64_t d_arg) {
  const M m = chain::make_model<C, M>(margs);
  const int64_t d = kD > 0 ? kD : d_arg;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < batch;
       c += int64_t(gridDim.x) * blockDim.x) {
    if constexpr (kD > 0) {
      C xl[kD], gl[kD], sl[kD];
      for (int j = 0; j < kD; ++j) xl[j] = x[c * kD + j];
      energy[c] = chain::energy_grad<C>(m, xl, gl, sl, kD, true);
      for (int j = 0; j < kD; ++j) grad[c * kD + j] = gl[j];
    } else {
      energy[c] = chain::energy_grad<C>(m, x + c * d, grad + c * d,
                                        work == nullptr ? nullptr : work + c * d, d, true);
    }
  }
}

template <class C, class M>
cudaError_t run(const void* x, const EnergyArgs& e, int64_t B, int64_t d, void* energy,
                void* grad, void* work, Launch launch) {
  const ModelArgs margs = chain::model_args(e);
  const int threads = chain::chain_threads(B, launch);
  const unsigned grid = grid_for(B, threads, launch, 16);
  const C* xp = static_cast<const C*>(x);
  C *ep = static_cast<C*>(energy), *gp = static_cast<C*>(grad), *wp = static_cast<C*>(work);
  if (d == 2) {
    analytic_kernel<C, M, 2><<<grid, threads, 0, launch.stream>>>(xp, ep, gp, wp, margs, B, d);
  } else if constexpr (!chain::kOnly2d<M>) {
    analytic_kernel<C, M, 0><<<grid, threads, 0, launch.stream>>>(xp, ep, gp, wp, margs, B, d);
  } else {
    return cudaErrorInvalidValue;
  }
  return launch_status();
}

template <class C>
cudaError_t dispatch(const void* x, const EnergyArgs& e, int64_t B, int64_t d, void* energy,
                     void* grad, void* work, Launch launch) {
  cudaError_t err = cudaErrorInvalidValue;
  chain::with_model<C>(e.id, [&](auto* tag) {
    using M = std::remove_pointer_t<decltype(tag)>;
    err = run<C, M>(x, e, B, d, energy, grad, work, launch);
  });
  return err;
}

}  // namespace

cudaError_t analytic_energy_grad(const void* x, EnergyArgs energy, Dtype dtype, int64_t batch,
                                 int64_t dim, void* energy_out, void* grad_out, void* workspace,
                                 Launch launch) {
  if (batch == 0 || dim == 0) return cudaSuccess;
  switch (dtype) {
    case Dtype::kFloat32:
      return dispatch<float>(x, energy, batch, dim, energy_out, grad_out, workspace, launch);
    case Dtype::kFloat64:
      return dispatch<double>(x, energy, batch, dim, energy_out, grad_out, workspace, launch);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace torchebm::cuda
