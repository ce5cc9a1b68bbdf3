r"""Unadjusted Langevin dynamics (ULA / SGLD), the workhorse sampler of EBM training."""

from __future__ import annotations

import itertools
import math
import numbers
import weakref
from collections import OrderedDict
from typing import Any, Optional, Sequence, Union

import torch
from torch import nn

from torchebm.core.base_module import DeviceLike
from torchebm.core.base_sampler import BaseSampler, _check_scheduled, _randn
from torchebm.core.base_scheduler import BaseScheduler
from torchebm.kernels import reference
from torchebm.kernels.cuda_graph import _GRAPH_OPS, LangevinGraph, capture_langevin
from torchebm.kernels.dispatch import NoKernelError, kernels_blocker
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

_MAX_STEPS_PER_GRAPH = 32  # Langevin steps recorded in one CUDA graph, at most
_MAX_CUDA_GRAPHS = 4  # captures kept per sampler (least recently used dropped first)


def langevin_coefficients(step_size: float, noise_scale: float) -> tuple[float, float]:
    """``(a, b)`` of the update ``x - a*g + b*xi`` for step size eta and noise scale sigma:
    ``a = eta``, ``b = sigma * sqrt(2 * eta)`` (the Euler-Maruyama discretisation of Langevin
    diffusion at temperature sigma^2). Shared by Langevin dynamics and the MALA proposal."""
    return step_size, noise_scale * math.sqrt(2.0 * step_size)


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
        dtype, device: of the chain state (see :class:`~torchebm.core.BaseSampler`).
        integrator: None or ``"euler_maruyama"``, the only integrator implemented.
        noise_std: keyword-only; the noise standard deviation :math:`s \ge 0` (float or
            scheduler), replacing :math:`\sigma\sqrt{2\eta}`.
        grad_clip: keyword-only; clip each gradient element to ``[-grad_clip, grad_clip]``.
        backend: ``"auto"``, ``"fused"`` or ``"reference"``.
        progress: show a progress bar over the steps.
        cuda_graph: keyword-only; the default of ``sample(cuda_graph=...)`` for this sampler
            (so that callers that do not pass it, such as
            :class:`~torchebm.losses.ContrastiveDivergence`, sample through CUDA graphs).
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
        cuda_graph: bool = False,
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
        self.cuda_graph = _check_flag(owner, "cuda_graph", cuda_graph)
        self._cuda_graphs: OrderedDict[tuple, tuple[nn.Module, LangevinGraph]] = OrderedDict()

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
        cuda_graph: Optional[bool] = None,
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
            cuda_graph: run the steps as a replayed CUDA graph (path ``"cuda_graph"``, see the
                class docstring): constant coefficients, final state only, a CUDA state.
                None (default) takes the constructor's ``cuda_graph`` (False by default).

        Returns:
            The final state ``[n_samples, *event]`` (``[dim]`` for a 1-D ``x``), or the
            trajectory; with ``return_diagnostics``, a tuple ``(that, diagnostics)``.

        Raises:
            ValueError: ``cuda_graph`` with a varying step size or noise, trajectory or
                diagnostics requested, ``model_kwargs``/``y``, or ``backend="reference"``.
            NoKernelError: ``cuda_graph`` and the state is not on CUDA, or the graph-safe CUDA
                ops are not built.
        """
        owner = type(self).__name__
        if cuda_graph is None:
            cuda_graph = self.cuda_graph
        cuda_graph = _check_flag(owner, "cuda_graph", cuda_graph)
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
            cuda_graph=cuda_graph,
        )

    # ---------------------------------------------------------------- the algorithm
    def _coefficients(self) -> tuple[float, float]:
        """``(a, b)`` of ``x - a*g + b*xi`` for the current step."""
        eta = self.get_scheduled_value("step_size")
        if self.noise_std is not None:
            return eta, self.get_scheduled_value("noise_std")
        return langevin_coefficients(eta, self.get_scheduled_value("noise_scale"))

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
        a = scheduled_values(self, "step_size", n_steps)
        if self.noise_std is not None:
            b = scheduled_values(self, "noise_std", n_steps)
        else:
            b = scheduled_values(self, "noise_scale", n_steps) * torch.sqrt(2.0 * a)
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

    # ---------------------------------------------------------------- the CUDA-graph path
    def _check_cuda_graph(
        self,
        x: torch.Tensor,
        n_steps: int,
        model_kwargs: dict,
        return_trajectory: bool,
        return_diagnostics: bool,
    ) -> None:
        """Raise unless a ``cuda_graph=True`` call can be honoured (after the schedulers were
        reset, so ``n_steps`` scheduled values from the current ones are the call's).

        Argument conflicts (``ValueError``) are checked before the hardware
        (:class:`NoKernelError`), so they are reported the same way on every machine.
        """
        owner = type(self).__name__
        if self.backend == "reference":
            raise ValueError(
                f"{owner}: cuda_graph=True runs the compiled graph-safe kernels, but "
                f"backend='reference'; use backend='auto' or 'fused', or cuda_graph=False"
            )
        for name, asked in (
            ("return_trajectory", return_trajectory),
            ("return_diagnostics", return_diagnostics),
        ):
            if asked:
                raise ValueError(
                    f"{owner}: cuda_graph=True returns the final state only, got {name}=True; "
                    f"use cuda_graph=False to record the chain"
                )
        if model_kwargs:
            raise ValueError(
                f"{owner}: cuda_graph=True captures a gradient of x alone, got model_kwargs/y "
                f"(keys {sorted(model_kwargs)}); use cuda_graph=False for a conditional model"
            )
        for name in ("step_size", "noise_std" if self.noise_std is not None else "noise_scale"):
            scheduler = self.schedulers[name]
            values = scheduler.values(n_steps)
            if any(v != values[0] for v in values):
                raise ValueError(
                    f"{owner}: cuda_graph=True captures constant coefficients, but the {name} "
                    f"scheduler {scheduler!r} varies over the {n_steps} steps of this call "
                    f"(from {min(values):.6g} to {max(values):.6g}); use a constant {name} or "
                    f"cuda_graph=False"
                )
        reason = _graph_blocker(x)
        if reason is not None:
            raise NoKernelError(
                f"{owner}: cuda_graph=True cannot be honoured: {reason}; pass cuda_graph=False "
                f"for the other paths"
            )

    def _run_cuda_graph(self, x: torch.Tensor, n_steps: int, seed: int) -> torch.Tensor:
        """``n_steps >= 1`` constant-coefficient steps from ``x [B, *event]`` (CUDA) by graph
        replays, Philox ``seed``; returns the final state ``[B, *event]``.

        Blocks of :func:`_steps_per_graph` steps (a divisor of ``n_steps``, so no step runs
        eagerly). The capture is looked up in, or added to, the sampler's cache.
        """
        a, b = self._coefficients()
        lo, hi = self.clamp if self.clamp is not None else (None, None)
        block = _steps_per_graph(n_steps)
        model = self.model
        storages = tuple(t.data_ptr() for t in itertools.chain(model.parameters(), model.buffers()))
        key = (
            tuple(x.shape), x.dtype, x.device, a, b, lo, hi, self.grad_clip, block,
            id(model), model.training, storages, self.use_mixed_precision, self.amp_dtype,
        )
        # The entry holds the model, so its id cannot be reused by another model while cached.
        entry = self._cuda_graphs.pop(key, None)
        if entry is None:
            # The capture lives in this sampler's cache, so it holds the sampler weakly: a
            # dropped sampler frees its graphs at once, not at the next cyclic collection.
            gradient = weakref.WeakMethod(self._model_gradient)
            graph = capture_langevin(
                lambda state: gradient()(state), x, a=a, b=b, steps_per_graph=block,
                clamp_min=lo, clamp_max=hi, grad_clip=self.grad_clip,
            )
            entry = (model, graph)
        self._cuda_graphs[key] = entry  # most recently used last
        while len(self._cuda_graphs) > _MAX_CUDA_GRAPHS:
            self._cuda_graphs.popitem(last=False)
        return entry[1].run(x, seed=seed, n_steps=n_steps)

    def __getstate__(self) -> dict[str, Any]:
        # Captured CUDA graphs are device state tied to this process: a pickled or copied
        # sampler starts with an empty cache and captures again on first use.
        state = self.__dict__.copy()
        state["_cuda_graphs"] = OrderedDict()
        return state

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, "
            f"step_size={self.step_size!r}, noise_scale={self.noise_scale!r}, "
            f"integrator=EulerMaruyamaIntegrator)"
        )


def _graph_blocker(x: torch.Tensor) -> Optional[str]:
    """Why the graph-safe CUDA ops cannot step a state like ``x``, or None when they can."""
    if x.device.type != "cuda":
        return (
            f"the chain state is on {x.device}, not a CUDA device (torch.cuda.is_available() is "
            f"{torch.cuda.is_available()})"
        )
    return kernels_blocker(_GRAPH_OPS, x.device, x.dtype)


def _steps_per_graph(n_steps: int) -> int:
    """Steps per captured block: the largest divisor of ``n_steps >= 1`` not above
    ``_MAX_STEPS_PER_GRAPH`` (``n_steps`` itself up to 32; 25 for 100; 1 for a prime > 32)."""
    return max(k for k in range(1, min(n_steps, _MAX_STEPS_PER_GRAPH) + 1) if n_steps % k == 0)


def _check_flag(owner: str, name: str, value: Any) -> bool:
    """``value`` if it is a bool, else ``TypeError`` naming ``name`` and the value."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a bool, got {value!r} ({type(value).__name__})")
    return value


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
