r"""The Metropolis-adjusted Langevin algorithm (MALA): Langevin proposals made exact by a
Metropolis–Hastings correction. TorchEBM names it but has none; its API here follows
:class:`~torchebm.samplers.LangevinDynamics`."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import nn

from torchebm.core.base_module import DeviceLike
from torchebm.core.base_sampler import BaseSampler, _check_scheduled, _rand, _randn
from torchebm.core.base_scheduler import BaseScheduler
from torchebm.kernels import reference
from torchebm.samplers.langevin_dynamics import langevin_coefficients
from torchebm.samplers.sampling_loop import (
    ChainResult,
    KernelModel,
    StepContext,
    kernel_op,
    run_sample,
    scheduled_values,
)

Scheduled = Union[float, BaseScheduler]

_INTEGRATORS = (None, "euler_maruyama", "EulerMaruyamaIntegrator")


class MetropolisAdjustedLangevin(BaseSampler):
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

    Paths (``sampler.last_path``): ``"chain"`` (one ``mala_chain`` op call for built-in analytic
    models), ``"fused"`` (proposal by ``langevin_update`` with Philox stream 0 noise, acceptance
    by ``mala_select`` with stream 1 uniforms, ``step`` = the step index), ``"reference"``
    (:func:`torchebm.kernels.reference.langevin_update` and ``mala_select``, noise then uniforms
    from ``torch.randn``/``torch.rand`` with ``generator``).

    Args:
        model: the energy model (old keyword: ``energy_function``).
        step_size: :math:`\eta > 0` (float or scheduler).
        noise_scale: :math:`\sigma > 0` (float or scheduler), the proposal noise relative to
            :math:`\sqrt{2\eta}`.
        dtype, device: of the chain state.
        integrator: None or ``"euler_maruyama"``.
        backend: ``"auto"``, ``"fused"`` or ``"reference"``.
        progress: show a progress bar over the steps.
    """

    chain_op = "mala_chain"
    step_ops = ("langevin_update", "mala_select", "philox_normal")
    has_accept_step = True

    def __init__(
        self,
        model: Optional[nn.Module] = None,
        step_size: Scheduled = 1e-3,
        noise_scale: Scheduled = 1.0,
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
        self.noise_scale = _check_scheduled(owner, "noise_scale", noise_scale, positive=True)
        self._register_param("step_size", self.step_size)
        self._register_param("noise_scale", self.noise_scale)
        if integrator not in _INTEGRATORS:
            raise ValueError(
                f"{owner}: integrator must be None or 'euler_maruyama' (the only one "
                f"implemented), got {integrator!r}"
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
        """Run ``n_samples`` chains for ``n_steps`` MALA steps.

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
    def _coefficients(self) -> tuple[float, float]:
        eta = self.get_scheduled_value("step_size")
        return langevin_coefficients(eta, self.get_scheduled_value("noise_scale"))

    def _begin(self, x: torch.Tensor, ctx: StepContext):
        energy, grad = self._energy_and_gradient(x, ctx.model_kwargs)
        return grad, energy

    def _carried_energy(self, carry) -> torch.Tensor:
        return carry[1]

    def _chain_blocker(self, x: torch.Tensor) -> Optional[str]:
        return None

    def _step(self, x: torch.Tensor, carry, step: int, ctx: StepContext):
        grad, energy = carry
        a, b = self._coefficients()
        if ctx.path == "fused":
            proposal = kernel_op("langevin_update")(
                x, grad, None, a, b, None, None, None, ctx.seed, step
            )
        else:
            noise = _randn(x.shape, x.dtype, x.device, ctx.generator)
            proposal = reference.langevin_update(x, grad, noise, a, b)
        energy_y, grad_y = self._energy_and_gradient(proposal, ctx.model_kwargs)
        if ctx.path == "fused":
            x, grad, energy, accepted = kernel_op("mala_select")(
                x, proposal, grad, grad_y, energy, energy_y, a, b, None, ctx.seed, step
            )
        else:
            uniform = _rand((x.shape[0],), x.dtype, x.device, ctx.generator)
            x, grad, energy, accepted = reference.mala_select(
                x, proposal, grad, grad_y, energy, energy_y, a, b, uniform
            )
        return x, (grad, energy), accepted

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
        a = scheduled_values(self, "step_size", n_steps)
        b = scheduled_values(self, "noise_scale", n_steps) * torch.sqrt(2.0 * a)
        out, trajectory, energy, acceptance = kernel_op("mala_chain")(
            model.name,
            x,
            a,
            b,
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
            f"step_size={self.step_size!r}, noise_scale={self.noise_scale!r})"
        )


MALA = MetropolisAdjustedLangevin
"""Short name of :class:`MetropolisAdjustedLangevin`."""

__all__ = ["MALA", "MetropolisAdjustedLangevin"]
