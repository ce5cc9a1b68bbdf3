r"""The leapfrog and Euler-Maruyama integrators as objects, over the samplers' step functions.

State dictionaries as in TorchEBM 0.8.9: ``{"x": [B, *event]}`` for Euler-Maruyama,
``{"x": [B, *event], "p": [B, *event]}`` for the leapfrog. ``drift(x, t)`` is the force
:math:`f(x, t)` (for an energy model, ``lambda x, t: -model.gradient(x)``), ``t`` a ``[B]``
tensor of times.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from torchebm.core.base_module import DeviceLike, TorchEBMModule
from torchebm.core.base_sampler import generator_randn
from torchebm.kernels import reference
from torchebm.samplers.algorithms import leapfrog

Tensor = torch.Tensor
Drift = Callable[[Tensor, Tensor], Tensor]
Number = Union[float, Tensor]

_SAFE_CLAMP = 1e6  # safe=True: bound on every force component, as TorchEBM 0.8.9's safe mode


def _need_drift(owner: str, drift: Optional[Drift]) -> Drift:
    if drift is None:
        raise ValueError(
            f"{owner}: drift must be provided explicitly, a callable (x, t) -> force; for an "
            "energy model pass drift=lambda x, t: -model.gradient(x)"
        )
    return drift


def _positive_steps(owner: str, n_steps) -> int:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps <= 0:
        raise ValueError(f"{owner}: n_steps must be positive (an int), got {n_steps!r}")
    return n_steps


def _times(x: Tensor, t: Optional[Tensor]) -> Tensor:
    """``t`` as a ``[B]`` tensor in ``x``'s dtype and device (zeros when None)."""
    if t is None:
        return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    return torch.as_tensor(t, dtype=x.dtype, device=x.device).expand(x.shape[0])


class _SamplerIntegrator(TorchEBMModule):
    """An integrator whose update the samplers run in their own fused form. It keeps the
    ``device`` and ``dtype`` it was built with (None where not given) as ``requested``, so that
    a sampler given one can refuse a contradicting ``device``/``dtype`` of its own."""

    def __init__(self, device: DeviceLike = None, dtype: Optional[torch.dtype] = None):
        super().__init__(device=device, dtype=dtype)
        self.requested = (device, dtype)


