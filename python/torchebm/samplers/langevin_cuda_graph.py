"""The ``"cuda_graph"`` path of :class:`~torchebm.samplers.LangevinDynamics`: the fused step
loop captured once into CUDA graphs (:func:`torchebm.kernels.cuda_graph.capture_langevin`) and
replayed, with the captures cached on the sampler."""

from __future__ import annotations

import itertools
import weakref
from collections import OrderedDict
from typing import Any, Optional

import torch
from torch import nn

from torchebm.kernels.cuda_graph import GRAPH_OPS, LangevinGraph, capture_langevin
from torchebm.kernels.dispatch import NoKernelError, kernels_blocker

MAX_STEPS_PER_GRAPH = 32  # Langevin steps recorded in one CUDA graph, at most
MAX_CUDA_GRAPHS = 4  # captures kept per sampler (least recently used dropped first)


class LangevinCudaGraphs:
    """Mixin of :class:`~torchebm.samplers.LangevinDynamics`: checks and runs
    ``cuda_graph=True`` calls, and keeps the sampler's cache of captures."""

    _cuda_graphs: "OrderedDict[tuple, tuple[nn.Module, LangevinGraph]]"

    def _check_cuda_graph(
        self,
        x: torch.Tensor,
        n_steps: int,
        model_kwargs: dict,
        return_trajectory: bool,
        return_diagnostics: bool,
    ) -> None:
        """Raise unless a ``cuda_graph=True`` call can be honoured (after the schedulers were
        reset, so ``n_steps`` scheduled values from the current ones are the call's).

        Argument conflicts (``ValueError``) are checked before the hardware
        (:class:`NoKernelError`), so they are reported the same way on every machine.
        """
        owner = type(self).__name__
        if self.backend == "reference":
            raise ValueError(
                f"{owner}: cuda_graph=True runs the compiled graph-safe kernels, but "
                f"backend='reference'; use backend='auto' or 'fused', or cuda_graph=False"
            )
        for name, asked in (
            ("return_trajectory", return_trajectory),
            ("return_diagnostics", return_diagnostics),
        ):
            if asked:
                raise ValueError(
                    f"{owner}: cuda_graph=True returns the final state only, got {name}=True; "
                    f"use cuda_graph=False to record the chain"
                )
        if model_kwargs:
            raise ValueError(
                f"{owner}: cuda_graph=True captures a gradient of x alone, got model_kwargs/y "
                f"(keys {sorted(model_kwargs)}); use cuda_graph=False for a conditional model"
            )
        for name in ("step_size", "noise_std" if self.noise_std is not None else "noise_scale"):
            scheduler = self.schedulers[name]
            values = scheduler.values(n_steps)
            if any(v != values[0] for v in values):
                raise ValueError(
                    f"{owner}: cuda_graph=True captures constant coefficients, but the {name} "
                    f"scheduler {scheduler!r} varies over the {n_steps} steps of this call "
                    f"(from {min(values):.6g} to {max(values):.6g}); use a constant {name} or "
                    f"cuda_graph=False"
                )
        reason = _graph_blocker(x)
        if reason is not None:
            raise NoKernelError(
                f"{owner}: cuda_graph=True cannot be honoured: {reason}; pass cuda_graph=False "
                f"for the other paths"
            )

    def _run_cuda_graph(self, x: torch.Tensor, n_steps: int, seed: int) -> torch.Tensor:
        """``n_steps >= 1`` constant-coefficient steps from ``x [B, *event]`` (CUDA) by graph
        replays, Philox ``seed``; returns the final state ``[B, *event]``.

        Blocks of :func:`steps_per_graph` steps (a divisor of ``n_steps``, so no step runs
        eagerly). The capture is looked up in, or added to, the sampler's cache.
        """
        a, b = self._coefficients()
        lo, hi = self.clamp if self.clamp is not None else (None, None)
        block = steps_per_graph(n_steps)
        model = self.model
        storages = tuple(t.data_ptr() for t in itertools.chain(model.parameters(), model.buffers()))
        key = (
            tuple(x.shape), x.dtype, x.device, a, b, lo, hi, self.grad_clip, block,
            id(model), model.training, storages, self.use_mixed_precision, self.amp_dtype,
        )
        # The entry holds the model, so its id cannot be reused by another model while cached.
        entry = self._cuda_graphs.pop(key, None)
        if entry is None:
            # The capture lives in this sampler's cache, so it holds the sampler weakly: a
            # dropped sampler frees its graphs at once, not at the next cyclic collection.
            gradient = weakref.WeakMethod(self._model_gradient)
            graph = capture_langevin(
                lambda state: gradient()(state), x, a=a, b=b, steps_per_graph=block,
                clamp_min=lo, clamp_max=hi, grad_clip=self.grad_clip,
            )
            entry = (model, graph)
        self._cuda_graphs[key] = entry  # most recently used last
        while len(self._cuda_graphs) > MAX_CUDA_GRAPHS:
            self._cuda_graphs.popitem(last=False)
        return entry[1].run(x, seed=seed, n_steps=n_steps)

    def __getstate__(self) -> dict[str, Any]:
        # Captured CUDA graphs are device state tied to this process: a pickled or copied
        # sampler starts with an empty cache and captures again on first use.
        state = dict(super().__getstate__())
        state["_cuda_graphs"] = OrderedDict()
        return state


def _graph_blocker(x: torch.Tensor) -> Optional[str]:
    """Why the graph-safe CUDA ops cannot step a state like ``x``, or None when they can."""
    if x.device.type != "cuda":
        return (
            f"the chain state is on {x.device}, not a CUDA device (torch.cuda.is_available() is "
            f"{torch.cuda.is_available()})"
        )
    return kernels_blocker(GRAPH_OPS, x.device, x.dtype)


def steps_per_graph(n_steps: int) -> int:
    """Steps per captured block: the largest divisor of ``n_steps >= 1`` not above
    ``MAX_STEPS_PER_GRAPH`` (``n_steps`` itself up to 32; 25 for 100; 1 for a prime > 32)."""
    return max(k for k in range(1, min(n_steps, MAX_STEPS_PER_GRAPH) + 1) if n_steps % k == 0)


__all__ = ["LangevinCudaGraphs", "steps_per_graph"]
