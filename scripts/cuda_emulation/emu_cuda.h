// Host emulation of the CUDA device features the torchebm kernels use, so that their logic
// (indexing, tails, reductions, warp shuffles, block barriers) can be checked against the CPU
// kernels on a machine without a GPU (scripts/cuda_emulation/emulate.py). Each CUDA thread of
// a block is a cooperative fiber (ucontext) on one host thread; a barrier or a shuffle yields to
// the next fiber, so every thread of the block (or lanes of the warp) arrives before any goes
// on. Blocks run one after another. Not a CUDA runtime: no memory model, no timings.
#pragma once

#define __global__
#define __device__
#define __host__
#define __shared__ static  // blocks run one at a time: static storage is the block's
#define __launch_bounds__(...)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <ucontext.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <vector>

namespace emu {

inline uint3 thread_idx, block_idx;  // of the running fiber
inline dim3 block_dim, grid_dim;

struct Fiber {
  ucontext_t ctx;
  std::unique_ptr<char[]> stack;
  bool done = false;
};

struct Block {
  ucontext_t scheduler;
  std::vector<Fiber> fibers;
  std::vector<double> lanes;  // one exchange slot per thread (warp shuffles)
  const std::function<void()>* body = nullptr;
  unsigned running = 0;
};
inline Block* current = nullptr;

inline void fiber_main() {
  Block& b = *current;
  (*b.body)();
  b.fibers[b.running].done = true;
  swapcontext(&b.fibers[b.running].ctx, &b.scheduler);
}

// Suspends the running fiber; it resumes when every other fiber of the block has run up to its
// own next yield (or its end): a barrier for the block, and for the lanes of each warp.
inline void yield() {
  Block& b = *current;
  swapcontext(&b.fibers[b.running].ctx, &b.scheduler);
}

inline void launch(dim3 grid, dim3 block, const std::function<void()>& body) {
  constexpr size_t kStack = 256 * 1024;
  grid_dim = grid;
  block_dim = block;
  for (unsigned bx = 0; bx < grid.x; ++bx) {
    Block b;
    b.body = &body;
    b.fibers.resize(block.x);
    b.lanes.assign(block.x, 0.0);
    current = &b;
    block_idx = uint3{bx, 0, 0};
    for (auto& f : b.fibers) {
      f.stack.reset(new char[kStack]);
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = f.stack.get();
      f.ctx.uc_stack.ss_size = kStack;
      f.ctx.uc_link = nullptr;
      makecontext(&f.ctx, fiber_main, 0);
    }
    for (bool left = true; left;) {  // passes: each fiber runs to its next yield
      left = false;
      for (unsigned t = 0; t < block.x; ++t) {
        if (b.fibers[t].done) continue;
        b.running = t;
        thread_idx = uint3{t, 0, 0};
        swapcontext(&b.scheduler, &b.fibers[t].ctx);
        left = left || !b.fibers[t].done;
      }
    }
    current = nullptr;
  }
}

// Every lane writes its value, all yield, each reads lane src(lane) of its warp, all yield.
template <class T, class Src>
T exchange(T v, Src src) {
  Block& b = *current;
  const unsigned self = thread_idx.x, warp0 = self / 32 * 32;
  b.lanes[self] = static_cast<double>(v);
  yield();
  const T r = static_cast<T>(b.lanes[warp0 + src(self % 32)]);
  yield();
  return r;
}

inline cudaError_t no_error() { return cudaSuccess; }
template <class Kernel>
cudaError_t occupancy(int* blocks, Kernel, int, size_t) {
  *blocks = 2;
  return cudaSuccess;
}
inline const char* error_string(cudaError_t) { return "(emulated)"; }

}  // namespace emu

#define threadIdx emu::thread_idx
#define blockIdx emu::block_idx
#define blockDim emu::block_dim
#define gridDim emu::grid_dim
#define __syncthreads() emu::yield()
#define cudaGetLastError emu::no_error
#define cudaGetErrorString emu::error_string
#define cudaOccupancyMaxActiveBlocksPerMultiprocessor emu::occupancy

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
