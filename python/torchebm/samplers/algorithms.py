r"""The MCMC algorithms, as pure step functions.

Each algorithm is an ``init`` (the chain state at a starting point) and a ``step`` (one
transition of every chain). A step sees the model only through a :class:`Target` and does its
arithmetic and random draws only through :class:`~torchebm.samplers.step_ops.StepOps`, so the
same lines run on the compiled kernels and on the pure-PyTorch reference. ``t`` is the step
index: it keys the Philox draws of the fused ops.

Shapes: ``x``, ``p``, ``grad`` ``[B, *event]``; ``energy``, ``accepted`` ``[B]``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import torch

from torchebm.kernels import reference
from torchebm.samplers.step_ops import Clamp, StepOps, momentum_kick

Tensor = torch.Tensor


class Target(NamedTuple):
    """The energy :math:`E` as the steps use it."""

    gradient: Callable[[Tensor], Tensor]  # x -> grad E(x)
    energy_and_gradient: Callable[[Tensor], tuple[Tensor, Tensor]]  # x -> (E(x), grad E(x))


class ChainState(NamedTuple):
    """Every chain's position, and what else the algorithm carries from step to step."""

    x: Tensor
    grad: Optional[Tensor] = None
    energy: Optional[Tensor] = None
    velocity: Optional[Tensor] = None


# ---------------------------------------------------------------------------- integrators
def kinetic_energy(p: Tensor, inv_mass: Optional[Tensor] = None) -> Tensor:
    r""":math:`K(p) = \tfrac12 \sum_j p_j^2 / m_j` per chain: ``[B, *event] -> [B]``."""
    sq = p * p if inv_mass is None else p * p * inv_mass
    return 0.5 * sq.reshape(p.shape[0], -1).sum(dim=1)


def leapfrog(
    x: Tensor,
    p: Tensor,
    grad: Tensor,
    step_size,
    n_steps: int,
    gradient: Callable[[Tensor], Tensor],
    *,
    inv_mass: Optional[Tensor] = None,
    kick_drift: Callable[..., tuple[Tensor, Tensor]] = reference.leapfrog_kick_drift,
    energy_and_gradient: Optional[Callable[[Tensor], tuple[Tensor, Tensor]]] = None,
    kick: Callable[[Tensor, Tensor, float], Tensor] = momentum_kick,
) -> tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
    r"""``n_steps`` leapfrog steps of size :math:`\epsilon` for :math:`H = E(x) + \tfrac12 p^\top M^{-1} p`
    (``step_size``: a float, or a per-chain tensor ``[B]``).

    Each step is kick–drift–kick (:math:`p \mathrel{-}= \tfrac\epsilon2 \nabla E(x)`;
    :math:`x \mathrel{+}= \epsilon M^{-1} p`; :math:`p \mathrel{-}= \tfrac\epsilon2 \nabla E(x)`);
    the closing half kick of one step and the opening half kick of the next merge into one
    ``kick_drift(kick=eps)`` call. ``grad`` is :math:`\nabla E(x)` at the start and is not
    recomputed, so a trajectory costs exactly ``n_steps`` gradient evaluations; the end point's
    gradient is returned for reuse by the next trajectory.

    Args:
        x, p, grad: ``[B, *event]``.
        gradient: ``x -> ∇E(x)``.
        inv_mass: :math:`M^{-1}` (``[dim]`` diagonal, broadcast over the last axis) or None.
        kick_drift: :func:`torchebm.kernels.reference.leapfrog_kick_drift`, or a
            :meth:`StepOps.kick_drift <torchebm.samplers.step_ops.StepOps.kick_drift>`.
        energy_and_gradient: if given, used for the end point instead of ``gradient``, so its
            energy comes with the same evaluation.
        kick: the closing half kick, ``(p, grad, eps / 2) -> p - eps / 2 * grad``
            (:meth:`StepOps.kick <torchebm.samplers.step_ops.StepOps.kick>`).

    Returns:
        ``(x_L, p_L, ∇E(x_L), E(x_L) or None)``.
    """
    eps = step_size  # a float, or a 0-d tensor on the compiled path
    x, p = kick_drift(x, p, grad, 0.5 * eps, eps, inv_mass)
    for _ in range(n_steps - 1):
        grad = gradient(x)
        x, p = kick_drift(x, p, grad, eps, eps, inv_mass)
    if energy_and_gradient is not None:
        energy, grad = energy_and_gradient(x)
    else:
        energy, grad = None, gradient(x)
    return x, kick(p, grad, 0.5 * eps), grad, energy


