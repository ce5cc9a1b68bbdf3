"""``Schedulable``: a module whose hyper-parameters are read from schedulers.

Samplers and losses derive from it. Each scheduled hyper-parameter is registered under a
name, read with :meth:`Schedulable.get_scheduled_value` before a step and advanced with
:meth:`Schedulable.step_schedulers` after it. Stepping and resetting cover the whole module
subtree, so a loss steps its sampler's schedules (and a schedulable model's) too.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from torchebm.core.base_module import TorchEBMModule
from torchebm.core.base_scheduler import BaseScheduler, ConstantScheduler


class Schedulable(TorchEBMModule):
    """``TorchEBMModule`` holding ``schedulers: dict[str, BaseScheduler]``."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.schedulers: dict[str, BaseScheduler] = {}

    def register_scheduler(self, name: str, scheduler: BaseScheduler) -> None:
        """Schedule the hyper-parameter ``name`` with ``scheduler`` (replacing any previous one)."""
        if not isinstance(scheduler, BaseScheduler):
            raise TypeError(
                f"{type(self).__name__}: the scheduler for {name!r} must be a BaseScheduler, "
                f"got {type(scheduler).__name__}"
            )
        self.schedulers[name] = scheduler

    def _register_param(self, name: str, value: Any, *, positive: bool = False) -> None:
        """Register ``value`` for ``name``: a scheduler as given, a number as a
        ``ConstantScheduler``.

        ``positive`` rejects a number ``<= 0``; a scheduler's values are not checked, so a
        scheduled 0 (say, ``noise_scale=ConstantScheduler(0.0)`` for plain descent) is allowed.
        """
        if isinstance(value, BaseScheduler):
            self.register_scheduler(name, value)
            return
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(
                f"{name} must be a float or a BaseScheduler, got {value!r} "
                f"({type(value).__name__})"
            )
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        if positive and value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
        self.register_scheduler(name, ConstantScheduler(float(value)))

    def get_scheduled_value(self, name: str) -> float:
        """Current value of the hyper-parameter ``name``."""
        try:
            scheduler = self.schedulers[name]
        except KeyError:
            raise KeyError(f"No scheduler registered for parameter '{name}'") from None
        return scheduler.get_value()

    def get_schedulers(self) -> dict[str, BaseScheduler]:
        """This module's own schedulers (not its submodules'), by name."""
        return self.schedulers

    def _subtree_schedulers(self) -> list[BaseScheduler]:
        # Every scheduler in the subtree, once each, even when shared between modules (say a
        # loss and its sampler): one step of the chain must advance a schedule by one step.
        found: dict[int, BaseScheduler] = {}
        for module in self.modules():
            if isinstance(module, Schedulable):
                for scheduler in module.schedulers.values():
                    found.setdefault(id(scheduler), scheduler)
        return list(found.values())

    def step_schedulers(self) -> None:
        """Advance every scheduler in this module's subtree by one step."""
        for scheduler in self._subtree_schedulers():
            scheduler.step()

    def reset_schedulers(self) -> None:
        """Reset every scheduler in this module's subtree to its start."""
        for scheduler in self._subtree_schedulers():
            scheduler.reset()
