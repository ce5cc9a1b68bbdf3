r"""The operations an MCMC step is built from, with two implementations.

The algorithms in :mod:`torchebm.samplers.algorithms` are written once, against
:class:`StepOps`; a ``sample()`` call hands them either

* :class:`FusedStepOps`: the compiled per-step ops of :mod:`torchebm.kernels.ops`, every random
  draw made in-kernel by Philox4x32-10 at ``(seed, t)`` (normals: stream 0, uniforms:
  stream 1; ``t`` the step index), so results do not depend on thread count or device; or
* :class:`ReferenceStepOps`: the pure-PyTorch oracles of :mod:`torchebm.kernels.reference`,
  with normals and uniforms from ``torch.randn``/``torch.rand`` and the call's ``generator``
  (drawn in the order the algorithm asks for them; ``t`` is not used).

Shapes: states ``x``, ``p``, ``grad`` are ``[B, *event]`` (``B`` chains); per-chain values
(``energy``, ``log_accept_ratio``, ``accepted``) are ``[B]``.
"""

from __future__ import annotations

from typing import Optional, Protocol

import torch

from torchebm.core.base_sampler import generator_rand, generator_randn
from torchebm.kernels import ops, reference

Clamp = Optional[tuple[Optional[float], Optional[float]]]


def momentum_kick(p: torch.Tensor, grad: torch.Tensor, amount) -> torch.Tensor:
    r"""A leapfrog half kick :math:`p - \mathrm{amount}\,\nabla E`: ``torch.add`` with ``alpha``
    for a Python number; a per-chain tensor ``[B]`` multiplies each chain's row."""
    if isinstance(amount, torch.Tensor):
        return p - reference.rows(amount, p) * grad
    return torch.add(p, grad, alpha=-amount)


