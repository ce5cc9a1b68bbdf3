r"""The whole-chain ops' schedules, kept by a sampler from one ``sample()`` call to the next.

A chain op takes its per-step coefficients as ``float64 [n_steps]`` tensors (Langevin's
:math:`a_t = \eta_t` and :math:`b_t = \sigma_t \sqrt{2\eta_t}`, HMC's :math:`\epsilon_t`).
Built afresh at every call, they cost more host time than a short chain: a tensor per
scheduler, the checks of its values, the arithmetic of the derived coefficients, and on a GPU
an upload per schedule. They depend only on the schedulers' states and ``n_steps``, so
:class:`ScheduleCache` keeps them:

* a constant schedule is a stride-0 view ``expand(n_steps)`` of one value (the kernels read it
  as such), built once per value;
* a schedule of a built-in scheduler is kept under the scheduler's state
  (:func:`scheduler_state`), so calls that restart their schedules (``reset_schedulers=True``,
  the default) build it once;
* on a GPU, an op checks the values of a host schedule (in its compute dtype) and uploads it
  (through pinned memory, without waiting); once it has accepted a kept schedule twice for a
  state dtype and device (the schedule is in use across calls), later calls pass it a copy
  made once on that device (:meth:`ScheduleCache.on_device`), so a call neither uploads nor
  waits for the schedule.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable, Hashable, Optional

import torch

from torchebm.core.base_scheduler import (
    BaseScheduler,
    ConstantScheduler,
    CosineScheduler,
    ExponentialDecayScheduler,
    LinearScheduler,
    MultiStepScheduler,
    WarmupScheduler,
)

MAX_ENTRIES = 8
"""Schedules (or groups of derived schedules) a sampler keeps, least recently used dropped."""

MAX_KEPT_STEPS = 1 << 16
"""Longest non-constant schedule kept: a longer chain's host cost per step is negligible, and
this bounds the memory the kept schedules and their device copies take."""

# Schedulers whose values are a function of their attributes alone; a subclass may compute
# from anything, so only these exact types are kept by state.
_STATE_DETERMINED = (
    ConstantScheduler,
    CosineScheduler,
    ExponentialDecayScheduler,
    LinearScheduler,
    MultiStepScheduler,
    WarmupScheduler,
)


def _same_float(a: float, b: float) -> bool:
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def constant_value(scheduler: BaseScheduler) -> Optional[float]:
    """The value a :class:`~torchebm.core.ConstantScheduler` gives every step from now on
    (its current value equals its start value), else None."""
    if type(scheduler) is not ConstantScheduler:
        return None
    value, start = float(scheduler.current_value), float(scheduler.start_value)
    return value if _same_float(value, start) else None


def _frozen(value: Any) -> Optional[Hashable]:
    if type(value) is float:
        return value.hex()  # tells -0.0 from 0.0
    if type(value) in (int, bool):
        return value
    if isinstance(value, BaseScheduler):
        return scheduler_state(value)
    if type(value) in (list, tuple):
        parts = tuple(_frozen(v) for v in value)
        return None if any(p is None for p in parts) else parts
    return None


def scheduler_state(scheduler: BaseScheduler) -> Optional[Hashable]:
    """A hashable key that determines every value ``scheduler`` gives from now on, or None
    when none is known (a user-defined scheduler). A constant's key is its value alone (its
    step count does not matter); another built-in scheduler's is its type and attributes."""
    value = constant_value(scheduler)
    if value is not None:
        return ("constant", value.hex())
    if type(scheduler) not in _STATE_DETERMINED:
        return None
    items = []
    for name, attribute in scheduler.__dict__.items():
        frozen = _frozen(attribute)
        if frozen is None:
            return None
        items.append((name, frozen))
    return (type(scheduler), tuple(items))


def constant_steps(value: float, n_steps: int) -> torch.Tensor:
    """``float64 [n_steps]``, every entry ``value``: a stride-0 view of one element."""
    return torch.full((1,), value, dtype=torch.float64).expand(n_steps)


def is_constant(schedule: torch.Tensor) -> bool:
    """Whether ``schedule`` ``[n_steps]`` is a stride-0 view (:func:`constant_steps`)."""
    return schedule.dim() == 1 and schedule.stride(0) == 0