class LeapfrogIntegrator(_SamplerIntegrator):
    r"""Leapfrog (Stormer-Verlet) integrator of Hamiltonian dynamics with
    :math:`H(x, p) = U(x) + \tfrac12 p^\top M^{-1} p` and force :math:`f = -\nabla U`:

    .. math::
        p_{1/2} = p + \tfrac\epsilon2 f(x), \quad x' = x + \epsilon M^{-1} p_{1/2}, \quad
        p' = p_{1/2} + \tfrac\epsilon2 f(x').

    :meth:`integrate` runs :func:`torchebm.samplers.algorithms.leapfrog` (the step of
    ``HamiltonianMonteCarlo``), which merges the closing half kick of one step with the opening
    half kick of the next: ``n_steps`` steps cost ``n_steps + 1`` force evaluations.

    Args:
        device, dtype: reported by ``.device``/``.dtype`` (TorchEBM's module convention); the
            integration runs in the state's dtype and device.
    """

    separable = True


    def _inverse_mass(self, mass: Optional[Number], x: Tensor) -> Optional[Tensor]:
        """:math:`M^{-1}` as a 0-d or ``[dim]`` tensor in ``x``'s dtype, or None (unit mass)."""
        if mass is None:
            return None
        mass = torch.as_tensor(mass, dtype=x.dtype, device=x.device)
        if not bool(torch.isfinite(mass).all() & (mass > 0).all()):
            raise ValueError(f"{type(self).__name__}: mass must be positive and finite, got {mass}")
        return mass.reciprocal()

    def step(
        self,
        state: dict[str, Tensor],
        step_size: Number = None,
        mass: Optional[Number] = None,
        *,
        drift: Optional[Drift] = None,
        safe: bool = False,
    ) -> dict[str, Tensor]:
        """One leapfrog step: ``{"x", "p"} -> {"x", "p"}`` (two force evaluations).

        Args:
            state: ``{"x": [B, *event], "p": [B, *event]}``.
            step_size: :math:`\\epsilon` (float or 0-d tensor).
            mass: None (unit), a positive float, or a positive ``[dim]`` tensor (diagonal).
            drift: ``(x, t) -> f(x)`` with ``t = 0``.
            safe: clamp forces to ``[-1e6, 1e6]`` and replace NaN in the result by 0.
        """
        return self.integrate(state, step_size, 1, mass, drift=drift, safe=safe)

    def integrate(
        self,
        state: dict[str, Tensor],
        step_size: Number = None,
        n_steps: int = None,
        mass: Optional[Number] = None,
        *,
        drift: Optional[Drift] = None,
        safe: bool = False,
        inference_mode: bool = False,
    ) -> dict[str, Tensor]:
        """``n_steps`` leapfrog steps from ``state``; arguments as :meth:`step`.

        ``inference_mode=True`` runs under ``torch.inference_mode()``. With ``safe=True`` every
        step is sanitised (two force evaluations per step).

        Raises:
            ValueError: ``n_steps`` not a positive int, no ``drift``, ``step_size`` None, or a
                mass that is not positive.
        """
        owner = type(self).__name__
        n_steps = _positive_steps(owner, n_steps)
        force = _need_drift(owner, drift)
        if step_size is None:
            raise ValueError(f"{owner}: step_size must be given")
        if inference_mode:
            with torch.inference_mode():
                return self.integrate(state, step_size, n_steps, mass, drift=drift, safe=safe)
        x, p = state["x"], state["p"]
        t = _times(x, None)
        inv_mass = self._inverse_mass(mass, x)

        def gradient(z: Tensor) -> Tensor:
            g = -force(z, t)
            return g.clamp(-_SAFE_CLAMP, _SAFE_CLAMP) if safe else g

        if not safe:
            x, p, _, _ = leapfrog(x, p, gradient(x), step_size, n_steps, gradient, inv_mass=inv_mass)
            return {"x": x, "p": p}
        for _ in range(n_steps):
            x, p, _, _ = leapfrog(x, p, gradient(x), step_size, 1, gradient, inv_mass=inv_mass)
            x, p = x.nan_to_num(nan=0.0), p.nan_to_num(nan=0.0)
        return {"x": x, "p": p}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class EulerMaruyamaIntegrator(_SamplerIntegrator):
    r"""Euler-Maruyama integrator of the Ito SDE :math:`dx = f(x, t)\,dt + \sqrt{2D}\,dW_t`:

    .. math::
        x' = x + f(x, t)\,h + \sqrt{2 D h}\,\xi, \qquad \xi \sim \mathcal N(0, I),

    the Euler method when there is no diffusion. A step is the Langevin update
    :func:`torchebm.kernels.reference.langevin_update` (``x - a g + b xi``) with
    :math:`g = -f`, :math:`a = h`, :math:`b = \sqrt{2Dh}`: ``LangevinDynamics``' step with
    ``step_size = h`` and ``noise_scale`` :math:`= \sqrt{D}`.

    Args:
        device, dtype: reported by ``.device``/``.dtype``; the integration runs in the state's
            dtype and device.
    """


    def step(
        self,
        state: dict[str, Tensor],
        step_size: Number,
        *,
        drift: Optional[Drift] = None,
        diffusion: Optional[Number] = None,
        noise: Optional[Tensor] = None,
        noise_scale: Optional[Number] = None,
        t: Optional[Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> dict[str, Tensor]:
        """One step: ``{"x": [B, *event]} -> {"x": [B, *event]}``.

        Args:
            step_size: :math:`h > 0`.
            drift: ``(x, t) -> f(x, t)``.
            diffusion: :math:`D` (float or tensor broadcastable to ``x``); else
                ``noise_scale ** 2``; neither: no noise.
            noise: the standard normals :math:`\\xi` ``[B, *event]``; None draws them from
                ``generator`` (the global RNG if None) in ``x``'s dtype.
            t: the time, ``[B]`` or a scalar (default 0).
        """
        owner = type(self).__name__
        force = _need_drift(owner, drift)
        x = state["x"]
        t = _times(x, t)
        d = diffusion if diffusion is not None else (None if noise_scale is None else noise_scale ** 2)
        if d is None:
            noise, b = torch.zeros_like(x), 0.0
        else:
            if noise is None:
                noise = generator_randn(x.shape, x.dtype, x.device, generator)
            b = (2.0 * d * step_size) ** 0.5
        return {"x": reference.langevin_update(x, -force(x, t), noise, step_size, b)}

    def integrate(
        self,
        state: dict[str, Tensor],
        step_size: Number,
        n_steps: int,
        *,
        drift: Optional[Drift] = None,
        diffusion: Optional[Drift] = None,
        noise_scale: Optional[Number] = None,
        t: Optional[Tensor] = None,
        adaptive: Optional[bool] = None,
        inference_mode: bool = False,
        generator: Optional[torch.Generator] = None,
    ) -> dict[str, Tensor]:
        """``n_steps`` fixed steps of size ``step_size`` from time 0, or, when ``t`` is a 1-D
        time grid ``[n + 1]`` (``n >= 1``), the ``n`` steps between its points.

        Args:
            diffusion: a callable ``(x, t) -> D`` evaluated at each step; else
                ``noise_scale ** 2``; neither: the Euler method.
            adaptive: must be None or False (Euler-Maruyama has no error estimate).
            inference_mode: run under ``torch.inference_mode()``.

        Raises:
            ValueError: ``adaptive=True``; ``n_steps`` not a positive int (when ``t`` is None); a
                ``t`` that is not 1-D with at least 2 points.
        """
        owner = type(self).__name__
        if adaptive:
            raise ValueError(f"{owner}: adaptive stepping is not available (no error estimate); use adaptive=False")
        if inference_mode:
            with torch.inference_mode():
                return self.integrate(state, step_size, n_steps, drift=drift, diffusion=diffusion,
                                      noise_scale=noise_scale, t=t, generator=generator)
        x = state["x"]
        if t is None:
            grid = torch.arange(_positive_steps(owner, n_steps) + 1, dtype=x.dtype, device=x.device) * step_size
        else:
            grid = torch.as_tensor(t, dtype=x.dtype, device=x.device)
            if grid.dim() != 1 or grid.numel() < 2:
                raise ValueError(
                    f"{owner}: t must be a 1D tensor with length >= 2 (the time grid), got shape "
                    f"{tuple(grid.shape)}"
                )
        for i in range(grid.numel() - 1):
            h = grid[i + 1] - grid[i]
            now = grid[i].expand(x.shape[0])
            d = diffusion(x, now) if diffusion is not None else None
            x = self.step({"x": x}, h, drift=drift, diffusion=d, noise_scale=noise_scale, t=now,
                          generator=generator)["x"]
        return {"x": x}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


__all__ = ["EulerMaruyamaIntegrator", "LeapfrogIntegrator"]