# ---------------------------------------------------------------------------- Langevin
def langevin_init(target: Target, x: Tensor) -> ChainState:
    return ChainState(x)


def langevin_step(
    ops: StepOps,
    target: Target,
    state: ChainState,
    t: int,
    *,
    a: float,
    b: float,
    clamp: Clamp = None,
    grad_clip: Optional[float] = None,
) -> tuple[ChainState, None]:
    r"""Unadjusted Langevin: :math:`x' = \mathrm{clamp}(x - a\,\mathrm{clip}(\nabla E(x)) + b\,\xi)`."""
    grad = target.gradient(state.x)
    return ChainState(ops.langevin_update(state.x, grad, a, b, t, clamp, grad_clip)), None


# ---------------------------------------------------------------------------- MALA
def gradient_state(target: Target, x: Tensor) -> ChainState:
    """The state of an algorithm that carries each chain's energy and gradient."""
    energy, grad = target.energy_and_gradient(x)
    return ChainState(x, grad, energy)


def mala_step(
    ops: StepOps, target: Target, state: ChainState, t: int, *, a, b
) -> tuple[ChainState, Tensor]:
    r"""MALA: propose :math:`y = x - a\nabla E(x) + b\xi`, accept with probability
    :math:`\min(1, r)`, :math:`\log r = E(x) - E(y) + (\lVert y - x + a\nabla E(x)\rVert^2 -
    \lVert x - y + a\nabla E(y)\rVert^2) / (2b^2)`. One gradient evaluation per step.
    ``a``, ``b``: floats, or per-chain tensors ``[B]`` in the state's dtype."""
    state, accepted, _ = mala_transition(ops, target, state, t, a=a, b=b, ratio=False)
    return state, accepted


def mala_transition(
    ops: StepOps, target: Target, state: ChainState, t: int, *, a, b, ratio: bool = True
) -> tuple[ChainState, Tensor, Optional[Tensor]]:
    r""":func:`mala_step` that also returns the log acceptance ratio ``[B]`` (``ratio=True``;
    computed by :func:`torchebm.kernels.reference.mala_log_accept_ratio` beside the fused test,
    which does not return it), for the adaptation; else None."""
    y = ops.langevin_update(state.x, state.grad, a, b, t)
    energy_y, grad_y = target.energy_and_gradient(y)
    log_r = None
    if ratio:
        log_r = reference.mala_log_accept_ratio(
            state.x, y, state.grad, grad_y, state.energy, energy_y, a, b
        )
    x, grad, energy, accepted = ops.mala_select(
        state.x, y, state.grad, grad_y, state.energy, energy_y, a, b, t
    )
    return ChainState(x, grad, energy), accepted, log_r


# ---------------------------------------------------------------------------- HMC
class HMCProposal(NamedTuple):
    """What an HMC transition proposed, for the adaptation (:mod:`torchebm.samplers.adaptation`):
    the leapfrog end point ``x`` and momentum ``p`` ``[B, *event]`` and the log acceptance ratio
    :math:`H(x, p_0) - H(x_L, p_L)` ``[B]``."""

    x: Tensor
    p: Tensor
    log_accept_ratio: Tensor


def hmc_transition(
    ops: StepOps,
    target: Target,
    state: ChainState,
    t: int,
    *,
    step_size,
    n_leapfrog: int,
    inv_mass: Optional[Tensor],
    sqrt_mass: Optional[Tensor],
) -> tuple[ChainState, Tensor, HMCProposal]:
    r""":func:`hmc_step` that also returns its :class:`HMCProposal`. ``step_size`` is a float, or
    a per-chain tensor ``[B]`` in the state's dtype (chain ``i`` integrates with entry ``i``)."""
    xi = ops.normal(state.x, t)
    p = xi if sqrt_mass is None else xi * sqrt_mass
    h0 = state.energy + kinetic_energy(p, inv_mass)
    x_new, p_new, grad_new, energy_new = leapfrog(
        state.x,
        p,
        state.grad,
        step_size,
        n_leapfrog,
        target.gradient,
        inv_mass=inv_mass,
        kick_drift=ops.kick_drift,
        energy_and_gradient=target.energy_and_gradient,
        kick=ops.kick,
    )
    log_accept_ratio = h0 - (energy_new + kinetic_energy(p_new, inv_mass))
    x, accepted = ops.metropolis_select(log_accept_ratio, state.x, x_new, t)
    rows = accepted.view(-1, *([1] * (x.dim() - 1)))
    grad = torch.where(rows, grad_new, state.grad)
    energy = torch.where(accepted, energy_new, state.energy)
    return ChainState(x, grad, energy), accepted, HMCProposal(x_new, p_new, log_accept_ratio)