def pointwise(fn: Callable[..., torch.Tensor], *schedules: torch.Tensor) -> torch.Tensor:
    """``fn`` applied to schedules ``[n_steps]`` entry by entry; on the one value of each when
    all are constant (:func:`is_constant`), so the result is constant too."""
    if all(is_constant(s) for s in schedules):
        n_steps = schedules[0].shape[0]
        return fn(*(s[:1] for s in schedules)).expand(n_steps)
    return fn(*schedules)


class ScheduleCache:
    """A sampler's kept schedules: host tensors by key, and their copies on devices.

    A kept tensor is never written by the sampler; one written in place by a caller (its
    ``_version`` moved) is built again.
    """

    def __init__(self) -> None:
        self._entries: OrderedDict[Hashable, tuple[Any, tuple[int, ...]]] = OrderedDict()
        self._kept: dict[int, torch.Tensor] = {}  # id -> host tensor of an entry
        # (id, op, argument, dtype, device) -> (host tensor, its version, device copy or None)
        self._devices: OrderedDict[tuple, tuple[torch.Tensor, int, Optional[torch.Tensor]]]
        self._devices = OrderedDict()

    def get(self, key: Optional[Hashable], n_steps: int, build: Callable[[], Any]) -> Any:
        """``build()`` (a schedule tensor, or a dict of them), kept under ``key``; a None
        ``key`` (state unknown) or a schedule longer than :data:`MAX_KEPT_STEPS` that is not
        constant is built every time."""
        if key is None:
            return build()
        entry = self._entries.get(key)
        if entry is not None:
            value, versions = entry
            if tuple(t._version for t in _tensors(value)) == versions:
                self._entries.move_to_end(key)
                return value
            self._drop(key)
        value = build()
        tensors = _tensors(value)
        if n_steps > MAX_KEPT_STEPS and not all(is_constant(t) for t in tensors):
            return value
        self._entries[key] = (value, tuple(t._version for t in tensors))
        for t in tensors:
            self._kept[id(t)] = t
        while len(self._entries) > MAX_ENTRIES:
            self._drop(next(iter(self._entries)))
        return value

    def _drop(self, key: Hashable) -> None:
        value, _ = self._entries.pop(key)
        for t in _tensors(value):
            self._kept.pop(id(t), None)

    def on_device(
        self, op: str, name: str, schedule: torch.Tensor, x: torch.Tensor
    ) -> torch.Tensor:
        """The copy on ``x``'s device of the kept host ``schedule`` that ``op`` accepted as its
        argument ``name`` for states of ``x``'s dtype (:meth:`accepted`), else ``schedule``."""
        key = (id(schedule), op, name, x.dtype, x.device)
        found = self._devices.get(key)
        if found is None or found[0] is not schedule or found[1] != schedule._version:
            return schedule
        self._devices.move_to_end(key)
        return found[2] if found[2] is not None else schedule

    def accepted(self, op: str, schedules: dict[str, torch.Tensor], x: torch.Tensor) -> None:
        """``op`` ran with these host ``schedules`` (so their values passed its checks for
        states of ``x``'s dtype). A kept one it accepts a second time is in use across calls:
        it gets its copy on ``x``'s device (a constant's copy is its one value, expanded),
        uploaded through pinned memory without waiting; one used once (a schedule continued
        from call to call has a new state each time) is not copied."""
        for name, schedule in schedules.items():
            if self._kept.get(id(schedule)) is not schedule:
                continue
            key = (id(schedule), op, name, x.dtype, x.device)
            found = self._devices.get(key)
            copy = None
            if found is not None and found[0] is schedule and found[1] == schedule._version:
                source = schedule[:1] if is_constant(schedule) else schedule
                copy = _copied_to(source, x.device).expand(schedule.shape)
            self._devices[key] = (schedule, schedule._version, copy)
            self._devices.move_to_end(key)
        while len(self._devices) > 2 * MAX_ENTRIES:
            self._devices.pop(next(iter(self._devices)))


def _copied_to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device, copy=True)


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    return [v for v in value.values() if isinstance(v, torch.Tensor)]


__all__ = [
    "MAX_ENTRIES",
    "MAX_KEPT_STEPS",
    "ScheduleCache",
    "constant_steps",
    "constant_value",
    "is_constant",
    "pointwise",
    "scheduler_state",
]
