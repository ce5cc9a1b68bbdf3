r"""``TemperedModel``: the energies of tempering and annealing, as a model any sampler runs on.

.. math::
    E_\beta(x) = \beta\,E(x) + (1 - \beta)\,E_0(x) \quad (\text{with a base } E_0), \qquad
    E_\beta(x) = \beta\,E(x) \quad (\text{without}),

so that :math:`p_\beta \propto e^{-E_\beta}` is the tempered target
:math:`p^\beta` of parallel tempering (:class:`~torchebm.samplers.ParallelTempering`) or the
geometric path :math:`p_0^{1-\beta} p^\beta` of annealed importance sampling
(:class:`~torchebm.samplers.AnnealedImportanceSampler`). Wrapping the model, not rescaling a
sampler's step and noise, keeps every sampler exact for its tempered target: MALA's and HMC's
Metropolis ratios see :math:`E_\beta` itself.

Paths. The wrapper holds the model as a submodule (``inner``), so parameter updates are seen at
once. Its gradient is autograd of ``forward`` (one pass), or, when the model and the base both
compute their gradients in closed form, :math:`\beta\nabla E + (1-\beta)\nabla E_0` from those.
Without a base, a built-in analytic model whose energy is linear in one parameter keeps the
whole-chain kernels: ``kernel_spec()`` scales that parameter by :math:`\beta`
(:data:`SCALED_PARAMETER`); other models run on the per-step fused path.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from torchebm.core.argument_checks import real_number
from torchebm.core.energy_model import BaseModel, KernelSpec, own_gradient

SCALED_PARAMETER: dict[str, str] = {
    "gaussian": "precision",  # E = 1/2 (x - mu)^T P (x - mu)
    "double_well": "barrier_height",  # E = h sum_i (x_i^2 - b^2)^2
    "harmonic": "k",  # E = k/2 |x|^2
}
"""Kernel name -> the parameter its energy is linear in: ``beta * E`` is the same kernel with
that parameter times ``beta``."""


class TemperedModel(BaseModel):
    r"""``E_beta(x) = beta * E(x) (+ (1 - beta) * E_0(x))``; see the module docstring.

    Args:
        model: the energy ``E: [B, *event] -> [B]``.
        beta: the inverse temperature or path position, a finite float (may be changed later
            through the attribute ``beta``).
        base: optional base energy ``E_0`` (an ``nn.Module`` of the same signature), for the
            geometric path of annealed importance sampling.
    """

    def __new__(cls, model: Optional[nn.Module] = None, beta: float = 1.0, base: Optional[nn.Module] = None):
        # One pass of autograd unless every part knows its gradient in closed form.
        if cls is TemperedModel and model is not None and _closed_form(model) and (base is None or _closed_form(base)):
            cls = _ClosedFormTemperedModel
        return super().__new__(cls)

    def __init__(self, model: nn.Module, beta: float = 1.0, base: Optional[nn.Module] = None):
        first = next(iter(list(model.parameters()) + list(model.buffers())), None)
        super().__init__(
            dtype=first.dtype if first is not None and first.is_floating_point() else torch.float32,
            device=first.device if first is not None else None,
        )
        self.inner = model
        self.base = base
        self.beta = real_number(type(self).__name__, "beta", beta)

    def forward(self, x: torch.Tensor, **model_kwargs: Any) -> torch.Tensor:
        energy = self.beta * self.inner(x, **model_kwargs)
        if self.base is not None:
            energy = energy + (1.0 - self.beta) * self.base(x)
        return energy

    def kernel_spec(self) -> Optional[KernelSpec]:
        """The inner model's spec with :data:`SCALED_PARAMETER` times ``beta`` (no base only),
        else None."""
        spec_fn = getattr(self.inner, "kernel_spec", None)
        spec = spec_fn() if callable(spec_fn) and self.base is None else None
        if spec is None or spec[0] not in SCALED_PARAMETER:
            return None
        name, params = spec
        key = SCALED_PARAMETER[name]
        return name, {**params, key: params[key] * self.beta}

    def extra_repr(self) -> str:
        return f"beta={self.beta}" + (", with base" if self.base is not None else "")


class _ClosedFormTemperedModel(TemperedModel):
    """A :class:`TemperedModel` whose parts all have closed-form gradients."""

    def gradient(self, x: torch.Tensor, model_kwargs: Optional[dict[str, Any]] = None) -> torch.Tensor:
        grad = self.beta * self.inner.gradient(x, model_kwargs)
        if self.base is not None:
            grad = grad + (1.0 - self.beta) * self.base.gradient(x)
        return grad


def _closed_form(model: nn.Module) -> bool:
    return own_gradient(model) is not None


__all__ = ["SCALED_PARAMETER", "TemperedModel"]
