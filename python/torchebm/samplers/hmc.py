r"""Hamiltonian Monte Carlo with a leapfrog integrator and a scalar or diagonal mass."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import nn

from torchebm.core.argument_checks import N_LEAPFROG_MAX, count, diagonal_mass
from torchebm.core.base_module import DeviceLike
from torchebm.core.base_scheduler import BaseScheduler
from torchebm.samplers import algorithms
from torchebm.samplers.adaptation import Adaptive, acceptance_probability
from torchebm.samplers.algorithms import kinetic_energy, leapfrog
from torchebm.samplers.mcmc_sampler import MCMCSampler

Scheduled = Union[float, BaseScheduler]


class HamiltonianMonteCarlo(Adaptive, MCMCSampler, algorithm=algorithms.HMC):
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
    and energy carry over to the next step (TorchEBM 0.8.9 spends ``2L`` per step).

    The step is :func:`torchebm.samplers.algorithms.hmc_step`. Paths (``sampler.last_path``): ``"chain"`` (one ``hmc_chain`` op call for built-in analytic
    models), ``"fused"`` (``leapfrog_kick_drift`` and ``metropolis_select`` ops around the
    model's gradient, momentum from ``philox_normal`` stream 0 and uniforms from stream 1 at
    ``step`` = the step index), ``"reference"`` (:mod:`torchebm.kernels.reference`, momentum
    then uniforms from ``torch.randn``/``torch.rand`` with ``generator``).

    Adaptation: :meth:`warmup` with ``adapt="step_size"`` (dual averaging of :math:`\epsilon` to
    a target acceptance rate, default 0.65, one step size or one per chain) or ``adapt="chees"``
    (ChEES trajectory length with jittered ``L``, and a dual-averaged :math:`\epsilon`); later
    ``sample()`` calls use the adapted values (docs/adaptation.md).

    Args:
        model: the energy model (old keyword: ``energy_function``).
        step_size: leapfrog step :math:`\epsilon > 0` (float or scheduler).
        n_leapfrog_steps: ``L >= 1``.
        mass: None (unit mass), a positive float, or a positive tensor ``[dim]`` (diagonal).
        dtype, device: of the chains (dtype None: the rule of :class:`~torchebm.core.BaseSampler`).
        integrator: None, ``"leapfrog"`` or a :class:`torchebm.integrators.LeapfrogIntegrator`
            (the only one implemented).
    """

    def __init__(
        self,
        model: Optional[nn.Module] = None,
        step_size: Scheduled = 1e-3,
        n_leapfrog_steps: int = 10,
        mass: Union[None, float, torch.Tensor] = None,
        dtype: Optional[torch.dtype] = None, device: DeviceLike = None,
        integrator: Any = None,
        *, energy_function: Optional[nn.Module] = None, backend: str = "auto", progress: bool = False,
    ):
        super().__init__(model, dtype, device, integrator, energy_function, backend, progress)
        owner = type(self).__name__
        self._schedule("step_size", step_size)
        self.n_leapfrog_steps = count(
            owner, "n_leapfrog_steps", n_leapfrog_steps, minimum=1, maximum=N_LEAPFROG_MAX
        )
        mass = diagonal_mass(owner, mass)
        if isinstance(mass, torch.Tensor):
            self.register_buffer("mass", mass.to(device=self._torchebm_probe.device, dtype=self.state_dtype()))
        else:
            self.mass = mass

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
            # Through float64: torch.full refuses a float that overflows the dtype, with a
            # message about a "value", not the mass (the check below names it).
            mass = torch.full((dim,), self.mass, dtype=torch.float64, device=x.device).to(x.dtype)
        inv_mass = mass.reciprocal().contiguous()
        self._check_mass_in_dtype(mass, inv_mass)
        return inv_mass, mass.sqrt().contiguous()

    def _check_mass_in_dtype(self, mass: torch.Tensor, inv_mass: torch.Tensor) -> None:
        # The mass was checked (finite, > 0) as given; the kernels compute in the state's dtype,
        # where 1e-50 is float32's 0 (and 1/M inf) and 1e50 is inf. On a GPU the check reads the
        # values back once per (mass version, dtype), not on every call.
        key = (mass.dtype, self.mass._version if isinstance(self.mass, torch.Tensor) else self.mass)
        if mass.device.type != "cpu" and getattr(self, "_mass_checked", None) == key:
            return
        ok = torch.isfinite(mass).all() & (mass > 0).all()
        ok &= torch.isfinite(inv_mass).all() & (inv_mass > 0).all()
        if not bool(ok):
            dtype = str(mass.dtype).replace("torch.", "")
            raise ValueError(
                f"{type(self).__name__}: mass and 1/mass must be positive and finite in {dtype} "
                f"(the state's dtype); got mass={self.mass}, which is {mass.tolist()} in {dtype}"
            )
        self._mass_checked = key

    default_target_accept = 0.65
    _has_trajectory = True

    def _step_arguments(self) -> dict[str, Any]:
        if self.adaptation is None:
            return {"step_size": self.get_scheduled_value("step_size")}
        n_leapfrog = self._next_leapfrog_steps()
        return {} if n_leapfrog is None else {"n_leapfrog": n_leapfrog}

    def _fixed_arguments_unadapted(self, x: torch.Tensor) -> dict[str, Any]:
        inv_mass, sqrt_mass = self._mass_terms(x)
        return {"n_leapfrog": self.n_leapfrog_steps, "inv_mass": inv_mass, "sqrt_mass": sqrt_mass}

    def _fixed_arguments(self, x: torch.Tensor) -> dict[str, Any]:
        fixed = self._fixed_arguments_unadapted(x)
        step = self._adapted_step_sizes(x)
        if step is not None:
            fixed.update(self._adapted_arguments(step))
            if self.adaptation.chees is not None:
                del fixed["n_leapfrog"]  # per step (_step_arguments)
        return fixed

    def _adapted_arguments(self, step: torch.Tensor) -> dict[str, Any]:
        return {"step_size": step}

    def _warmup_transition(self, ops, target, state, t, arguments):
        state, _, proposal = algorithms.hmc_transition(ops, target, state, t, **arguments)
        return state, acceptance_probability(proposal.log_accept_ratio), proposal

    def _chain_arguments(self, x: torch.Tensor, n_steps: int) -> dict[str, Any]:
        if self.adaptation is not None:
            arguments = {
                "step_size": self._adapted_schedule(x, n_steps),
                "n_leapfrog": self.n_leapfrog_steps,
                "inv_mass": self._mass_terms(x)[0],
            }
            steps = self._leapfrog_schedule(n_steps)  # ChEES: one L per transition
            if steps is not None:
                arguments["leapfrog_steps"] = steps
                # The chain's block sizing reads n_leapfrog as the gradients per transition.
                arguments["n_leapfrog"] = int(steps.max()) if n_steps else 1
            return arguments
        return {
            "step_size": self.scheduled_values("step_size", n_steps),
            "n_leapfrog": self.n_leapfrog_steps,
            "inv_mass": self._mass_terms(x)[0],
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, "
            f"step_size={self.step_size!r}, n_leapfrog_steps={self.n_leapfrog_steps}, "
            f"integrator=LeapfrogIntegrator)"
        )


__all__ = ["HamiltonianMonteCarlo", "kinetic_energy", "leapfrog"]