def hmc_step(
    ops: StepOps, target: Target, state: ChainState, t: int, **settings: Any
) -> tuple[ChainState, Tensor]:
    r"""HMC: momentum :math:`p = \sqrt M \xi`; ``n_leapfrog`` leapfrog steps to
    :math:`(x_L, p_L)`; accept with probability :math:`\min(1, e^{H(x, p) - H(x_L, p_L)})`.
    ``n_leapfrog`` gradient evaluations per step (the accepted end point's carries over).
    ``settings``: the keywords of :func:`hmc_transition` (``step_size``, a float or a per-chain
    tensor ``[B]``; ``n_leapfrog``; ``inv_mass``; ``sqrt_mass``), whose first two outputs this
    returns."""
    state, accepted, _ = hmc_transition(ops, target, state, t, **settings)
    return state, accepted


# ---------------------------------------------------------------------------- gradient descent
def nesterov_init(target: Target, x: Tensor) -> ChainState:
    return ChainState(x, velocity=torch.zeros_like(x))


def nesterov_step(
    ops: StepOps, target: Target, state: ChainState, t: int, *, step_size: float, momentum: float
) -> tuple[ChainState, None]:
    r"""Nesterov's accelerated gradient descent (deterministic):
    :math:`v' = \mu v - \eta \nabla E(x + \mu v)`, :math:`x' = x + v'`; with :math:`\mu = 0`,
    plain gradient descent :math:`x' = x - \eta \nabla E(x)`. The update is a leapfrog
    kick (``-eta * grad``) and drift (``+1 * v'``) of the momentum :math:`p = \mu v`."""
    p = state.velocity * momentum
    grad = target.gradient(state.x + p if momentum else state.x)
    x, velocity = ops.kick_drift(state.x, p, grad, step_size, 1.0, None)
    return ChainState(x, velocity=velocity), None


# ---------------------------------------------------------------------------- the table
class Algorithm(NamedTuple):
    """An algorithm as the samplers run it: its two functions and the compiled ops behind it."""

    init: Callable[[Target, Tensor], ChainState]
    step: Callable[..., tuple[ChainState, Optional[Tensor]]]
    chain_op: Optional[str]  # the whole-chain op for the built-in analytic models, if any
    mlp_chain_op: Optional[str]  # the whole-chain op for recognised MLP energies, if any
    step_ops: tuple[str, ...]  # the compiled ops the step calls through FusedStepOps
    accepts: bool  # whether the step has a Metropolis test (and returns ``accepted``)
    integrators: tuple[Any, ...]  # the accepted ``integrator=`` values; [1] names it


_EULER_MARUYAMA = (None, "euler_maruyama", "EulerMaruyamaIntegrator")


LANGEVIN = Algorithm(langevin_init, langevin_step, accepts=False, integrators=_EULER_MARUYAMA,
                     chain_op="langevin_chain", mlp_chain_op="mlp_langevin_chain",
                     step_ops=("langevin_update", "philox_normal"))
MALA = Algorithm(gradient_state, mala_step, accepts=True, integrators=_EULER_MARUYAMA,
                 chain_op="mala_chain", mlp_chain_op="mlp_mala_chain",
                 step_ops=("langevin_update", "mala_select", "philox_normal"))
HMC = Algorithm(gradient_state, hmc_step, accepts=True, integrators=(None, "leapfrog", "LeapfrogIntegrator"),
                chain_op="hmc_chain", mlp_chain_op="mlp_hmc_chain",
                step_ops=("leapfrog_kick_drift", "metropolis_select", "philox_normal"))
NESTEROV = Algorithm(nesterov_init, nesterov_step, accepts=False, integrators=(None,),
                     chain_op=None, mlp_chain_op=None, step_ops=("leapfrog_kick_drift",))


__all__ = [
    "HMC",
    "LANGEVIN",
    "MALA",
    "NESTEROV",
    "Algorithm",
    "ChainState",
    "HMCProposal",
    "Target",
    "gradient_state",
    "hmc_step",
    "hmc_transition",
    "kinetic_energy",
    "langevin_init",
    "langevin_step",
    "leapfrog",
    "mala_step",
    "mala_transition",
    "nesterov_init",
    "nesterov_step",
]
