"""Pure-PyTorch reference of every fused op: the fallback and the oracle the kernels are
tested against.

Each function takes the arguments of its op in ``ops.py``, except that random draws (normal
noise, uniforms) are passed in explicitly instead of being generated from a Philox seed. The
maths mirrors ``csrc/include/torchebm/``; docs/kernels.md states the contracts.

Shapes: ``x``, ``grad``, ``noise``, ``p`` are ``[B, *event]``; per-chain quantities
(``energy``, ``log_accept_ratio``, ``uniform``, ``accepted``) are ``[B]``.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch

from torchebm.kernels.analytic_registry import ANALYTIC_KERNELS


def rows(value, like: torch.Tensor):
    """A step-size coefficient ready to multiply states like ``like`` ``[B, *event]``: a float
    as is, a per-chain tensor ``[B]`` viewed as ``[B, 1, ...]`` (broadcast over the event)."""
    if isinstance(value, torch.Tensor) and value.dim() == 1 and like.dim() > 1:
        return value.view(-1, *([1] * (like.dim() - 1)))
    return value


def langevin_update(
    x: torch.Tensor,
    grad: torch.Tensor,
    noise: torch.Tensor,
    a,
    b,
    clamp_min: Optional[float] = None,
    clamp_max: Optional[float] = None,
    grad_clip: Optional[float] = None,
) -> torch.Tensor:
    """``x' = clamp(x - a * clip(grad, -c, c) + b * noise, clamp_min, clamp_max)``; ``a``, ``b``
    floats or per-chain tensors ``[B]``."""
    if grad_clip is not None:
        grad = grad.clamp(-grad_clip, grad_clip)
    out = x - rows(a, x) * grad + rows(b, x) * noise
    if clamp_min is not None or clamp_max is not None:
        out = out.clamp(clamp_min, clamp_max)
    return out


def leapfrog_kick_drift(
    x: torch.Tensor,
    p: torch.Tensor,
    grad: torch.Tensor,
    kick,
    drift,
    inv_mass: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kick then drift: ``p' = p - kick * grad``; ``x' = x + drift * M^{-1} p'``.

    ``inv_mass`` is None (unit mass), a 0-d tensor, or ``[dim]`` (diagonal mass, broadcast over
    the last dimension); ``kick`` and ``drift`` floats or per-chain tensors ``[B]``. A leapfrog step of size eps is a half kick (kick = eps/2, drift = eps),
    a new gradient, and a final half kick; consecutive half kicks merge into one full kick.
    """
    p_new = p - rows(kick, p) * grad
    v = p_new if inv_mass is None else p_new * inv_mass
    return x + rows(drift, x) * v, p_new


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
    a,
    b,
) -> torch.Tensor:
    """log of the MALA acceptance ratio for the proposal ``y = x - a grad_x + b xi`` (``a``,
    ``b`` floats or per-chain tensors ``[B]``).

    With q(y | x) = N(y; x - a grad E(x), b^2 I):
    ``log r = E(x) - E(y) + (|y - x + a grad_x|^2 - |x - y + a grad_y|^2) / (2 b^2)``,
    the squared norms summed over every non-batch dimension (none for ``[B]`` states: then
    each chain's term is its own square).
    """
    forward = (y - x + rows(a, x) * grad_x).pow(2)
    backward = (x - y + rows(a, x) * grad_y).pow(2)
    if x.dim() > 1:  # sum(()) would reduce every dimension, the chains' too
        dims = tuple(range(1, x.dim()))
        forward, backward = forward.sum(dims), backward.sum(dims)
    return energy_x - energy_y + (forward - backward) / (2.0 * b * b)


def mala_select(
    x: torch.Tensor,
    y: torch.Tensor,
    grad_x: torch.Tensor,
    grad_y: torch.Tensor,
    energy_x: torch.Tensor,
    energy_y: torch.Tensor,
    a,
    b,
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


# ---- Philox4x32-10 streams (mirror of csrc/include/torchebm/philox.h, normal.h) ---------------
# Pure PyTorch in int64 arithmetic: slow, but bit-exact in the words and uniforms, and the oracle
# the compiled generators are tested against. Normals are computed in float64 from the same
# uniforms (the kernels' float32 polynomials agree to a few ulp).

_MASK32 = 0xFFFFFFFF
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)


