"""``BaseContrastiveDivergence``: the machinery of contrastive divergence that does not depend
on the loss formula.

It holds the model and the sampler (both submodules, so ``loss.parameters()`` includes the
model's and ``loss.to()`` moves everything), the number of MCMC steps, and the replay buffer of
persistent CD (module buffers ``replay_buffer`` ``[N, *event]`` and ``buffer_ptr``; the update
rules are in :mod:`torchebm.losses.replay_buffer`).
"""

from __future__ import annotations

import contextlib
import inspect
import warnings
from typing import Any, Dict, Optional, Sequence
from abc import abstractmethod

import torch
from torch import nn

from torchebm.core.argument_checks import count, real_number
from torchebm.core.base_loss import BaseLoss
from torchebm.core.base_module import DeviceLike
from torchebm.core.schedulable import Schedulable
from torchebm.losses.replay_buffer import (
    BufferInit,
    check_buffer_init,
    draw_indices,
    fifo_write,
    fresh_states,
    mix_across_ranks,
    reinitialise,
)

__all__ = ["BaseContrastiveDivergence"]


class BaseContrastiveDivergence(BaseLoss):
    """Contrastive divergence without the loss formula: model, sampler, start points, buffer.

    One step of CD-k: start ``k`` MCMC steps of ``sampler`` at the data (``persistent=False``)
    or at states drawn from the replay buffer (``persistent=True``, PCD), call the result the
    negative samples ``x-``, and store them back in the buffer. The subclass turns ``(x+, x-)``
    into a loss (:meth:`compute_loss`).

    Args:
        model: the energy model being trained (``energy_function=`` is the old name). Defaults
            to ``sampler.model``.
        sampler: the MCMC sampler that draws the negatives; its ``sample(x=..., n_steps=...)``
            is called once per loss call.
        k_steps: MCMC steps per loss call (``k=`` is the old name).
        persistent: keep the chains between calls in a replay buffer.
        buffer_size: number of stored chains ``N``.
        new_sample_ratio: reinitialisation probability ``rho``: each drawn start point is
            replaced by a fresh draw from ``buffer_init`` with this probability.
        init_steps: MCMC steps run over the whole buffer when it is created (in chunks of
            ``buffer_chunk_size``), so the first steps do not start from pure noise; its cost
            and progress bar: :meth:`initialize_buffer`.
        dtype, device, cfg_dropout, null_condition, check_conditioning: see :class:`BaseLoss`.
        buffer_init: initial distribution ``p_0`` of the buffer and of reinitialised rows:
            ``"normal"`` (``N(0, s^2 I)``), ``"uniform"`` (``U[-s, s]``) or a callable
            ``(n, generator) -> Tensor[n, *event]``.
        buffer_init_scale: ``s`` above.

    Raises:
        TypeError: no sampler, ``k`` together with ``k_steps``, ``energy_function`` together with
            ``model``, or an unexpected keyword argument.
        ValueError: a negative ``k_steps``/``init_steps``, ``buffer_size < 1`` for a persistent
            loss, ``new_sample_ratio`` outside ``[0, 1]``, a bad ``buffer_init``.
    """

    def __init__(
        self,
        model: Optional[nn.Module] = None,
        sampler: Optional[nn.Module] = None,
        k_steps: int = 1,
        persistent: bool = False,
        buffer_size: int = 100,
        new_sample_ratio: float = 0.0,
        init_steps: int = 0,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
        *,
        energy_function: Optional[nn.Module] = None,
        k: Optional[int] = None,
        buffer_init: BufferInit = "normal",
        buffer_init_scale: float = 1.0,
        **kwargs: Any,
    ):
        owner = type(self).__name__
        super().__init__(dtype=dtype, device=device, **kwargs)
        if energy_function is not None:
            if model is not None:
                raise TypeError(f"{owner}: pass model= or its old name energy_function=, not both")
            model = energy_function
        if k is not None:
            # A k_steps equal to its default cannot be told from one not given: only a
            # different value counts as a conflict.
            if k_steps != type(self)._default_k_steps():
                raise TypeError(f"{owner}: pass k_steps= or its old name k=, not both")
            k_steps = k
        if sampler is None:
            raise TypeError(f"{owner}: sampler is required (the MCMC sampler drawing the negatives)")
        if model is None:
            model = getattr(sampler, "model", None)
            if model is None:
                raise TypeError(f"{owner}: no model given and the sampler has no .model")
        elif all(getattr(sampler, "model", model) is not m for m in (model, getattr(model, "module", None))):
            # (A DistributedDataParallel model's sampler evaluates the wrapped module itself.)
            warnings.warn(
                f"{owner}: sampler.model ({type(sampler.model).__name__}) is not the model being "
                f"trained ({type(model).__name__}); the negatives come from sampler.model",
                UserWarning,
                stacklevel=3,
            )
        self.model = model
        self.sampler = sampler
        self.k_steps = count(owner, "k_steps", k_steps, minimum=0)
        self.persistent = bool(persistent)
        self.buffer_size = count(owner, "buffer_size", buffer_size, minimum=1 if self.persistent else 0)
        self.new_sample_ratio = real_number(owner, "new_sample_ratio", new_sample_ratio)
        if not 0.0 <= self.new_sample_ratio <= 1.0:
            raise ValueError(f"{owner}: new_sample_ratio must be in [0, 1], got {self.new_sample_ratio}")
        self.init_steps = count(owner, "init_steps", init_steps, minimum=0)
        self.buffer_init = check_buffer_init(buffer_init)
        self.buffer_init_scale = real_number(owner, "buffer_init_scale", buffer_init_scale, positive=True)
        self.register_buffer("replay_buffer", None)
        self.register_buffer("buffer_ptr", torch.zeros((), dtype=torch.long, device=self._torchebm_probe.device))
        self._sampler_keywords: Optional[frozenset] = None

    @classmethod
    def _default_k_steps(cls) -> int:
        return inspect.signature(cls.__init__).parameters["k_steps"].default

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, sampler={self.sampler!r})"

    @property
    def buffer_initialized(self) -> bool:
        """Whether the replay buffer exists (it is created on the first persistent call)."""
        return self.replay_buffer is not None

    @abstractmethod
    def compute_loss(self, x: torch.Tensor, pred_x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The scalar loss of data ``x`` [B, *event] against negatives ``pred_x`` [B, *event]."""

    # The replay buffer ----------------------------------------------------------------------

    def initialize_buffer(
        self,
        data_shape_no_batch: Sequence[int],
        buffer_chunk_size: int = 1024,
        init_noise_scale: Optional[float] = None,
        generator: Optional[torch.Generator] = None,
        *,
        device: DeviceLike = None,
        dtype: Optional[torch.dtype] = None,
    ) -> Optional[torch.Tensor]:
        """Create the replay buffer ``[buffer_size, *data_shape_no_batch]`` and return it.

        Rows are drawn from ``buffer_init`` (scale ``init_noise_scale``, default
        ``buffer_init_scale``) on ``device``/``dtype`` (default: the loss's), then, if
        ``init_steps > 0``, moved by ``init_steps`` MCMC steps in chunks of ``buffer_chunk_size``
        rows. This warm-up does not consume the sampler's schedules: their state is restored
        afterwards. It costs ``init_steps`` sampler steps on every buffer row (with Langevin
        dynamics, ``init_steps`` gradient evaluations per row: ``buffer_size * init_steps`` in
        all, as much sampling as ``init_steps / k_steps`` training iterations at batch size
        ``buffer_size``), and shows a progress bar over each chunk's steps (a built-in sampler's
        bar, labelled with the rows; silenced by ``TORCHEBM_PROGRESS=0``). Returns None, doing nothing, when the loss is not persistent or the buffer
        already exists.
        """
        if not self.persistent or self.replay_buffer is not None:
            return None
        owner = type(self).__name__
        chunk = count(owner, "buffer_chunk_size", buffer_chunk_size, minimum=1)
        scale = self.buffer_init_scale if init_noise_scale is None else real_number(
            owner, "init_noise_scale", init_noise_scale, positive=True
        )
        device = torch.device(device) if device is not None else self._torchebm_probe.device
        dtype = dtype if dtype is not None else self.dtype
        buffer = fresh_states(
            self.buffer_init, self.buffer_size, tuple(data_shape_no_batch),
            scale=scale, generator=generator, device=device, dtype=dtype,
        )
        if self.init_steps > 0:
            saved = _scheduler_states(self.sampler)
            try:
                for lo in range(0, self.buffer_size, chunk):
                    hi = min(lo + chunk, self.buffer_size)
                    desc = f"{owner} buffer warm-up, chains {lo}-{hi - 1} of {self.buffer_size}"
                    with _progress_shown(self.sampler, desc):
                        buffer[lo:hi] = self._run_sampler(buffer[lo:hi], self.init_steps, {}, generator)
            finally:
                _restore_scheduler_states(saved)
        self.replay_buffer = buffer
        self.buffer_ptr = torch.zeros((), dtype=torch.long, device=device)
        return buffer

    def get_start_points(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Where this call's chains start, ``[B, *event]``, detached.

        CD: the data ``x`` itself. PCD: ``B`` distinct rows of the replay buffer (created on the
        first call, on ``x``'s device and dtype), each replaced with probability
        ``new_sample_ratio`` by a fresh draw from ``buffer_init`` (see
        :mod:`torchebm.losses.replay_buffer`). A buffer smaller than the batch is sampled with
        replacement, with a warning.
        """
        if not self.persistent:
            return x.detach()
        self._buffer_for(x, generator)
        n = x.shape[0]
        if n > self.buffer_size:
            warnings.warn(
                f"Buffer size ({self.buffer_size}) is smaller than batch size ({n}). "
                "Sampling with replacement.",
                UserWarning,
                stacklevel=2,
            )
        idx = draw_indices(self.buffer_size, n, generator=generator, device=x.device)
        start = self.replay_buffer[idx].to(x.dtype)
        if self.new_sample_ratio > 0:
            fresh = fresh_states(
                self.buffer_init, n, x.shape[1:], scale=self.buffer_init_scale,
                generator=generator, device=x.device, dtype=x.dtype,
            )
            start = reinitialise(start, fresh, self.new_sample_ratio, generator)
        return start

    def update_buffer(self, samples: torch.Tensor) -> None:
        """Write ``samples`` [B, *event] into the buffer, first in first out (see
        :func:`torchebm.losses.replay_buffer.fifo_write`). No-op for a non-persistent loss."""
        if not self.persistent:
            return
        if self.replay_buffer is None:
            raise RuntimeError(
                f"{type(self).__name__}.update_buffer: the replay buffer does not exist yet; call "
                "initialize_buffer() or get_start_points() first"
            )
        fifo_write(self.replay_buffer, self.buffer_ptr, samples.to(self.replay_buffer.device))

    def mix_buffer_across_ranks(
        self,
        process_group: Optional["torch.distributed.ProcessGroup"] = None,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        """Re-deal the replay-buffer chains of all ranks at random (opt-in; a collective that
        every rank calls together, outside ``forward``). Buffers are rank-local otherwise. See
        :func:`torchebm.losses.replay_buffer.mix_across_ranks`; ``generator`` (CPU) is read on
        rank 0 only. Does nothing in a single process.

        Raises:
            RuntimeError: the loss is not persistent or its buffer does not exist yet.
        """
        if not self.persistent or self.replay_buffer is None:
            raise RuntimeError(
                f"{type(self).__name__}.mix_buffer_across_ranks needs a persistent loss "
                f"(persistent={self.persistent}) whose replay buffer exists (run one step or "
                "call initialize_buffer() first)"
            )
        mix_across_ranks(self.replay_buffer, generator=generator, group=process_group)

    def _buffer_for(self, x: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
        """The buffer, created for ``x``'s event shape on first use and kept on ``x``'s device."""
        if self.replay_buffer is None:
            self.initialize_buffer(x.shape[1:], generator=generator, device=x.device, dtype=x.dtype)
        elif self.replay_buffer.shape[1:] != x.shape[1:]:
            raise ValueError(
                f"{type(self).__name__}: the replay buffer holds states of shape "
                f"{tuple(self.replay_buffer.shape[1:])} but the data batch has rows of shape "
                f"{tuple(x.shape[1:])}"
            )
        elif self.replay_buffer.device != x.device:
            # Follow the data: a one-time copy when training moves devices, never per step.
            self.replay_buffer = self.replay_buffer.to(x.device)
            self.buffer_ptr = self.buffer_ptr.to(x.device)
        return self.replay_buffer

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # A fresh loss has no buffer yet (None is skipped by nn.Module's loader): give it one of
        # the saved shape so the checkpoint's chains are restored rather than reported unexpected.
        key = prefix + "replay_buffer"
        saved = state_dict.get(key)
        if isinstance(saved, torch.Tensor):
            if saved.shape[0] != self.buffer_size:
                error_msgs.append(
                    f"{key}: the checkpoint holds {saved.shape[0]} chains but buffer_size is "
                    f"{self.buffer_size}"
                )
                return
            if self.replay_buffer is None or self.replay_buffer.shape != saved.shape:
                device = self._torchebm_probe.device if self.replay_buffer is None else self.replay_buffer.device
                self.replay_buffer = torch.empty(saved.shape, dtype=saved.dtype, device=device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    # The sampler ----------------------------------------------------------------------------

    def _run_sampler(
        self,
        start: torch.Tensor,
        n_steps: int,
        model_kwargs: Dict[str, Any],
        generator: Optional[torch.Generator],
    ) -> torch.Tensor:
        """``n_steps`` MCMC steps from ``start``; returns the detached end states.

        The sampler's schedules continue from where the previous call left them
        (``reset_schedulers=False``): a schedule over the training run is not restarted at
        every batch. A sampler whose ``sample`` lacks some keyword (a user's own sampler) is
        called without it, unless a value for it was actually given.
        """
        options = {"reset_schedulers": False, "generator": generator, "model_kwargs": model_kwargs or None}
        accepted = self._accepted_sampler_keywords()
        call = {"x": start, "n_steps": n_steps}
        for name, value in options.items():
            if accepted is None or name in accepted:
                call[name] = value
            elif name != "reset_schedulers" and value is not None:
                raise TypeError(
                    f"{type(self).__name__}: {type(self.sampler).__name__}.sample() does not accept "
                    f"{name}=, which this call needs"
                )
        negatives = self.sampler.sample(**call)
        if not isinstance(negatives, torch.Tensor) or negatives.shape != start.shape:
            got = tuple(negatives.shape) if isinstance(negatives, torch.Tensor) else type(negatives).__name__
            raise ValueError(
                f"{type(self).__name__}: {type(self.sampler).__name__}.sample() returned {got}, "
                f"expected a tensor of the start points' shape {tuple(start.shape)}"
            )
        return negatives.detach()

    def _accepted_sampler_keywords(self) -> Optional[frozenset]:
        """Keyword names ``sampler.sample`` accepts; None when it takes ``**kwargs``."""
        if self._sampler_keywords is None:
            params = inspect.signature(self.sampler.sample).parameters.values()
            if any(p.kind is p.VAR_KEYWORD for p in params):
                self._sampler_keywords = frozenset({"*"})
            else:
                self._sampler_keywords = frozenset(p.name for p in params)
        return None if "*" in self._sampler_keywords else self._sampler_keywords

    def _bind_model(self, model: nn.Module) -> None:
        """Make ``model`` both the trained model and the sampler's target (seed convention
        ``loss_fn(model, data)``); the binding persists after the call."""
        if model is self.model and getattr(self.sampler, "model", None) is model:
            return
        self.model = model
        self.sampler.model = model
        self._conditioning_checked = False


@contextlib.contextmanager
def _progress_shown(sampler: nn.Module, desc: str):
    """Within the block, a sampler with a ``progress`` switch (the built-in samplers) shows its
    per-step progress bar labelled ``desc``; its own setting is restored afterwards."""
    if not hasattr(sampler, "progress"):
        yield
        return
    before = (sampler.progress, sampler.__dict__.get("progress_desc"))
    sampler.progress, sampler.__dict__["progress_desc"] = True, desc
    try:
        yield
    finally:
        sampler.progress = before[0]
        if before[1] is None:
            sampler.__dict__.pop("progress_desc", None)
        else:
            sampler.__dict__["progress_desc"] = before[1]


def _scheduler_states(module: nn.Module) -> list:
    """Snapshot of every scheduler in ``module``'s subtree: [(scheduler, state_dict)]."""
    return [
        (sched, sched.state_dict())
        for sub in module.modules()
        if isinstance(sub, Schedulable)
        for sched in sub.get_schedulers().values()
    ]


def _restore_scheduler_states(saved: list) -> None:
    for sched, state in saved:
        sched.load_state_dict(state)
