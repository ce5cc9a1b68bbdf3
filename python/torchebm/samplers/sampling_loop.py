"""The ``sample()`` call the built-in samplers share: arguments, starting state, path choice,
the step loop (reference or per-step fused), the whole-chain kernel or a replayed CUDA graph
(``LangevinDynamics`` with ``cuda_graph=True``), recording and return.

A sampler plugs in the algorithm through a few methods (see :class:`MCMCAlgorithm`); this
module owns everything around it, so the three samplers agree on every argument, shape and
diagnostic. Nothing in the step loop reads a tensor value on the host: recording writes into
preallocated buffers, and the only host reads of a call are the finiteness check of ``x`` and
the Philox seed.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional, Protocol

import torch

from torchebm.core.argument_checks import count
from torchebm.core.base_sampler import BaseSampler, _event_shape
from torchebm.diagnostics.sampler_diagnostics import Diagnostics, batch_moments
from torchebm.kernels import dispatch, ops
from torchebm.utils.progress import progress as progress_bar


@dataclass
class StepContext:
    """What a step needs besides the state: the path, the RNG and the model's extra inputs."""

    path: str  # "fused" or "reference"
    generator: Optional[torch.Generator]
    seed: int  # Philox key of this call (fused path; 0 on the reference path)
    model_kwargs: dict


@dataclass
class KernelModel:
    """A model as the whole-chain ops take it: kernel name, scalar params, Gaussian tensors."""

    name: str
    params: list[float]
    mean: Optional[torch.Tensor]
    precision: Optional[torch.Tensor]


@dataclass
class ChainResult:
    """Outputs of a whole-chain op: final state, thinned trajectory (or None), per-step mean
    energy ``[n_steps]`` (or None) and per-step acceptance rate ``[n_steps]`` (or None)."""

    x: torch.Tensor
    trajectory: Optional[torch.Tensor]
    energy: Optional[torch.Tensor]
    acceptance_rate: Optional[torch.Tensor]


class MCMCAlgorithm(Protocol):
    """The methods a built-in sampler provides to :func:`run_sample`."""

    chain_op: str  # the whole-chain op, e.g. "langevin_chain"
    step_ops: tuple[str, ...]  # the per-step ops of the fused path
    has_accept_step: bool  # whether diagnostics carry an acceptance rate

    def _begin(self, x: torch.Tensor, ctx: StepContext) -> Any:
        """State carried between steps besides ``x`` (e.g. gradient and energy at ``x``)."""

    def _step(
        self, x: torch.Tensor, carry: Any, step: int, ctx: StepContext
    ) -> tuple[torch.Tensor, Any, Optional[torch.Tensor]]:
        """One step: ``(x, carry, accepted [B] bool or None)``."""

    def _carried_energy(self, carry: Any) -> Optional[torch.Tensor]:
        """Each chain's energy at the current state if the carry holds it (else None)."""

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
        """The whole chain in one op call."""

    def _chain_blocker(self, x: torch.Tensor) -> Optional[str]:
        """A sampler-specific reason the chain op cannot serve this call, or None."""


def kernel_op(name: str) -> Callable[..., Any]:
    """The op ``name``: its Python face in :mod:`torchebm.kernels.ops` where there is one, else
    ``torch.ops.torchebm.<name>``. Called positionally, in the schema's argument order."""
    face = getattr(ops, name, None)
    return face if face is not None else getattr(torch.ops.torchebm, name)


def scheduled_values(sampler: BaseSampler, name: str, n_steps: int) -> torch.Tensor:
    """The values the scheduler ``name`` gives the next ``n_steps`` steps, ``float64 [n_steps]``
    on the CPU: the chain ops check them there and copy them to a GPU state's device through
    pinned memory, without synchronising."""
    return sampler.schedulers[name].values_tensor(n_steps)


def kernel_model(model: torch.nn.Module, x: torch.Tensor) -> tuple[Optional[KernelModel], Optional[str]]:
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


def _infer_event_shape(sampler: BaseSampler) -> Optional[tuple[int, ...]]:
    # TorchEBM's HMC infers dim from a Gaussian model's mean; every sampler does it here.
    mean = getattr(sampler.model, "mean", None)
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


