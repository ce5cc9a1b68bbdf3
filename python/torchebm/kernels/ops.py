"""Python face of the compiled ops: one small function per op calling ``torch.ops.torchebm``,
with its fake (meta) kernel beside it so each op traces under ``torch.compile``.

Contracts (shapes, random streams, what equals what) are in docs/kernels.md; the pure-PyTorch
oracle of each op is in ``reference.py``. States are ``[B, *event]`` (B chains); per-chain
values are ``[B]``. ``seed`` is any integer (its low 64 bits key Philox); ``step`` is the
sampler step in ``[0, 2**32)``.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch

from torchebm.kernels.loader import load_ops

_LOADED = load_ops()

# Kernel names of the analytic models and the order of their scalar parameters.
ENERGY_PARAMS: dict[str, tuple[str, ...]] = {
    "gaussian": (),
    "double_well": ("barrier_height", "b"),
    "harmonic": ("k",),
    "rosenbrock": ("a", "b"),
    "ackley": ("a", "b", "c"),
    "rastrigin": ("a",),
    "himmelblau": (),
    "booth": (),
    "styblinski_tang": (),
}


def _seed64(seed: int) -> int:
    """Any Python integer -> the int64 with the same low 64 bits (the op schema takes int64)."""
    seed = int(seed) & 0xFFFFFFFFFFFFFFFF
    return seed - (1 << 64) if seed >= (1 << 63) else seed


def _float_or_none(v: Optional[float]) -> Optional[float]:
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
    return torch.ops.torchebm.philox_normal(list(size), _seed64(seed), int(step), dtype, device)


def philox_uniform(
    size: Sequence[int],
    seed: int,
    step: int = 0,
    dtype: Optional[torch.dtype] = None,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Uniforms in the open interval (0, 1) of ``size`` from stream 1 at ``(seed, step)``."""
    return torch.ops.torchebm.philox_uniform(list(size), _seed64(seed), int(step), dtype, device)


# ---- per-step ops ----------------------------------------------------------------------------


def langevin_update(
    x: torch.Tensor,
    grad: torch.Tensor,
    noise: Optional[torch.Tensor],
    a: float,
    b: float,
    clamp_min: Optional[float] = None,
    clamp_max: Optional[float] = None,
    grad_clip: Optional[float] = None,
    seed: int = 0,
    step: int = 0,
) -> torch.Tensor:
    """``clamp(x - a * clip(grad, -grad_clip, grad_clip) + b * xi, clamp_min, clamp_max)``.

    ``xi`` is ``noise``, or (``noise=None``) ``philox_normal(x.shape, seed, step, x.dtype)``
    generated in-kernel. Returns a new contiguous tensor of x's shape.
    """
    return torch.ops.torchebm.langevin_update(
        x,
        grad,
        noise,
        float(a),
        float(b),
        _float_or_none(clamp_min),
        _float_or_none(clamp_max),
        _float_or_none(grad_clip),
        _seed64(seed),
        int(step),
    )


