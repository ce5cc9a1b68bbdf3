"""``MCMCSampler``: what the built-in samplers share around their algorithm.

A built-in sampler is a step function of :mod:`torchebm.samplers.algorithms` plus a small class
that declares its hyper-parameters, the arguments of its step and its whole-chain op. This
module owns everything else, once: the constructor plumbing (model, dtype, device, backend,
integrator name, scheduled parameters), and the one ``sample()``: arguments, starting state,
path choice (:mod:`torchebm.kernels.dispatch`), the step loop (over
:class:`~torchebm.samplers.step_ops.FusedStepOps` or
:class:`~torchebm.samplers.step_ops.ReferenceStepOps`), the whole-chain op, recording and
return. Nothing in the step loop reads a tensor value on the host: recording writes into
preallocated buffers, and the only host reads of a call are the finiteness check of a CPU ``x``
and the Philox seed.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from torchebm.core.argument_checks import check_dtype, count, event_shape, flag, scheduled_value
from torchebm.core.base_module import DeviceLike, warn_once
from torchebm.core.base_sampler import BaseSampler, _in_dtype, norm_layers_in_eval
from torchebm.diagnostics.sampler_diagnostics import Diagnostics, batch_moments
from torchebm import integrators
from torchebm.kernels import dispatch, mlp, ops
from torchebm.samplers.algorithms import Algorithm, ChainState, Target
from torchebm.samplers.compiled_step import CompiledSteps, compiled_step_blocker
from torchebm.samplers.schedule_cache import (
    ScheduleCache,
    constant_steps,
    constant_value,
    scheduler_state,
)
from torchebm.samplers.step_ops import FusedStepOps, ReferenceStepOps, StepOps
from torchebm.utils.progress import progress as progress_bar


@dataclass
class KernelModel:
    """A built-in analytic model as the whole-chain ops take it: kernel name, scalar params,
    Gaussian tensors."""

    name: str
    params: list[float]
    mean: Optional[torch.Tensor]
    precision: Optional[torch.Tensor]


@dataclass
class ChainModel:
    """A model a whole-chain op can evaluate: which op family, and the op's model arguments."""

    kind: str  # "analytic" (the algorithm's chain_op) or "mlp" (its mlp_chain_op)
    op_args: Callable[[], dict[str, Any]]  # read at call time: parameter values may change


@dataclass
class ChainResult:
    """Outputs of a whole-chain op: final state, thinned trajectory (or None), per-step mean
    energy ``[n_steps]`` (or None) and per-step acceptance rate ``[n_steps]`` (or None)."""

    x: torch.Tensor
    trajectory: Optional[torch.Tensor]
    energy: Optional[torch.Tensor]
    acceptance_rate: Optional[torch.Tensor]


# The chain ops' per-step schedule arguments, sliced per block by MCMCSampler._run_chain.
_CHAIN_SCHEDULES = ("a", "b", "step_size", "leapfrog_steps")
# Element-steps of the first block of a whole-chain run (MCMCSampler._run_chain): well under a
# second on a CPU, and large enough that a benchmark-sized chain runs in one or two calls.
_FIRST_BLOCK_WORK = 1 << 28