def _check_model_accepts(sampler: BaseSampler, state: torch.Tensor, mk: dict) -> None:
    """The chain kernels never call the model: evaluate it on one chain, so that a state it does
    not accept raises the model's own error, as it does on the other paths. An accepted (model,
    event shape, dtype, device) is remembered, and not evaluated again: on a GPU the evaluation
    launches kernels that would lengthen every short call."""
    accepted = sampler.__dict__.get("_accepted_state")
    key = (tuple(state.shape[1:]), state.dtype, state.device)
    if accepted is not None and accepted[0] is sampler.model and accepted[1] == key:
        return
    sampler._model_energy(state[:1], mk)
    # The model itself (the sampler holds it anyway), not a weak reference: samplers pickle.
    sampler.__dict__["_accepted_state"] = (sampler.model, key)


class _Recorder:
    """Preallocated buffers for the kept steps of the step loop."""

    def __init__(self, x: torch.Tensor, n_kept: int, trajectory: bool, diagnostics: bool, accept: bool):
        b, event = x.shape[0], tuple(x.shape[1:])
        new = dict(dtype=x.dtype, device=x.device)
        self.trajectory = torch.empty((b, n_kept, *event), **new) if trajectory else None
        self.diagnostics = diagnostics
        if diagnostics:
            self.mean = torch.empty((n_kept, *event), **new)
            self.var = torch.empty((n_kept, *event), **new)
            self.chain_energy = torch.empty((n_kept, b), **new)
            self.acceptance = torch.empty((n_kept,), **new) if accept else None

    def keep(self, k: int, x: torch.Tensor, energy: Callable[[], torch.Tensor], accepted) -> None:
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
        )


