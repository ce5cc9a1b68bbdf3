"""Pure-PyTorch reference of every fused op: the fallback and the oracle the kernels are
tested against.

Each function takes the arguments of its op in ``ops.py``, except that random draws (normal
noise, uniforms) are passed in explicitly instead of being generated from a Philox seed. The
maths mirrors ``csrc/include/torchebm/``; docs/kernels.md states the contracts.

Shapes: ``x``, ``grad``, ``noise``, ``p`` are ``[B, *event]``; per-chain quantities
(``energy``, ``log_accept_ratio``, ``uniform``, ``accepted``) are ``[B]``.
"""

from __future__ import annotations

from typing import Optional

import torch


def langevin_update(
    x: torch.Tensor,
    grad: torch.Tensor,
    noise: torch.Tensor,
    a: float,
    b: float,
    clamp_min: Optional[float] = None,
    clamp_max: Optional[float] = None,
    grad_clip: Optional[float] = None,
) -> torch.Tensor:
    """``x' = clamp(x - a * clip(grad, -c, c) + b * noise, clamp_min, clamp_max)``."""
    if grad_clip is not None:
        grad = grad.clamp(-grad_clip, grad_clip)
    out = x - a * grad + b * noise
    if clamp_min is not None or clamp_max is not None:
        out = out.clamp(clamp_min, clamp_max)
    return out


def leapfrog_kick_drift(
    x: torch.Tensor,
    p: torch.Tensor,
    grad: torch.Tensor,
    kick: float,
    drift: float,
    inv_mass: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kick then drift: ``p' = p - kick * grad``; ``x' = x + drift * M^{-1} p'``.

    ``inv_mass`` is None (unit mass), a 0-d tensor, or ``[dim]`` (diagonal mass, broadcast over
    the last dimension). A leapfrog step of size eps is a half kick (kick = eps/2, drift = eps),
    a new gradient, and a final half kick; consecutive half kicks merge into one full kick.
    """
    p_new = p - kick * grad
    v = p_new if inv_mass is None else p_new * inv_mass
    return x + drift * v, p_new


def _accept(log_accept_ratio: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
    # log(u) < log_ratio accepts with probability min(1, exp(log_ratio)); a NaN ratio (e.g. from
    # a NaN or infinite energy) compares False and rejects.
    return torch.log(uniform) < log_accept_ratio


def _select_rows(accepted: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    return torch.where(accepted.view(-1, *([1] * (new.dim() - 1))), new, old)


def metropolis_select(
    log_accept_ratio: torch.Tensor,
    x: torch.Tensor,
    x_proposed: torch.Tensor,
    uniform: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-chain Metropolis step: accept row i iff ``log(u_i) < log_accept_ratio_i``.

    Returns ``(x_out, accepted)`` with ``x_out[i] = x_proposed[i] if accepted[i] else x[i]``.
    """
    accepted = _accept(log_accept_ratio, uniform)
    return _select_rows(accepted, x_proposed, x), accepted


def mala_log_accept_ratio(
    x: torch.Tensor,
    y: torch.Tensor,
    grad_x: torch.Tensor,
    grad_y: torch.Tensor,
    energy_x: torch.Tensor,
    energy_y: torch.Tensor,
    a: float,
    b: float,
) -> torch.Tensor:
    """log of the MALA acceptance ratio for the proposal ``y = x - a grad_x + b xi``.

    With q(y | x) = N(y; x - a grad E(x), b^2 I):
    ``log r = E(x) - E(y) + (|y - x + a grad_x|^2 - |x - y + a grad_y|^2) / (2 b^2)``,
    the squared norms summed over every non-batch dimension.
    """
    dims = tuple(range(1, x.dim()))
    forward = (y - x + a * grad_x).pow(2).sum(dims)
    backward = (x - y + a * grad_y).pow(2).sum(dims)
    return energy_x - energy_y + (forward - backward) / (2.0 * b * b)


def mala_select(
    x: torch.Tensor,
    y: torch.Tensor,
    grad_x: torch.Tensor,
    grad_y: torch.Tensor,
    energy_x: torch.Tensor,
    energy_y: torch.Tensor,
    a: float,
    b: float,
    uniform: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MALA acceptance fused with the selection of state, gradient and energy.

    Returns ``(x_out, grad_out, energy_out, accepted)``.
    """
    log_r = mala_log_accept_ratio(x, y, grad_x, grad_y, energy_x, energy_y, a, b)
    accepted = _accept(log_r, uniform)
    return (
        _select_rows(accepted, y, x),
        _select_rows(accepted, grad_y, grad_x),
        torch.where(accepted, energy_y, energy_x),
        accepted,
    )
