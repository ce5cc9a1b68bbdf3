"""``BaseScoreMatching``: what the score-matching losses share.

For an energy ``E_theta`` with density ``p_theta(x) ∝ exp(-E_theta(x))`` the model's score is
``s_theta(x) = grad_x log p_theta(x) = -grad_x E_theta(x)``; it does not depend on the
normalising constant, so score matching trains an energy without MCMC. The base class holds the
model, the schedulable hyper-parameters ``noise_scale`` and ``regularization_strength``, the
energy gradient (:meth:`BaseScoreMatching.compute_score`), the Gaussian perturbation of the
denoising variant (:meth:`BaseScoreMatching.perturb_data`), the optional regulariser and the
one ``forward``; each loss supplies :meth:`BaseScoreMatching.compute_loss`. The formulas and
when to use which loss are in docs/score_matching.md.

Shapes: data ``x`` are ``[B, *event]``; energies ``[B]``; scores ``[B, *event]``; every loss is
a 0-dim mean over the batch.
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from torch import nn

from torchebm.core.argument_checks import count
from torchebm.core.base_loss import BaseLoss, TorchEBMDeprecationWarning
from torchebm.core.base_module import DeviceLike
from torchebm.core.base_sampler import generator_randn
from torchebm.core.base_scheduler import BaseScheduler

__all__ = ["BaseScoreMatching"]


def event_sum(t: torch.Tensor) -> torch.Tensor:
    """``t`` [B, *event] summed over the event dimensions -> [B] (a [B] tensor is returned)."""
    return t.sum(dim=tuple(range(1, t.dim()))) if t.dim() > 1 else t


class BaseScoreMatching(BaseLoss):
    """Base of the score-matching losses (see the module docstring).

    Args:
        model: the energy model ``E_theta`` being trained (old name ``energy_function=``);
            called as ``model(x, **model_kwargs)`` and returning energies ``[B]``.
        noise_scale: ``sigma > 0``, the standard deviation of the perturbation of
            :class:`~torchebm.losses.DenoisingScoreMatching` (a float or a scheduler).
        regularization_strength: ``lambda >= 0`` (a float or a scheduler); when ``> 0`` the loss
            adds ``lambda R``, ``R = custom_regularization(x, model)`` if given, else the mean
            squared energy gradient ``1/B sum_i |grad_x E(x_i)|^2``.
        use_autograd: True: differentiate ``model`` itself. False: differentiate
            ``torch.func.functional_call(functional_model or model, params, x)`` with the
            model's own parameters and buffers (same values, no module hooks).
        hutchinson_samples: probe vectors per data point of the stochastic trace estimators
            (``ScoreMatching``'s ``"hutchinson"`` and ``"approx"`` methods).
        custom_regularization: ``(x, model) -> scalar tensor``, replacing the default ``R``.
        functional_model: module whose structure ``use_autograd=False`` calls with the model's
            parameters (not registered as a submodule; its own parameters are never used).
        dtype, device: what the loss reports while it has no parameters (the model's otherwise).
            The data keep their own dtype and device.
        **kwargs: ``cfg_dropout``, ``null_condition``, ``check_conditioning`` (see
            :class:`~torchebm.core.BaseLoss`); anything else is a ``TypeError``.

    Raises:
        TypeError: no model, both ``model`` and ``energy_function``, or an unknown keyword.
        ValueError: ``noise_scale <= 0``, ``regularization_strength < 0``,
            ``hutchinson_samples < 1``.
    """

    def __init__(
        self,
        model: Optional[nn.Module] = None,
        noise_scale: Union[float, BaseScheduler] = 0.01,
        regularization_strength: Union[float, BaseScheduler] = 0.0,
        use_autograd: bool = True,
        hutchinson_samples: int = 1,
        custom_regularization: Optional[Callable] = None,
        functional_model: Optional[nn.Module] = None,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
        *,
        energy_function: Optional[nn.Module] = None,
        **kwargs: Any,
    ):
        super().__init__(dtype=dtype, device=device, **kwargs)
        owner = type(self).__name__
        if energy_function is not None:
            if model is not None:
                raise TypeError(f"{owner}: pass model= or its old name energy_function=, not both")
            model = energy_function
        if model is None:
            raise TypeError(f"{owner}: model is required (the energy model being trained)")
        self.model = model
        self.noise_scale = noise_scale
        self.regularization_strength = regularization_strength
        self.use_autograd = bool(use_autograd)
        self.hutchinson_samples = count(owner, "hutchinson_samples", hutchinson_samples, minimum=1)
        if custom_regularization is not None and not callable(custom_regularization):
            raise TypeError(
                f"{owner}: custom_regularization must be callable (x, model) -> Tensor, got "
                f"{type(custom_regularization).__name__}"
            )
        self.custom_regularization = custom_regularization
        # A structural template, not a submodule: its parameters are never trained or moved.
        object.__setattr__(self, "_functional_model", functional_model)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"

    # Schedulable hyper-parameters -------------------------------------------------------------

    @property
    def noise_scale(self) -> float:
        """``sigma``, the current value of its schedule."""
        return self.get_scheduled_value("noise_scale")

    @noise_scale.setter
    def noise_scale(self, value: Union[float, BaseScheduler]) -> None:
        self._register_param("noise_scale", value, positive=True)

    @property
    def regularization_strength(self) -> float:
        """``lambda``, the current value of its schedule."""
        return self.get_scheduled_value("regularization_strength")

    @regularization_strength.setter
    def regularization_strength(self, value: Union[float, BaseScheduler]) -> None:
        self._register_param("regularization_strength", value)  # type and finiteness
        if not isinstance(value, BaseScheduler) and value < 0:
            raise ValueError(f"regularization_strength must be >= 0, got {value}")

    @property
    def functional_model(self) -> Optional[nn.Module]:
        """The template module of ``use_autograd=False`` (never trained)."""
        return self._functional_model

    # The model ----------------------------------------------------------------------------------

    def energy(self, x: torch.Tensor, model_kwargs: Optional[Dict[str, Any]] = None) -> torch.Tensor:
        """``E_theta(x)`` [B] under the loss's autocast context (``use_autograd`` decides how the
        model is called)."""
        kwargs = model_kwargs or {}
        with self.autocast_context():
            if self.use_autograd:
                return self.model(x, **kwargs)
            module = self._functional_model if self._functional_model is not None else self.model
            state = {**dict(self.model.named_parameters()), **dict(self.model.named_buffers())}
            return torch.func.functional_call(module, state, (x,), kwargs)

    def energy_and_grad(
        self, x: torch.Tensor, model_kwargs: Optional[Dict[str, Any]] = None
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(leaf, E [B], grad_x E [B, *event])`` at a detached copy ``leaf`` of ``x`` that
        requires grad; the gradient keeps its graph (``create_graph=True``), so it can be
        differentiated again, in the parameters and in ``leaf``."""
        leaf = x.detach().requires_grad_(True)
        e = self.energy(leaf, model_kwargs)
        (g,) = torch.autograd.grad(e.sum(), leaf, create_graph=True)
        return leaf, e, g

    def compute_score(
        self,
        x: torch.Tensor,
        noise: Optional[torch.Tensor] = None,
        model_kwargs: Optional[Dict[str, Any]] = None,
    ) -> torch.Tensor:
        """The energy gradient ``grad_x E_theta(x + noise)`` [B, *event] (``noise`` optional),
        differentiable in the parameters. As in TorchEBM 0.8.9 this returns the gradient of the
        energy, which is minus the score ``grad_x log p_theta``."""
        x_eval = x if noise is None else x + noise.to(device=x.device, dtype=x.dtype)
        return self.energy_and_grad(x_eval, model_kwargs)[2]

    def perturb_data(
        self, x: torch.Tensor, generator: Optional[torch.Generator] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(x + eps, eps)`` with ``eps = sigma * N(0, I)`` [B, *event] drawn by
        ``torch.randn`` from ``generator`` (the global generator when None)."""
        eps = generator_randn(x.shape, x.dtype, x.device, generator) * self.noise_scale
        return x + eps, eps

    # The loss -----------------------------------------------------------------------------------

    @abstractmethod
    def compute_loss(
        self,
        x: torch.Tensor,
        *args: Any,
        model_kwargs: Optional[Dict[str, Any]] = None,
        generator: Optional[torch.Generator] = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """The scalar loss of the batch ``x`` [B, *event], without the regulariser."""

    def forward(
        self,
        x: torch.Tensor,
        *args: Any,
        y: Any = None,
        model_kwargs: Optional[Dict[str, Any]] = None,
        generator: Optional[torch.Generator] = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """The scalar loss (0-dim, differentiable in the model's parameters) of the data batch
        ``x`` [B, *event]: :meth:`compute_loss` plus ``lambda R`` when ``lambda > 0``.

        Args:
            y / model_kwargs: conditioning passed to the model (``y=t`` is
                ``model_kwargs={'y': t}``); in training mode each row's ``y`` is dropped to
                ``null_condition`` with probability ``cfg_dropout``.
            generator: drives every random draw of the call (noise, projections, probes).
            **kwargs: model keyword arguments passed bare (deprecated: use ``model_kwargs``).

        Raises:
            TypeError: extra positional arguments.
        """
        if args:
            raise TypeError(
                f"{type(self).__name__}.forward() takes the data batch and keyword arguments, "
                f"got {len(args)} extra positional argument(s)"
            )
        if kwargs:
            warnings.warn(
                f"{type(self).__name__}: model keyword arguments passed bare "
                f"({', '.join(kwargs)}) are deprecated; pass model_kwargs={{...}}",
                TorchEBMDeprecationWarning,
                stacklevel=2,
            )
        mk = self._merge_condition(y, {**kwargs, **(model_kwargs or {})})
        if mk:
            self._check_model_uses_condition(self.model, x, mk)
            if self.training:
                mk = self._drop_condition(mk, generator)
        loss = self.compute_loss(x, model_kwargs=mk, generator=generator)
        return self.add_regularization(loss, x, model_kwargs=mk)

    def add_regularization(
        self,
        loss: torch.Tensor,
        x: torch.Tensor,
        custom_reg_fn: Optional[Callable] = None,
        reg_strength: Optional[float] = None,
        model_kwargs: Optional[Dict[str, Any]] = None,
    ) -> torch.Tensor:
        """``loss + lambda R`` (``lambda = reg_strength`` or ``regularization_strength``; ``R``
        from ``custom_reg_fn``, else ``custom_regularization``, else the mean squared energy
        gradient); ``loss`` unchanged when ``lambda <= 0``."""
        strength = self.regularization_strength if reg_strength is None else float(reg_strength)
        if strength <= 0:
            return loss
        fn = custom_reg_fn if custom_reg_fn is not None else self.custom_regularization
        if fn is not None:
            reg = fn(x, self.model)
        else:
            reg = event_sum(self.compute_score(x, model_kwargs=model_kwargs).square()).mean()
        return loss + strength * reg
