r"""The Metropolis-adjusted Langevin algorithm (MALA): Langevin proposals made exact by a
Metropolis–Hastings correction. TorchEBM names it but has none; its API here follows
:class:`~torchebm.samplers.LangevinDynamics`."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import nn

from torchebm.core.base_module import DeviceLike
from torchebm.core.base_scheduler import BaseScheduler
from torchebm.samplers import algorithms
from torchebm.samplers.adaptation import Adaptive, acceptance_probability
from torchebm.samplers.langevin_dynamics import coefficient_schedules, langevin_coefficients
from torchebm.samplers.mcmc_sampler import MCMCSampler

Scheduled = Union[float, BaseScheduler]


class MetropolisAdjustedLangevin(Adaptive, MCMCSampler, algorithm=algorithms.MALA):
    r"""MALA: a Langevin step as the proposal, accepted or rejected so that the chain samples
    :math:`p \propto e^{-E}` exactly (no step-size bias).

    Step :math:`i`, per chain, with :math:`a = \eta_i` (``step_size``) and
    :math:`b = \sigma_i\sqrt{2\eta_i}` (``noise_scale`` :math:`\sigma_i`):

    .. math::
        y = x - a \nabla E(x) + b\,\xi, \quad \xi \sim \mathcal N(0, I); \qquad
        \log r = E(x) - E(y)
            + \frac{\lVert y - x + a\nabla E(x)\rVert^2 - \lVert x - y + a\nabla E(y)\rVert^2}{2b^2},

    and :math:`x \leftarrow y` with probability :math:`\min(1, r)` (a NaN or infinite energy
    rejects). ``noise_scale`` only shapes the proposal (:math:`\mathcal N(x - a\nabla E, b^2 I)`):
    unlike in :class:`~torchebm.samplers.LangevinDynamics`, where it sets the temperature, the
    target stays :math:`e^{-E}` for any value; 1 (the default) is the standard MALA proposal.
    One gradient evaluation per step (the accepted state's gradient and energy carry over).

    The step is :func:`torchebm.samplers.algorithms.mala_step`. Paths (``sampler.last_path``):
    ``"chain"`` (one ``mala_chain`` op call for built-in analytic
    models), ``"fused"`` (proposal by ``langevin_update`` with Philox stream 0 noise, acceptance
    by ``mala_select`` with stream 1 uniforms, ``step`` = the step index), ``"reference"``
    (:func:`torchebm.kernels.reference.langevin_update` and ``mala_select``, noise then uniforms
    from ``torch.randn``/``torch.rand`` with ``generator``).

    Step-size adaptation: :meth:`warmup` (``adapt="step_size"``, dual averaging to a target
    acceptance rate, default 0.574, one step size or one per chain; docs/adaptation.md). After
    it, ``sample()`` runs with the adapted :math:`\eta` (``a = \eta``, ``b = \sigma\sqrt{2\eta}``
    with :math:`\sigma` read at the start of the call) instead of ``step_size``.

    Args:
        model: the energy model (old keyword: ``energy_function``).
        step_size: :math:`\eta > 0` (float or scheduler).
        noise_scale: :math:`\sigma > 0` (float or scheduler), the proposal noise relative to
            :math:`\sqrt{2\eta}`.
        dtype, device: of the chains (dtype None: the rule of :class:`~torchebm.core.BaseSampler`).
        integrator: None, ``"euler_maruyama"`` or a
            :class:`torchebm.integrators.EulerMaruyamaIntegrator`.
    """

    def __init__(
        self,
        model: Optional[nn.Module] = None,
        step_size: Scheduled = 1e-3,
        noise_scale: Scheduled = 1.0,
        dtype: Optional[torch.dtype] = None, device: DeviceLike = None,
        integrator: Any = None,
        *, energy_function: Optional[nn.Module] = None, backend: str = "auto", progress: bool = False,
    ):
        super().__init__(model, dtype, device, integrator, energy_function, backend, progress)
        self._schedule("step_size", step_size)
        self._schedule("noise_scale", noise_scale)

    default_target_accept = 0.574

    def _step_arguments(self) -> dict[str, Any]:
        if self.adaptation is not None:
            return {}  # the adapted step sizes are fixed arguments
        eta = self.get_scheduled_value("step_size")
        a, b = langevin_coefficients(eta, self.get_scheduled_value("noise_scale"))
        return {"a": a, "b": b}

    def _fixed_arguments(self, x: torch.Tensor) -> dict[str, Any]:
        step = self._adapted_step_sizes(x)
        return {} if step is None else self._adapted_arguments(step)

    def _fixed_arguments_unadapted(self, x: torch.Tensor) -> dict[str, Any]:
        return {}

    def _adapted_arguments(self, step: torch.Tensor) -> dict[str, Any]:
        sigma = self.get_scheduled_value("noise_scale")
        b = sigma * torch.sqrt(2.0 * step.to(torch.float64))
        return {"a": step, "b": b.to(step.dtype)}

    def _warmup_transition(self, ops, target, state, t, arguments):
        state, _, log_r = algorithms.mala_transition(ops, target, state, t, **arguments)
        return state, acceptance_probability(log_r), None

    def _chain_arguments(self, x: torch.Tensor, n_steps: int) -> dict[str, Any]:
        if self.adaptation is not None:
            a = self._adapted_schedule(x, n_steps)
            sigma = self.get_scheduled_value("noise_scale")
            b = sigma * torch.sqrt(2.0 * (a[0] if a.dim() == 2 else a))
            return {"a": a, "b": b.expand(a.shape) if a.dim() == 2 else b}
        return coefficient_schedules(self, "noise_scale", n_steps)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, "
            f"step_size={self.step_size!r}, noise_scale={self.noise_scale!r})"
        )


MALA = MetropolisAdjustedLangevin
"""Short name of :class:`MetropolisAdjustedLangevin`."""

__all__ = ["MALA", "MetropolisAdjustedLangevin"]
