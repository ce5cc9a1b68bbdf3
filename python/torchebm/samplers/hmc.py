r"""Hamiltonian Monte Carlo with a leapfrog integrator and a scalar or diagonal mass."""

from __future__ import annotations

import numbers
from typing import Any, Callable, Optional, Union

import torch
from torch import nn

from torchebm.core.base_module import DeviceLike
from torchebm.core.base_sampler import BaseSampler, _check_scheduled, _rand, _randn
from torchebm.core.base_scheduler import BaseScheduler
from torchebm.kernels import reference
from torchebm.samplers.sampling_loop import (
    ChainResult,
    KernelModel,
    StepContext,
    kernel_op,
    run_sample,
    scheduled_values,
)

Scheduled = Union[float, BaseScheduler]
KickDrift = Callable[..., tuple[torch.Tensor, torch.Tensor]]

_INTEGRATORS = (None, "leapfrog", "LeapfrogIntegrator")


def leapfrog(
    x: torch.Tensor,
    p: torch.Tensor,
    grad: torch.Tensor,
    step_size: float,
    n_steps: int,
    gradient: Callable[[torch.Tensor], torch.Tensor],
    *,
    inv_mass: Optional[torch.Tensor] = None,
    kick_drift: KickDrift = reference.leapfrog_kick_drift,
    energy_and_gradient: Optional[Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    r"""``n_steps`` leapfrog steps of size :math:`\epsilon` for :math:`H = E(x) + \tfrac12 p^\top M^{-1} p`.

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
        kick_drift: :func:`torchebm.kernels.reference.leapfrog_kick_drift` or the fused op.
        energy_and_gradient: if given, used for the end point instead of ``gradient``, so its
            energy comes with the same evaluation.

    Returns:
        ``(x_L, p_L, ∇E(x_L), E(x_L) or None)``.
    """
    eps = float(step_size)
    x, p = kick_drift(x, p, grad, 0.5 * eps, eps, inv_mass)
    for _ in range(n_steps - 1):
        grad = gradient(x)
        x, p = kick_drift(x, p, grad, eps, eps, inv_mass)
    if energy_and_gradient is not None:
        energy, grad = energy_and_gradient(x)
    else:
        energy, grad = None, gradient(x)
    p = torch.add(p, grad, alpha=-0.5 * eps)
    return x, p, grad, energy


def kinetic_energy(p: torch.Tensor, inv_mass: Optional[torch.Tensor] = None) -> torch.Tensor:
    r""":math:`K(p) = \tfrac12 \sum_j p_j^2 / m_j` per chain: ``[B, *event] -> [B]``."""
    sq = p * p if inv_mass is None else p * p * inv_mass
    return 0.5 * sq.reshape(p.shape[0], -1).sum(dim=1)


class HamiltonianMonteCarlo(BaseSampler):
    r"""Hamiltonian Monte Carlo: leapfrog proposals with a Metropolis–Hastings correction,
    exact for :math:`p \propto e^{-E}`.

    One MCMC step (per chain), with step size :math:`\epsilon` (may be scheduled), ``L`` =
    ``n_leapfrog_steps`` and mass :math:`M` (scalar or diagonal):

    1. momentum :math:`p_0 = \sqrt{M}\,\xi`, :math:`\xi \sim \mathcal N(0, I)`;
    2. ``L`` leapfrog steps (:func:`leapfrog`) from :math:`(x, p_0)` to :math:`(x_L, p_L)`;
    3. accept :math:`x_L` with probability
       :math:`\min(1, e^{H(x, p_0) - H(x_L, p_L)})`,
       :math:`H(x, p) = E(x) + \tfrac12 p^\top M^{-1} p` (a NaN or infinite energy rejects);
       the momentum is then discarded.

    Gradient evaluations: ``L`` per MCMC step plus one at the start of the call. The gradient
    at each leapfrog end point is reused for the next kick, and the accepted state's gradient
    and energy carry over to the next step, so a trajectory costs ``L + 1`` evaluations with its
    starting one shared with the previous trajectory (TorchEBM 0.8.9 spends ``2L``).

    Paths (``sampler.last_path``): ``"chain"`` (one ``hmc_chain`` op call for built-in analytic
    models), ``"fused"`` (``leapfrog_kick_drift`` and ``metropolis_select`` ops around the
    model's gradient, momentum from ``philox_normal`` stream 0 and uniforms from stream 1 at
    ``step`` = the step index), ``"reference"`` (:mod:`torchebm.kernels.reference`, momentum
    then uniforms from ``torch.randn``/``torch.rand`` with ``generator``).

    Args:
        model: the energy model (old keyword: ``energy_function``).
        step_size: leapfrog step :math:`\epsilon > 0` (float or scheduler).
        n_leapfrog_steps: ``L >= 1``.
        mass: None (unit mass), a positive float, or a positive tensor ``[dim]`` (diagonal).
        dtype, device: of the chain state.
        integrator: None or ``"leapfrog"``, the only integrator implemented.
        backend: ``"auto"``, ``"fused"`` or ``"reference"``.
        progress: show a progress bar over the steps.
    """

    chain_op = "hmc_chain"
    step_ops = ("leapfrog_kick_drift", "metropolis_select", "philox_normal")
    has_accept_step = True

    def __init__(
        self,
        model: Optional[nn.Module] = None,
        step_size: Scheduled = 1e-3,
        n_leapfrog_steps: int = 10,
        mass: Union[None, float, torch.Tensor] = None,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
        integrator: Any = None,
        *,
        energy_function: Optional[nn.Module] = None,
        backend: str = "auto",
        progress: bool = False,
    ):
        super().__init__(
            model,
            dtype=dtype,
            device=device,
            energy_function=energy_function,
            backend=backend,
            progress=progress,
        )
        owner = type(self).__name__
        self.step_size = _check_scheduled(owner, "step_size", step_size, positive=True)
        self._register_param("step_size", self.step_size)
        if (
            isinstance(n_leapfrog_steps, bool)
            or not isinstance(n_leapfrog_steps, numbers.Integral)
        ):
            raise TypeError(
                f"{owner}: n_leapfrog_steps must be an int, got {n_leapfrog_steps!r}"
            )
        if n_leapfrog_steps <= 0:
            raise ValueError(f"{owner}: n_leapfrog_steps must be positive, got {n_leapfrog_steps}")
        self.n_leapfrog_steps = int(n_leapfrog_steps)
        mass = _check_mass(owner, mass)
        if isinstance(mass, torch.Tensor):
            self.register_buffer("mass", mass.to(device=self._torchebm_probe.device, dtype=self.dtype))
        else:
            self.mass = mass
        if integrator not in _INTEGRATORS:
            raise ValueError(
                f"{owner}: integrator must be None or 'leapfrog' (the only one implemented), "
                f"got {integrator!r}"
            )
        self.integrator = integrator

    @torch.no_grad()
    def sample(
        self,
        x: Optional[torch.Tensor] = None,
        dim: Any = None,
        n_steps: int = 100,
        n_samples: int = 1,
        thin: int = 1,
        return_trajectory: bool = False,
        return_diagnostics: bool = False,
        reset_schedulers: bool = True,
        *,
        y: Any = None,
        model_kwargs: Optional[dict] = None,
        generator: Optional[torch.Generator] = None,
        n_chains: Optional[int] = None,
        device: DeviceLike = None,
    ):
        """Run ``n_samples`` chains for ``n_steps`` MCMC steps (each ``n_leapfrog_steps``
        leapfrog steps).

        Arguments and returns as :meth:`LangevinDynamics.sample
        <torchebm.samplers.LangevinDynamics.sample>`; the diagnostics add
        ``acceptance_rate`` ``[n_kept]``, the fraction of chains that accepted at each kept
        step, and their ``energy`` is that of the chains' current (post-accept) states.
        """
        return run_sample(
            self,
            x=x,
            dim=dim,
            n_steps=n_steps,
            n_samples=n_samples,
            thin=thin,
            return_trajectory=return_trajectory,
            return_diagnostics=return_diagnostics,
            reset_schedulers=reset_schedulers,
            y=y,
            model_kwargs=model_kwargs,
            generator=generator,
            n_chains=n_chains,
            device=device,
        )

    # ---------------------------------------------------------------- the algorithm
    def _mass_terms(self, x: torch.Tensor) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """``(M^{-1}, sqrt(M))`` as ``[dim]`` tensors in the state's dtype, or None for unit mass."""
        if self.mass is None:
            return None, None
        dim = x.shape[-1]
        if isinstance(self.mass, torch.Tensor):
            mass = self.mass.to(device=x.device, dtype=x.dtype)
            if mass.dim() == 0:
                mass = mass.expand(dim)
            if mass.shape != (dim,):
                raise ValueError(
                    f"{type(self).__name__}: mass of shape {tuple(mass.shape)} does not match "
                    f"states of dimension {dim} (x of shape {tuple(x.shape)})"
                )
        else:
            mass = torch.full((dim,), self.mass, dtype=x.dtype, device=x.device)
        return mass.reciprocal().contiguous(), mass.sqrt().contiguous()

    def _begin(self, x: torch.Tensor, ctx: StepContext):
        energy, grad = self._energy_and_gradient(x, ctx.model_kwargs)
        inv_mass, sqrt_mass = self._mass_terms(x)
        return grad, energy, inv_mass, sqrt_mass

    def _carried_energy(self, carry) -> torch.Tensor:
        return carry[1]

    def _chain_blocker(self, x: torch.Tensor) -> Optional[str]:
        self._mass_terms(x)  # raise on a mass that does not fit the state
        return None

    def _step(self, x: torch.Tensor, carry, step: int, ctx: StepContext):
        grad, energy, inv_mass, sqrt_mass = carry
        eps = self.get_scheduled_value("step_size")
        mk = ctx.model_kwargs
        fused = ctx.path == "fused"
        if fused:
            xi = kernel_op("philox_normal")(list(x.shape), ctx.seed, step, x.dtype, x.device)
        else:
            xi = _randn(x.shape, x.dtype, x.device, ctx.generator)
        p = xi if sqrt_mass is None else xi * sqrt_mass
        h0 = energy + kinetic_energy(p, inv_mass)
        x_new, p_new, grad_new, energy_new = leapfrog(
            x,
            p,
            grad,
            eps,
            self.n_leapfrog_steps,
            lambda z: self._model_gradient(z, mk),
            inv_mass=inv_mass,
            kick_drift=kernel_op("leapfrog_kick_drift") if fused else reference.leapfrog_kick_drift,
            energy_and_gradient=lambda z: self._energy_and_gradient(z, mk),
        )
        log_accept_ratio = h0 - (energy_new + kinetic_energy(p_new, inv_mass))
        if fused:
            x, accepted = kernel_op("metropolis_select")(
                log_accept_ratio, x, x_new, None, ctx.seed, step
            )
        else:
            uniform = _rand((x.shape[0],), x.dtype, x.device, ctx.generator)
            x, accepted = reference.metropolis_select(log_accept_ratio, x, x_new, uniform)
        rows = accepted.view(-1, *([1] * (x.dim() - 1)))
        grad = torch.where(rows, grad_new, grad)
        energy = torch.where(accepted, energy_new, energy)
        return x, (grad, energy, inv_mass, sqrt_mass), accepted

    def _run_chain(
        self,
        x: torch.Tensor,
        model: KernelModel,
        n_steps: int,
        thin: int,
        record_trajectory: bool,
        record_energy: bool,
        seed: int,
    ) -> ChainResult:
        step_size = scheduled_values(self, "step_size", n_steps)
        inv_mass, _ = self._mass_terms(x)
        out, trajectory, energy, acceptance = kernel_op("hmc_chain")(
            model.name,
            x,
            step_size,
            self.n_leapfrog_steps,
            inv_mass,
            model.params,
            model.mean,
            model.precision,
            seed,
            thin,
            record_trajectory,
            record_energy,
        )
        return ChainResult(
            out,
            trajectory if record_trajectory else None,
            energy if record_energy else None,
            acceptance,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, "
            f"step_size={self.step_size!r}, n_leapfrog_steps={self.n_leapfrog_steps}, "
            f"integrator=LeapfrogIntegrator)"
        )


def _check_mass(owner: str, mass: Any) -> Union[None, float, torch.Tensor]:
    if mass is None:
        return None
    if isinstance(mass, torch.Tensor):
        if not mass.is_floating_point() or mass.dim() > 1 or mass.numel() == 0:
            raise ValueError(
                f"{owner}: mass must be a float or a 1-D floating tensor [dim] (diagonal), got "
                f"a {mass.dtype} tensor of shape {tuple(mass.shape)}"
            )
        if not bool(torch.isfinite(mass).all()) or not bool((mass > 0).all()):
            raise ValueError(f"{owner}: mass must be positive and finite, got {mass}")
        return mass.detach()
    if isinstance(mass, bool) or not isinstance(mass, numbers.Real):
        raise TypeError(f"{owner}: mass must be None, a float or a tensor, got {mass!r}")
    if not 0 < float(mass) < float("inf"):
        raise ValueError(f"{owner}: mass must be positive and finite, got {mass}")
    return float(mass)


__all__ = ["HamiltonianMonteCarlo", "kinetic_energy", "leapfrog"]
