// CUDA kernels of the Metropolis and MALA selections (docs/kernels.md, torchebm/updates.h).
//
// A chain's decision needs its uniform (given, or Philox stream 1 at [B], group by group as
// philox_uniform draws it) and, for MALA, two sums over its row. MALA assigns a team of `team`
// lanes (a power of two <= 32, sized to the row) to each row and reduces with warp shuffles; a
// team of one lane sums in the CPU kernels' order (row_mala_log_ratio). MALA's a and b are
// floats or per chain ([B]: row i takes entry i).
#include "launchers.h"
#include "storage.cuh"

namespace torchebm::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTileRows = 1024;  // rows per block and tile in metropolis_select

template <class T>
__device__ __forceinline__ compute_t<T> chain_uniform(const T* uniform, int64_t row,
                                                      const PhiloxStep& ps) {
  using C = compute_t<T>;
  if (uniform != nullptr) return to_compute(uniform[row]);
  constexpr int G = kGroup<T>;
  C u[G];
  group_uniforms<C>(ps.key, static_cast<uint64_t>(row / G), ps.step, u);
  return pick(u, static_cast<uint32_t>(row % G));
}

// One tile of rows per block and iteration: decide each row's acceptance, then copy the tile's
// elements from the proposal or the current state.
template <class T>
__global__ void __launch_bounds__(kThreads)
    metropolis_select_kernel(const T* __restrict__ lar, const T* __restrict__ x,
                             const T* __restrict__ x_proposed, const T* __restrict__ uniform,
                             T* __restrict__ x_out, bool* __restrict__ accepted, int64_t batch,
                             int64_t d, int64_t tile_rows, PhiloxArgs rng) {
  __shared__ bool take[kTileRows];
  const PhiloxStep ps = resolve(rng);
  const int64_t tiles = (batch + tile_rows - 1) / tile_rows;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t r0 = tile * tile_rows;
    const int64_t rows = min(tile_rows, batch - r0);
    for (int64_t r = threadIdx.x; r < rows; r += blockDim.x) {
      const bool a = metropolis_accept(chain_uniform(uniform, r0 + r, ps), to_compute(lar[r0 + r]));
      take[r] = a;
      accepted[r0 + r] = a;
    }
    __syncthreads();
    const int64_t base = r0 * d, count = rows * d;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
      const int64_t e = base + i;
      x_out[e] = take[i / d] ? x_proposed[e] : x[e];
    }
    __syncthreads();
  }
}

template <class T>
__global__ void __launch_bounds__(kThreads)
    mala_select_kernel(const T* __restrict__ x, const T* __restrict__ y,
                       const T* __restrict__ gx, const T* __restrict__ gy,
                       const T* __restrict__ ex, const T* __restrict__ ey, T* __restrict__ x_out,
                       T* __restrict__ g_out, T* __restrict__ e_out, bool* __restrict__ accepted,
                       int64_t batch, int64_t d, int team, compute_t<T> a_all,
                       compute_t<T> b_all, const T* __restrict__ uniform, PhiloxArgs rng,
                       const T* __restrict__ a_chain, const T* __restrict__ b_chain) {
  using C = compute_t<T>;
  const PhiloxStep ps = resolve(rng);
  const int lane = threadIdx.x & 31;
  const int rows_per_warp = 32 / team;
  const int sub = lane / team, r = lane % team;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  const int64_t tiles = (batch + rows_per_warp - 1) / rows_per_warp;
  // Every lane of a warp runs the same number of iterations (the shuffles need the whole warp).
  for (int64_t tile = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32; tile < tiles;
       tile += warps) {
    const int64_t row = tile * rows_per_warp + sub;
    const bool active = row < batch;
    const int64_t o = active ? row * d : 0;
    // The row's (a, b): per chain where given.
    const C a = active && a_chain != nullptr ? to_compute(a_chain[row]) : a_all;
    const C b = active && b_chain != nullptr ? to_compute(b_chain[row]) : b_all;
    C log_r = C(0);
    if (team == 1) {  // `team` is the same for the whole grid: the branches are warp-uniform
      // The CPU's formula and summation order.
      if (active) {
        log_r = row_mala_log_ratio<C>(x + o, y + o, gx + o, gy + o, to_compute(ex[row]),
                                      to_compute(ey[row]), a, b, d);
      }
    } else {
      C fwd = C(0), bwd = C(0);
      if (active) {
        for (int64_t j = r; j < d; j += team) {
          const C xj = to_compute(x[o + j]), yj = to_compute(y[o + j]);
          fwd += mala_forward_term(xj, yj, to_compute(gx[o + j]), a);
          bwd += mala_backward_term(xj, yj, to_compute(gy[o + j]), a);
        }
      }
      for (int off = team / 2; off > 0; off /= 2) {
        fwd += __shfl_xor_sync(0xffffffffu, fwd, off, team);
        bwd += __shfl_xor_sync(0xffffffffu, bwd, off, team);
      }
      if (active) {
        log_r = mala_log_ratio_from_sums(fwd, bwd, to_compute(ex[row]), to_compute(ey[row]), b);
      }
    }
    if (!active) continue;
    const bool take = metropolis_accept(chain_uniform(uniform, row, ps), log_r);
    if (r == 0) {
      accepted[row] = take;
      e_out[row] = take ? ey[row] : ex[row];
    }
    for (int64_t j = r; j < d; j += team) {
      x_out[o + j] = take ? y[o + j] : x[o + j];
      g_out[o + j] = take ? gy[o + j] : gx[o + j];
    }
  }
}

