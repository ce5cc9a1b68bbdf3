r"""Unadjusted Langevin dynamics (ULA / SGLD), the workhorse sampler of EBM training."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from torchebm.core.argument_checks import clamp_bounds, flag, real_number, scheduled_value
from torchebm.core.base_module import DeviceLike
from torchebm.core.base_scheduler import BaseScheduler
from torchebm.samplers import algorithms
from torchebm.samplers.langevin_cuda_graph import LangevinCudaGraphs
from torchebm.samplers.mcmc_sampler import MCMCSampler
from torchebm.samplers.schedule_cache import pointwise, scheduler_state

Scheduled = Union[float, BaseScheduler]


def langevin_coefficients(step_size: float, noise_scale: float) -> tuple[float, float]:
    """``(a, b)`` of the update ``x - a*g + b*xi`` for step size eta and noise scale sigma:
    ``a = eta``, ``b = sigma * sqrt(2 * eta)`` (the Euler-Maruyama discretisation of Langevin
    diffusion at temperature sigma^2). Shared by Langevin dynamics and the MALA proposal."""
    return step_size, noise_scale * math.sqrt(2.0 * step_size)


def coefficient_schedules(sampler: MCMCSampler, noise: str, n_steps: int) -> dict[str, torch.Tensor]:
    """The chain ops' ``a`` and ``b`` ``float64 [n_steps]`` from ``sampler``'s ``step_size``
    scheduler and its ``noise`` scheduler: :func:`langevin_coefficients` step by step for
    ``noise="noise_scale"``; ``b`` = the values of ``noise="noise_std"``. Constant views when
    both schedules are constant; kept by the sampler for later calls from the same scheduler
    states (:meth:`~torchebm.samplers.mcmc_sampler.MCMCSampler.kept_schedules`). Shared by
    Langevin dynamics and MALA."""
    states = [scheduler_state(sampler.schedulers[name]) for name in ("step_size", noise)]
    key = None if None in states else ("langevin coefficients", noise, n_steps, *states)

    def build() -> dict[str, torch.Tensor]:
        # Not kept one by one as well: one kept entry per (scheduler states, n_steps).
        a = sampler._checked_values("step_size", n_steps)
        b = sampler._checked_values(noise, n_steps)
        if noise == "noise_scale":
            b = pointwise(lambda sigma, eta: sigma * torch.sqrt(2.0 * eta), b, a)
        return {"a": a, "b": b}

    return sampler.kept_schedules(key, n_steps, build)


class LangevinDynamics(LangevinCudaGraphs, MCMCSampler, algorithm=algorithms.LANGEVIN):
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

    The step is :func:`torchebm.samplers.algorithms.langevin_step`. Paths
    (``sampler.last_path``): ``"chain"`` (one ``langevin_chain`` op call, for built-in analytic
    models without ``model_kwargs``), ``"fused"`` (the model's ``gradient`` per step, the update
    in ``langevin_update`` with in-kernel Philox noise), ``"reference"``
    (:func:`torchebm.kernels.reference.langevin_update` with ``torch.randn`` noise drawn after
    the gradient, from ``generator``). See :mod:`torchebm.kernels.dispatch`.

    ``cuda_graph=True`` adds a fourth, ``"cuda_graph"``, for neural energies on a GPU, where
    the per-step fused path is bound by kernel launches (a forward and backward pass of small
    kernels per step): the same step loop, gradient ``model.gradient`` and update
    ``langevin_update`` with Philox noise at ``(seed, t)``, is captured once into a CUDA graph
    (:func:`torchebm.kernels.cuda_graph.capture_langevin`) and replayed, so it gives the fused
    path's result for the same seed (to rounding) with one launch per block of steps. The
    capture is cached on the sampler per state shape, dtype and device, coefficients
    ``(a, b)``, ``clamp``, ``grad_clip``, block length, model (identity, training mode,
    parameter and buffer storages) and mixed-precision setting (the 4 most recently used are
    kept); later calls with the same key only replay. In-place updates of the parameters (an
    optimiser step) are seen by the replays. It requires, and raises otherwise:

    * constant ``a``, ``b`` over the call (``ValueError`` naming the varying scheduler);
    * the final state only: no ``return_trajectory``/``return_diagnostics`` (``ValueError``);
    * no ``model_kwargs``/``y``, and a backend other than ``"reference"`` (``ValueError``);
    * the state on a CUDA device with the graph-safe ops built
      (:class:`~torchebm.kernels.dispatch.NoKernelError`, a ``RuntimeError``; no silent
      fallback to another path).

    The model must be graph-capturable: no host synchronisation (``.item()``, data-dependent
    Python control flow) in its forward and gradient. A built-in analytic model is captured
    like any other, but its ``"chain"`` path (``cuda_graph=False``) is faster still.

    Args:
        model: the energy model (old keyword: ``energy_function``).
        step_size: :math:`\eta > 0`, a float or a scheduler.
        noise_scale: :math:`\sigma > 0`, a float or a scheduler (a scheduler may give 0: plain
            gradient descent).
        decay: accepted and stored for TorchEBM compatibility; it has no effect (as in 0.8.9).
        clamp: ``(lo, hi)`` with ``lo < hi`` (either may be None), applied after every step.
        dtype, device: of the chains (dtype None: the rule of :class:`~torchebm.core.BaseSampler`).
        integrator: None, ``"euler_maruyama"`` or a
            :class:`torchebm.integrators.EulerMaruyamaIntegrator` (the only one implemented).
        noise_std: keyword-only; the noise standard deviation :math:`s \ge 0` (float or
            scheduler), replacing :math:`\sigma\sqrt{2\eta}`.
        grad_clip: keyword-only; clip each gradient element to ``[-grad_clip, grad_clip]``.
        cuda_graph: keyword-only; the default of ``sample(cuda_graph=...)`` for this sampler
            (so that callers that do not pass it, such as
            :class:`~torchebm.losses.ContrastiveDivergence`, sample through CUDA graphs).
    """

    def __init__(
        self,
        model: Optional[nn.Module] = None,
        step_size: Scheduled = 1e-3,
        noise_scale: Scheduled = 1.0,
        decay: float = 0.0,
        clamp: Optional[Sequence[Optional[float]]] = None,
        dtype: Optional[torch.dtype] = None, device: DeviceLike = None,
        integrator: Any = None,
        *,
        energy_function: Optional[nn.Module] = None,
        noise_std: Optional[Scheduled] = None,
        grad_clip: Optional[float] = None,
        backend: str = "auto",
        progress: bool = False,
        cuda_graph: bool = False,
    ):
        super().__init__(model, dtype, device, integrator, energy_function, backend, progress)
        owner = type(self).__name__
        self._schedule("step_size", step_size)
        # A scheduled noise may reach 0 (plain gradient descent); a constant one is > 0.
        self._schedule("noise_scale", noise_scale, scheduled_minimum="non_negative")
        self.noise_std = None
        if noise_std is not None:
            self._schedule("noise_std", noise_std, positive=False, scheduled_minimum="non_negative")
        self.decay = real_number(owner, "decay", decay)
        self.clamp = clamp_bounds(owner, clamp)
        self.grad_clip = None
        if grad_clip is not None:
            if isinstance(grad_clip, BaseScheduler):
                raise TypeError(f"{owner}: grad_clip must be a float, got a scheduler")
            self.grad_clip = scheduled_value(owner, "grad_clip", grad_clip, positive=True)
        self.cuda_graph = flag(owner, "cuda_graph", cuda_graph)
        self._cuda_graphs = OrderedDict()

    def _coefficients(self) -> tuple[float, float]:
        """``(a, b)`` of ``x - a*g + b*xi`` for the current step."""
        eta = self.get_scheduled_value("step_size")
        if self.noise_std is not None:
            return eta, self.get_scheduled_value("noise_std")
        return langevin_coefficients(eta, self.get_scheduled_value("noise_scale"))

    def _step_arguments(self) -> dict[str, Any]:
        a, b = self._coefficients()
        return {"a": a, "b": b}

    def _fixed_arguments(self, x: torch.Tensor) -> dict[str, Any]:
        return {"clamp": self.clamp, "grad_clip": self.grad_clip}

    def _chain_arguments(self, x: torch.Tensor, n_steps: int) -> dict[str, Any]:
        noise = "noise_scale" if self.noise_std is None else "noise_std"
        lo, hi = self.clamp if self.clamp is not None else (None, None)
        return {**coefficient_schedules(self, noise, n_steps), "clamp_min": lo, "clamp_max": hi,
                "grad_clip": self.grad_clip}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, "
            f"step_size={self.step_size!r}, noise_scale={self.noise_scale!r}, "
            f"integrator=EulerMaruyamaIntegrator)"
        )


__all__ = ["LangevinDynamics", "coefficient_schedules", "langevin_coefficients"]
