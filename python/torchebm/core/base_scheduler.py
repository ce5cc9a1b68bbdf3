r"""Schedules for sampler and loss hyper-parameters (step size, noise scale, ...).

A scheduler is a deterministic function of its step count ``t``: it starts at
``v(0) = start_value``, and ``step()`` advances ``t`` by one and returns ``v(t)``. A sampler
reads ``get_value()`` before each MCMC step and calls ``step()`` after it, so the value used
at step ``i`` of a chain is ``v(i)``. :meth:`BaseScheduler.values` lists those values for the
next ``n`` steps without advancing the scheduler, which is how a whole schedule becomes a
per-step coefficient tensor for a whole-chain kernel.

Schedulers are plain Python objects (not ``nn.Module``\ s); ``state_dict()`` holds their
attributes, which carry the constructor parameters' names.

Old keyword names (TorchEBM before May 2025) are accepted as aliases: ``initial_value`` for
``start_value``, ``final_value`` for ``end_value``, ``total_steps`` for ``n_steps``.
"""

from __future__ import annotations

import copy
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Optional

import torch

from torchebm.core.argument_checks import count, real_number


def _renamed(owner: str, name: str, value: Any, old_name: str, old_value: Any) -> Any:
    """The value of a parameter that may be passed under its current or its old name."""
    if old_value is None:
        if value is None:
            raise TypeError(f"{owner}() missing required argument '{name}'")
        return value
    if value is not None:
        raise TypeError(
            f"{owner}() got both '{name}' and its old name '{old_name}'; pass only '{name}'"
        )
    return old_value


