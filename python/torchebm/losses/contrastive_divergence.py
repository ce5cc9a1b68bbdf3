"""Contrastive divergence (CD-k) and persistent contrastive divergence (PCD).

For an energy ``E_theta`` with density ``p_theta(x) ∝ exp(-E_theta(x))``, the gradient of the
negative log-likelihood is ``E_data[∇E(x+)] - E_model[∇E(x-)]``. CD estimates the model term with
negatives ``x-`` from ``k`` MCMC steps (Hinton 2002); the loss whose gradient this is, on a batch
of ``B`` data points and ``B`` negatives, is

    L = 1/B sum_i E(x+_i) - 1/B sum_i E(x-_i)
        + alpha (1/B sum_i E(x+_i)^2 + 1/B sum_i E(x-_i)^2),

where the ``alpha`` term (``energy_reg_weight``) keeps the energies near 0 so they cannot drift
without bound (Du & Mordatch 2019). The negatives are detached: no gradient flows through the
chain, unless ``backprop_through_chain=True`` asks for the gradient of the unrolled chain (see
:class:`ContrastiveDivergence`). Chains start at the data (CD) or at states kept in a replay
buffer between calls (PCD, Tieleman 2008; see :mod:`torchebm.losses.replay_buffer`).

Two calling conventions::

    loss_fn = ContrastiveDivergence(model=m, sampler=s, k_steps=10)
    loss, negatives = loss_fn(x)            # TorchEBM 0.8.9: (scalar loss, [B, *event])

    loss_fn = ContrastiveDivergence(sampler=s, k=10)
    loss = loss_fn(model, x)                # older docs: the model is passed per call and
                                            # becomes the sampler's target; scalar loss only

Where this differs from TorchEBM 0.8.9, on purpose:

- a non-finite loss raises ``FloatingPointError`` (0.8.9 silently returns the constant 0.1);
- the sampler's schedules continue across calls (0.8.9 restarts them at every call), and the
  buffer warm-up (``init_steps``) does not consume them;
- a reinitialised buffer row (probability ``new_sample_ratio``) is a fresh draw from the
  initial distribution, as in IGEBM/JEM (0.8.9 adds 0.01-scale jitter to a buffer row), and the
  buffer starts from ``N(0, I)`` rather than ``0.01 N(0, I)``;
- the data keep their own dtype and device (0.8.9 casts them to the loss's), energies are
  reduced in at least float32 (so a bfloat16 network under autocast gives a float32 loss), and
  the buffer lives on the data's device.
"""

from __future__ import annotations

import warnings
from typing import Any, Dict, Optional, Tuple, Union

import torch
from torch import nn

from torchebm.core.argument_checks import real_number
from torchebm.core.base_loss import TorchEBMDeprecationWarning
from torchebm.core.base_module import DeviceLike, warn_once
from torchebm.core.base_sampler import generator_randn
from torchebm.kernels import reference
from torchebm.losses.base_contrastive_divergence import BaseContrastiveDivergence
from torchebm.samplers.langevin_dynamics import LangevinDynamics

__all__ = ["ContrastiveDivergence", "PersistentContrastiveDivergence"]

_PER_CALL_OPTIONS = ("energy_reg_weight", "add_noise_to_real", "noise_scale")


