// Host emulation of the CUDA device features the torchebm kernels use, so that their logic
// (indexing, tails, reductions, warp shuffles, block barriers) can be checked against the CPU
// kernels on a machine without a GPU (scripts/cuda_emulation/emulate.py). Each CUDA thread of
// a block is a host thread; blocks run one after another. Not a CUDA runtime: no memory model,
// no warp divergence rules beyond what the kernels rely on, no timings.
#pragma once

#define __global__
#define __device__
#define __host__
#define __shared__ static  // blocks run one at a time: static storage is the block's
#define __launch_bounds__(...)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <barrier>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace emu {

inline thread_local uint3 thread_idx, block_idx;
inline dim3 block_dim, grid_dim;

struct Warp {
  std::barrier<> bar{32};
  double vals[32];
};

struct Block {
  std::barrier<> bar;
  std::vector<std::unique_ptr<Warp>> warps;
  explicit Block(unsigned n) : bar(n) {
    for (unsigned w = 0; w < (n + 31) / 32; ++w) warps.push_back(std::make_unique<Warp>());
  }
};
inline Block* current = nullptr;

inline void launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  grid_dim = grid;
  block_dim = block;
  for (unsigned b = 0; b < grid.x; ++b) {
    Block blk(block.x);
    current = &blk;
    std::vector<std::thread> threads;
    threads.reserve(block.x);
    for (unsigned t = 0; t < block.x; ++t) {
      threads.emplace_back([&, t, b] {
        thread_idx = uint3{t, 0, 0};
        block_idx = uint3{b, 0, 0};
        body();
      });
    }
    for (auto& th : threads) th.join();
    current = nullptr;
  }
}

// Every lane of the warp writes its value, then reads lane `src(lane)`'s.
template <class T, class Src>
T exchange(T v, Src src) {
  Warp& w = *current->warps[thread_idx.x / 32];
  const unsigned lane = thread_idx.x % 32;
  w.vals[lane] = static_cast<double>(v);
  w.bar.arrive_and_wait();
  const T r = static_cast<T>(w.vals[src(lane)]);
  w.bar.arrive_and_wait();
  return r;
}

inline cudaError_t no_error() { return cudaSuccess; }
inline const char* error_string(cudaError_t) { return "(emulated)"; }

}  // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define blockDim emu::block_dim
#define gridDim emu::grid_dim
#define __syncthreads() emu::current->bar.arrive_and_wait()
#define cudaGetLastError emu::no_error
#define cudaGetErrorString emu::error_string

template <class T>
T __shfl_xor_sync(unsigned, T v, int lane_mask, int width = 32) {
  (void)width;  // lane ^ lane_mask stays in the lane's segment when lane_mask < width
  return emu::exchange(v, [&](unsigned lane) { return lane ^ static_cast<unsigned>(lane_mask); });
}

template <class T>
T __shfl_down_sync(unsigned, T v, unsigned delta, int width = 32) {
  return emu::exchange(v, [&](unsigned lane) {
    return lane % width + delta < static_cast<unsigned>(width) ? lane + delta : lane;
  });
}

using std::max;
using std::min;
