// Host interface of the CUDA MLP kernels (mlp_chain_kernel.cu): raw pointers, no torch types.
// mlp_chain_host.cpp packs the network with ATen as mlp_layout says and calls these on torch's
// current stream. The maths is torchebm/mlp.h's, the contracts the CPU kernels'
// (csrc/cpu/mlp_chain_kernel.cpp, docs in python/torchebm/kernels/mlp.py).
#pragma once

#include <cstddef>
#include <cstdint>

#include "launchers.h"

namespace torchebm::cuda::mlp_chain {

constexpr int kMaxLayers = 16;
constexpr int kChains = 32;   // chains per tile: the lanes of a warp
constexpr int kThreads = 128;  // threads per block: 4 warps
constexpr int kRows = 8;      // output rows per thread in a layer's GEMM; widths pad to it

inline int64_t pad_rows(int64_t n) { return (n + kRows - 1) / kRows * kRows; }

// One layer and where its packed arrays start in MlpNet::weights (elements of the compute type):
//   fwd  [n_in][n_out_pad]  W^T, zero-padded columns   (z = W h + b)
//   bwd  [n_out][n_in_pad]  W,   zero-padded columns   (W^T delta)
//   bias [n_out_pad]
struct MlpLayer {
  int n_in, n_out, n_in_pad, n_out_pad, act;
  double p[3];
  int64_t fwd, bwd, bias;
};

struct MlpNet {
  int L, d, d_pad, max_pad;
  MlpLayer layers[kMaxLayers];
  double out_scale, out_offset;
  // The last activation is the identity: delta_{L-1} = out_scale everywhere, and
  // W_{L-1}^T delta_{L-1} is the constant c_out [n_in_pad of the last layer].
  bool const_out_grad;
  int64_t c_out;
  int64_t packed_elems;   // size of `weights`
  const void* weights;    // device, compute type
};

// The layout of a network of L layers with widths[0 .. L] (widths[0] = d), activation codes and
// kActParams parameters per layer; `weights` is left null. L <= kMaxLayers.
inline MlpNet mlp_layout(int L, const int64_t* widths, const int64_t* acts, const double* params,
                         double out_scale, double out_offset) {
  MlpNet net{};
  net.L = L;
  net.d = static_cast<int>(widths[0]);
  net.d_pad = static_cast<int>(pad_rows(widths[0]));
  net.out_scale = out_scale;
  net.out_offset = out_offset;
  net.const_out_grad = acts[L - 1] == 0;
  int64_t at = 0;
  for (int l = 0; l < L; ++l) {
    MlpLayer& ly = net.layers[l];
    ly.n_in = static_cast<int>(widths[l]);
    ly.n_out = static_cast<int>(widths[l + 1]);
    ly.n_in_pad = static_cast<int>(pad_rows(ly.n_in));
    ly.n_out_pad = static_cast<int>(pad_rows(ly.n_out));
    ly.act = static_cast<int>(acts[l]);
    for (int i = 0; i < 3; ++i) ly.p[i] = params[3 * l + i];
    ly.fwd = at;
    at += int64_t(ly.n_in) * ly.n_out_pad;
    ly.bwd = at;
    at += int64_t(ly.n_out) * ly.n_in_pad;
    ly.bias = at;
    at += ly.n_out_pad;
    if (ly.n_out_pad > net.max_pad) net.max_pad = ly.n_out_pad;
  }
  net.c_out = at;
  at += net.layers[L - 1].n_in_pad;
  net.packed_elems = at;
  return net;
}

struct MlpChainArgs {
  Dtype dtype;  // kFloat32 or kFloat64 (callers run half/bfloat16 chains in float32)
  int64_t batch, n_steps, thin;
  Schedule a;            // launchers.h's layout ([n_steps] or per chain): Langevin/MALA a; HMC
                         // step size
  Schedule b;            // Langevin/MALA b; unused by HMC
  LangevinCoeffs clamp;  // Langevin: clamp bounds and gradient clip
  int n_leapfrog;        // HMC
  const int64_t* leapfrog_steps;  // HMC: null (n_leapfrog every step) or [n_steps] on the device
  const void* inv_mass;  // HMC: null (unit mass) or [d] on the device, compute type
  uint64_t seed;
  int64_t first_step;  // step t draws the noise of step first_step + t
  bool record_energy;
};

// Launch geometry, which the caller needs to size the outputs' scratch: `blocks` blocks (each
// runs tiles blockIdx.x, blockIdx.x + blocks, ...), `partial` = n_steps * blocks * 2 float64
// per-step sums, a workspace of `workspace_elems` compute-type elements, `smem_bytes` of shared
// memory per block. `fits` is false when the network's activations do not fit in shared
// memory (the launchers then return cudaErrorInvalidValue). `per_chain`: the schedules have a
// value per chain (a chain_stride != 0: the kernels compiled for those, whose occupancy may
// differ).
struct MlpPlan {
  int blocks;
  size_t smem_bytes;
  int64_t workspace_elems;
  bool fits;
};

MlpPlan mlp_plan(Sampler sampler, const MlpNet& net, Dtype dtype, int64_t batch, Launch launch,
                 bool per_chain = false);

// Whether a chain call's schedules have a value per chain (the kernels compiled for those run).
inline bool per_chain(const MlpChainArgs& a) { return a.a.chain_stride != 0 || a.b.chain_stride != 0; }

// Energy [B] and gradient [B, d] of x [B, d] (compute types only).
cudaError_t mlp_energy_grad(const void* x, const MlpNet& net, Dtype dtype, int64_t batch,
                            void* energy, void* grad, void* workspace, Launch launch);

cudaError_t mlp_langevin_chain(const void* x0, const MlpNet& net, const MlpChainArgs& args,
                               ChainOutputs out, Launch launch);
cudaError_t mlp_mala_chain(const void* x0, const MlpNet& net, const MlpChainArgs& args,
                           ChainOutputs out, Launch launch);
cudaError_t mlp_hmc_chain(const void* x0, const MlpNet& net, const MlpChainArgs& args,
                          ChainOutputs out, Launch launch);

}  // namespace torchebm::cuda::mlp_chain