def run_sample(
    sampler: BaseSampler,
    *,
    x: Optional[torch.Tensor],
    dim: Any,
    n_steps: Any,
    n_samples: Any,
    thin: Any,
    return_trajectory: bool,
    return_diagnostics: bool,
    reset_schedulers: bool,
    y: Any,
    model_kwargs: Optional[dict],
    generator: Optional[torch.Generator],
    n_chains: Any = None,
    device: Any = None,
    cuda_graph: bool = False,
):
    """The body of the built-in samplers' ``sample()`` (documented there).

    ``cuda_graph=True`` (a sampler with ``_check_cuda_graph`` and ``_run_cuda_graph``, i.e.
    :class:`~torchebm.samplers.LangevinDynamics`) replaces the path choice: the call is checked
    by ``_check_cuda_graph`` (which raises where it cannot be honoured) and runs on the
    ``"cuda_graph"`` path.
    """
    owner = type(sampler).__name__
    algo: MCMCAlgorithm = sampler  # type: ignore[assignment]
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
        sampler.to(device)
    sampler._check_model_device()
    if reset_schedulers:
        sampler.reset_schedulers()
    mk = sampler._prepare_model_kwargs(y, model_kwargs)

    # Starting state [B, *event]. A 1-D x is one chain (seed 003: x=torch.tensor([0.0])).
    unbatched = isinstance(x, torch.Tensor) and x.dim() == 1
    if x is not None:
        state = sampler._cast_state(x)
        if state.dim() == 0:
            raise ValueError(
                f"{owner}: x must have shape [n_samples, *event] (or [dim] for one chain), "
                f"got a 0-d tensor"
            )
        if unbatched:
            state = state.unsqueeze(0)
        if state.numel() == 0:
            raise ValueError(
                f"{owner}: x must hold at least one chain of at least one element, got shape "
                f"{tuple(x.shape)}"
            )
        if dim is not None and _event_shape(owner, dim) != tuple(state.shape[1:]):
            raise ValueError(
                f"{owner}: dim={dim!r} does not match x of shape {tuple(x.shape)} (event shape "
                f"{tuple(state.shape[1:])})"
            )
        _check_finite(owner, state)
    else:
        if dim is None:
            dim = _infer_event_shape(sampler)
            if dim is None:
                raise ValueError(
                    f"{owner}: dim must be provided when x is None (it cannot be inferred from "
                    f"{type(sampler.model).__name__})"
                )
        state = sampler._init_state(None, dim, n_samples, generator)

    kmodel = None
    if cuda_graph:
        sampler._check_cuda_graph(state, n_steps, mk, return_trajectory, return_diagnostics)
        route = dispatch.Route("cuda_graph")
    else:
        if mk:
            chain_blocker = "model_kwargs/y given (the kernels evaluate x-only closed forms)"
        else:
            kmodel, chain_blocker = kernel_model(sampler.model, state)
            if kmodel is not None:
                chain_blocker = algo._chain_blocker(state)
        route = dispatch.choose_path(
            sampler.backend,
            device=state.device,
            dtype=state.dtype,
            chain_ops=(algo.chain_op,),
            step_ops=algo.step_ops,
            chain_blocker=chain_blocker,
            sampler=owner,
        )
    sampler.last_path = route.path
    sampler.last_route = route

    n_kept = n_steps // thin
    b = state.shape[0]
    if n_steps == 0:
        final = x if (x is not None and state.data_ptr() == x.data_ptr()) else state
        if unbatched and final is state:
            final = state.squeeze(0)
        recorder = _Recorder(state, 0, return_trajectory, return_diagnostics, algo.has_accept_step)
        return _finish(final, recorder.trajectory, recorder.result(b), return_trajectory, return_diagnostics)

    seed = sampler._draw_seed(generator) if route.path != "reference" else 0
    if route.path == "chain":
        _check_model_accepts(sampler, state, mk)
        record_trajectory = return_trajectory or return_diagnostics
        with _whole_run_progress(sampler, owner, n_steps):
            result = algo._run_chain(
                state.contiguous(), kmodel, n_steps, thin, record_trajectory, return_diagnostics, seed
            )
        final, trajectory = result.x, result.trajectory
        diag = None
        if return_diagnostics:
            diag = _chain_diagnostics(sampler, result, n_kept, thin, mk)
    elif route.path == "cuda_graph":
        # _check_cuda_graph rejected trajectories and diagnostics: the final state only.
        with _whole_run_progress(sampler, owner, n_steps):
            final = sampler._run_cuda_graph(state, n_steps, seed)
        trajectory, diag = None, None
    else:
        ctx = StepContext(route.path, generator, seed, mk)
        recorder = _Recorder(state, n_kept, return_trajectory, return_diagnostics, algo.has_accept_step)
        carry = algo._begin(state, ctx)
        steps = range(n_steps)
        if sampler.progress:
            steps = progress_bar(steps, total=n_steps, desc=owner)
        for i in steps:
            state, carry, accepted = algo._step(state, carry, i, ctx)
            sampler.step_schedulers()
            if (i + 1) % thin == 0:
                recorder.keep((i + 1) // thin - 1, state, _energy_reader(sampler, algo, state, carry, mk), accepted)
        final, trajectory, diag = state, recorder.trajectory, recorder.result(b)

    if unbatched:
        final = final.squeeze(0)
    return _finish(final, trajectory, diag, return_trajectory, return_diagnostics)


def _energy_reader(sampler, algo, state, carry, mk) -> Callable[[], torch.Tensor]:
    def read() -> torch.Tensor:
        energy = algo._carried_energy(carry)
        return energy if energy is not None else sampler._model_energy(state, mk)

    return read


@contextlib.contextmanager
def _whole_run_progress(sampler: BaseSampler, owner: str, n_steps: int) -> Iterator[None]:
    """Around a path that runs all ``n_steps`` in one go (chain op, CUDA graph): the progress
    bar advances once at the end, and every scheduler is left where the step loop would have
    left it (the run consumed ``n_steps`` scheduled values)."""
    bar = None
    if sampler.progress:
        bar = progress_bar(total=n_steps, desc=owner, enabled=True)
    yield
    for scheduler in sampler._subtree_schedulers():
        scheduler.advance(n_steps)
    if bar is not None:
        bar.update(n_steps)
        bar.close()


def _chain_diagnostics(
    sampler: BaseSampler, result: ChainResult, n_kept: int, thin: int, mk: dict
) -> Diagnostics:
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
        return sampler._model_energy(flat, mk).reshape(b, n_kept).T

    return Diagnostics(
        mean, var, energy, n_chains=b, acceptance_rate=acceptance, chain_energy=chain_energy
    )


def _finish(final, trajectory, diag, return_trajectory: bool, return_diagnostics: bool):
    out = trajectory if return_trajectory else final
    return (out, diag) if return_diagnostics else out


__all__ = [
    "ChainResult",
    "KernelModel",
    "MCMCAlgorithm",
    "StepContext",
    "kernel_model",
    "kernel_op",
    "run_sample",
    "scheduled_values",
]
