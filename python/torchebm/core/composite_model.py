r"""Weighted sums of energy models.

``CompositeEnergy`` is the old (seed-documented) spelling, taking ``energy_functions=``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
from torch import nn

from torchebm.core.argument_checks import real_number
from torchebm.core.energy_model import BaseModel
from torchebm.core.base_module import DeviceLike


class CompositeModel(BaseModel):
    r"""A weighted sum of models: a product of experts :math:`p(x) \propto \prod_k p_k(x)^{w_k}`.

    .. math::
        E(x) = \sum_k w_k E_k(x), \qquad \nabla E(x) = \sum_k w_k \nabla E_k(x),

    each part's gradient coming from its own ``gradient`` (closed form for analytic parts).

    Args:
        models: the parts, a non-empty sequence of :class:`BaseModel`; stored as the
            ``nn.ModuleList`` ``models``, so their parameters are this model's parameters.
        weights: one real weight per part (default: all 1.0).
    """

    def __init__(
        self,
        models: Sequence[BaseModel],
        weights: Optional[Sequence[float]] = None,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
    ):
        super().__init__(dtype=dtype, device=device)
        owner = type(self).__name__
        models = list(models)
        if not models:
            raise ValueError(f"{owner}: models must contain at least one model, got []")
        for i, model in enumerate(models):
            if not isinstance(model, BaseModel):
                raise TypeError(
                    f"{owner}: models[{i}] must be a BaseModel, got {type(model).__name__}"
                )
        if weights is None:
            weights = [1.0] * len(models)
        weights = list(weights)
        if len(weights) != len(models):
            raise ValueError(
                f"{owner}: weights must have one entry per model ({len(models)}), got "
                f"{len(weights)}: {weights}"
            )
        self.models = nn.ModuleList(models)
        self.weights = [
            real_number(owner, f"weights[{i}]", w, allow_tensor=True) for i, w in enumerate(weights)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Σ_k w_k E_k(x)``, shape ``[B]``."""
        return sum(w * model(x) for w, model in zip(self.weights, self.models))

    def gradient(
        self, x: torch.Tensor, model_kwargs: Optional[dict[str, Any]] = None
    ) -> torch.Tensor:
        """``Σ_k w_k ∇E_k(x)``: detached, of ``x``'s shape and dtype."""
        return sum(
            w * model.gradient(x, model_kwargs) for w, model in zip(self.weights, self.models)
        )


class CompositeEnergy(CompositeModel):
    """Old name of :class:`CompositeModel`, whose parts are passed as ``energy_functions``."""

    def __init__(
        self,
        energy_functions: Sequence[BaseModel],
        weights: Optional[Sequence[float]] = None,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
    ):
        super().__init__(energy_functions, weights, dtype=dtype, device=device)

    @property
    def energy_functions(self) -> nn.ModuleList:
        """The parts (the same list as ``models``)."""
        return self.models
