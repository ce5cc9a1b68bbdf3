r"""``EMA``: an exponential moving average of a model's weights (TorchEBM 0.8.9's
``torchebm.utils.EMA``).

After each :meth:`EMA.update`, every parameter of the averaged copy is

.. math:: \bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta

(``torch._foreach_lerp_`` over the parameters, one call per device and dtype), and every buffer
(BatchNorm statistics...) is copied from the live model. The state dict holds the averaged module
(``module.*``) and the update count (extra state ``{"step": n}``), the layout 0.8.9 saves.
"""

from __future__ import annotations

import copy
import contextlib
from typing import Callable, Iterator, Union

import torch
from torch import nn

from torchebm.utils.training import requires_grad

Schedule = Union[str, Callable[[int], float]]


class EMA(nn.Module):
    """Exponential moving average of ``model``'s parameters.

    Args:
        model: the module to average; deep-copied at construction (the copy is in eval mode
            and does not require grad).
        decay: :math:`d \\in [0, 1)`.
        decay_schedule: ``"constant"`` (``d`` at every update), ``"warmup"``
            (:math:`\\min(d, (1 + s) / (10 + s))` at update ``s``, so a young average follows the
            model closely) or a callable ``step -> d`` (values must lie in ``[0, 1]``).

    Attributes:
        module: the averaged copy (sample from it; ``ema(x)`` calls it).
        step: the number of updates so far.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, decay_schedule: Schedule = "constant"):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA: decay must be in [0, 1), got {decay!r}")
        if not (callable(decay_schedule) or decay_schedule in ("constant", "warmup")):
            raise ValueError(
                f"EMA: decay_schedule must be 'constant', 'warmup' or a callable step -> decay, "
                f"got {decay_schedule!r}"
            )
        self.decay = float(decay)
        self.decay_schedule = decay_schedule
        self.step = 0
        self.module = copy.deepcopy(model)
        self.module.eval()
        requires_grad(self.module, False)

    def current_decay(self) -> float:
        """The decay the next :meth:`update` applies."""
        if self.decay_schedule == "constant":
            return self.decay
        if self.decay_schedule == "warmup":
            return min(self.decay, (1 + self.step) / (10 + self.step))
        d = float(self.decay_schedule(self.step))
        if not 0.0 <= d <= 1.0:
            raise ValueError(f"EMA: decay_schedule({self.step}) = {d}, outside [0, 1]")
        return d

    def _pairs(self, model: nn.Module, what: str) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        mine = list(getattr(self.module, what)())
        theirs = list(getattr(model, what)())
        if len(mine) != len(theirs) or any(a.shape != b.shape for a, b in zip(mine, theirs)):
            raise ValueError(
                f"EMA: the model's {what} do not match the averaged copy's "
                f"({len(theirs)} against {len(mine)}, or shapes differ)"
            )
        return mine, theirs

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the average toward ``model`` (see the module docstring) and copy its buffers."""
        weight = 1.0 - self.current_decay()
        mine, theirs = self._pairs(model, "parameters")
        groups: dict = {}
        for a, b in zip(mine, theirs):
            dst, src = groups.setdefault((a.device, a.dtype), ([], []))
            dst.append(a)
            src.append(b.detach().to(device=a.device, dtype=a.dtype))
        for dst, src in groups.values():
            torch._foreach_lerp_(dst, src, weight)
        for a, b in zip(*self._pairs(model, "buffers")):
            a.copy_(b)
        self.step += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averaged parameters and buffers into ``model`` (same structure)."""
        for what in ("parameters", "buffers"):
            mine, theirs = self._pairs(model, what)
            for a, b in zip(mine, theirs):
                b.copy_(a)

    @contextlib.contextmanager
    def average_parameters(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block ``model`` holds the averaged weights; its own are restored on exit
        (exceptions included)."""
        saved = [t.detach().clone() for t in [*model.parameters(), *model.buffers()]]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for t, s in zip([*model.parameters(), *model.buffers()], saved):
                    t.copy_(s)

    def forward(self, *args, **kwargs):
        """Call the averaged module."""
        return self.module(*args, **kwargs)

    def get_extra_state(self) -> dict:
        return {"step": self.step}

    def set_extra_state(self, state: dict) -> None:
        self.step = int(state["step"])

    def __repr__(self) -> str:
        return (
            f"EMA(module={type(self.module).__name__}, decay={self.decay}, "
            f"decay_schedule={self.decay_schedule!r}, step={self.step})"
        )


__all__ = ["EMA"]
