"""The ``"compiled"`` path (``backend="compiled"``, opt-in): every step through ``torch.compile``.

Per step ``t`` the random numbers are drawn eagerly, by the ``philox_normal`` and
``philox_uniform`` ops at ``(seed, t)`` (the fused path's numbers: its ops draw the same streams
in-kernel), and the algorithm's step runs as one compiled graph over
:class:`~torchebm.samplers.step_ops.DrawnStepOps`: the energy's forward pass, its gradient in
``x`` (``torch.func.grad_and_value``, which dynamo traces), the update and, for MALA and HMC,
the accept step, fused by inductor. On a CUDA state the graph also runs as a CUDA graph
(``mode="reduce-overhead"``). So for one seed the path gives the fused path's chains, to
rounding.

The compiled steps are cached on the sampler per (model, algorithm); under that,
``torch.compile``'s guards keep one graph per state shape, dtype and device, fixed setting
(clamp, ``n_leapfrog_steps``...) and model training mode (the scheduled values, step sizes and
noise scales, enter as 0-d tensors, so a schedule does not recompile). A model ``torch.compile`` cannot trace into one
graph (``fullgraph=True``) makes the call warn once, naming the reason, and run on the fused
path instead (``sampler.last_route.skipped`` records it); never silently.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Optional

import torch
from torch import nn

from torchebm.core.energy_model import check_energy_shape, own_gradient, uncompiled
from torchebm.kernels import ops
from torchebm.samplers.algorithms import Algorithm, ChainState, Target
from torchebm.samplers.step_ops import DrawnStepOps

MAX_COMPILED_STEPS = 4  # compiled steps kept per sampler (least recently used dropped first)
COMPILE_BACKEND = "inductor"  # torch.compile's backend for the steps (tests use "aot_eager")

Step = Callable[[ChainState, int, dict], tuple[ChainState, Optional[torch.Tensor]]]


def compiled_target(model: nn.Module, model_kwargs: dict) -> Target:
    """The energy as a compiled step uses it: the model's own ``gradient`` where it overrides
    BaseModel's, else ``torch.func.grad_and_value`` of ``forward`` (``torch.autograd.grad`` is
    not traced by dynamo)."""
    own = own_gradient(model)
    if own is not None:
        def gradient(x):
            return own(x, model_kwargs) if model_kwargs else own(x)

        return Target(gradient, lambda x: (model(x, **model_kwargs), gradient(x)))

    def energy_sum(x):
        energy = model(x, **model_kwargs)
        check_energy_shape(type(uncompiled(model)).__name__, energy, x)
        return energy.sum(), energy

    def energy_and_gradient(x):
        grad, (_, energy) = torch.func.grad_and_value(energy_sum, has_aux=True)(x)
        return energy, grad

    return Target(lambda x: energy_and_gradient(x)[1], energy_and_gradient)


def compiled_step_blocker(model: nn.Module, x: torch.Tensor, mixed_precision: bool) -> Optional[str]:
    """Why the compiled path cannot run ``model`` on states like ``x`` (checked before
    compiling), or None."""
    if mixed_precision:
        return "mixed precision (autocast) is on"
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if dtypes and dtypes != {x.dtype}:
        return f"the model's parameters are {sorted(map(str, dtypes))} but the state is {x.dtype}"
    return None


class CompiledSteps:
    """A sampler's cache of compiled steps (process-local: not pickled)."""

    def __init__(self):
        self.entries: OrderedDict[tuple, tuple[nn.Module, Callable]] = OrderedDict()

    def step(
        self,
        algorithm: Algorithm,
        model: nn.Module,
        model_kwargs: dict,
        fixed: dict[str, Any],
        x: torch.Tensor,
        seed: int,
    ) -> Step:
        """``step(state, t, arguments)`` for the step loop: draws at ``(seed, t)``, then the
        compiled step with ``fixed`` and the step's scheduled ``arguments``."""
        key = (id(model), algorithm.step)
        entry = self.entries.pop(key, None)
        if entry is None:
            entry = (model, _compile(algorithm, model, x.device))
        self.entries[key] = entry  # most recently used last
        while len(self.entries) > MAX_COMPILED_STEPS:
            self.entries.popitem(last=False)
        compiled = entry[1]
        draws_normal = "philox_normal" in algorithm.step_ops
        shape, batch = list(x.shape), [x.shape[0]]
        graph_owned = x.device.type == "cuda" and COMPILE_BACKEND == "inductor"

        def step(state: ChainState, t: int, arguments: dict):
            normal = ops.philox_normal(shape, seed, t, x.dtype, x.device) if draws_normal else None
            uniform = ops.philox_uniform(batch, seed, t, x.dtype, x.device) if algorithm.accepts else None
            # Scheduled floats enter as 0-d tensors: one graph serves every value.
            scheduled = {k: torch.tensor(v, dtype=torch.float64) for k, v in arguments.items()}
            out = compiled(state, normal, uniform, {**fixed, **scheduled}, model_kwargs)
            if graph_owned:
                # A CUDA graph's outputs live in memory its next replay overwrites: the state
                # carried to the next step (and recorded) is copied out of it.
                out = torch.utils._pytree.tree_map(
                    lambda v: v.clone() if isinstance(v, torch.Tensor) else v, out
                )
            return out

        return step


def _compile(algorithm: Algorithm, model: nn.Module, device: torch.device) -> Callable:
    # The model's keyword arguments are inputs of the graph, not constants of a closure: a
    # later call with other conditioning tensors must not see the first call's.
    def step(state: ChainState, normal, uniform, arguments: dict, model_kwargs: dict):
        target = compiled_target(model, model_kwargs)
        return algorithm.step(DrawnStepOps(normal, uniform), target, state, 0, **arguments)

    mode = "reduce-overhead" if device.type == "cuda" and COMPILE_BACKEND == "inductor" else None
    return torch.compile(step, fullgraph=True, backend=COMPILE_BACKEND, mode=mode)


__all__ = [
    "COMPILE_BACKEND",
    "CompiledSteps",
    "MAX_COMPILED_STEPS",
    "compiled_step_blocker",
    "compiled_target",
]