def leapfrog_kick_drift(
    x: torch.Tensor,
    p: torch.Tensor,
    grad: torch.Tensor,
    kick: float,
    drift: float,
    inv_mass: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``p' = p - kick * grad``; ``x' = x + drift * (inv_mass * p')``. Returns ``(x', p')``.

    ``inv_mass``: None (unit mass), 0-d, or ``[x.shape[-1]]``, in x's dtype.
    """
    return torch.ops.torchebm.leapfrog_kick_drift(x, p, grad, float(kick), float(drift), inv_mass)


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
        log_accept_ratio, x, x_proposed, uniform, _seed64(seed), int(step)
    )


def mala_select(
    x: torch.Tensor,
    y: torch.Tensor,
    grad_x: torch.Tensor,
    grad_y: torch.Tensor,
    energy_x: torch.Tensor,
    energy_y: torch.Tensor,
    a: float,
    b: float,
    uniform: Optional[torch.Tensor] = None,
    seed: int = 0,
    step: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MALA acceptance of ``y = x - a grad_x + b xi`` fused with the selection.

    ``log r = E(x) - E(y) + (|y - x + a grad_x|^2 - |x - y + a grad_y|^2) / (2 b^2)`` per row;
    accept iff ``log(u) < log r`` (u as in ``metropolis_select``). A NaN or +inf proposal
    energy rejects. Returns ``(x_out, grad_out, energy_out, accepted)``.
    """
    return torch.ops.torchebm.mala_select(
        x, y, grad_x, grad_y, energy_x, energy_y, float(a), float(b), uniform, _seed64(seed), int(step)
    )


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


# ---- whole-chain ops -------------------------------------------------------------------------


def _schedule(values: Any, n_steps: Optional[int] = None) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float64, device="cpu")
    if t.dim() == 0 and n_steps is not None:
        t = t.expand(n_steps)
    return t.contiguous()


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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n_steps = len(a)`` Langevin steps in one call; step t is ``langevin_update`` with
    ``(a[t], b[t])``, the closed-form gradient and in-kernel noise at ``(seed, step=t)``.

    Returns ``(x, trajectory [B, n_steps // thin, d] or empty, energy_mean [n_steps] or empty)``,
    ``energy_mean[t]`` the mean energy of the state after step t.
    """
    return torch.ops.torchebm.langevin_chain(
        energy,
        x0,
        a,
        b,
        [float(v) for v in params],
        mean,
        precision,
        _float_or_none(clamp_min),
        _float_or_none(clamp_max),
        _float_or_none(grad_clip),
        _seed64(seed),
        int(thin),
        bool(record_trajectory),
        bool(record_energy),
    )


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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``len(a)`` MALA steps in one call (see docs/kernels.md for the per-step equivalent).

    Returns ``(x, trajectory, energy_mean, acceptance_rate [n_steps])``.
    """
    return torch.ops.torchebm.mala_chain(
        energy,
        x0,
        a,
        b,
        [float(v) for v in params],
        mean,
        precision,
        _seed64(seed),
        int(thin),
        bool(record_trajectory),
        bool(record_energy),
    )


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
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``len(step_size)`` HMC transitions of ``n_leapfrog`` leapfrog steps each, in one call
    (L + 1 gradient evaluations per transition; see docs/kernels.md).

    Returns ``(x, trajectory, energy_mean, acceptance_rate [n_steps])``.
    """
    return torch.ops.torchebm.hmc_chain(
        energy,
        x0,
        step_size,
        int(n_leapfrog),
        inv_mass,
        [float(v) for v in params],
        mean,
        precision,
        _seed64(seed),
        int(thin),
        bool(record_trajectory),
        bool(record_energy),
    )


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
    if name not in ENERGY_PARAMS:
        raise ValueError(
            f"kernel_spec name {name!r} is not a built-in kernel; expected one of {sorted(ENERGY_PARAMS)}"
        )
    if name == "gaussian":
        missing = [k for k in ("mean", "precision") if k not in values]
        if missing:
            raise ValueError(f"gaussian kernel_spec lacks {missing}; got keys {sorted(values)}")
        mean = torch.as_tensor(values["mean"]).detach().to(dtype=dtype, device=device).contiguous()
        prec = torch.as_tensor(values["precision"]).detach().to(dtype=dtype, device=device)
        prec = (0.5 * (prec + prec.transpose(0, 1))).contiguous()
        return name, [], mean, prec
    order = ENERGY_PARAMS[name]
    missing = [k for k in order if k not in values]
    if missing:
        raise ValueError(f"{name} kernel_spec lacks parameters {missing}; got keys {sorted(values)}")
    return name, [float(values[k]) for k in order], None, None


# ---- fake kernels (shapes only) for torch.compile --------------------------------------------

if _LOADED:

    def _factory_fake(size, seed, step, dtype=None, device=None):
        return torch.empty(
            size, dtype=dtype or torch.get_default_dtype(), device=device or torch.device("cpu")
        )

    torch.library.register_fake("torchebm::philox_normal")(_factory_fake)
    torch.library.register_fake("torchebm::philox_uniform")(_factory_fake)

    @torch.library.register_fake("torchebm::_rng_math")
    def _(fn, x):
        return torch.empty((x.shape[0], 4) if fn == "philox" else x.shape, dtype=x.dtype, device=x.device)

    @torch.library.register_fake("torchebm::langevin_update")
    def _(x, grad, noise, a, b, clamp_min, clamp_max, grad_clip, seed, step):
        return torch.empty(x.shape, dtype=x.dtype, device=x.device)

    @torch.library.register_fake("torchebm::leapfrog_kick_drift")
    def _(x, p, grad, kick, drift, inv_mass):
        return (
            torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(x.shape, dtype=x.dtype, device=x.device),
        )

    @torch.library.register_fake("torchebm::metropolis_select")
    def _(log_accept_ratio, x, x_proposed, uniform, seed, step):
        return (
            torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(x.shape[:1], dtype=torch.bool, device=x.device),
        )

    @torch.library.register_fake("torchebm::mala_select")
    def _(x, y, grad_x, grad_y, energy_x, energy_y, a, b, uniform, seed, step):
        return (
            torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(x.shape[:1], dtype=x.dtype, device=x.device),
            torch.empty(x.shape[:1], dtype=torch.bool, device=x.device),
        )

    @torch.library.register_fake("torchebm::analytic_energy_grad")
    def _(energy, x, params, mean, precision):
        return (
            torch.empty(x.shape[:1], dtype=x.dtype, device=x.device),
            torch.empty(x.shape, dtype=x.dtype, device=x.device),
        )

    def _chain_outputs(x0, n_steps, thin, record_trajectory, record_energy, with_acceptance):
        kept = n_steps // thin if thin > 0 else 0
        traj_shape = (x0.shape[0], kept, *x0.shape[1:]) if record_trajectory else (0,)
        out = [
            torch.empty(x0.shape, dtype=x0.dtype, device=x0.device),
            torch.empty(traj_shape, dtype=x0.dtype, device=x0.device),
            torch.empty((n_steps,) if record_energy else (0,), dtype=x0.dtype, device=x0.device),
        ]
        if with_acceptance:
            out.append(torch.empty((n_steps,), dtype=x0.dtype, device=x0.device))
        return tuple(out)

    @torch.library.register_fake("torchebm::langevin_chain")
    def _(energy, x0, a, b, params, mean, precision, clamp_min, clamp_max, grad_clip, seed, thin,
          record_trajectory, record_energy):
        return _chain_outputs(x0, a.shape[0], thin, record_trajectory, record_energy, False)

    @torch.library.register_fake("torchebm::mala_chain")
    def _(energy, x0, a, b, params, mean, precision, seed, thin, record_trajectory, record_energy):
        return _chain_outputs(x0, a.shape[0], thin, record_trajectory, record_energy, True)

    @torch.library.register_fake("torchebm::hmc_chain")
    def _(energy, x0, step_size, n_leapfrog, inv_mass, params, mean, precision, seed, thin,
          record_trajectory, record_energy):
        return _chain_outputs(x0, step_size.shape[0], thin, record_trajectory, record_energy, True)

    # The graph-safe ops mutate their first argument and return nothing.
    @torch.library.register_fake("torchebm::langevin_update_graphsafe_")
    def _(x, grad, a, b, clamp_min, clamp_max, grad_clip, seed_state, step_offset):
        return None

    @torch.library.register_fake("torchebm::philox_state_advance_")
    def _(seed_state, increment):
        return None