// Lanes per row: one lane evaluates short rows alone (the CPU's exact formula), longer rows get
// up to a warp, about eight elements per lane.
int team_for(int64_t d) {
  if (d <= 16) return 1;
  int team = 2;
  while (team < 32 && int64_t(team) * 8 < d) team *= 2;
  return team;
}

template <class T>
cudaError_t run_metropolis(const void* lar, const void* x, const void* xp, const void* uniform,
                           void* x_out, bool* accepted, int64_t batch, int64_t d, PhiloxArgs rng,
                           Launch launch) {
  if (batch == 0) return cudaSuccess;
  int64_t tile_rows = d > 0 ? 8192 / d : kTileRows;
  tile_rows = tile_rows < 1 ? 1 : (tile_rows > kTileRows ? kTileRows : tile_rows);
  const int64_t tiles = (batch + tile_rows - 1) / tile_rows;
  const unsigned grid = streaming_grid(tiles * kThreads, kThreads);
  metropolis_select_kernel<T><<<grid, kThreads, 0, launch.stream>>>(
      static_cast<const T*>(lar), static_cast<const T*>(x), static_cast<const T*>(xp),
      static_cast<const T*>(uniform), static_cast<T*>(x_out), accepted, batch, d, tile_rows, rng);
  return launch_status();
}

template <class T>
cudaError_t run_mala(const void* x, const void* y, const void* gx, const void* gy, const void* ex,
                     const void* ey, void* x_out, void* g_out, void* e_out, bool* accepted,
                     int64_t batch, int64_t d, double a, double b, const void* uniform,
                     PhiloxArgs rng, Launch launch, const void* a_chain, const void* b_chain) {
  using C = compute_t<T>;
  if (batch == 0) return cudaSuccess;
  const int team = team_for(d);
  const int64_t lanes = (batch + (32 / team) - 1) / (32 / team) * 32;
  const unsigned grid = streaming_grid(lanes, kThreads);
  mala_select_kernel<T><<<grid, kThreads, 0, launch.stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(y), static_cast<const T*>(gx),
      static_cast<const T*>(gy), static_cast<const T*>(ex), static_cast<const T*>(ey),
      static_cast<T*>(x_out), static_cast<T*>(g_out), static_cast<T*>(e_out), accepted, batch, d,
      team, C(a), C(b), static_cast<const T*>(uniform), rng, static_cast<const T*>(a_chain),
      static_cast<const T*>(b_chain));
  return launch_status();
}

}  // namespace

cudaError_t metropolis_select(const void* lar, const void* x, const void* x_proposed,
                              const void* uniform, void* x_out, bool* accepted, Dtype dtype,
                              int64_t batch, int64_t row, PhiloxArgs rng, Launch launch) {
  return with_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return run_metropolis<T>(lar, x, x_proposed, uniform, x_out, accepted, batch, row, rng, launch);
  });
}

cudaError_t mala_select(const void* x, const void* y, const void* grad_x, const void* grad_y,
                        const void* energy_x, const void* energy_y, void* x_out, void* grad_out,
                        void* energy_out, bool* accepted, Dtype dtype, int64_t batch, int64_t row,
                        double a, double b, const void* uniform, PhiloxArgs rng, Launch launch,
                        const void* a_chain, const void* b_chain) {
  return with_dtype(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return run_mala<T>(x, y, grad_x, grad_y, energy_x, energy_y, x_out, grad_out, energy_out,
                       accepted, batch, row, a, b, uniform, rng, launch, a_chain, b_chain);
  });
}

}  // namespace torchebm::cuda
