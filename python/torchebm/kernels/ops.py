"""Python face of the compiled ops: one small function per op calling ``torch.ops.torchebm``,
each followed by its fake (meta) kernel, registered with ``torch.library.register_fake`` so the
op traces under ``torch.compile``.

Contracts (shapes, random streams, what equals what) are in docs/kernels.md; the pure-PyTorch
oracle of each op is in ``reference.py``. States are ``[B, *event]`` (B chains); per-chain
values are ``[B]``. ``seed`` is any integer (its low 64 bits key Philox); ``step`` is the
sampler step in ``[0, 2**32)``.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch

from torchebm.kernels.analytic_registry import ANALYTIC_KERNELS
from torchebm.kernels.loader import load_ops

_LOADED = load_ops()

ENERGY_PARAMS: dict[str, tuple[str, ...]] = {k.name: k.params for k in ANALYTIC_KERNELS.values()}
"""Kernel names of the analytic models and the order of their scalar parameters."""


def _fake(op: str) -> Callable[[Callable], Callable]:
    """Registers the decorated function as the fake kernel of ``torchebm::<op>`` (when the
    compiled library, which defines the op, is loaded)."""

    def register(fn: Callable) -> Callable:
        if _LOADED:
            torch.library.register_fake(f"torchebm::{op}")(fn)
        return fn

    return register


def _like(x: torch.Tensor, shape: Optional[Sequence[int]] = None, dtype=None) -> torch.Tensor:
    """An empty tensor on x's device: x's shape and dtype unless given."""
    return torch.empty(
        x.shape if shape is None else tuple(shape), dtype=dtype or x.dtype, device=x.device
    )


def check_same_device(
    op: str,
    tensors: Mapping[str, Any],
    host_ok: Sequence[str] = (),
) -> None:
    """Raises RuntimeError unless every tensor of ``tensors`` (name -> tensor, None, or a
    sequence of tensors) is on the device of the first one; those named in ``host_ok`` may
    also be on the CPU (the chains' schedules).

    The fake kernels call it: a call mixing a ``meta`` tensor with real ones is routed by torch
    to the fake kernel (Meta outranks every back end), which would otherwise return an
    uninitialised tensor for real inputs. The compiled kernels check the same (checks.h).
    """
    ref_name, ref_device = None, None
    for name, value in tensors.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        for i, t in enumerate(items):
            if t is None:
                continue
            label = f"{name}[{i}]" if isinstance(value, (list, tuple)) else name
            if ref_device is None:
                ref_name, ref_device = label, t.device
            elif t.device != ref_device and not (name in host_ok and t.device.type == "cpu"):
                raise RuntimeError(
                    f"{op}: {label} is on {t.device} but {ref_name} is on {ref_device}; "
                    + (f"expected {ref_name}'s device or the CPU" if name in host_ok
                       else "expected the same device")
                )


MEMORY_FRACTION = 0.8
"""The largest share of a device's memory one op's outputs may ask for (``check_output_size``)."""


def _host_memory() -> Optional[int]:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


_HOST_MEMORY = _host_memory()


def _device_memory(device: torch.device) -> Optional[int]:
    """Bytes of physical memory of the host (cpu) or of a CUDA device; None if unknown."""
    try:
        if device.type == "cpu":
            return _HOST_MEMORY
        if device.type == "cuda":
            return torch.cuda.get_device_properties(device).total_memory
    except (ValueError, OSError, AttributeError, RuntimeError, AssertionError):
        pass
    return None


def check_output_size(op: str, what: str, nbytes: int, device: torch.device) -> None:
    """Raises RuntimeError, before anything is allocated, when an output of ``nbytes`` would
    take more than ``MEMORY_FRACTION`` of ``device``'s memory (on the CPU, an allocation that
    size would be granted lazily and end in the OOM killer rather than an error)."""
    if torch.compiler.is_compiling():
        return  # checked when the op runs eagerly; tracing cannot call into the OS
    total = _device_memory(device)
    if total is not None and nbytes > MEMORY_FRACTION * total:
        raise RuntimeError(
            f"{op}: {what} would take {nbytes / 2**30:.1f} GiB, more than "
            f"{MEMORY_FRACTION:.0%} of the {total / 2**30:.1f} GiB of {device.type} memory; "
            "record fewer states (a larger thin, fewer steps or chains) or none"
        )


def check_trajectory_size(op: str, x0: torch.Tensor, n_steps: int, thin: int,
                          record_trajectory: bool) -> None:
    """Refuse, before the op allocates it, a trajectory ``[B, n_steps // thin, d]`` larger than
    :data:`MEMORY_FRACTION` of the device's memory (the chain ops of ops.py and mlp.py)."""
    if not record_trajectory or x0.dim() != 2 or thin < 1:
        return  # the op's own checks name what is wrong
    kept = n_steps // thin
    nbytes = x0.shape[0] * kept * x0.shape[1] * x0.element_size()
    check_output_size(op, f"the trajectory [{x0.shape[0]}, {kept}, {x0.shape[1]}]", nbytes,
                      x0.device)


def seed64(seed: int) -> int:
    """Any Python integer -> the int64 with the same low 64 bits (the op schema takes int64)."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return seed - (1 << 64) if seed >= (1 << 63) else seed


def float_or_none(v: Optional[float]) -> Optional[float]:
    return None if v is None else float(v)


# ---- random numbers --------------------------------------------------------------------------


def philox_normal(
    size: Sequence[int],
    seed: int,
    step: int = 0,
    dtype: Optional[torch.dtype] = None,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Standard normals of ``size`` from stream 0 of Philox4x32-10 at ``(seed, step)``."""
    return torch.ops.torchebm.philox_normal(list(size), seed64(seed), int(step), dtype, device)


@_fake("philox_normal")
def _philox_draw_fake(size, seed, step, dtype=None, device=None):
    return torch.empty(
        size, dtype=dtype or torch.get_default_dtype(), device=device or torch.device("cpu")
    )


def philox_uniform(
    size: Sequence[int],
    seed: int,
    step: int = 0,
    dtype: Optional[torch.dtype] = None,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Uniforms in the open interval (0, 1) of ``size`` from stream 1 at ``(seed, step)``."""
    return torch.ops.torchebm.philox_uniform(list(size), seed64(seed), int(step), dtype, device)


_fake("philox_uniform")(_philox_draw_fake)


@_fake("_rng_math")
def _rng_math_fake(fn, x):
    # Test hook (tests/test_kernels_rng.py): no Python wrapper.
    return _like(x, (x.shape[0], 4) if fn == "philox" else None)


# ---- per-step ops ----------------------------------------------------------------------------

Coefficient = Union[float, torch.Tensor]
"""A per-step op's step-size coefficient: a float (every chain), or a tensor ``[B]`` in the
state's dtype and device (chain ``i`` uses entry ``i``, broadcast over its event)."""


def _split(value: Coefficient) -> tuple[float, Optional[torch.Tensor]]:
    """A coefficient as the op schema takes it: ``(float, None)`` or ``(1.0, per-chain tensor)``
    (the kernels then read the tensor, never the float, which only has to pass the checks)."""
    if isinstance(value, torch.Tensor):
        return 1.0, value
    return float(value), None



def langevin_update(
    x: torch.Tensor,
    grad: torch.Tensor,
    noise: Optional[torch.Tensor],
    a: Coefficient,
    b: Coefficient,
    clamp_min: Optional[float] = None,
    clamp_max: Optional[float] = None,
    grad_clip: Optional[float] = None,
    seed: int = 0,
    step: int = 0,
) -> torch.Tensor:
    """``clamp(x - a * clip(grad, -grad_clip, grad_clip) + b * xi, clamp_min, clamp_max)``.

    ``xi`` is ``noise``, or (``noise=None``) ``philox_normal(x.shape, seed, step, x.dtype)``
    generated in-kernel. ``a`` and ``b`` are floats or per-chain tensors ``[B]``
    (:data:`Coefficient`). Returns a new contiguous tensor of x's shape.
    """
    (a, a_chain), (b, b_chain) = _split(a), _split(b)
    return torch.ops.torchebm.langevin_update(
        x,
        grad,
        noise,
        a,
        b,
        float_or_none(clamp_min),
        float_or_none(clamp_max),
        float_or_none(grad_clip),
        seed64(seed),
        int(step),
        a_chain,
        b_chain,
    )


@_fake("langevin_update")
def _langevin_update_fake(x, grad, noise, a, b, clamp_min, clamp_max, grad_clip, seed, step,
                          a_chain=None, b_chain=None):
    check_same_device(
        "langevin_update",
        {"x": x, "grad": grad, "noise": noise, "a_chain": a_chain, "b_chain": b_chain},
    )
    return _like(x)


def leapfrog_kick_drift(
    x: torch.Tensor,
    p: torch.Tensor,
    grad: torch.Tensor,
    kick: Coefficient,
    drift: Coefficient,
    inv_mass: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``p' = p - kick * grad``; ``x' = x + drift * (inv_mass * p')``. Returns ``(x', p')``.

    ``inv_mass``: None (unit mass), 0-d, or ``[x.shape[-1]]``, in x's dtype. ``kick`` and
    ``drift`` are floats or per-chain tensors ``[B]`` (:data:`Coefficient`).
    """
    (kick, kick_chain), (drift, drift_chain) = _split(kick), _split(drift)
    return torch.ops.torchebm.leapfrog_kick_drift(
        x, p, grad, kick, drift, inv_mass, kick_chain, drift_chain
    )


@_fake("leapfrog_kick_drift")
def _leapfrog_kick_drift_fake(x, p, grad, kick, drift, inv_mass, kick_chain=None, drift_chain=None):
    check_same_device(
        "leapfrog_kick_drift",
        {"x": x, "p": p, "grad": grad, "inv_mass": inv_mass, "kick_chain": kick_chain,
         "drift_chain": drift_chain},
    )
    return _like(x), _like(x)


def metropolis_select(
    log_accept_ratio: torch.Tensor,
    x: torch.Tensor,
    x_proposed: torch.Tensor,
    uniform: Optional[torch.Tensor] = None,
    seed: int = 0,
    step: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Row i becomes ``x_proposed[i]`` iff ``log(u_i) < log_accept_ratio[i]``.

    ``u`` is ``uniform`` ([B]) or ``philox_uniform([B], seed, step, x.dtype)``; a NaN ratio
    rejects. Returns ``(x_out, accepted)`` (accepted: bool [B]).
    """
    return torch.ops.torchebm.metropolis_select(
        log_accept_ratio, x, x_proposed, uniform, seed64(seed), int(step)
    )


@_fake("metropolis_select")
def _metropolis_select_fake(log_accept_ratio, x, x_proposed, uniform, seed, step):
    check_same_device(
        "metropolis_select",
        {"x": x, "x_proposed": x_proposed, "log_accept_ratio": log_accept_ratio, "uniform": uniform},
    )
    return _like(x), _like(x, x.shape[:1], torch.bool)


def mala_select(
    x: torch.Tensor,
    y: torch.Tensor,
    grad_x: torch.Tensor,
    grad_y: torch.Tensor,
    energy_x: torch.Tensor,
    energy_y: torch.Tensor,
    a: Coefficient,
    b: Coefficient,
    uniform: Optional[torch.Tensor] = None,
    seed: int = 0,
    step: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MALA acceptance of ``y = x - a grad_x + b xi`` fused with the selection.

    ``log r = E(x) - E(y) + (|y - x + a grad_x|^2 - |x - y + a grad_y|^2) / (2 b^2)`` per row;
    accept iff ``log(u) < log r`` (u as in ``metropolis_select``). A NaN or +inf proposal
    energy rejects. ``a`` and ``b`` are floats or per-chain tensors ``[B]``
    (:data:`Coefficient`). Returns ``(x_out, grad_out, energy_out, accepted)``.
    """
    (a, a_chain), (b, b_chain) = _split(a), _split(b)
    return torch.ops.torchebm.mala_select(
        x, y, grad_x, grad_y, energy_x, energy_y, a, b, uniform, seed64(seed), int(step),
        a_chain, b_chain,
    )


@_fake("mala_select")
def _mala_select_fake(x, y, grad_x, grad_y, energy_x, energy_y, a, b, uniform, seed, step,
                      a_chain=None, b_chain=None):
    check_same_device(
        "mala_select",
        {"x": x, "y": y, "grad_x": grad_x, "grad_y": grad_y, "energy_x": energy_x,
         "energy_y": energy_y, "uniform": uniform, "a_chain": a_chain, "b_chain": b_chain},
    )
    return _like(x), _like(x), _like(x, x.shape[:1]), _like(x, x.shape[:1], torch.bool)


def analytic_energy_grad(
    energy: str,
    x: torch.Tensor,
    params: Sequence[float] = (),
    mean: Optional[torch.Tensor] = None,
    precision: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form ``(E(x) [B], grad E(x) [B, d])`` of a built-in analytic model (no autograd)."""
    return torch.ops.torchebm.analytic_energy_grad(
        energy, x, [float(v) for v in params], mean, precision
    )


@_fake("analytic_energy_grad")
def _analytic_energy_grad_fake(energy, x, params, mean, precision):
    check_same_device("analytic_energy_grad", {"x": x, "mean": mean, "precision": precision})
    return _like(x, x.shape[:1]), _like(x)


# ---- whole-chain ops -------------------------------------------------------------------------


def chain_outputs_fake(x0, n_steps, thin, record_trajectory, record_energy, with_acceptance):
    """The outputs of a whole-chain op, shapes only (the fake kernels of ops.py and mlp.py)."""
    kept = n_steps // thin if thin > 0 else 0
    out = [
        _like(x0),
        _like(x0, (x0.shape[0], kept, *x0.shape[1:]) if record_trajectory else (0,)),
        _like(x0, (n_steps,) if record_energy else (0,)),
    ]
    if with_acceptance:
        out.append(_like(x0, (n_steps,)))
    return tuple(out)


def check_first_step(op: str, first_step: int, n_steps: int) -> None:
    """The chain ops' ``first_step`` check, as the kernels make it (the fake kernels of ops.py
    and mlp.py): step t draws the noise of step ``first_step + t``, a 32-bit Philox counter word."""
    if first_step < 0:
        raise RuntimeError(f"{op}: first_step must be >= 0, got {first_step}")
    if first_step + n_steps > 2**32:
        raise RuntimeError(
            f"{op}: first_step + n_steps must be <= 2^32 (steps are Philox counter words), got "
            f"{first_step} + {n_steps}"
        )


def _check_chain_fake(op: str, x0, schedules: dict, others: dict, first_step: int, beta,
                      base_mean, base_precision, log_weight) -> None:
    """The checks of the analytic chain ops' fake kernels: every tensor on ``x0``'s device (the
    ``schedules`` and ``beta`` may stay on the CPU), and ``first_step`` and the tempering
    against ``n_steps``, the length of the first schedule."""
    n_steps = next(iter(schedules.values())).shape[0]
    tempering = {"beta": beta, "base_mean": base_mean, "base_precision": base_precision,
                 "log_weight": log_weight}
    check_same_device(op, {"x0": x0, **schedules, **others, **tempering}, host_ok=(*schedules, "beta"))
    check_first_step(op, first_step, n_steps)
    check_tempering_fake(op, n_steps, beta, base_mean, log_weight)


def check_tempering_fake(op: str, n_steps: int, beta, base_mean, log_weight) -> None:
    """The chain ops' tempering checks the fake kernels make (shapes the outputs do not show;
    the kernels check the rest, checks.h: tempering)."""
    if beta is None:
        if base_mean is not None or log_weight is not None:
            raise RuntimeError(f"{op}: base_mean, base_precision and log_weight temper a chain: "
                               "they need beta")
        return
    if beta.dim() not in (1, 2) or beta.shape[0] != n_steps + 1:
        raise RuntimeError(f"{op}: beta must have n_steps + 1 = {n_steps + 1} entries, got shape "
                           f"{tuple(beta.shape)}")
    if log_weight is not None and log_weight.dtype != torch.float64:
        raise RuntimeError(f"{op}: log_weight must be a float64 tensor, got {log_weight.dtype}")


def langevin_chain(
    energy: str,
    x0: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    params: Sequence[float] = (),
    mean: Optional[torch.Tensor] = None,
    precision: Optional[torch.Tensor] = None,
    clamp_min: Optional[float] = None,
    clamp_max: Optional[float] = None,
    grad_clip: Optional[float] = None,
    seed: int = 0,
    thin: int = 1,
    record_trajectory: bool = False,
    record_energy: bool = False,
    first_step: int = 0,
    beta: Optional[torch.Tensor] = None,
    base_mean: Optional[torch.Tensor] = None,
    base_precision: Optional[torch.Tensor] = None,
    log_weight: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n_steps = len(a)`` Langevin steps in one call; step t is ``langevin_update`` with
    ``(a[t], b[t])`` (schedules ``[n_steps]``, or ``[n_steps, B]`` for per-chain values: chain
    ``i`` takes ``a[t, i]``), the closed-form gradient and in-kernel noise at
    ``(seed, step=first_step + t)``. Calls over consecutive slices of the schedules, each from
    the state the previous one returned with ``first_step`` advanced by its length, give
    exactly the states of one call (``MCMCSampler._run_chain`` runs long chains so).

    Returns ``(x, trajectory [B, n_steps // thin, d] or empty, energy_mean [n_steps] or empty)``,
    ``energy_mean[t]`` the mean energy of the state after step t.

    Tempering (all three chain ops; docs/kernels.md, "Tempered chains"): with ``beta``
    (``[n_steps + 1]`` or ``[n_steps + 1, B]``) step t targets
    ``E_t = beta[t+1] E + (1 - beta[t+1]) E0``, ``E0(x) = 1/2 (x - m0)^T P0 (x - m0)`` given
    ``base_mean`` m0 ``[d]`` and ``base_precision`` P0 ``[d, d]`` (else ``E_t = beta[t+1] E``),
    and ``energy_mean`` reports ``E_t``; ``log_weight`` (float64 ``[B]``, updated in place)
    gains the AIS log weights ``sum_t (beta[t+1] - beta[t]) (E0(x_t) - E(x_t))``, ``x_t`` the
    state before step t. A blocked run passes ``beta[t0 : t1 + 1]`` and the same ``log_weight``.
    """
    check_trajectory_size("langevin_chain", x0, a.shape[0] if a.dim() in (1, 2) else 0, int(thin),
                           bool(record_trajectory))
    return torch.ops.torchebm.langevin_chain(
        energy,
        x0,
        a,
        b,
        [float(v) for v in params],
        mean,
        precision,
        float_or_none(clamp_min),
        float_or_none(clamp_max),
        float_or_none(grad_clip),
        seed64(seed),
        int(thin),
        bool(record_trajectory),
        bool(record_energy),
        int(first_step),
        beta,
        base_mean,
        base_precision,
        log_weight,
    )


@_fake("langevin_chain")
def _langevin_chain_fake(energy, x0, a, b, params, mean, precision, clamp_min, clamp_max,
                         grad_clip, seed, thin, record_trajectory, record_energy, first_step=0,
                         beta=None, base_mean=None, base_precision=None, log_weight=None):
    _check_chain_fake("langevin_chain", x0, {"a": a, "b": b}, {"mean": mean, "precision": precision},
                      first_step, beta, base_mean, base_precision, log_weight)
    return chain_outputs_fake(x0, a.shape[0], thin, record_trajectory, record_energy, False)


def mala_chain(
    energy: str,
    x0: torch.Tensor,
    a: torch.Tensor,
    b: torch.Tensor,
    params: Sequence[float] = (),
    mean: Optional[torch.Tensor] = None,
    precision: Optional[torch.Tensor] = None,
    seed: int = 0,
    thin: int = 1,
    record_trajectory: bool = False,
    record_energy: bool = False,
    first_step: int = 0,
    beta: Optional[torch.Tensor] = None,
    base_mean: Optional[torch.Tensor] = None,
    base_precision: Optional[torch.Tensor] = None,
    log_weight: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``len(a)`` MALA steps in one call (schedules ``[n_steps]`` or, per chain,
    ``[n_steps, B]``; see docs/kernels.md for the per-step equivalent),
    step t drawing the noise of step ``first_step + t`` (as ``langevin_chain``).

    Returns ``(x, trajectory, energy_mean, acceptance_rate [n_steps])``.
    """
    check_trajectory_size("mala_chain", x0, a.shape[0] if a.dim() in (1, 2) else 0, int(thin),
                           bool(record_trajectory))
    return torch.ops.torchebm.mala_chain(
        energy,
        x0,
        a,
        b,
        [float(v) for v in params],
        mean,
        precision,
        seed64(seed),
        int(thin),
        bool(record_trajectory),
        bool(record_energy),
        int(first_step),
        beta,
        base_mean,
        base_precision,
        log_weight,
    )


@_fake("mala_chain")
def _mala_chain_fake(energy, x0, a, b, params, mean, precision, seed, thin, record_trajectory,
                     record_energy, first_step=0, beta=None, base_mean=None, base_precision=None,
                     log_weight=None):
    _check_chain_fake("mala_chain", x0, {"a": a, "b": b}, {"mean": mean, "precision": precision},
                      first_step, beta, base_mean, base_precision, log_weight)
    return chain_outputs_fake(x0, a.shape[0], thin, record_trajectory, record_energy, True)


def hmc_chain(
    energy: str,
    x0: torch.Tensor,
    step_size: torch.Tensor,
    n_leapfrog: int,
    inv_mass: Optional[torch.Tensor] = None,
    params: Sequence[float] = (),
    mean: Optional[torch.Tensor] = None,
    precision: Optional[torch.Tensor] = None,
    seed: int = 0,
    thin: int = 1,
    record_trajectory: bool = False,
    record_energy: bool = False,
    first_step: int = 0,
    leapfrog_steps: Optional[torch.Tensor] = None,
    beta: Optional[torch.Tensor] = None,
    base_mean: Optional[torch.Tensor] = None,
    base_precision: Optional[torch.Tensor] = None,
    log_weight: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``len(step_size)`` HMC transitions of ``n_leapfrog`` leapfrog steps each, in one call
    (``step_size`` ``[n_steps]``, or ``[n_steps, B]`` per chain)
    (``n_leapfrog`` gradient evaluations per transition, plus one of ``x0`` at the start of the
    call; see docs/kernels.md), transition t drawing the noise of step ``first_step + t`` (as
    ``langevin_chain``). ``leapfrog_steps`` (int64 ``[n_steps]``, shared by the chains, each in
    ``[1, 2**31 - 1]``; on the CPU or x0's device), when given, replaces ``n_leapfrog``:
    transition t takes ``leapfrog_steps[t]`` leapfrog steps (jittered trajectories).

    Returns ``(x, trajectory, energy_mean, acceptance_rate [n_steps])``.
    """
    check_trajectory_size("hmc_chain", x0, step_size.shape[0] if step_size.dim() in (1, 2) else 0,
                           int(thin), bool(record_trajectory))
    return torch.ops.torchebm.hmc_chain(
        energy,
        x0,
        step_size,
        int(n_leapfrog),
        inv_mass,
        [float(v) for v in params],
        mean,
        precision,
        seed64(seed),
        int(thin),
        bool(record_trajectory),
        bool(record_energy),
        int(first_step),
        leapfrog_steps,
        beta,
        base_mean,
        base_precision,
        log_weight,
    )


@_fake("hmc_chain")
def _hmc_chain_fake(energy, x0, step_size, n_leapfrog, inv_mass, params, mean, precision, seed,
                    thin, record_trajectory, record_energy, first_step=0, leapfrog_steps=None,
                    beta=None, base_mean=None, base_precision=None, log_weight=None):
    _check_chain_fake("hmc_chain", x0, {"step_size": step_size, "leapfrog_steps": leapfrog_steps},
                      {"inv_mass": inv_mass, "mean": mean, "precision": precision}, first_step, beta,
                      base_mean, base_precision, log_weight)
    if leapfrog_steps is not None and (
        leapfrog_steps.shape != (step_size.shape[0],) or leapfrog_steps.dtype != torch.int64
    ):
        raise RuntimeError(
            f"hmc_chain: leapfrog_steps must be an int64 tensor [n_steps] (n_steps = "
            f"{step_size.shape[0]}), got {leapfrog_steps.dtype} of shape "
            f"{tuple(leapfrog_steps.shape)}"
        )
    return chain_outputs_fake(x0, step_size.shape[0], thin, record_trajectory, record_energy, True)


# ---- CUDA-graph-safe ops (CUDA kernels only; used by kernels/cuda_graph.py) -------------------
# They mutate their first argument and return nothing.


@_fake("langevin_update_graphsafe_")
def _langevin_update_graphsafe_fake(x, grad, a, b, clamp_min, clamp_max, grad_clip, seed_state,
                                    step_offset):
    check_same_device(
        "langevin_update_graphsafe_", {"x": x, "grad": grad, "seed_state": seed_state}
    )
    return None


@_fake("philox_state_advance_")
def _philox_state_advance_fake(seed_state, increment):
    return None


# ---- analytic models ---------------------------------------------------------------------------


def kernel_args(
    spec: tuple[str, Mapping[str, Any]],
    dtype: torch.dtype,
    device: Optional[torch.device] = None,
) -> tuple[str, list[float], Optional[torch.Tensor], Optional[torch.Tensor]]:
    """A model's ``kernel_spec()`` -> the chain ops' ``(energy, params, mean, precision)``.

    ``spec`` is ``(name, params)``, e.g. ``("double_well", {"barrier_height": 2.0, "b": 1.0})``
    or ``("gaussian", {"mean": mu, "precision": P})``. Scalar parameters are put in the order
    the kernels take them; the Gaussian's tensors are cast to ``dtype``/``device`` and the
    precision symmetrised (the kernels use ``grad = P (x - mu)``, exact for symmetric P).
    Raises ValueError for an unknown name or a missing parameter.
    """
    name, values = spec
    kernel = ANALYTIC_KERNELS.get(name)
    if kernel is None:
        raise ValueError(
            f"kernel_spec name {name!r} is not a built-in kernel; expected one of {sorted(ANALYTIC_KERNELS)}"
        )
    missing = [k for k in kernel.params + kernel.tensors if k not in values]
    if missing:
        raise ValueError(f"{name} kernel_spec lacks parameters {missing}; got keys {sorted(values)}")
    params = [float(values[k]) for k in kernel.params]
    if not kernel.tensors:
        return name, params, None, None
    mean = torch.as_tensor(values["mean"]).detach().to(dtype=dtype, device=device).contiguous()
    prec = torch.as_tensor(values["precision"]).detach().to(dtype=dtype, device=device)
    return name, params, mean, (0.5 * (prec + prec.transpose(0, 1))).contiguous()


# ---- replica exchange (parallel tempering) ----------------------------------------------------


def replica_swap(
    x: torch.Tensor,
    energy: torch.Tensor,
    betas: Sequence[float],
    parity: int,
    uniform: Optional[torch.Tensor] = None,
    seed: int = 0,
    step: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One round of replica exchange between neighbouring temperatures.

    ``x [K, B, *event]`` holds chain ``b`` of temperature ``k`` at ``x[k, b]``, ``energy [K, B]``
    its untempered energy ``E``, ``betas`` the ``K`` inverse temperatures. Pairs ``(k, k+1)``
    with ``k % 2 == parity`` are proposed; chain ``b`` of a pair swaps its two states iff
    ``log(u[k, b]) < (betas[k] - betas[k+1]) * (energy[k, b] - energy[k+1, b])`` (a NaN ratio
    rejects), ``u = uniform [K-1, B]`` or ``philox_uniform([K-1, B], seed, step, x.dtype)``.
    Returns ``(x_out, energy_out, accepted [K-1, B] bool)``; unproposed pairs read False.
    """
    return torch.ops.torchebm.replica_swap(
        x, energy, [float(v) for v in betas], int(parity), uniform, seed64(seed), int(step)
    )


@_fake("replica_swap")
def _replica_swap_fake(x, energy, betas, parity, uniform, seed, step):
    check_same_device("replica_swap", {"x": x, "energy": energy, "uniform": uniform})
    pairs = max(x.shape[0] - 1, 0)
    return _like(x), _like(energy), _like(x, (pairs, x.shape[1]), torch.bool)


# ---- denoising score matching ------------------------------------------------------------------


def dsm_perturb(
    x: torch.Tensor,
    noise: Optional[torch.Tensor],
    sigma: float,
    seed: int = 0,
    step: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_tilde, target) = (x + sigma * xi, -xi / sigma)`` in one pass (one kernel).

    ``xi`` is ``noise``, or (``noise=None``) ``philox_normal(x.shape, seed, step, x.dtype)``
    generated in-kernel (float32 draws for float16/bfloat16 states on CUDA). ``target`` is the
    score of ``N(x_tilde; x, sigma^2 I)`` at ``x_tilde``, the regression target of denoising
    score matching. Both outputs are new contiguous tensors of x's shape and dtype. Differentiable
    in ``x`` and ``noise``; ``sigma`` must be > 0 with ``1 / sigma`` finite in the compute dtype.
    """
    return torch.ops.torchebm.dsm_perturb(x, noise, float(sigma), seed64(seed), int(step))


def _dsm_perturb_fake(x, noise, sigma, seed, step):
    check_same_device("dsm_perturb", {"x": x, "noise": noise})
    return _like(x), _like(x)


if hasattr(torch.ops.torchebm, "dsm_perturb"):  # a library built before the op lacks it
    _fake("dsm_perturb")(_dsm_perturb_fake)
