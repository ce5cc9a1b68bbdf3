"""``BaseModel``: an energy function ``E: [B, *event] -> [B]`` and its gradient in x.

A model defines the unnormalised density ``p(x) ∝ exp(-E(x))``. Subclasses implement
:meth:`BaseModel.forward`; :meth:`BaseModel.gradient` (``∇_x E``, what every sampler calls) is
derived by autograd unless the subclass knows it in closed form, as the analytic models of
:mod:`torchebm.core.analytic_models` do.

``BaseEnergyFunction`` is the pre-0.4 name of ``BaseModel`` and is the same class. TorchEBM
0.8.9's import path for both, and for the analytic models, is :mod:`torchebm.core.base_model`.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, Optional

import torch
from torch import nn

from torchebm.core.base_module import DeviceLike, TorchEBMModule

KernelSpec = tuple[str, dict[str, Any]]


class BaseModel(TorchEBMModule, ABC):
    """Abstract energy-based model: ``forward(x) -> E(x)`` of shape ``[B]``.

    Args:
        dtype: floating dtype the model reports (and stores its buffers in) while it has no
            parameters; float32 by default, as in TorchEBM, not ``torch.get_default_dtype()``.
        device: the device the model starts on.

    Attributes:
        force_fp32_gradient: compute :meth:`gradient` in float32 whatever the input dtype
            (half, bfloat16 and float64 alike, as TorchEBM 0.8.9 documents); the result is cast
            back to the input dtype.
    """

    force_fp32_gradient: bool = False

    def __init__(self, dtype: torch.dtype = torch.float32, device: DeviceLike = None):
        super().__init__(device=device, dtype=dtype)

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Energy of each state: ``x [B, *event] -> E(x) [B]``."""

    def _gradient_dtype(self, x_dtype: torch.dtype) -> torch.dtype:
        return torch.float32 if self.force_fp32_gradient else x_dtype

    def gradient(
        self, x: torch.Tensor, model_kwargs: Optional[dict[str, Any]] = None
    ) -> torch.Tensor:
        """``∇_x E(x)``, by autograd, as a detached tensor of ``x``'s shape and dtype.

        Works inside ``torch.no_grad()`` (it enables grad locally) and builds no second-order
        graph: the energy graph is freed as soon as the gradient is read. ``x`` is moved to the
        model's device and the result stays there. ``model_kwargs`` are passed to ``forward``
        (conditioning such as ``y``).

        Raises:
            ValueError: ``forward`` did not return one energy per state, shape ``[B]``.
            RuntimeError: the energy does not depend on ``x`` (no autograd graph).
        """
        device = self._reference_tensor().device
        if x.device != device:
            x = x.to(device)
        return energy_and_gradient(self, x, model_kwargs)[1].to(x.dtype)

    def kernel_spec(self) -> Optional[KernelSpec]:
        """How the whole-chain C++/CUDA kernels can evaluate this model, or ``None``.

        Returns ``(name, params)`` for a model whose energy and gradient a kernel implements
        in closed form (see :mod:`torchebm.core.analytic_models`); ``None`` here, because an
        arbitrary model is only known through ``forward``.
        """
        return None


def energy_and_gradient(
    model: nn.Module, x: torch.Tensor, model_kwargs: Optional[dict[str, Any]] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E(x), ∇_x E(x))`` of any energy ``nn.Module`` from one forward and one backward pass:
    the one autograd gradient of the library, used by :meth:`BaseModel.gradient` and by the
    samplers (which keep the energy the same pass produced).

    Runs under ``torch.enable_grad()`` (so it works inside ``no_grad``), in the model's gradient
    dtype (:attr:`BaseModel.force_fp32_gradient`) and autocast context when it has them, and
    builds no second-order graph. A ``torch.compile``'d module is called as such: its compiled
    forward, and the backward pass compiled with it. Both results are detached: ``energy [B]`` as the model
    returned it, ``grad`` of ``x``'s shape in the gradient dtype.

    Raises:
        ValueError: ``forward`` did not return one energy per state, shape ``[B]``.
        RuntimeError: the energy does not depend on ``x`` (no autograd graph).
    """
    inner = uncompiled(model)
    name = type(inner).__name__
    grad_dtype = inner._gradient_dtype(x.dtype) if isinstance(inner, BaseModel) else x.dtype
    autocast = getattr(inner, "autocast_context", contextlib.nullcontext)
    with torch.enable_grad():
        x_var = x.detach().to(grad_dtype).requires_grad_(True)
        with autocast():
            energy = model(x_var, **(model_kwargs or {}))
        check_energy_shape(name, energy, x)
        if energy.grad_fn is None:
            raise RuntimeError(
                f"Cannot compute gradient: {name}.forward returned an energy that does not depend "
                "on x (no autograd graph); it must be computed from x with differentiable torch "
                "operations"
            )
        (grad,) = torch.autograd.grad(energy.sum(), x_var)
    return energy.detach(), grad


def uncompiled(model: nn.Module) -> nn.Module:
    """The module a ``torch.compile(module)`` wraps (``OptimizedModule._orig_mod``), else
    ``model`` itself."""
    return getattr(model, "_orig_mod", model)


def own_gradient(model: nn.Module):
    """``model.gradient`` where the model (or the module a ``torch.compile`` wraps) overrides
    :meth:`BaseModel.gradient` or defines its own; None where the gradient is autograd of
    ``forward`` (BaseModel's default, or a plain ``nn.Module``), which callers then compute with
    :func:`energy_and_gradient` on ``model`` itself, so that a compiled forward is used."""
    method = getattr(type(uncompiled(model)), "gradient", None)
    if method is None or method is BaseModel.gradient:
        return None
    return model.gradient


def check_energy_shape(model_name: str, energy: torch.Tensor, x: torch.Tensor) -> None:
    batch = x.shape[0] if x.dim() > 0 else 1
    if energy.shape == (batch,):
        return
    # A single unbatched state may come back as one energy, batched or not.
    if x.dim() == 1 and energy.shape in ((), (1,)):
        return
    raise ValueError(
        f"BaseModel forward() output expected shape (B,), but got {tuple(energy.shape)} from "
        f"{model_name} for x of shape {tuple(x.shape)}; forward must return one energy per "
        f"state, shape ({batch},)"
    )


BaseEnergyFunction = BaseModel
"""Old name of :class:`BaseModel` (TorchEBM before 0.4); the same class."""
