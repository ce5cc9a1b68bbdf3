"""Langevin sampling of any (neural) energy as a replayed CUDA graph.

A Langevin step of a neural energy is a forward and backward pass plus the fused update: a
few dozen small kernels whose launch cost dominates for small batches. :func:`capture_langevin`
records ``steps_per_graph`` such steps once into a :class:`torch.cuda.CUDAGraph`; every
replay then runs them with one launch. Fresh randomness per replay comes from the graph-safe
ops (``docs/kernels.md``, "CUDA graphs"): the kernels read the Philox seed and step from a
device tensor ``seed_state = [seed, step]`` that a captured one-thread kernel advances by
``steps_per_graph`` at the end of each replay, so no value is frozen into the graph.

Contract (what ``tests/test_cuda.py`` pins): for a deterministic gradient,
``LangevinGraph.run(x0, seed=s, n_steps=n)`` equals the per-step fused loop
``x = langevin_update(x, gradient(x), None, a, b, clamp_min, clamp_max, grad_clip, s, t)``
for ``t = 0 .. n-1``, whatever ``steps_per_graph``.

Limits: fixed shape, dtype and device (capture again for another); constant ``a``, ``b``
(a schedule changing per step is not captured); the model's parameters are read through
their storage at every replay, so in-place optimiser updates are seen, but replacing a
parameter tensor needs a new capture. The gradient function must not synchronise with the
host (no ``.item()``, no data-dependent Python control flow).
"""

from __future__ import annotations

import gc
from typing import Callable, Optional

import torch

from torchebm.kernels.dispatch import has_kernel

__all__ = ["GRAPH_OPS", "LangevinGraph", "capture_langevin", "graph_safe_available"]

GRAPH_OPS = ("langevin_update_graphsafe_", "philox_state_advance_")
"""The ops a captured graph runs besides the gradient (CUDA kernels only)."""


def graph_safe_available(device: Optional[torch.device] = None) -> bool:
    """Whether the graph-safe CUDA ops are built and a CUDA device is present."""
    if device is not None and torch.device(device).type != "cuda":
        return False
    return torch.cuda.is_available() and all(has_kernel(name, "cuda") for name in GRAPH_OPS)


