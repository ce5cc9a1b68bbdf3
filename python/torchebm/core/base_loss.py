"""``BaseLoss``, the base class of the training losses.

``BaseLoss`` holds what every loss shares: the conditioning arguments (``y=`` /
``model_kwargs=``, classifier-free-guidance dropout) and the strict constructor (a leftover
keyword argument is a ``TypeError``, never silently ignored).

``BaseContrastiveDivergence`` and ``BaseScoreMatching`` live next to the losses
(:mod:`torchebm.losses.base_contrastive_divergence`, :mod:`torchebm.losses.base_score_matching`);
TorchEBM 0.8.9's import paths, ``from torchebm.core.base_loss import BaseContrastiveDivergence``
and ``... import BaseScoreMatching``, still work.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, Dict, Optional

import torch
from torch import nn

from torchebm.core.argument_checks import real_number
from torchebm.core.base_module import DeviceLike, TorchEBMModule
from torchebm.core.schedulable import Schedulable

__all__ = ["BaseLoss", "TorchEBMDeprecationWarning", "reject_leftovers"]


def __getattr__(name: str) -> Any:
    # TorchEBM 0.8.9's import paths of the losses' bases, resolved on first use: nothing in
    # core depends on the losses.
    if name == "BaseContrastiveDivergence":
        from torchebm.losses.base_contrastive_divergence import BaseContrastiveDivergence

        return BaseContrastiveDivergence
    if name == "BaseScoreMatching":
        from torchebm.losses.base_score_matching import BaseScoreMatching

        return BaseScoreMatching
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class TorchEBMDeprecationWarning(DeprecationWarning):
    """A torchebm spelling that still works but will be removed; shown by default."""


def reject_leftovers(cls: type, kwargs: Dict[str, Any]) -> None:
    """Raise ``TypeError`` naming the leftover keywords and every parameter ``cls`` accepts."""
    if not kwargs:
        return
    supported: list = []
    for klass in cls.__mro__:
        if klass is TorchEBMModule:
            break
        if "__init__" in vars(klass):
            for p in inspect.signature(klass.__init__).parameters.values():
                if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in supported:
                    supported.append(p.name)
    names = ", ".join(repr(k) for k in kwargs)
    raise TypeError(
        f"{cls.__name__}.__init__() got unexpected keyword argument(s) {names}. "
        f"Supported parameters: {', '.join(supported)}."
    )


class BaseLoss(Schedulable, ABC):
    """Abstract training loss: an ``nn.Module`` whose ``forward`` returns a scalar loss.

    Args:
        dtype: dtype the module reports while it has no parameters.
        device: device the module starts on.
        cfg_dropout: probability ``q`` in ``[0, 1]`` that a row's condition ``y`` is replaced by
            ``null_condition`` during training (classifier-free guidance); needs
            ``null_condition`` when ``q > 0``.
        null_condition: the "unconditional" value of ``y`` (a scalar or a tensor broadcastable
            to one row of ``y``).
        check_conditioning: on the first conditional call, check that the model's energy
            actually depends on ``y`` and raise ``ValueError`` if it does not.

    Raises:
        TypeError: an unexpected keyword argument.
        ValueError: ``cfg_dropout`` outside ``[0, 1]``, or ``> 0`` without ``null_condition``.
    """

    def __init__(
        self,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
        cfg_dropout: float = 0.0,
        null_condition: Any = None,
        check_conditioning: bool = True,
        **kwargs: Any,
    ):
        reject_leftovers(type(self), kwargs)
        super().__init__(device=device, dtype=dtype)
        owner = type(self).__name__
        cfg_dropout = real_number(owner, "cfg_dropout", cfg_dropout)
        if not 0.0 <= cfg_dropout <= 1.0:
            raise ValueError(f"{owner}: cfg_dropout must be in [0, 1], got {cfg_dropout}")
        if cfg_dropout > 0 and null_condition is None:
            raise ValueError(
                f"{owner}: cfg_dropout={cfg_dropout} needs a null_condition (the value that "
                "replaces y for dropped rows), got null_condition=None"
            )
        self.cfg_dropout = cfg_dropout
        self.null_condition = null_condition
        self.check_conditioning = bool(check_conditioning)
        self._conditioning_checked = False

    @abstractmethod
    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """Compute the loss on a batch ``x`` of data, ``[B, *event]``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # Conditioning ---------------------------------------------------------------------------

    @staticmethod
    def _merge_condition(y: Any, model_kwargs: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        """``y=t`` is shorthand for ``model_kwargs={'y': t}``; both at once is ambiguous."""
        merged = dict(model_kwargs or {})
        if y is not None:
            if "y" in merged:
                raise ValueError("pass the condition either as y= or as model_kwargs['y'], not both")
            merged["y"] = y
        return merged

    def _drop_condition(
        self, model_kwargs: Dict[str, Any], generator: Optional[torch.Generator]
    ) -> Dict[str, Any]:
        """Classifier-free-guidance dropout: each row's ``y`` becomes ``null_condition`` with
        probability ``cfg_dropout``, independently (a Bernoulli mask, no host synchronisation)."""
        y = model_kwargs.get("y")
        if self.cfg_dropout == 0 or not isinstance(y, torch.Tensor) or y.dim() == 0:
            return model_kwargs
        n = y.shape[0]
        drop = torch.rand(n, generator=generator, device=y.device) < self.cfg_dropout
        null = torch.as_tensor(self.null_condition, dtype=y.dtype, device=y.device)
        dropped = torch.where(drop.view(n, *([1] * (y.dim() - 1))), null, y)
        return {**model_kwargs, "y": dropped}

    def _check_model_uses_condition(
        self, model: nn.Module, x: torch.Tensor, model_kwargs: Dict[str, Any]
    ) -> None:
        """Once per loss: raise ``ValueError`` if the energy does not change when ``y`` does.

        The probe compares ``E(x, y)`` with ``E(x, y')`` on up to 16 rows, where ``y'`` is
        ``null_condition`` when given, else ``y`` rolled by one row. If ``y'`` equals ``y`` (all
        rows share one label and no null condition is set) the probe cannot tell and passes.
        """
        y = model_kwargs.get("y")
        if self._conditioning_checked or not self.check_conditioning or not isinstance(y, torch.Tensor):
            return
        self._conditioning_checked = True
        rows = min(16, x.shape[0])
        y_probe = y[:rows]
        if self.null_condition is not None:
            y_alt = torch.as_tensor(self.null_condition, dtype=y.dtype, device=y.device).expand_as(y_probe)
        else:
            y_alt = y_probe.roll(1, dims=0)
        if torch.equal(y_alt, y_probe):
            return
        with torch.no_grad():
            e = model(x[:rows], **{**model_kwargs, "y": y_probe})
            e_alt = model(x[:rows], **{**model_kwargs, "y": y_alt})
        if torch.equal(e, e_alt):
            raise ValueError(
                f"{type(self).__name__}: the model's energy does not depend on y (changing y left "
                f"E(x, y) unchanged on {rows} rows); pass a model that uses y, or "
                "check_conditioning=False to skip this check"
            )