def _mulhilo32(a: int, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # a * c for a, c < 2^32 as (hi, lo) 32-bit words, without int64 overflow: split a in 16-bit halves.
    a_hi, a_lo = a >> 16, a & 0xFFFF
    lo_part = c * a_lo  # < 2^48
    hi_part = c * a_hi  # < 2^48
    t = ((hi_part & 0xFFFF) << 16) + lo_part
    return (hi_part >> 16) + (t >> 32), t & _MASK32


def philox4x32_10(counter: torch.Tensor, key: tuple[int, int]) -> torch.Tensor:
    """Philox4x32-10 of int64 ``counter [..., 4]`` (32-bit words) with ``key = (k0, k1)``."""
    c = [counter[..., i].to(torch.int64) & _MASK32 for i in range(4)]
    k0, k1 = key[0] & _MASK32, key[1] & _MASK32
    for _ in range(10):
        hi0, lo0 = _mulhilo32(_PHILOX_M[0], c[0])
        hi1, lo1 = _mulhilo32(_PHILOX_M[1], c[2])
        c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
        k0 = (k0 + _PHILOX_W[0]) & _MASK32
        k1 = (k1 + _PHILOX_W[1]) & _MASK32
    return torch.stack(c, dim=-1)


def philox_words(n_groups: int, seed: int, step: int, stream: int) -> torch.Tensor:
    """The four words ``[n_groups, 4]`` of groups ``0 .. n_groups-1`` at ``(seed, step, stream)``."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    g = torch.arange(n_groups, dtype=torch.int64)
    counter = torch.stack(
        [g & _MASK32, g >> 32, torch.full_like(g, int(step)), torch.full_like(g, int(stream))], -1
    )
    return philox4x32_10(counter, (seed & _MASK32, seed >> 32))


def uniform_from_words(words: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Philox words ``[n, 4]`` -> the uniforms of ``dtype``'s stream layout, in float64 (exact):
    float32: ``(k + 1/2) 2^-23``, ``k = w >> 9`` (one word per value); float64:
    ``(k + 1/2) 2^-52``, ``k = (w_a << 20) | (w_b >> 12)`` (two words per value)."""
    if dtype == torch.float32:
        k = (words >> 9).reshape(-1)
        return (k.to(torch.float64) + 0.5) * 2.0**-23
    k = ((words[:, 0::2] << 20) | (words[:, 1::2] >> 12)).reshape(-1)
    return (k.to(torch.float64) + 0.5) * 2.0**-52


def _elems_per_group(dtype: torch.dtype) -> int:
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return 4 if dtype == torch.float32 else 2


def philox_uniform(size, seed: int, step: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Reference of ``ops.philox_uniform``: stream 1, element i from group i // (4 or 2)."""
    n = 1
    for s in size:
        n *= int(s)
    per = _elems_per_group(dtype)
    words = philox_words((n + per - 1) // per, seed, step, 1)
    return uniform_from_words(words, dtype)[:n].to(dtype).reshape(tuple(size))


def philox_normal(
    size, seed: int, step: int, dtype: torch.dtype = torch.float32, as_float64: bool = False
) -> torch.Tensor:
    """Reference of ``ops.philox_normal``: stream 0, Box-Muller on consecutive uniform pairs
    ``(u1, u2) -> (r cos 2 pi u2, r sin 2 pi u2)``, ``r = sqrt(-2 log u1)``, in float64.

    ``dtype`` picks the stream layout (float32: one word per uniform; float64: two); with
    ``as_float64`` the float64 values are returned without rounding to ``dtype``."""
    n = 1
    for s in size:
        n *= int(s)
    per = _elems_per_group(dtype)
    words = philox_words((n + per - 1) // per, seed, step, 0)
    u = uniform_from_words(words, dtype).reshape(-1, 2)
    r = torch.sqrt(-2.0 * torch.log(u[:, 0]))
    theta = 2.0 * math.pi * u[:, 1]
    z = torch.stack([r * torch.cos(theta), r * torch.sin(theta)], -1).reshape(-1)
    return z[:n].to(torch.float64 if as_float64 else dtype).reshape(tuple(size))


# ---- analytic models (mirror of csrc/include/torchebm/energies.h) ----------------------------
# One closed form per row of analytic_registry.ANALYTIC_KERNELS: (x [B, d], scalar params in the
# registry's order, mean, precision) -> (E(x) [B], grad E(x) [B, d]).


def _gaussian(x, p, mean, precision):
    z = x - mean
    g = z @ precision
    return 0.5 * (z * g).sum(-1), g


def _double_well(x, p, mean, precision):
    h, b = p
    u = x * x - b * b
    return h * (u * u).sum(-1), 4.0 * h * x * u


def _harmonic(x, p, mean, precision):
    (k,) = p
    return 0.5 * k * (x * x).sum(-1), k * x


def _rosenbrock(x, p, mean, precision):
    a, b = p
    u = a - x[:, :-1]
    v = x[:, 1:] - x[:, :-1] ** 2
    g = torch.zeros_like(x)
    g[:, :-1] += -2.0 * u - 4.0 * b * x[:, :-1] * v
    g[:, 1:] += 2.0 * b * v
    return (u * u + b * v * v).sum(-1), g


def _ackley(x, p, mean, precision):
    a, b, c = p
    d = x.shape[-1]
    r = torch.sqrt((x * x).sum(-1) / d)
    e1 = torch.exp(-b * r)
    e2 = torch.exp(torch.cos(c * x).sum(-1) / d)
    radial = torch.where(r > 0, a * b * e1 / (d * r), torch.zeros_like(r))
    g = radial[:, None] * x + (e2 * c / d)[:, None] * torch.sin(c * x)
    return -a * e1 - e2 + a + math.e, g


def _rastrigin(x, p, mean, precision):
    (a,) = p
    two_pi = 2.0 * math.pi
    e = a * x.shape[-1] + (x * x - a * torch.cos(two_pi * x)).sum(-1)
    return e, 2.0 * x + two_pi * a * torch.sin(two_pi * x)


def _himmelblau(x, p, mean, precision):
    x1, x2 = x[:, 0], x[:, 1]
    u = x1 * x1 + x2 - 11.0
    v = x1 + x2 * x2 - 7.0
    return u * u + v * v, torch.stack([4.0 * x1 * u + 2.0 * v, 2.0 * u + 4.0 * x2 * v], -1)


def _booth(x, p, mean, precision):
    x1, x2 = x[:, 0], x[:, 1]
    u = x1 + 2.0 * x2 - 7.0
    v = 2.0 * x1 + x2 - 5.0
    return u * u + v * v, torch.stack([2.0 * u + 4.0 * v, 4.0 * u + 2.0 * v], -1)


def _styblinski_tang(x, p, mean, precision):
    x2 = x * x
    return 0.5 * (x2 * x2 - 16.0 * x2 + 5.0 * x).sum(-1), 2.0 * x2 * x - 16.0 * x + 2.5


def _banana(x, p, mean, precision):
    b, s = p
    x1, rest = x[:, 0], x[:, 2:]
    u = x[:, 1] + b * (x1 * x1 - s * s)
    e = 0.5 * (x1 * x1 / (s * s) + u * u + (rest * rest).sum(-1))
    return e, torch.cat([(x1 / (s * s) + 2.0 * b * x1 * u)[:, None], u[:, None], rest], -1)


ANALYTIC_CLOSED_FORMS = {
    "gaussian": _gaussian,
    "double_well": _double_well,
    "harmonic": _harmonic,
    "rosenbrock": _rosenbrock,
    "ackley": _ackley,
    "rastrigin": _rastrigin,
    "himmelblau": _himmelblau,
    "booth": _booth,
    "styblinski_tang": _styblinski_tang,
    "banana": _banana,
}
"""Kernel name -> closed form, one per row of ``ANALYTIC_KERNELS`` (tests check both ways)."""


def analytic_energy_grad(
    energy: str,
    x: torch.Tensor,
    params=(),
    mean: Optional[torch.Tensor] = None,
    precision: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ``(E(x) [B], grad E(x) [B, d])`` of the kernel model ``energy`` (names and
    parameter order as ``analytic_registry.ANALYTIC_KERNELS``); x is ``[B, d]``."""
    if energy not in ANALYTIC_KERNELS:
        raise ValueError(
            f"unknown analytic energy {energy!r}; expected one of {', '.join(ANALYTIC_KERNELS)}"
        )
    return ANALYTIC_CLOSED_FORMS[energy](x, [float(v) for v in params], mean, precision)


def tempered_energy_grad(
    energy: str,
    x: torch.Tensor,
    beta: Union[float, torch.Tensor],
    params=(),
    mean: Optional[torch.Tensor] = None,
    precision: Optional[torch.Tensor] = None,
    base_mean: Optional[torch.Tensor] = None,
    base_precision: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The tempered target of the chain ops' ``beta`` (csrc/cpu/analytic_models.h: Tempered):

    .. math::
        E_\beta = \beta E + (1 - \beta) E_0, \qquad
        E_0(x) = \tfrac12 (x - m_0)^\top P_0 (x - m_0)

    (:math:`E_\beta = \beta E` without a base), ``beta`` a float or per-row ``[B]``. Returns
    ``(E_beta [B], grad E_beta [B, d], E [B], E_0 [B])`` (``E_0`` zeros without a base): the
    AIS log-weight increment of a move from :math:`\beta` to :math:`\beta'` at x is
    :math:`(\beta' - \beta)(E_0(x) - E(x))`."""
    e, g = analytic_energy_grad(energy, x, params, mean, precision)
    b = torch.as_tensor(beta, dtype=x.dtype, device=x.device)
    rows = b.reshape(-1, 1) if b.dim() == 1 else b
    if base_mean is None:
        return b * e, rows * g, e, torch.zeros_like(e)
    e0, g0 = _gaussian(x, (), base_mean, base_precision)
    return b * e + (1 - b) * e0, rows * g + (1 - rows) * g0, e, e0


def dsm_perturb(
    x: torch.Tensor, noise: torch.Tensor, sigma: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoising score matching's perturbation and target, ``[B, *event]`` each:
    ``x_tilde = x + sigma * noise`` and ``target = -noise / sigma``, the score
    ``grad log N(x_tilde; x, sigma^2 I) = -(x_tilde - x) / sigma^2`` of the perturbation kernel
    at ``x_tilde`` (``noise`` standard normal, so ``sigma * noise ~ N(0, sigma^2 I)``)."""
    return x + sigma * noise, -noise / sigma


def replica_swap(
    x: torch.Tensor,
    energy: torch.Tensor,
    betas,
    parity: int,
    uniform: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One round of replica exchange (``ops.replica_swap`` with its uniforms passed in).

    ``x [K, B, *event]``, ``energy [K, B]``, ``betas`` ``K`` floats, ``uniform [K-1, B]``. Pair
    ``(k, k+1)`` with ``k % 2 == parity`` swaps chain ``b`` iff
    ``log u[k, b] < (beta_k - beta_{k+1}) (E[k, b] - E[k+1, b])``: the Metropolis ratio
    ``pi_k(x_{k+1}) pi_{k+1}(x_k) / (pi_k(x_k) pi_{k+1}(x_{k+1}))`` of ``pi_k ~ exp(-beta_k E)``.
    Returns ``(x_out, energy_out, accepted [K-1, B])``.
    """
    k_temps = x.shape[0]
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    beta = torch.tensor([float(v) for v in betas], dtype=compute, device=x.device)
    e = energy.to(compute)
    log_r = (beta[:-1] - beta[1:]).unsqueeze(1) * (e[:-1] - e[1:])
    proposed = (torch.arange(max(k_temps - 1, 0), device=x.device) % 2 == parity).unsqueeze(1)
    accepted = proposed & _accept(log_r, uniform.to(compute))
    return swap_rows(x, accepted), swap_rows(energy, accepted), accepted


def swap_rows(t: torch.Tensor, accepted: torch.Tensor) -> torch.Tensor:
    """``t [K, B, ...]`` with rows ``k`` and ``k+1`` of chain ``b`` exchanged where
    ``accepted[k, b]`` (no two accepted pairs share a row: one parity per round)."""
    lower = torch.nn.functional.pad(accepted, (0, 0, 0, 1))  # row k swaps with k + 1
    upper = torch.nn.functional.pad(accepted, (0, 0, 1, 0))  # row k swaps with k - 1
    shape = (*accepted.shape[:1], accepted.shape[1], *([1] * (t.dim() - 2)))
    lower = lower.view(t.shape[0], *shape[1:])
    upper = upper.view(t.shape[0], *shape[1:])
    from_above = torch.cat([t[1:], t[-1:]], dim=0)
    from_below = torch.cat([t[:1], t[:-1]], dim=0)
    return torch.where(lower, from_above, torch.where(upper, from_below, t))