class LangevinGraph:
    """A captured block of ``steps_per_graph`` Langevin steps on a static state buffer.

    Each step is ``x <- clamp(x - a * clip(gradient(x)) + b * xi)`` with xi from Philox
    stream 0 at ``(seed, step)``. Built by :func:`capture_langevin`; call :meth:`run`.
    """

    def __init__(
        self,
        gradient: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        a: float,
        b: float,
        steps_per_graph: int,
        clamp_min: Optional[float],
        clamp_max: Optional[float],
        grad_clip: Optional[float],
        warmup: int,
    ) -> None:
        if not isinstance(x, torch.Tensor) or x.device.type != "cuda":
            raise ValueError(f"capture_langevin: x must be a CUDA tensor, got {type(x).__name__}"
                             f" on {getattr(x, 'device', None)}")
        if not graph_safe_available(x.device):
            raise RuntimeError(
                "capture_langevin: the graph-safe CUDA ops (torchebm::langevin_update_graphsafe_, "
                "torchebm::philox_state_advance_) are not available in this build"
            )
        if int(steps_per_graph) < 1:
            raise ValueError(f"capture_langevin: steps_per_graph must be >= 1, got {steps_per_graph}")
        self.gradient = gradient
        self.a, self.b = float(a), float(b)
        self.clamp_min, self.clamp_max, self.grad_clip = clamp_min, clamp_max, grad_clip
        self.steps_per_graph = int(steps_per_graph)
        self.shape, self.dtype, self.device = tuple(x.shape), x.dtype, x.device
        # Static buffers: the graph reads and writes exactly these storages at every replay.
        self.x = x.detach().clone(memory_format=torch.contiguous_format)
        self.seed_state = torch.zeros(2, dtype=torch.int64, device=x.device)
        self.graph = torch.cuda.CUDAGraph()

        # Warm-up on a side stream (lazy initialisation, autograd and allocator state), then
        # capture on it; the state buffers are reset by every run().
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(max(int(warmup), 1)):
                self._block()
        torch.cuda.current_stream(x.device).wait_stream(side)
        # A garbage collection during capture may destroy another CUDA graph, a call that
        # invalidates this capture: collect before it, and not during it.
        gc.collect()
        collecting = gc.isenabled()
        gc.disable()
        try:
            with torch.cuda.graph(self.graph):
                self._block()
        finally:
            if collecting:
                gc.enable()

    def _step(self, offset: int) -> None:
        grad = self.gradient(self.x)
        torch.ops.torchebm.langevin_update_graphsafe_(
            self.x, grad, self.a, self.b, self.clamp_min, self.clamp_max, self.grad_clip,
            self.seed_state, offset,
        )

    def _block(self) -> None:
        for k in range(self.steps_per_graph):
            self._step(k)
        torch.ops.torchebm.philox_state_advance_(self.seed_state, self.steps_per_graph)

    def run(self, x0: torch.Tensor, *, seed: int, n_steps: int) -> torch.Tensor:
        """``n_steps`` Langevin steps from ``x0`` with Philox ``seed``; returns a new tensor.

        Whole blocks replay the graph; the remaining ``n_steps % steps_per_graph`` steps run
        eagerly with the same stream positions. No host synchronisation.
        """
        if tuple(x0.shape) != self.shape or x0.dtype != self.dtype or x0.device != self.device:
            raise ValueError(
                f"LangevinGraph.run: x0 must be {self.dtype} of shape {list(self.shape)} on "
                f"{self.device} (the captured ones), got {x0.dtype} {list(x0.shape)} on {x0.device}"
            )
        if int(n_steps) < 0:
            raise ValueError(f"LangevinGraph.run: n_steps must be >= 0, got {n_steps}")
        seed = int(seed) & 0xFFFFFFFFFFFFFFFF  # any integer -> the int64 with its low 64 bits
        with torch.no_grad():
            self.x.copy_(x0)
            self.seed_state[0].fill_(seed - (1 << 64) if seed >= (1 << 63) else seed)
            self.seed_state[1].fill_(0)
        blocks, rest = divmod(int(n_steps), self.steps_per_graph)
        for _ in range(blocks):
            self.graph.replay()
        for k in range(rest):
            self._step(k)  # reads seed_state[1] = blocks * steps_per_graph, plus k
        return self.x.clone()


def capture_langevin(
    gradient: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    a: float,
    b: float,
    steps_per_graph: int = 10,
    clamp_min: Optional[float] = None,
    clamp_max: Optional[float] = None,
    grad_clip: Optional[float] = None,
    warmup: int = 3,
) -> LangevinGraph:
    """Capture ``steps_per_graph`` Langevin steps ``x <- clamp(x - a clip(grad) + b xi)``.

    Args:
        gradient: ``x -> dE/dx`` (same shape and dtype), e.g. ``model.gradient``; called on the
            static state buffer during warm-up and capture only.
        x: an example state ``[B, *event]`` on a CUDA device: fixes shape, dtype and device.
        a, b: the update coefficients (``LangevinDynamics``: ``a = eta``,
            ``b = sigma * sqrt(2 * eta)``).
        steps_per_graph: steps recorded in one graph (one launch per replay).
        clamp_min, clamp_max, grad_clip: as in ``langevin_update``.
        warmup: eager runs of the block on a side stream before capture.

    Returns:
        A :class:`LangevinGraph`; ``graph.run(x0, seed=s, n_steps=n)`` samples.
    """
    return LangevinGraph(gradient, x, a, b, steps_per_graph, clamp_min, clamp_max, grad_clip, warmup)