def _first_chain_block(x: torch.Tensor, model_args: dict, fixed: dict) -> int:
    """Steps of a chain run's first block: :data:`_FIRST_BLOCK_WORK` over the work of one step,
    ``B (d + the model's tensor elements)`` per gradient, ``n_leapfrog`` gradients for HMC."""
    tensors = [v for v in model_args.values() if isinstance(v, torch.Tensor)]
    tensors += [t for v in model_args.values() if isinstance(v, (list, tuple)) for t in v
                if isinstance(t, torch.Tensor)]
    per_gradient = x.shape[0] * (math.prod(x.shape[1:]) + sum(t.numel() for t in tensors))
    return max(1, _FIRST_BLOCK_WORK // max(1, per_gradient * int(fixed.get("n_leapfrog", 1))))


def _chain_block(start: int, length: int, n_steps: int, thin: int, record: bool) -> tuple[int, int, bool]:
    """The block of a chain run that starts at step ``start`` and has at most ``length`` steps
    (at least one): ``(stop, thin, record_trajectory)`` of its op call, so that the blocks'
    trajectories, one after the other, are the thinned trajectory of one call (kept steps
    ``thin - 1, 2 thin - 1, ...``). From the start of a thinning period, a whole number of
    periods (or the rest of the chain); else the block stays within its period, and records
    its last state (``thin`` = its length) iff it ends the period."""
    phase = start % thin
    if phase == 0 and length >= thin:
        return min(start + length // thin * thin, n_steps), thin, record
    period_end = start - phase + thin
    stop = min(start + length, period_end, n_steps)
    if stop == period_end:
        return stop, stop - start, record
    return stop, 1, False


def kernel_model(model: nn.Module, x: torch.Tensor) -> tuple[Optional[KernelModel], Optional[str]]:
    """The model's ``kernel_spec()`` in the chain ops' form (:func:`torchebm.kernels.ops.kernel_args`,
    tensors in ``x``'s dtype and device), or ``(None, why not)``."""
    spec_fn = getattr(model, "kernel_spec", None)
    spec = spec_fn() if callable(spec_fn) else None
    if spec is None:
        return None, f"{type(model).__name__} has no kernel_spec() (not a built-in analytic model)"
    try:
        name, params, mean, precision = ops.kernel_args(spec, x.dtype, x.device)
    except ValueError as exc:
        return None, f"{type(model).__name__}.kernel_spec() is not one the kernels know ({exc})"
    return KernelModel(name, params, mean, precision), None


def tempered_chain_blocker(samplers: list, model: nn.Module, x: torch.Tensor) -> Optional[str]:
    """Why ``samplers`` (one sampler, or its copies, one per temperature) cannot run tempered
    steps of ``model`` on states ``x [N, d]`` as calls of their tempered chain op (``beta``;
    annealed importance sampling, parallel tempering), or None."""
    first = samplers[0]
    name = type(first).__name__
    if not isinstance(first, MCMCSampler) or first.algorithm.chain_op is None:
        return f"{name} has no whole-chain op"
    if first.backend == "reference":
        return f"{name} has backend='reference'"
    if any(getattr(s, "adaptation", None) is not None for s in samplers):
        return f"{name} is adapted (warmup()); its adapted settings run per sample() call"
    if x.dim() != 2:
        return f"the chain ops take states [N, d], got {tuple(x.shape)}"
    spec, why_not = kernel_model(model, x)
    if spec is None:
        return why_not
    return dispatch.kernels_blocker((first.algorithm.chain_op,), x.device, x.dtype)


def chain_model(model: nn.Module, x: torch.Tensor, algorithm: Algorithm) -> tuple[Optional[ChainModel], Optional[str]]:
    """How a whole-chain op of ``algorithm`` can evaluate ``model`` on states like ``x``: as a
    built-in analytic model (its ``kernel_spec()``), else as an MLP energy recognised from its
    code (:func:`torchebm.kernels.mlp.recognise_mlp`); or ``(None, every reason)``."""
    analytic, why_not = kernel_model(model, x)
    if analytic is not None:
        args = {"energy": analytic.name, "params": analytic.params, "mean": analytic.mean,
                "precision": analytic.precision}
        return ChainModel("analytic", lambda: args), None
    if algorithm.mlp_chain_op is None:
        return None, why_not
    spec, why_not_mlp = mlp.recognise_mlp(model, x)
    if spec is None:
        return None, f"{why_not}; {why_not_mlp}"
    return ChainModel("mlp", spec.op_args), None


def _one_thread_at_a_time(sample: Callable) -> Callable:
    """``sample()`` refuses to run while another thread runs it on the same sampler: a sampler
    holds state that a call changes (its schedules' step counts, its caches), so two threads
    sharing one would silently change each other's results. A call from the same thread (a
    model that samples inside ``forward``) is let through."""

    @functools.wraps(sample)
    def guarded(self, *args, **kwargs):
        lock = self.__dict__.get("_sample_lock")
        if lock is None:
            lock = self.__dict__["_sample_lock"] = threading.Lock()
        if lock.acquire(blocking=False):
            self.__dict__["_sample_thread"] = threading.get_ident()
            try:
                return sample(self, *args, **kwargs)
            finally:
                self.__dict__.pop("_sample_thread", None)
                lock.release()
        if self.__dict__.get("_sample_thread") == threading.get_ident():
            return sample(self, *args, **kwargs)
        raise RuntimeError(
            f"{type(self).__name__}.sample() is already running in another thread on this "
            f"sampler; samplers are not thread-safe (a call advances the sampler's schedules): "
            f"give each thread its own, e.g. copy.deepcopy(sampler)"
        )

    return guarded


def _norm_layers_in_eval(sample: Callable) -> Callable:
    """``sample()`` runs with the model's running-statistics norm layers in eval mode
    (:func:`~torchebm.core.base_sampler.norm_layers_in_eval`)."""

    @functools.wraps(sample)
    def in_eval(self, *args, **kwargs):
        with norm_layers_in_eval(self.model):
            return sample(self, *args, **kwargs)

    return in_eval


class MCMCSampler(BaseSampler):
    """Base of the built-in samplers (:class:`~torchebm.samplers.LangevinDynamics`,
    :class:`~torchebm.samplers.MetropolisAdjustedLangevin`,
    :class:`~torchebm.samplers.HamiltonianMonteCarlo`).

    Every built-in sampler takes, besides its own parameters, the keyword-only
    ``energy_function`` (old name of ``model``), ``backend`` (``"auto"``, ``"fused"`` or
    ``"reference"``, see :mod:`torchebm.kernels.dispatch`) and ``progress`` (a progress bar over
    the steps).

    A subclass declares:

    * its :class:`~torchebm.samplers.algorithms.Algorithm`, as a class keyword
      (``class MALA(MCMCSampler, algorithm=algorithms.MALA)``): ``init``, ``step``, the ops
      behind them (checked by :func:`torchebm.kernels.dispatch.choose_path`) and the accepted
      ``integrator=`` values;
    * :meth:`_step_arguments` (scheduled values, read before each step),
      :meth:`_fixed_arguments` (per call) and :meth:`_chain_arguments` (the algorithm's
      arguments of the whole-chain op).
    """

    algorithm: Algorithm

    def __init_subclass__(cls, algorithm: Optional[Algorithm] = None, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if algorithm is not None:
            cls.algorithm = algorithm
    cuda_graph: bool = False  # LangevinDynamics(cuda_graph=True) replays CUDA graphs

    def __init__(
        self,
        model: Optional[nn.Module],
        dtype: Optional[torch.dtype],
        device: DeviceLike,
        integrator: Any,
        energy_function: Optional[nn.Module],
        backend: str,
        progress: bool,
    ):
        super().__init__(
            model,
            dtype=dtype,
            device=device,
            energy_function=energy_function,
            backend=backend,
            progress=progress,
        )
        self.integrator = _check_integrator(type(self).__name__, integrator, self.algorithm)
        _check_integrator_matches(type(self).__name__, self.integrator, device, self._dtype_arg)

    def _schedule(
        self, name: str, value: Any, *, positive: bool = True, scheduled_minimum: str = "positive"
    ) -> Any:
        """Check and register the hyper-parameter ``name`` (a float, ``> 0`` when ``positive``,
        else ``>= 0``; or a scheduler), and keep it as the attribute ``name``; a float becomes a
        constant scheduler. Every value read later (:meth:`get_scheduled_value`,
        :meth:`scheduled_values`) must be finite and ``> 0`` (``scheduled_minimum="positive"``)
        or ``>= 0`` (``"non_negative"``): a scheduler's values are checked as they are used, on
        every path alike."""
        value = scheduled_value(type(self).__name__, name, value, positive=positive)
        setattr(self, name, value)
        self._register_param(name, value)
        self.__dict__.setdefault("_value_rules", {})[name] = scheduled_minimum
        return value

    def get_scheduled_value(self, name: str) -> float:
        """The current value of the hyper-parameter ``name``, checked (see :meth:`_schedule`)."""
        value = super().get_scheduled_value(name)
        rule = self.__dict__.get("_value_rules", {}).get(name)
        if rule is not None and not _allowed(value, rule):
            self._bad_value(name, value, 0, rule)
        return value

    def scheduled_values(self, name: str, n_steps: int) -> torch.Tensor:
        """The values the scheduler ``name`` gives the next ``n_steps`` steps, ``float64
        [n_steps]`` on the CPU (the chain ops check them there; see
        :mod:`~torchebm.samplers.schedule_cache` for their copies on a GPU), each checked as
        :meth:`get_scheduled_value` checks it. A constant schedule is a stride-0 view of its
        one value. The tensor is kept for later calls from the same scheduler state
        (:meth:`kept_schedules`): read it, do not write it."""
        scheduler = self.schedulers[name]
        return self.kept_schedules(
            ("values", name, n_steps, scheduler_state(scheduler)), n_steps,
            lambda: self._checked_values(name, n_steps),
        )

    def kept_schedules(self, key: Any, n_steps: int, build: Callable[[], Any]) -> Any:
        """``build()`` (schedules ``[n_steps]``, a tensor or a dict of them), kept by the
        sampler under ``key`` (which must determine them; None: not kept), so that calls from
        the same scheduler states build them once
        (:class:`~torchebm.samplers.schedule_cache.ScheduleCache`)."""
        cache = self.__dict__.get("_schedule_cache")
        if cache is None:
            cache = self.__dict__["_schedule_cache"] = ScheduleCache()
        return cache.get(key, n_steps, build)

    def _checked_values(self, name: str, n_steps: int) -> torch.Tensor:
        """:meth:`scheduled_values` built afresh (not kept)."""
        scheduler = self.schedulers[name]
        rule = self.__dict__.get("_value_rules", {}).get(name)
        value = constant_value(scheduler)
        if value is not None:
            if rule is not None and n_steps and not _allowed(value, rule):
                self._bad_value(name, value, 0, rule)
            return constant_steps(value, n_steps)
        values = scheduler.values_tensor(n_steps)
        if rule is not None and n_steps:
            ok = torch.isfinite(values) & ((values > 0) if rule == "positive" else (values >= 0))
            if not bool(ok.all()):
                k = int((~ok).nonzero()[0])
                self._bad_value(name, float(values[k]), k, rule)
        return values

    def _bad_value(self, name: str, value: float, ahead: int, rule: str) -> None:
        scheduler = self.schedulers[name]
        bound = "> 0" if rule == "positive" else ">= 0"
        raise ValueError(
            f"{type(self).__name__}: {name} must be finite and {bound}, but its scheduler "
            f"{scheduler!r} gives {value} at step {scheduler.step_count + ahead}"
        )

    # ------------------------------------------------------------------ what subclasses declare
    def _chain_blocker(self, x: torch.Tensor, model: Optional[ChainModel]) -> Optional[str]:
        """The sampler's own reason its whole-chain op for ``model`` cannot serve the next call
        on states like ``x`` (an adapted setting the op does not take,
        :mod:`torchebm.samplers.adaptation`), or None."""
        return None

    def _step_arguments(self) -> dict[str, Any]:
        """The step's keyword arguments read from the schedulers, for the current step."""
        raise NotImplementedError

    def _fixed_arguments(self, x: torch.Tensor) -> dict[str, Any]:
        """The step's keyword arguments fixed for a call on states like ``x`` (raises on a
        setting that does not fit ``x``)."""
        return {}

    def _chain_arguments(self, x: torch.Tensor, n_steps: int) -> dict[str, Any]:
        """The keyword arguments of the algorithm's ``chain_op`` that belong to the algorithm (per-step
        schedules as ``float64 [n_steps]`` CPU tensors from :meth:`scheduled_values`, and its
        fixed settings); the model, seed and recording arguments are added by the caller."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the one sample()
    @torch.no_grad()
    @_one_thread_at_a_time
    @_norm_layers_in_eval
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
                chain ``[dim]``; moved to the sampler's device. None: ``randn`` from
                ``generator``. The chains returned have the sampler's explicit ``dtype=``, else
                ``x``'s floating dtype, else the model's, else the default dtype (a half dtype
                is integrated in float32 and returned in half; see
                :mod:`torchebm.core.base_sampler`).
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
                ``energy``, and for MALA and HMC ``acceptance_rate`` ``[n_kept]``, the fraction
                of chains that accepted at each kept step; tensor view
                ``[n_kept, 3, n_samples, *event]``). Energies are those of the chains'
                current (post-accept) states.
            reset_schedulers: restart the schedules (every scheduler in the sampler's subtree)
                before sampling; False continues them.
            y: conditioning, shorthand for ``model_kwargs={"y": y}``.
            model_kwargs: extra keyword arguments of the model's ``forward``/``gradient``;
                tensors are moved to the sampler's device, not cast.
            generator: drives every random draw of the call (the reference path's noise, or
                the one Philox seed of a kernel path); None uses the global RNG.
            n_chains: old name of ``n_samples``.
            device: move the sampler (and its model) there first, as ``sampler.to(device)``.
            cuda_graph: :class:`~torchebm.samplers.LangevinDynamics` only: run the steps as a
                replayed CUDA graph (path ``"cuda_graph"``, see its docstring). None (default)
                takes the constructor's ``cuda_graph`` (False by default).

        The model's normalisation layers with running statistics (``BatchNorm*``...) that are
        in training mode are put in eval mode for the call and restored after (their running
        statistics are not updated by the chains, and chains are not coupled through batch
        statistics; :func:`~torchebm.core.base_sampler.norm_layers_in_eval`).

        Returns:
            The final state ``[n_samples, *event]`` (``[dim]`` for a 1-D ``x``), or the
            trajectory; with ``return_diagnostics``, a tuple ``(that, diagnostics)``.

        Raises:
            ValueError: ``cuda_graph=True`` on a sampler other than ``LangevinDynamics``, or a
                call it cannot honour (see :class:`~torchebm.samplers.LangevinDynamics`); a
                scheduled value out of range (naming the scheduler and the step); an energy
                that is not one value per chain.
            RuntimeError: another thread is running ``sample()`` on this sampler. Samplers
                are not thread-safe: give each thread its own (``copy.deepcopy(sampler)``).
        """
        owner = type(self).__name__
        cuda_graph = flag(owner, "cuda_graph", self.cuda_graph if cuda_graph is None else cuda_graph)
        if cuda_graph and not hasattr(self, "_run_cuda_graph"):
            raise ValueError(
                f"{owner}: cuda_graph=True is implemented for LangevinDynamics only; use "
                f"cuda_graph=False"
            )
        n_steps = count(owner, "n_steps", n_steps, minimum=0)
        thin = count(owner, "thin", thin, minimum=1)
        if n_chains is not None:
            n_chains = count(owner, "n_chains", n_chains, minimum=1)
            if n_samples not in (1, n_chains):
                raise ValueError(
                    f"{owner}: n_chains={n_chains} (old name of n_samples) disagrees with "
                    f"n_samples={n_samples}"
                )
            n_samples = n_chains
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"{owner}: generator must be a torch.Generator, got {type(generator).__name__}"
            )
        if device is not None:
            self.to(device)
        self._check_model_device()
        if reset_schedulers:
            self.reset_schedulers()
        mk = self._prepare_model_kwargs(y, model_kwargs)
        unbatched = isinstance(x, torch.Tensor) and x.dim() == 1
        out_dtype = self.chain_dtype(x)
        state = self._starting_state(x, dim, n_samples, generator)

        kmodel = None
        if cuda_graph:
            self._check_cuda_graph(state, n_steps, mk, return_trajectory, return_diagnostics)
            route = dispatch.Route("cuda_graph")
        else:
            fixed = self._fixed_arguments(state)
            if self.algorithm.chain_op is None:
                chain_blocker = f"{owner} has no whole-chain kernel"
            elif mk:
                chain_blocker = "model_kwargs/y given (the kernels evaluate x-only closed forms)"
            else:
                kmodel, chain_blocker = chain_model(self.model, state, self.algorithm)
                chain_blocker = chain_blocker or self._chain_blocker(state, kmodel)
            route = dispatch.choose_path(
                self.backend,
                device=state.device,
                dtype=state.dtype,
                chain_ops=(self._chain_op(kmodel),) if self.algorithm.chain_op else (),
                step_ops=self.algorithm.step_ops,
                chain_blocker=chain_blocker,
                sampler=owner,
            )
        # Plain attributes, set past nn.Module.__setattr__ (which looks for a parameter,
        # buffer or submodule of the name first): every call sets them.
        self.__dict__.update(last_path=route.path, last_route=route)

        n_kept = n_steps // thin
        b = state.shape[0]
        if n_steps == 0:
            final = x if (x is not None and state.data_ptr() == x.data_ptr()) else state
            if unbatched and final is state:
                final = state.squeeze(0)
            recorder = _Recorder(state, 0, return_trajectory, return_diagnostics, self.algorithm.accepts)
            return _finish(final, recorder.trajectory, recorder.result(b), return_trajectory,
                           return_diagnostics, out_dtype)

        self._check_model_once(state, mk)
        seed = self._draw_seed(generator) if route.path != "reference" else 0
        if route.path == "chain":
            record_trajectory = return_trajectory or return_diagnostics
            with self._whole_run(n_steps):
                result = self._run_chain(
                    state.contiguous(), kmodel, n_steps, thin, record_trajectory, return_diagnostics, seed
                )
            final, trajectory = result.x, result.trajectory
            diag = self._chain_diagnostics(result, n_kept, thin, mk) if return_diagnostics else None
        elif route.path == "cuda_graph":
            # _check_cuda_graph rejected trajectories and diagnostics: the final state only.
            with self._whole_run(n_steps):
                final = self._run_cuda_graph(state, n_steps, seed)
            trajectory, diag = None, None
        else:
            loop = (state, n_steps, thin, mk, return_trajectory, return_diagnostics)
            result = None
            if route.path == "compiled":
                result = self._compiled_loop(route, state, fixed, mk, seed, loop)
            if result is None:
                step_ops: StepOps = (
                    FusedStepOps(seed)
                    if self.last_path == "fused"
                    else ReferenceStepOps(self._reference_generator(generator, state.device))
                )
                target = self._target(mk)

                def step(chain_state, t, arguments):
                    return self.algorithm.step(step_ops, target, chain_state, t, **fixed, **arguments)

                result = self._step_loop(step, *loop)
            final, trajectory, diag = result

        if unbatched:
            final = final.squeeze(0)
        return _finish(final, trajectory, diag, return_trajectory, return_diagnostics, out_dtype)

    # ------------------------------------------------------------------ the parts of sample()
    def _chain_op(self, model: Optional[ChainModel]) -> str:
        algorithm = self.algorithm
        return algorithm.mlp_chain_op if model is not None and model.kind == "mlp" else algorithm.chain_op

    chain_block_seconds: float = 0.25
    """Wall time one block of a whole-chain run aims at (:meth:`_run_chain`): Python runs
    between blocks, so Ctrl-C (KeyboardInterrupt) stops a long chain within about this time."""

    def _run_chain(
        self,
        x: torch.Tensor,
        model: ChainModel,
        n_steps: int,
        thin: int,
        record_trajectory: bool,
        record_energy: bool,
        seed: int,
    ) -> ChainResult:
        """The whole chain by the algorithm's chain op for ``model``, in blocks of consecutive
        steps. Block ``[t0, t1)`` is one op call with the schedules' slice ``[t0, t1)``,
        ``first_step=t0`` and the state the block before returned: it draws exactly the noise
        of steps ``t0 .. t1 - 1`` of one call, so the result is bit for bit that of one call
        (tests/test_chain_interrupt.py). The first block is sized by a work estimate
        (:data:`_FIRST_BLOCK_WORK`), each later one by the wall time of the block before, to
        take about :attr:`chain_block_seconds`; a chain within the first block runs in one
        call. Between blocks Python handles signals (a KeyboardInterrupt stops the chain) and
        a GPU state's stream is synchronised, so no more than a block is queued.

        On a GPU, the schedules the sampler keeps (:meth:`kept_schedules`) go to the op as
        their copies on the state's device once the op has accepted them in two calls."""
        name = self._chain_op(model)
        op = getattr(mlp if model.kind == "mlp" else ops, name)
        model_args = model.op_args()
        arguments = self._chain_arguments(x, n_steps)
        fixed = {k: v for k, v in arguments.items() if k not in _CHAIN_SCHEDULES}
        schedules = {k: v for k, v in arguments.items() if k in _CHAIN_SCHEDULES}
        host_schedules = schedules
        if x.is_cuda:
            cache = self.__dict__.get("_schedule_cache")
            if cache is not None:
                schedules = {k: cache.on_device(name, k, v, x) for k, v in schedules.items()}

        def run_block(x0: torch.Tensor, start: int, stop: int, block_thin: int, record: bool):
            sliced = schedules if (start, stop) == (0, n_steps) else {
                k: v[start:stop] for k, v in schedules.items()
            }
            return op(x0=x0, seed=seed, thin=block_thin, record_trajectory=record,
                      record_energy=record_energy, first_step=start, **model_args, **fixed, **sliced)

        length = _first_chain_block(x, model_args, fixed) if n_steps > 1 else 1
        if length >= n_steps:
            x, trajectory, energy, *acceptance = run_block(x, 0, n_steps, thin, record_trajectory)
            self._schedules_accepted(name, host_schedules, schedules, x)
            return ChainResult(
                x,
                trajectory if record_trajectory else None,
                energy if record_energy else None,
                acceptance[0] if acceptance else None,
            )
        n_kept = n_steps // thin
        trajectory = energy = acceptance_rate = None
        if record_trajectory:  # one output, the blocks write into it (no concatenation)
            ops.check_trajectory_size(name, x, n_steps, thin, True)
            trajectory = x.new_empty((x.shape[0], n_kept, *x.shape[1:]))
        if record_energy:
            energy = x.new_empty((n_steps,))
        start = kept = 0
        while start < n_steps:
            stop, block_thin, record = _chain_block(start, length, n_steps, thin, record_trajectory)
            began = time.perf_counter()
            x, traj, e, *acc = run_block(x, start, stop, block_thin, record)
            if record:
                trajectory[:, kept : kept + traj.shape[1]] = traj
                kept += traj.shape[1]
            if record_energy:
                energy[start:stop] = e
            if acc:
                if acceptance_rate is None:
                    acceptance_rate = x.new_empty((n_steps,))
                acceptance_rate[start:stop] = acc[0]
            if x.is_cuda:
                torch.cuda.synchronize(x.device)
            elapsed = time.perf_counter() - began
            block = stop - start
            length = max(1, int(block * min(8.0, self.chain_block_seconds / max(elapsed, 1e-6))))
            start = stop
        self._schedules_accepted(name, host_schedules, schedules, x)
        return ChainResult(x, trajectory, energy, acceptance_rate)

    def _schedules_accepted(self, op: str, host: dict, passed: dict, x: torch.Tensor) -> None:
        """After ``op`` ran every step on a GPU state ``x``: the host schedules it was given
        (``passed[k] is host[k]``) passed its checks (a kept one accepted a second time gets
        its device copy, :meth:`~torchebm.samplers.schedule_cache.ScheduleCache.accepted`)."""
        cache = self.__dict__.get("_schedule_cache")
        if x.is_cuda and cache is not None:
            cache.accepted(op, {k: v for k, v in host.items() if passed[k] is v and v.is_cpu}, x)

    def _compiled_loop(self, route: dispatch.Route, x: torch.Tensor, fixed: dict, mk: dict, seed: int, loop: tuple):
        """The step loop with compiled steps, or None after switching this call to the fused
        path with one warning when the model cannot be compiled (checked before compiling, or
        ``torch.compile`` failing on the first step, before any scheduler moved)."""
        reason = compiled_step_blocker(self.model, x, self.use_mixed_precision)
        if reason is None:
            cache = self.__dict__.setdefault("_compiled_steps", CompiledSteps())
            step = cache.step(self.algorithm, self.model, mk, fixed, x, seed)
            first = True

            def guarded(state, t, arguments):
                nonlocal first
                if not first:
                    return step(state, t, arguments)
                first = False
                try:
                    return step(state, t, arguments)
                except Exception as exc:  # dynamo/inductor refusals come in many types
                    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
                    raise _CompileFailed(f"{type(exc).__name__}: {' '.join(lines[:2])[:300]}") from exc

            try:
                return self._step_loop(guarded, *loop)
            except _CompileFailed as failed:
                reason = f"torch.compile could not compile the step ({failed})"
        warn_once(
            f"compiled-path:{type(self.model).__name__}:{reason}",
            f"{type(self).__name__}: backend='compiled' falls back to the fused path: {reason}",
            UserWarning,
            stacklevel=4,
        )
        self.last_path = "fused"
        self.last_route = dispatch.Route("fused", (*route.skipped, f"compiled: {reason}"))
        return None

    def __getstate__(self) -> dict[str, Any]:
        # Compiled steps are process-local (code objects, guards): a pickled or copied sampler
        # compiles again on first use. The thread guard is per object.
        state = dict(super().__getstate__())
        for key in ("_compiled_steps", "_sample_lock", "_sample_thread", "_schedule_cache"):
            state.pop(key, None)
        return state

    def _starting_state(
        self, x: Optional[torch.Tensor], dim: Any, n_samples: int, generator: Optional[torch.Generator]
    ) -> torch.Tensor:
        """``[B, *event]``: ``x`` cast (a 1-D ``x`` is one chain, as in seed 003's
        ``x=torch.tensor([0.0])``), or ``randn`` draws."""
        owner = type(self).__name__
        if x is None:
            if dim is None:
                dim = _infer_event_shape(self.model)
                if dim is None:
                    raise ValueError(
                        f"{owner}: dim must be provided when x is None (it cannot be inferred from "
                        f"{type(self.model).__name__})"
                    )
            return self._init_state(None, dim, n_samples, generator)
        state = self._cast_state(x)
        if state.dim() == 0:
            raise ValueError(
                f"{owner}: x must have shape [n_samples, *event] (or [dim] for one chain), "
                f"got a 0-d tensor"
            )
        if state.dim() == 1:
            state = state.unsqueeze(0)
        if state.numel() == 0:
            raise ValueError(
                f"{owner}: x must hold at least one chain of at least one element, got shape "
                f"{tuple(x.shape)}"
            )
        if dim is not None and event_shape(owner, dim) != tuple(state.shape[1:]):
            raise ValueError(
                f"{owner}: dim={dim!r} does not match x of shape {tuple(x.shape)} (event shape "
                f"{tuple(state.shape[1:])})"
            )
        _check_finite(owner, state)
        return state

    def _target(self, mk: dict) -> Target:
        return Target(
            gradient=lambda z: self._model_gradient(z, mk),
            energy_and_gradient=lambda z: self._energy_and_gradient(z, mk),
        )

    def _step_loop(
        self,
        step: Callable[[ChainState, int, dict], tuple[ChainState, Optional[torch.Tensor]]],
        x: torch.Tensor,
        n_steps: int,
        thin: int,
        mk: dict,
        return_trajectory: bool,
        return_diagnostics: bool,
    ):
        """``n_steps`` calls ``step(state, t, scheduled arguments)`` from the algorithm's
        ``init`` at ``x``; returns ``(final, trajectory or None, diagnostics or None)``."""
        recorder = _Recorder(x, n_steps // thin, return_trajectory, return_diagnostics, self.algorithm.accepts)
        state = self.algorithm.init(self._target(mk), x)
        steps: Any = range(n_steps)
        if self.progress:
            steps = progress_bar(steps, total=n_steps, desc=self._progress_desc())
        schedulers = self._subtree_schedulers()  # step_schedulers() without a walk per step
        for t in steps:
            state, accepted = step(state, t, self._step_arguments())
            for scheduler in schedulers:
                scheduler.step()
            if (t + 1) % thin == 0:
                recorder.keep((t + 1) // thin - 1, state, lambda s=state: self._state_energy(s, mk), accepted)
        return state.x, recorder.trajectory, recorder.result(x.shape[0])

    def _progress_desc(self) -> str:
        """The progress bar's label: the sampler's name, or what a caller set as
        ``progress_desc`` (the PCD buffer warm-up names itself)."""
        return self.__dict__.get("progress_desc") or type(self).__name__

    def _state_energy(self, state: ChainState, mk: dict) -> torch.Tensor:
        return state.energy if state.energy is not None else self._model_energy(state.x, mk)

    def _check_model_once(self, state: torch.Tensor, mk: dict) -> None:
        """Evaluate the model on two chains (all of them with ``model_kwargs``) before the first
        step: a state it does not
        accept raises the model's own error on every path (the chain kernels never call it), and
        an energy that is not one value per chain (a batch sum, ``[B, 1]``) raises here, naming
        the model, instead of running wrong (a model with its own ``gradient`` would otherwise
        never show its energy's shape). A checked (model, event shape, dtype, device) is
        remembered: on a GPU the evaluation would lengthen every short call."""
        checked = self.__dict__.get("_checked_model")
        key = (tuple(state.shape[1:]), state.dtype, state.device)
        if checked is not None and checked[0] is self.model and checked[1] == key:
            return
        probe = state if mk else state[:2]  # conditioning tensors may be per chain
        energy = self._model_energy(probe, mk)
        if energy.shape != (probe.shape[0],):
            raise ValueError(
                f"{type(self).__name__}: {type(self.model).__name__}.forward must return one "
                f"energy per chain, shape ({probe.shape[0]},) for x of shape {tuple(probe.shape)}, "
                f"got shape {tuple(energy.shape)}"
            )
        # The model itself (the sampler holds it anyway), not a weak reference: samplers pickle.
        self.__dict__["_checked_model"] = (self.model, key)

    @contextlib.contextmanager
    def _whole_run(self, n_steps: int) -> Iterator[None]:
        """Around a path that runs all ``n_steps`` in one go (chain op, CUDA graph): the progress
        bar advances once at the end, and every scheduler is left where the step loop would have
        left it (the run consumed ``n_steps`` scheduled values)."""
        bar = None
        if self.progress:
            bar = progress_bar(total=n_steps, desc=self._progress_desc(), enabled=True)
        yield
        for scheduler in self._subtree_schedulers():
            scheduler.advance(n_steps)
        if bar is not None:
            bar.update(n_steps)
            bar.close()

    def _chain_diagnostics(self, result: ChainResult, n_kept: int, thin: int, mk: dict) -> Diagnostics:
        trajectory = result.trajectory  # [B, n_kept, *event]
        b, event = trajectory.shape[0], tuple(trajectory.shape[2:])
        mean, var = batch_moments(trajectory)
        kept = slice(thin - 1, n_kept * thin, thin)
        energy = result.energy[kept].to(trajectory.dtype)
        acceptance = None
        if result.acceptance_rate is not None:
            acceptance = result.acceptance_rate[kept].to(trajectory.dtype)

        def chain_energy() -> torch.Tensor:
            flat = trajectory.reshape(b * n_kept, *event)
            return self._model_energy(flat, mk).reshape(b, n_kept).T

        return Diagnostics(
            mean,
            var,
            energy,
            n_chains=b,
            acceptance_rate=acceptance,
            chain_energy=chain_energy,
            draws=trajectory,
        )



def _check_integrator(owner: str, integrator: Any, algorithm: Algorithm) -> Any:
    """The integrator object ``sampler.integrator`` holds, as in TorchEBM 0.8.9: the one given
    (an instance of the algorithm's :mod:`torchebm.integrators` class), or a new one for None
    or its name; None for an algorithm without an integrator (gradient descent). The sampler
    runs its own fused form of the integrator; an instance of a subclass (whose own ``step``
    the sampler would not call) or of another integrator is refused (``TypeError``; an unknown
    name: ``ValueError``)."""
    accepted = algorithm.integrators
    if isinstance(integrator, (integrators.EulerMaruyamaIntegrator, integrators.LeapfrogIntegrator)):
        if type(integrator).__name__ in accepted and type(integrator) in (
            integrators.EulerMaruyamaIntegrator, integrators.LeapfrogIntegrator
        ):
            return integrator
    elif integrator in accepted:
        return getattr(integrators, accepted[2])() if len(accepted) > 1 else None
    if len(accepted) == 1:
        raise ValueError(f"{owner}: integrator must be None or omitted (the update is fixed), got {integrator!r}")
    name, cls = accepted[1], accepted[2]
    error = ValueError if integrator is None or isinstance(integrator, str) else TypeError
    family = _TORCHEBM_089_FAMILY[cls]
    raise error(
        f"{owner}: integrator must be None or {name!r} (or a torchebm.integrators.{cls}() object), "
        f"the only integrator implemented (a subclass of it would not be run; of TorchEBM 0.8.9's "
        f"{family} family only {cls}), got {integrator!r}"
    )


def _check_integrator_matches(owner: str, integrator: Any, device: DeviceLike, dtype: Optional[torch.dtype]) -> None:
    """An integrator object built with a ``device``/``dtype`` must agree with the sampler's
    own explicit ones (TorchEBM 0.8.9's rule); either left unset agrees with anything."""
    want_device, want_dtype = getattr(integrator, "requested", (None, None))
    clash = []
    if want_dtype is not None and dtype is not None and check_dtype(want_dtype) != dtype:
        clash.append(f"dtype {want_dtype} against the sampler's {dtype}")
    if want_device is not None and device is not None:
        a, b = torch.device(want_device), torch.device(device)
        if a.type != b.type or (a.index is not None and b.index is not None and a.index != b.index):
            clash.append(f"device {a} against the sampler's {b}")
    if clash:
        raise ValueError(f"{owner}: the integrator's device/dtype must match the sampler's: " + "; ".join(clash))


# The TorchEBM 0.8.9 base class of each integrator family, for the error above.
_TORCHEBM_089_FAMILY = {
    "EulerMaruyamaIntegrator": "BaseSDERungeKuttaIntegrator",
    "LeapfrogIntegrator": "BaseSymplecticIntegrator",
}


def _allowed(value: float, rule: str) -> bool:
    return math.isfinite(value) and (value > 0 if rule == "positive" else value >= 0)


class _CompileFailed(Exception):
    """The first compiled step raised: the reason, for the warning and the route."""


def _infer_event_shape(model: nn.Module) -> Optional[tuple[int, ...]]:
    # TorchEBM's HMC infers dim from a Gaussian model's mean; every sampler does it here.
    mean = getattr(model, "mean", None)
    if isinstance(mean, torch.Tensor) and mean.dim() == 1:
        return (int(mean.shape[0]),)
    return None


def _check_finite(owner: str, x: torch.Tensor) -> None:
    """Raise a ValueError naming the first non-finite element of a CPU state ``x``.

    States on a GPU are not checked: reading the answer would synchronise the host with the
    device at every call. A non-finite GPU state stays visibly non-finite (every update
    propagates NaN and inf, and Metropolis steps reject from it).
    """
    if x.device.type != "cpu":
        return
    # A finite sum means every element is finite (a NaN or an infinity makes the sum NaN or
    # infinite): one reduction, cheaper than isfinite().all(); a sum that overflows falls
    # through to the element-wise test below.
    if math.isfinite(x.sum().item()):
        return
    finite = torch.isfinite(x)
    if bool(finite.all()):
        return
    bad = (~finite).nonzero()
    first = tuple(int(i) for i in bad[0])
    n_nan = int(torch.isnan(x).sum())
    raise ValueError(
        f"{owner}: x must be finite, got {n_nan} NaN and {bad.shape[0] - n_nan} infinite values "
        f"(first at index {first}: {x[first].item()}) in x of shape {tuple(x.shape)}"
    )


class _Recorder:
    """Preallocated buffers for the kept steps of the step loop."""

    def __init__(self, x: torch.Tensor, n_kept: int, trajectory: bool, diagnostics: bool, accept: bool):
        b, event = x.shape[0], tuple(x.shape[1:])
        new = dict(dtype=x.dtype, device=x.device)
        # Diagnostics keep the trajectory too: their ESS and R-hat are computed from it.
        keep = trajectory or diagnostics
        self.trajectory = torch.empty((b, n_kept, *event), **new) if keep else None
        self.diagnostics = diagnostics
        if diagnostics:
            self.mean = torch.empty((n_kept, *event), **new)
            self.var = torch.empty((n_kept, *event), **new)
            self.chain_energy = torch.empty((n_kept, b), **new)
            self.acceptance = torch.empty((n_kept,), **new) if accept else None

    def keep(self, k: int, state: ChainState, energy: Callable[[], torch.Tensor], accepted) -> None:
        x = state.x
        if self.trajectory is not None:
            self.trajectory[:, k] = x
        if self.diagnostics:
            mean, var = batch_moments(x)
            self.mean[k] = mean
            self.var[k] = var
            self.chain_energy[k] = energy()
            if self.acceptance is not None:
                self.acceptance[k] = accepted.to(x.dtype).mean()

    def result(self, n_chains: int) -> Optional[Diagnostics]:
        if not self.diagnostics:
            return None
        return Diagnostics(
            self.mean,
            self.var,
            self.chain_energy.mean(dim=1),
            n_chains=n_chains,
            acceptance_rate=self.acceptance,
            chain_energy=self.chain_energy,
            draws=self.trajectory,
        )


def _finish(final, trajectory, diag, return_trajectory: bool, return_diagnostics: bool, dtype: torch.dtype):
    """The call's result, the states in ``dtype`` (a half dtype's chains ran in float32)."""
    out = _in_dtype(trajectory if return_trajectory else final, dtype)
    return (out, diag) if return_diagnostics else out


__all__ = ["ChainModel", "ChainResult", "KernelModel", "MCMCSampler", "chain_model", "kernel_model"]