class ContrastiveDivergence(BaseContrastiveDivergence):
    """CD-k / PCD-k loss with energy-magnitude regularisation (see the module docstring).

    Args:
        model: the energy model being trained (old name ``energy_function=``); defaults to
            ``sampler.model``.
        sampler: MCMC sampler for the negatives. Box clamping, gradient clipping and the
            step-size/noise split are the sampler's options (e.g.
            ``LangevinDynamics(model, step_size, noise_scale, clamp=(-1, 1))``).
        k_steps: MCMC steps per call (old name ``k=``).
        persistent: keep chains in a replay buffer between calls (PCD).
        buffer_size: number of chains in the buffer.
        init_steps: MCMC steps run over the new buffer before its first use (PCD; default 100).
            Cost: ``init_steps`` sampler steps on each of the ``buffer_size`` rows (with Langevin
            dynamics ``buffer_size * init_steps`` gradient evaluations, as much sampling as
            ``init_steps / k_steps`` training iterations at batch size ``buffer_size``: with
            the defaults, 10 such iterations), all on the first call; a progress bar shows it
            (``TORCHEBM_PROGRESS=0`` silences it). ``init_steps=0`` skips the warm-up.
        new_sample_ratio: probability that a drawn buffer row is restarted from the initial
            distribution (IGEBM/JEM use 0.05).
        energy_reg_weight: ``alpha`` in the loss.
        add_noise_to_real: add ``noise_scale * N(0, I)`` to the data before evaluating them.
        noise_scale: standard deviation of that noise.
        dtype, device: reported by ``.dtype``/``.device`` while the loss has no parameters of its
            own; the replay buffer takes the data's dtype and device.
        check_finite: raise ``FloatingPointError`` when the loss is NaN or infinite. The check
            reads one boolean back from the device per call; ``False`` skips it (a NaN then
            propagates to the optimiser untouched, it is never replaced).
        backprop_through_chain: keyword-only. False (default): the negatives come from
            ``sampler.sample`` and are constants of the loss, so its gradient is
            ``mean ∇θE(x+) - mean ∇θE(x-)`` (+ the ``alpha`` terms). True: they come from a
            differentiable unrolled Langevin chain, ``k_steps`` steps from the start points
            ``x_0`` (detached), step ``t``

            ``x_{t+1} = clamp(x_t - a_t clip(∇x E_θ(x_t)) + b_t ξ_t)``, ``ξ_t ~ N(0, I)``,
            states ``[B, *event]``,

            with ``∇x E_θ`` taken by autograd with ``create_graph=True``, so ``x- = x_k(θ)``
            and the loss's gradient adds ``-mean (∂x_k/∂θ)^T ∇x E_θ(x_k)`` (+ alpha terms):
            the gradient flows through every step into the model's parameters. ``sampler`` must
            be a :class:`~torchebm.samplers.LangevinDynamics`; its coefficients (``a_t = eta_t``,
            ``b_t = sigma_t sqrt(2 eta_t)`` or ``noise_std``, computed by the sampler's own
            code), schedules (advanced by ``k_steps`` per call, as by sampling),
            ``clamp`` and ``grad_clip`` are used, the update is
            :func:`torchebm.kernels.reference.langevin_update` and the noise is drawn from
            ``generator`` after each gradient, as on the sampler's reference path (so the chain
            is the sampler's own; ``backend`` and ``cuda_graph`` do not apply, and the energy
            gradient is autograd of ``sampler.model``'s ``forward``, not its ``gradient``).
            Cost: the autograd graph of all ``k_steps`` steps, each holding a forward and a
            backward pass of the network over the batch, lives until ``backward()``: memory
            ``O(k_steps * B)`` activations (``k_steps`` times plain CD's), and the backward pass
            makes a Hessian-vector product per step (about 2-3 forward passes each).
        **kwargs: ``energy_function``, ``k``, ``buffer_init``, ``buffer_init_scale`` (see
            :class:`~torchebm.losses.base_contrastive_divergence.BaseContrastiveDivergence`) and ``cfg_dropout``,
            ``null_condition``, ``check_conditioning`` (see :class:`~torchebm.core.BaseLoss`).
            Anything else is a ``TypeError``.
    """

    def __init__(
        self,
        model: Optional[nn.Module] = None,
        sampler: Optional[nn.Module] = None,
        k_steps: int = 10,
        persistent: bool = False,
        buffer_size: int = 10000,
        init_steps: int = 100,
        new_sample_ratio: float = 0.05,
        energy_reg_weight: float = 0.001,
        add_noise_to_real: bool = False,
        noise_scale: float = 1e-4,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
        *,
        check_finite: bool = True,
        backprop_through_chain: bool = False,
        **kwargs: Any,
    ):
        super().__init__(
            model=model,
            sampler=sampler,
            k_steps=k_steps,
            persistent=persistent,
            buffer_size=buffer_size,
            new_sample_ratio=new_sample_ratio,
            init_steps=init_steps,
            dtype=dtype,
            device=device,
            **kwargs,
        )
        owner = type(self).__name__
        self.energy_reg_weight = real_number(owner, "energy_reg_weight", energy_reg_weight, non_negative=True)
        self.add_noise_to_real = bool(add_noise_to_real)
        self.noise_scale = real_number(owner, "noise_scale", noise_scale, non_negative=True)
        self.check_finite = bool(check_finite)
        self.backprop_through_chain = bool(backprop_through_chain)
        if self.backprop_through_chain:
            _langevin_sampler(owner, self.sampler)

    def forward(
        self,
        x: Union[torch.Tensor, nn.Module],
        *args: Any,
        y: Any = None,
        model_kwargs: Optional[Dict[str, Any]] = None,
        generator: Optional[torch.Generator] = None,
        **kwargs: Any,
    ) -> Union[Tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
        """One CD step on the data batch ``x`` [B, *event].

        ``loss_fn(x)`` returns ``(loss, negatives)``: the scalar loss (0-dim, differentiable in
        the model's parameters) and the detached negatives [B, *event]. ``loss_fn(model, x)``
        first makes ``model`` the trained model and the sampler's target (for this and later
        calls) and returns the loss alone.

        Args:
            y / model_kwargs: conditioning passed to the model and the sampler.
            generator: drives every random draw of the call (buffer rows, restarts, MCMC noise,
                noise on the data), so the same seed gives the same loss and negatives.
            energy_reg_weight, add_noise_to_real, noise_scale: per-call overrides of the
                constructor values (deprecated here: set them on the loss).

        Raises:
            FloatingPointError: the loss is not finite (and ``check_finite``).
        """
        if isinstance(x, nn.Module):
            if len(args) != 1:
                raise TypeError(
                    f"{type(self).__name__}(model, data) takes exactly one data tensor after the "
                    f"model, got {len(args)} positional argument(s)"
                )
            self._bind_model(x)
            loss, _ = self._step(args[0], y, model_kwargs, generator, kwargs)
            return loss
        if args:
            raise TypeError(
                f"{type(self).__name__}.forward() takes the data batch and keyword arguments, "
                f"got {len(args)} extra positional argument(s)"
            )
        return self._step(x, y, model_kwargs, generator, kwargs)

    def _step(
        self,
        x: torch.Tensor,
        y: Any,
        model_kwargs: Optional[Dict[str, Any]],
        generator: Optional[torch.Generator],
        overrides: Dict[str, Any],
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{type(self).__name__}: data must be a tensor, got {type(x).__name__}")
        for name in overrides:
            if name not in _PER_CALL_OPTIONS:
                raise TypeError(f"{type(self).__name__}.forward() got an unexpected keyword argument {name!r}")
            warn_once(
                f"cd-forward-{name}",
                f"passing {name}= to {type(self).__name__}.forward() is deprecated; set it in the "
                "constructor",
                TorchEBMDeprecationWarning,
                stacklevel=4,
            )
        mk = self._merge_condition(y, model_kwargs)
        if mk:
            self._check_model_uses_condition(self.model, x, mk)
            mk = self._drop_condition(mk, generator)
        start = self.get_start_points(x, generator=generator)
        if self.backprop_through_chain:
            negatives = self._unrolled_chain(start, mk, generator)
        else:
            negatives = self._run_sampler(start, self.k_steps, mk, generator)
        self.update_buffer(negatives.detach())
        loss = self.compute_loss(x, negatives, model_kwargs=mk, generator=generator, **overrides)
        return loss, negatives.detach()

    def _unrolled_chain(
        self,
        start: torch.Tensor,
        model_kwargs: Dict[str, Any],
        generator: Optional[torch.Generator],
    ) -> torch.Tensor:
        """``k_steps`` differentiable Langevin steps from ``start`` [B, *event] (see
        ``backprop_through_chain``); returns ``x_k`` [B, *event], attached to the graph.

        Under ``torch.no_grad()`` the same chain runs without ``create_graph`` (nothing to
        differentiate), keeping one step's graph at a time.
        """
        sampler = _langevin_sampler(type(self).__name__, self.sampler)
        lo, hi = sampler.clamp if sampler.clamp is not None else (None, None)
        differentiable = torch.is_grad_enabled()
        x = start.detach()
        for _ in range(self.k_steps):
            a, b = sampler._coefficients()
            with torch.enable_grad():
                x_var = x if x.requires_grad else x.detach().requires_grad_(True)
                with sampler.autocast_context():
                    energy = self._energies(x_var, model_kwargs, sampler.model)
                (grad,) = torch.autograd.grad(energy.sum(), x_var, create_graph=differentiable)
            noise = generator_randn(x.shape, x.dtype, x.device, generator)
            x = reference.langevin_update(x_var, grad, noise, a, b, lo, hi, sampler.grad_clip)
            sampler.step_schedulers()
        return x

    def compute_loss(
        self,
        x: torch.Tensor,
        pred_x: torch.Tensor,
        *args: Any,
        model_kwargs: Optional[Dict[str, Any]] = None,
        generator: Optional[torch.Generator] = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """The CD loss of data ``x`` [B, *event] against negatives ``pred_x`` [B, *event].

        ``L = mean E(x+) - mean E(x-) + alpha (mean E(x+)^2 + mean E(x-)^2)`` with
        ``x+ = x (+ noise_scale * N(0, I) if add_noise_to_real)`` and ``x-`` detached (kept
        attached with ``backprop_through_chain``, so that the gradient flows through it). Energies
        are reduced in at least float32. ``kwargs`` may override ``energy_reg_weight``,
        ``add_noise_to_real`` and ``noise_scale`` for this call.

        Returns:
            0-dim tensor.

        Raises:
            FloatingPointError: the loss is not finite (and ``check_finite``).
        """
        if args:
            raise TypeError(
                f"{type(self).__name__}.compute_loss() takes x and pred_x positionally, got "
                f"{len(args)} extra positional argument(s)"
            )
        unknown = set(kwargs) - set(_PER_CALL_OPTIONS)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.compute_loss() got unexpected keyword argument(s) "
                f"{sorted(unknown)}; it accepts {list(_PER_CALL_OPTIONS)}"
            )
        owner = type(self).__name__
        alpha = real_number(owner, "energy_reg_weight", kwargs.get("energy_reg_weight", self.energy_reg_weight), non_negative=True)
        noise_scale = real_number(owner, "noise_scale", kwargs.get("noise_scale", self.noise_scale), non_negative=True)
        mk = model_kwargs or {}

        x_pos = x
        if kwargs.get("add_noise_to_real", self.add_noise_to_real):
            x_pos = x + noise_scale * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        e_pos = self._energies(x_pos, mk)
        e_neg = self._energies(pred_x if self.backprop_through_chain else pred_x.detach(), mk)
        loss = e_pos.mean() - e_neg.mean()
        if alpha > 0:
            loss = loss + alpha * (e_pos.square().mean() + e_neg.square().mean())
        if self.check_finite and not bool(torch.isfinite(loss)):
            raise FloatingPointError(
                f"{owner}: the loss is {loss.item()} (mean energy of data "
                f"{e_pos.detach().mean().item():.4g}, of negatives {e_neg.detach().mean().item():.4g}). "
                "The chains or the energies diverged: lower the sampler's step size, clamp the "
                "negatives (clamp=), clip the sampler's gradient, or raise energy_reg_weight"
            )
        return loss

    def _energies(
        self, x: torch.Tensor, model_kwargs: Dict[str, Any], model: Optional[nn.Module] = None
    ) -> torch.Tensor:
        """``E(x)`` as [B], in at least float32, of ``model`` (default: the trained model).

        A network kept in a lower precision than the chains (bfloat16 weights, float32 states)
        is fed its own dtype, as the sampler does; a network run under autocast gets ``x`` as
        is. Either way the energies are reduced in float32 or wider.
        """
        model = self.model if model is None else model
        weight = next((p for p in model.parameters() if p.is_floating_point()), None)
        if weight is not None and weight.dtype != x.dtype:
            x = x.to(weight.dtype)
        energy = model(x, **model_kwargs)
        if energy.shape != (x.shape[0],):
            raise ValueError(
                f"{type(self).__name__}: {type(model).__name__} returned energies of shape "
                f"{tuple(energy.shape)} for a batch of {x.shape[0]}; expected ({x.shape[0]},)"
            )
        return energy.to(torch.promote_types(energy.dtype, torch.float32))


def _langevin_sampler(owner: str, sampler: nn.Module) -> LangevinDynamics:
    """``sampler``, which ``backprop_through_chain`` unrolls: a ``LangevinDynamics``."""
    if not isinstance(sampler, LangevinDynamics):
        raise TypeError(
            f"{owner}: backprop_through_chain=True unrolls Langevin steps and needs a "
            f"LangevinDynamics sampler, got {type(sampler).__name__}"
        )
    return sampler


class PersistentContrastiveDivergence(ContrastiveDivergence):
    """:class:`ContrastiveDivergence` with ``persistent=True`` always (PCD, Tieleman 2008).

    Takes the same arguments; ``persistent=False`` is overridden, with a warning.
    """

    def __init__(self, model: Optional[nn.Module] = None, sampler: Optional[nn.Module] = None, *args: Any, **kwargs: Any):
        args = list(args)
        given = args[1] if len(args) >= 2 else kwargs.get("persistent", True)
        if not given:
            warnings.warn(
                "PersistentContrastiveDivergence is always persistent; persistent=False is ignored",
                UserWarning,
                stacklevel=2,
            )
        if len(args) >= 2:
            args[1] = True
        else:
            kwargs["persistent"] = True
        super().__init__(model, sampler, *args, **kwargs)