class BaseScheduler(ABC):
    """A parameter schedule ``v(t)``; subclasses implement :meth:`_compute_value`.

    Args:
        start_value: ``v(0)``, a float or int (old name: ``initial_value``).

    Attributes:
        start_value: ``v(0)`` as a float.
        current_value: ``v(step_count)``.
        step_count: steps taken since construction or the last :meth:`reset`.
    """

    def __init__(
        self, start_value: Optional[float] = None, *, initial_value: Optional[float] = None
    ):
        owner = type(self).__name__
        start_value = _renamed(owner, "start_value", start_value, "initial_value", initial_value)
        self.start_value = real_number(owner, "start_value", start_value)
        self.current_value = self.start_value
        self.step_count = 0

    @abstractmethod
    def _compute_value(self) -> float:
        """``v(self.step_count)``; called by :meth:`step` after the count is incremented."""

    def step(self) -> float:
        """Advance ``t`` by one; return (and store as ``current_value``) the new ``v(t)``."""
        self.step_count += 1
        self.current_value = self._compute_value()
        return self.current_value

    def get_value(self) -> float:
        """``v(step_count)``, without side effects."""
        return self.current_value

    def reset(self) -> None:
        """Back to ``t = 0``, ``v = start_value``."""
        self.current_value = self.start_value
        self.step_count = 0

    def values(self, n_steps: int) -> list[float]:
        """The values the next ``n_steps`` steps will use, ``[v(t), v(t+1), ..., v(t+n-1)]``
        with ``t = step_count``, without changing this scheduler.

        Computed by stepping a deep copy, so it agrees with :meth:`step` for any subclass,
        including ones that keep extra state.
        """
        n_steps = count(type(self).__name__, "n_steps", n_steps, minimum=0)
        if n_steps == 0:
            return []
        probe = copy.deepcopy(self)
        out = [float(probe.get_value())]
        for _ in range(n_steps - 1):
            probe.step()
            out.append(float(probe.get_value()))
        return out

    def values_tensor(self, n_steps: int) -> torch.Tensor:
        """:meth:`values` as a ``float64`` CPU tensor ``[n_steps]`` (the whole-chain ops' form)."""
        return torch.tensor(self.values(n_steps), dtype=torch.float64)

    def advance(self, n_steps: int) -> None:
        """Take ``n_steps`` steps at once: the state ``n_steps`` calls of :meth:`step` leave
        (the whole-chain paths call this once per run)."""
        n_steps = count(type(self).__name__, "n_steps", n_steps, minimum=0)
        for _ in range(n_steps):
            self.step()

    def state_dict(self) -> dict[str, Any]:
        """A copy of the attributes (constructor parameters plus ``current_value`` and
        ``step_count``); deep, so a nested scheduler is not shared with the copy."""
        return copy.deepcopy(self.__dict__)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the attributes saved by :meth:`state_dict`."""
        self.__dict__.update(copy.deepcopy(state_dict))

    @property
    def initial_value(self) -> float:
        """Old name of ``start_value``."""
        return self.start_value

    def __repr__(self) -> str:
        names = inspect.signature(type(self).__init__).parameters
        shown = ", ".join(f"{n}={self.__dict__[n]!r}" for n in names if n in self.__dict__)
        return f"{type(self).__name__}({shown})"


class ConstantScheduler(BaseScheduler):
    """``v(t) = start_value``."""

    def _compute_value(self) -> float:
        return self.start_value

    # Closed forms of the base class's step-by-step versions: a whole-chain run of n steps
    # costs O(1) Python calls, not O(n).
    def values(self, n_steps: int) -> list[float]:
        return self.values_tensor(n_steps).tolist()

    def values_tensor(self, n_steps: int) -> torch.Tensor:
        n_steps = count(type(self).__name__, "n_steps", n_steps, minimum=0)
        out = torch.full((n_steps,), float(self.start_value), dtype=torch.float64)
        if n_steps > 0:
            out[0] = float(self.current_value)
        return out

    def advance(self, n_steps: int) -> None:
        n_steps = count(type(self).__name__, "n_steps", n_steps, minimum=0)
        if n_steps > 0:
            self.step_count += n_steps
            self.current_value = self._compute_value()


class ExponentialDecayScheduler(BaseScheduler):
    r"""``v(t) = max(min_value, start_value · decay_rate^t)``.

    Args:
        start_value: ``v(0)`` (old name: ``initial_value``).
        decay_rate: in ``(0, 1]``.
        min_value: floor, ``>= 0``.
    """

    def __init__(
        self,
        start_value: Optional[float] = None,
        decay_rate: Optional[float] = None,
        min_value: float = 0.0,
        *,
        initial_value: Optional[float] = None,
    ):
        super().__init__(start_value, initial_value=initial_value)
        owner = type(self).__name__
        if decay_rate is None:
            raise TypeError(f"{owner}() missing required argument 'decay_rate'")
        self.decay_rate = real_number(owner, "decay_rate", decay_rate)
        if not 0.0 < self.decay_rate <= 1.0:
            raise ValueError(f"{owner}: decay_rate must be in (0, 1], got {self.decay_rate}")
        self.min_value = real_number(owner, "min_value", min_value, non_negative=True)

    def _compute_value(self) -> float:
        return max(self.min_value, self.start_value * self.decay_rate**self.step_count)


class _AnnealingScheduler(BaseScheduler):
    """Shared constructor of the schedules that go from ``start_value`` to ``end_value`` in
    ``n_steps`` steps and then stay at ``end_value``."""

    def __init__(
        self,
        start_value: Optional[float] = None,
        end_value: Optional[float] = None,
        n_steps: Optional[int] = None,
        *,
        initial_value: Optional[float] = None,
        final_value: Optional[float] = None,
        total_steps: Optional[int] = None,
    ):
        super().__init__(start_value, initial_value=initial_value)
        owner = type(self).__name__
        end_value = _renamed(owner, "end_value", end_value, "final_value", final_value)
        n_steps = _renamed(owner, "n_steps", n_steps, "total_steps", total_steps)
        self.end_value = real_number(owner, "end_value", end_value)
        self.n_steps = count(owner, "n_steps", n_steps, minimum=1)

    @property
    def final_value(self) -> float:
        """Old name of ``end_value``."""
        return self.end_value

    @property
    def total_steps(self) -> int:
        """Old name of ``n_steps``."""
        return self.n_steps


class LinearScheduler(_AnnealingScheduler):
    r"""``v(t) = start + step_size · t`` for ``t < n_steps``, then ``end_value``, where
    ``step_size = (end_value - start_value) / n_steps``.

    Args:
        start_value: ``v(0)`` (old name: ``initial_value``).
        end_value: value from step ``n_steps`` on (old name: ``final_value``).
        n_steps: length of the ramp, ``>= 1`` (old name: ``total_steps``).
    """

    def __init__(
        self,
        start_value: Optional[float] = None,
        end_value: Optional[float] = None,
        n_steps: Optional[int] = None,
        *,
        initial_value: Optional[float] = None,
        final_value: Optional[float] = None,
        total_steps: Optional[int] = None,
    ):
        super().__init__(
            start_value,
            end_value,
            n_steps,
            initial_value=initial_value,
            final_value=final_value,
            total_steps=total_steps,
        )
        self.step_size = (self.end_value - self.start_value) / self.n_steps

    def _compute_value(self) -> float:
        if self.step_count >= self.n_steps:
            return self.end_value
        return self.start_value + self.step_size * self.step_count


class CosineScheduler(_AnnealingScheduler):
    r"""Cosine annealing: for ``t < n_steps``

    .. math:: v(t) = v_{end} + (v_{start} - v_{end}) \cdot \tfrac12 \big(1 + \cos(\pi t / n)\big),

    then ``end_value``.

    Args:
        start_value: ``v(0)`` (old name: ``initial_value``).
        end_value: value from step ``n_steps`` on (old name: ``final_value``).
        n_steps: length of the ramp, ``>= 1`` (old name: ``total_steps``).
    """

    def _compute_value(self) -> float:
        if self.step_count >= self.n_steps:
            return self.end_value
        weight = 0.5 * (1.0 + math.cos(math.pi * self.step_count / self.n_steps))
        return self.end_value + (self.start_value - self.end_value) * weight


class MultiStepScheduler(BaseScheduler):
    r"""Step decay: ``v(t) = start_value · gamma^k`` with ``k`` the number of milestones ``<= t``.

    Args:
        start_value: ``v(0)`` (old name: ``initial_value``).
        milestones: positive, strictly increasing step counts.
        gamma: factor applied at each milestone.
    """

    def __init__(
        self,
        start_value: Optional[float] = None,
        milestones: Optional[Sequence[int]] = None,
        gamma: float = 0.1,
        *,
        initial_value: Optional[float] = None,
    ):
        super().__init__(start_value, initial_value=initial_value)
        owner = type(self).__name__
        if milestones is None:
            raise TypeError(f"{owner}() missing required argument 'milestones'")
        milestones = [
            count(owner, f"milestones[{i}]", m, minimum=1) for i, m in enumerate(milestones)
        ]
        if any(a >= b for a, b in zip(milestones, milestones[1:])):
            raise ValueError(f"{owner}: milestones must be strictly increasing, got {milestones}")
        self.milestones = milestones
        self.gamma = real_number(owner, "gamma", gamma)

    def _compute_value(self) -> float:
        passed = sum(1 for m in self.milestones if m <= self.step_count)
        return self.start_value * self.gamma**passed


class WarmupScheduler(BaseScheduler):
    r"""Linear warm-up into another schedule.

    With ``W = warmup_steps``, ``target = main_scheduler.start_value`` and
    ``start = warmup_init_factor · target``:

    .. math::
        v(t) = \begin{cases}
            start + \frac{t}{W} (target - start) & t \le W \\
            v_{main}(t - W) & t > W
        \end{cases}

    The main scheduler is reset on construction and stepped in lockstep once the warm-up is
    over; :meth:`reset` resets both.

    Args:
        main_scheduler: the schedule that follows the warm-up.
        warmup_steps: ``W >= 0``.
        warmup_init_factor: ``v(0) / target``.
    """

    def __init__(
        self,
        main_scheduler: BaseScheduler,
        warmup_steps: int,
        warmup_init_factor: float = 0.01,
    ):
        owner = type(self).__name__
        if not isinstance(main_scheduler, BaseScheduler):
            raise TypeError(
                f"{owner}: main_scheduler must be a BaseScheduler, got "
                f"{type(main_scheduler).__name__}"
            )
        factor = real_number(owner, "warmup_init_factor", warmup_init_factor)
        super().__init__(main_scheduler.start_value * factor)
        self.main_scheduler = main_scheduler
        self.warmup_steps = count(owner, "warmup_steps", warmup_steps, minimum=0)
        self.warmup_init_factor = factor
        self.target_value = main_scheduler.start_value
        main_scheduler.reset()

    def _compute_value(self) -> float:
        if self.step_count > self.warmup_steps:
            return self.main_scheduler.current_value
        progress = self.step_count / self.warmup_steps if self.warmup_steps else 0.0
        return self.start_value + progress * (self.target_value - self.start_value)

    def step(self) -> float:
        """Advance by one; past the warm-up the main scheduler advances too."""
        if self.step_count >= self.warmup_steps:
            self.main_scheduler.step()
        return super().step()

    def reset(self) -> None:
        """Reset the warm-up and the main scheduler."""
        super().reset()
        self.main_scheduler.reset()