class StepOps(Protocol):
    """What a step may ask for besides the model's energy and gradient."""

    def normal(self, like: torch.Tensor, t: int) -> torch.Tensor:
        """Standard normals of ``like``'s shape, dtype and device (step ``t``)."""

    def langevin_update(
        self,
        x: torch.Tensor,
        grad: torch.Tensor,
        a: float,
        b: float,
        t: int,
        clamp: Clamp = None,
        grad_clip: Optional[float] = None,
    ) -> torch.Tensor:
        r""":math:`\mathrm{clamp}(x - a\,\mathrm{clip}(\nabla E) + b\,\xi)`,
        :math:`\xi \sim \mathcal N(0, I)` drawn as :meth:`normal` would."""

    def kick_drift(
        self,
        x: torch.Tensor,
        p: torch.Tensor,
        grad: torch.Tensor,
        kick: float,
        drift: float,
        inv_mass: Optional[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Leapfrog kick then drift: :math:`p' = p - \mathrm{kick}\,\nabla E`;
        :math:`x' = x + \mathrm{drift}\, M^{-1} p'`. Returns ``(x', p')``."""

    def kick(self, p: torch.Tensor, grad: torch.Tensor, amount: float) -> torch.Tensor:
        r"""A kick alone: :math:`p - \mathrm{amount}\,\nabla E` (the leapfrog's closing half kick)."""

    def metropolis_select(
        self, log_accept_ratio: torch.Tensor, x: torch.Tensor, x_proposed: torch.Tensor, t: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Row ``i`` takes ``x_proposed[i]`` iff :math:`\log u_i < \log r_i`, :math:`u_i \sim U(0,1)`
        (a NaN ratio rejects). Returns ``(x_out, accepted [B] bool)``."""

    def mala_select(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        grad_x: torch.Tensor,
        grad_y: torch.Tensor,
        energy_x: torch.Tensor,
        energy_y: torch.Tensor,
        a: float,
        b: float,
        t: int,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""MALA's Metropolis–Hastings test of ``y = x - a grad_x + b xi`` fused with the selection
        of the state, its gradient and its energy. Returns ``(x, grad, energy, accepted)``."""


class FusedStepOps:
    """:class:`StepOps` by the compiled kernels; every draw is Philox at ``(seed, t)``.

    Step sizes are floats or per-chain tensors ``[B]``; the CPU and CUDA kernels take both."""

    def __init__(self, seed: int):
        self.seed = seed

    def normal(self, like: torch.Tensor, t: int) -> torch.Tensor:
        return ops.philox_normal(list(like.shape), self.seed, t, like.dtype, like.device)

    def langevin_update(self, x, grad, a, b, t, clamp=None, grad_clip=None):
        lo, hi = clamp if clamp is not None else (None, None)
        return ops.langevin_update(x, grad, None, a, b, lo, hi, grad_clip, self.seed, t)

    def kick_drift(self, x, p, grad, kick, drift, inv_mass):
        return ops.leapfrog_kick_drift(x, p, grad, kick, drift, inv_mass)

    kick = staticmethod(momentum_kick)

    def metropolis_select(self, log_accept_ratio, x, x_proposed, t):
        return ops.metropolis_select(log_accept_ratio, x, x_proposed, None, self.seed, t)

    def mala_select(self, x, y, grad_x, grad_y, energy_x, energy_y, a, b, t):
        return ops.mala_select(x, y, grad_x, grad_y, energy_x, energy_y, a, b, None, self.seed, t)


class ReferenceStepOps:
    """:class:`StepOps` in plain PyTorch; draws come from ``generator`` (None: the global RNG)."""

    def __init__(self, generator: Optional[torch.Generator]):
        self.generator = generator

    def normal(self, like: torch.Tensor, t: int) -> torch.Tensor:
        return generator_randn(like.shape, like.dtype, like.device, self.generator)

    def _uniform(self, x: torch.Tensor) -> torch.Tensor:
        """Per-chain uniforms ``[B]`` for a Metropolis test on ``x``."""
        return generator_rand((x.shape[0],), x.dtype, x.device, self.generator)

    def langevin_update(self, x, grad, a, b, t, clamp=None, grad_clip=None):
        lo, hi = clamp if clamp is not None else (None, None)
        return reference.langevin_update(x, grad, self.normal(x, t), a, b, lo, hi, grad_clip)

    def kick_drift(self, x, p, grad, kick, drift, inv_mass):
        return reference.leapfrog_kick_drift(x, p, grad, kick, drift, inv_mass)

    kick = staticmethod(momentum_kick)

    def metropolis_select(self, log_accept_ratio, x, x_proposed, t):
        return reference.metropolis_select(log_accept_ratio, x, x_proposed, self._uniform(x))

    def mala_select(self, x, y, grad_x, grad_y, energy_x, energy_y, a, b, t):
        return reference.mala_select(
            x, y, grad_x, grad_y, energy_x, energy_y, a, b, self._uniform(x)
        )


class DrawnStepOps(ReferenceStepOps):
    """:class:`StepOps` in plain PyTorch over draws made before the step: ``normal`` (the step's
    normals, ``[B, *event]``) and ``uniform`` (its per-chain uniforms, ``[B]``, or None for a
    step without a Metropolis test). The compiled path draws them with ``philox_normal`` /
    ``philox_uniform`` at ``(seed, t)``, the fused path's numbers, so that the step itself is
    pure tensor arithmetic that ``torch.compile`` traces into one graph."""

    def __init__(self, normal: torch.Tensor, uniform: Optional[torch.Tensor]):
        super().__init__(None)
        self.drawn_normal = normal
        self.drawn_uniform = uniform

    def normal(self, like: torch.Tensor, t: int) -> torch.Tensor:
        return self.drawn_normal

    def _uniform(self, x: torch.Tensor) -> torch.Tensor:
        return self.drawn_uniform

    @staticmethod
    def kick(p: torch.Tensor, grad: torch.Tensor, amount) -> torch.Tensor:
        # ``amount`` may be a 0-d tensor here (scheduled values enter the graph as tensors),
        # which torch.add's alpha does not take, or a per-chain tensor [B].
        return p - reference.rows(amount, p) * grad


__all__ = ["DrawnStepOps", "FusedStepOps", "ReferenceStepOps", "StepOps"]
