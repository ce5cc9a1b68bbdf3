r"""Unadjusted Langevin dynamics (ULA / SGLD), the workhorse sampler of EBM training."""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from torchebm.core.base_module import DeviceLike
from torchebm.core.base_sampler import BaseSampler, _check_scheduled, _randn
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

_INTEGRATORS = (None, "euler_maruyama", "EulerMaruyamaIntegrator")


class LangevinDynamics(BaseSampler):
    r"""Langevin dynamics: the Euler–Maruyama discretisation of
    :math:`dx = -\nabla E(x)\,dt + \sqrt2\,dW`, with no accept/reject step.

    Update at step :math:`i` (0-based), for every chain:

    .. math::
        x_{i+1} = \mathrm{clamp}\big(x_i - \eta_i\, \mathrm{clip}(\nabla E(x_i)) + s_i\, \xi_i\big),
        \qquad \xi_i \sim \mathcal N(0, I),

    with :math:`\eta_i` the step size and noise standard deviation
    :math:`s_i = \sigma_i \sqrt{2\eta_i}` (:math:`\sigma_i` = ``noise_scale``), or
    :math:`s_i` = ``noise_std`` when that is given (IGEBM-style SGLD, where step size and noise
    are tuned separately). ``clip`` clamps each gradient element to ``[-grad_clip, grad_clip]``;
    ``clamp`` clamps each state element to ``clamp = (lo, hi)``. Scheduled values are read
    before each step and the schedulers stepped after it, so step 0 uses the start values.

    With ``noise_scale=1`` and a constant step the chain samples :math:`p \propto e^{-E}` up to
    an :math:`O(\eta)` bias (on a Gaussian of variance :math:`\varsigma^2` its stationary
    variance is :math:`\varsigma^2 / (1 - \eta / (2\varsigma^2))`); ``noise_scale < 1`` samples
    a colder distribution :math:`\propto e^{-E/\sigma^2}`.

    Paths (``sampler.last_path``): ``"chain"`` (one ``langevin_chain`` op call, for built-in
    analytic models without ``model_kwargs``), ``"fused"`` (the model's ``gradient`` per step,
    the update in ``langevin_update`` with in-kernel Philox noise), ``"reference"``
    (:func:`torchebm.kernels.reference.langevin_update` with ``torch.randn`` noise drawn after
    the gradient, from ``generator``). See :mod:`torchebm.kernels.dispatch`.

    Args:
        model: the energy model (old keyword: ``energy_function``).
        step_size: :math:`\eta > 0`, a float or a scheduler.
        noise_scale: :math:`\sigma > 0`, a float or a scheduler (a scheduler may give 0: plain
            gradient descent).
        decay: accepted and stored for TorchEBM compatibility; it has no effect (as in 0.8.9).
        clamp: ``(lo, hi)`` with ``lo < hi`` (either may be None), applied after every step.
        dtype, device: of the chain state (see :class:`~torchebm.core.BaseSampler`).
        integrator: None or ``"euler_maruyama"``, the only integrator implemented.
        noise_std: keyword-only; the noise standard deviation :math:`s \ge 0` (float or
            scheduler), replacing :math:`\sigma\sqrt{2\eta}`.
        grad_clip: keyword-only; clip each gradient element to ``[-grad_clip, grad_clip]``.
        backend: ``"auto"``, ``"fused"`` or ``"reference"``.
        progress: show a progress bar over the steps.
    """

    chain_op = "langevin_chain"
    step_ops = ("langevin_update", "philox_normal")
    has_accept_step = False

    def __init__(
        self,
        model: Optional[nn.Module] = None,
        step_size: Scheduled = 1e-3,
        noise_scale: Scheduled = 1.0,
        decay: float = 0.0,
        clamp: Optional[Sequence[Optional[float]]] = None,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
        integrator: Any = None,
        *,
        energy_function: Optional[nn.Module] = None,
        noise_std: Optional[Scheduled] = None,
        grad_clip: Optional[float] = None,
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
        self.noise_std = None
        if noise_std is not None:
            self.noise_std = _check_scheduled(owner, "noise_std", noise_std, positive=False)
            self._register_param("noise_std", self.noise_std)
        if isinstance(decay, bool) or not isinstance(decay, numbers.Real):
            raise TypeError(f"{owner}: decay must be a float, got {decay!r}")
        self.decay = float(decay)
        self.clamp = _check_clamp(owner, clamp)
        self.grad_clip = None
        if grad_clip is not None:
            self.grad_clip = _check_scheduled(owner, "grad_clip", grad_clip, positive=True)
            if isinstance(self.grad_clip, BaseScheduler):
                raise TypeError(f"{owner}: grad_clip must be a float, got a scheduler")
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
        """Run ``n_samples`` chains for ``n_steps`` steps.

        Args:
            x: starting states ``[n_samples, *event]`` (then ``n_samples`` is ignored), or one
                chain ``[dim]``; cast to the sampler's dtype and device. None: ``randn`` from
                ``generator``.
            dim: event shape (int or tuple) when ``x`` is None; inferred from a Gaussian
                model's ``mean`` if omitted. If given with ``x`` it must match.
            n_steps: number of steps, ``>= 0`` (0 returns ``x`` itself).
            n_samples: number of chains when ``x`` is None (old name: ``n_chains``).
            thin: keep every ``thin``-th state: ``n_kept = n_steps // thin``.
            return_trajectory: return the kept states ``[n_samples, n_kept, *event]`` (after
                steps ``thin, 2*thin, ...``; the start is not included) instead of the final
                state.
            return_diagnostics: also return a
                :class:`~torchebm.diagnostics.Diagnostics` (keys ``mean``, ``var``,
                ``energy``; tensor view ``[n_kept, 3, n_samples, *event]``).
            reset_schedulers: restart the schedules (every scheduler in the sampler's subtree)
                before sampling; False continues them.
            y: conditioning, shorthand for ``model_kwargs={"y": y}``.
            model_kwargs: extra keyword arguments of the model's ``forward``/``gradient``;
                tensors are moved to the sampler's device, not cast.
            generator: drives every random draw of the call (the reference path's noise, or
                the one Philox seed of a kernel path); None uses the global RNG.
            n_chains: old name of ``n_samples``.
            device: move the sampler (and its model) there first, as ``sampler.to(device)``.

        Returns:
            The final state ``[n_samples, *event]`` (``[dim]`` for a 1-D ``x``), or the
            trajectory; with ``return_diagnostics``, a tuple ``(that, diagnostics)``.
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
        """``(a, b)`` of ``x - a*g + b*xi`` for the current step."""
        eta = self.get_scheduled_value("step_size")
        if self.noise_std is not None:
            return eta, self.get_scheduled_value("noise_std")
        return eta, self.get_scheduled_value("noise_scale") * math.sqrt(2.0 * eta)

    def _begin(self, x: torch.Tensor, ctx: StepContext) -> None:
        return None

    def _carried_energy(self, carry: Any) -> None:
        return None

    def _chain_blocker(self, x: torch.Tensor) -> Optional[str]:
        return None

    def _step(self, x: torch.Tensor, carry: Any, step: int, ctx: StepContext):
        a, b = self._coefficients()
        lo, hi = self.clamp if self.clamp is not None else (None, None)
        grad = self._model_gradient(x, ctx.model_kwargs)
        if ctx.path == "fused":
            x = kernel_op("langevin_update")(
                x, grad, None, a, b, lo, hi, self.grad_clip, ctx.seed, step
            )
        else:
            noise = _randn(x.shape, x.dtype, x.device, ctx.generator)
            x = reference.langevin_update(x, grad, noise, a, b, lo, hi, self.grad_clip)
        return x, None, None

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
        a = scheduled_values(self, "step_size", n_steps, x.device)
        if self.noise_std is not None:
            b = scheduled_values(self, "noise_std", n_steps, x.device)
        else:
            b = scheduled_values(self, "noise_scale", n_steps, x.device) * torch.sqrt(2.0 * a)
        lo, hi = self.clamp if self.clamp is not None else (None, None)
        out, trajectory, energy = kernel_op("langevin_chain")(
            model.name,
            x,
            a,
            b,
            model.params,
            model.mean,
            model.precision,
            lo,
            hi,
            self.grad_clip,
            seed,
            thin,
            record_trajectory,
            record_energy,
        )
        return ChainResult(
            out,
            trajectory if record_trajectory else None,
            energy if record_energy else None,
            None,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, "
            f"step_size={self.step_size!r}, noise_scale={self.noise_scale!r}, "
            f"integrator=EulerMaruyamaIntegrator)"
        )


def _check_clamp(owner: str, clamp: Any) -> Optional[tuple[Optional[float], Optional[float]]]:
    if clamp is None:
        return None
    if not isinstance(clamp, (tuple, list)) or len(clamp) != 2:
        raise ValueError(f"{owner}: clamp must be a (min, max) pair, got {clamp!r}")
    lo, hi = clamp
    for name, bound in (("min", lo), ("max", hi)):
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, numbers.Real) or math.isnan(bound)
        ):
            raise ValueError(f"{owner}: clamp {name} must be a real number or None, got {bound!r}")
    lo = None if lo is None else float(lo)
    hi = None if hi is None else float(hi)
    if lo is not None and hi is not None and not lo < hi:
        raise ValueError(f"{owner}: clamp min must be < max, got {clamp!r}")
    return lo, hi


__all__ = ["LangevinDynamics"]
