r"""Analytic energy models with closed-form gradients.

Each model takes states ``x`` of shape ``[B, d]`` (or one state ``[d]``, treated as ``B = 1``)
and returns energies ``[B]``; :meth:`~AnalyticModel.gradient` returns ``∇_x E`` of ``x``'s shape
from the closed form in the class docstring, with no autograd. Energies and gradients are
computed in the dtype and on the device of ``x`` (an integer ``x`` is read in the model dtype).

Each model also describes itself to the whole-chain C++/CUDA kernels through
:meth:`~AnalyticModel.kernel_spec`, which returns ``(name, params)``:

==========================  ===================  =============================================
model                       name                 params
==========================  ===================  =============================================
``GaussianModel``           ``gaussian``         ``mean`` Tensor[d], ``precision`` Tensor[d,d]
``DoubleWellModel``         ``double_well``      ``barrier_height``, ``b`` (floats)
``HarmonicModel``           ``harmonic``         ``k``
``RosenbrockModel``         ``rosenbrock``       ``a``, ``b``
``AckleyModel``             ``ackley``           ``a``, ``b``, ``c``
``RastriginModel``          ``rastrigin``        ``a``
``HimmelblauModel``         ``himmelblau``       (none)
``BoothModel``              ``booth``            (none)
``StyblinskiTangModel``     ``styblinski_tang``  (none)
``BananaModel``             ``banana``           ``curvature``, ``scale``
==========================  ===================  =============================================

A subclass that overrides ``forward`` or ``gradient`` is no longer described by the closed
form, and its ``kernel_spec()`` is ``None``.

Old names (TorchEBM before 0.5): ``GaussianEnergy``, ``DoubleWellEnergy``, ``HarmonicEnergy``,
``RosenbrockEnergy``, ``AckleyEnergy``, ``RastriginEnergy`` are the same classes.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any, ClassVar, Optional

import torch

from torchebm.core.argument_checks import real_number
from torchebm.core.energy_model import BaseModel, KernelSpec
from torchebm.core.base_module import DeviceLike

# What a subclass must leave alone for the closed form (and so the kernel) to describe it.
_CLOSED_FORM_METHODS = ("forward", "gradient", "_energy", "_energy_gradient")


class AnalyticModel(BaseModel):
    """Base of the built-in models whose energy and gradient are known in closed form.

    A concrete model sets ``kernel_name`` and implements ``_energy``, ``_energy_gradient``
    (both on a floating ``[B, d]`` batch) and ``_kernel_params``; it may check ``d`` in
    ``_check_dim``.
    """

    kernel_name: ClassVar[str]
    _closed_form_owner: ClassVar[type]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # The class that names the kernel is the one whose closed form the kernel implements;
        # subclasses (aliases, user extensions) are compared against it in kernel_spec().
        if "kernel_name" in cls.__dict__:
            cls._closed_form_owner = cls

    @abstractmethod
    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        """``E(x)``: ``[B, d] -> [B]``."""

    @abstractmethod
    def _energy_gradient(self, x: torch.Tensor) -> torch.Tensor:
        """``∇_x E(x)``: ``[B, d] -> [B, d]``."""

    @abstractmethod
    def _kernel_params(self) -> dict[str, Any]:
        """The ``params`` half of :meth:`kernel_spec`."""

    def _check_dim(self, dim: int) -> None:
        """Raise ``ValueError`` if the model is undefined for states of dimension ``dim``."""

    def _as_batch(self, x: torch.Tensor) -> torch.Tensor:
        if not x.is_floating_point():
            x = x.to(self.dtype)
        if x.dim() == 1:
            x = x.unsqueeze(0)
        elif x.dim() != 2:
            raise ValueError(
                f"{type(self).__name__} expects x of shape (batch, dim) or (dim,), "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] < 1:
            raise ValueError(
                f"{type(self).__name__} expects states of dimension >= 1, got x of shape "
                f"{tuple(x.shape)}"
            )
        self._check_dim(x.shape[1])
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Energy ``[B]`` of ``x`` ``[B, d]`` or ``[d]`` (then ``B = 1``)."""
        return self._energy(self._as_batch(x))

    def gradient(
        self, x: torch.Tensor, model_kwargs: Optional[dict[str, Any]] = None
    ) -> torch.Tensor:
        """Closed-form ``∇_x E(x)``: detached, of ``x``'s shape, dtype and device.

        ``force_fp32_gradient`` computes in float32 (whatever ``x``'s dtype) before casting back.

        Raises:
            TypeError: ``model_kwargs`` is non-empty (the energy depends on ``x`` only).
        """
        if model_kwargs:
            raise TypeError(
                f"{type(self).__name__}.gradient() got model_kwargs {sorted(model_kwargs)}, "
                "but this model's energy depends on x only"
            )
        batch = self._as_batch(x.detach())
        out_dtype = batch.dtype
        grad = self._energy_gradient(batch.to(self._gradient_dtype(out_dtype)))
        return grad.to(out_dtype).reshape(x.shape)

    def kernel_spec(self) -> Optional[KernelSpec]:
        """``(kernel_name, params)`` for the chain kernels, or ``None`` once a subclass or the
        instance replaces ``forward``/``gradient`` (the closed form no longer applies)."""
        cls, owner = type(self), self._closed_form_owner
        for name in _CLOSED_FORM_METHODS:
            if name in self.__dict__ or getattr(cls, name) is not getattr(owner, name):
                return None
        return self.kernel_name, self._kernel_params()


def _require_dim(model: AnalyticModel, dim: int, expected: int) -> None:
    if dim != expected:
        raise ValueError(
            f"{type(model).__name__} is defined for dimension {expected}, got states of "
            f"dimension {dim}"
        )


class GaussianModel(AnalyticModel):
    r"""Multivariate normal :math:`\mathcal N(\mu, \Sigma)`.

    .. math::
        E(x) = \tfrac12 (x-\mu)^\top P (x-\mu), \qquad \nabla E(x) = P (x-\mu),
        \qquad P = \Sigma^{-1}.

    The precision ``P`` is computed once (in float64, through a Cholesky factor, then
    symmetrised) and stored; a batch costs one ``[B, d] @ [d, d]`` matmul.

    Args:
        mean: ``[d]``.
        cov: ``[d, d]``, symmetric positive definite.
        dtype: dtype of the stored ``mean`` and precision (float32 by default).
        device: where they are stored (default: the device of ``mean``).

    Buffers (the ``state_dict`` keys, as in TorchEBM): ``mean`` ``[d]``, ``cov_inv`` ``[d, d]``.
    """

    kernel_name = "gaussian"

    def __init__(
        self,
        mean: Any,
        cov: Any,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
    ):
        mean = torch.as_tensor(mean)
        cov = torch.as_tensor(cov)
        super().__init__(dtype=dtype, device=mean.device if device is None else device)
        dtype, device = self._torchebm_probe.dtype, self._torchebm_probe.device
        self.register_buffer("mean", _check_mean(mean).to(device=device, dtype=dtype))
        precision = _precision_of(cov, self.mean.shape[0])
        self.register_buffer("cov_inv", precision.to(device=device, dtype=dtype))

    @property
    def precision(self) -> torch.Tensor:
        """``Σ⁻¹`` ``[d, d]`` (the ``cov_inv`` buffer)."""
        return self.cov_inv

    @property
    def cov(self) -> torch.Tensor:
        """``Σ`` ``[d, d]``, recomputed from the stored precision (the one source of truth)."""
        return torch.linalg.inv(self.cov_inv.double()).to(self.cov_inv.dtype)

    def _check_dim(self, dim: int) -> None:
        _require_dim(self, dim, self.mean.shape[0])

    def _centred(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.mean.to(device=x.device, dtype=x.dtype)
        precision = self.cov_inv.to(device=x.device, dtype=x.dtype)
        return x - mean, precision

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        diff, precision = self._centred(x)
        return 0.5 * ((diff @ precision) * diff).sum(dim=-1)

    def _energy_gradient(self, x: torch.Tensor) -> torch.Tensor:
        diff, precision = self._centred(x)
        return diff @ precision  # P is symmetric, so (x-μ)ᵀP is (P(x-μ))ᵀ

    def _kernel_params(self) -> dict[str, Any]:
        return {"mean": self.mean, "precision": self.cov_inv}


def _check_mean(mean: torch.Tensor) -> torch.Tensor:
    if mean.dim() != 1 or mean.shape[0] == 0:
        raise ValueError(
            f"GaussianModel: mean must be a non-empty 1-D tensor of shape (dim,), got shape "
            f"{tuple(mean.shape)}"
        )
    if not torch.isfinite(mean).all():
        raise ValueError(f"GaussianModel: mean must be finite, got {mean}")
    return mean


def _precision_of(cov: torch.Tensor, dim: int) -> torch.Tensor:
    """Validate ``cov`` ``[dim, dim]`` and return its inverse, in float64 on the CPU."""
    if cov.shape != (dim, dim):
        raise ValueError(
            f"GaussianModel: cov must have shape ({dim}, {dim}) to match mean, got shape "
            f"{tuple(cov.shape)}"
        )
    cov64 = cov.detach().to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(cov64).all():
        raise ValueError(f"GaussianModel: cov must be finite, got {cov}")
    scale = cov64.abs().max().item()
    if not torch.allclose(cov64, cov64.T, rtol=1e-5, atol=1e-8 * max(scale, 1.0)):
        raise ValueError(f"GaussianModel: cov must be symmetric, got {cov}")
    cholesky, info = torch.linalg.cholesky_ex(cov64)
    if info.item() != 0:
        raise ValueError(f"GaussianModel: cov must be positive definite, got {cov}")
    precision = torch.cholesky_inverse(cholesky)
    return 0.5 * (precision + precision.T)


class DoubleWellModel(AnalyticModel):
    r"""Double well in every coordinate: minima at :math:`x_i = \pm b` (``2^d`` modes).

    .. math::
        E(x) = h \sum_i (x_i^2 - b^2)^2, \qquad
        \partial_i E(x) = 4 h\, x_i (x_i^2 - b^2).

    Args:
        barrier_height: ``h > 0``, the energy barrier ``h b^4`` between wells at ``x_i = 0``.
        b: position of the wells.
    """

    kernel_name = "double_well"

    def __init__(
        self,
        barrier_height: float = 2.0,
        b: float = 1.0,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
    ):
        super().__init__(dtype=dtype, device=device)
        owner = type(self).__name__
        self.barrier_height = real_number(
            owner, "barrier_height", barrier_height, positive=True, allow_tensor=True
        )
        self.b = real_number(owner, "b", b, allow_tensor=True)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return self.barrier_height * (x * x - self.b**2).square().sum(dim=-1)

    def _energy_gradient(self, x: torch.Tensor) -> torch.Tensor:
        return (4.0 * self.barrier_height) * x * (x * x - self.b**2)

    def _kernel_params(self) -> dict[str, Any]:
        return {"barrier_height": self.barrier_height, "b": self.b}


class HarmonicModel(AnalyticModel):
    r"""Isotropic harmonic oscillator, :math:`\mathcal N(0, I/k)`.

    .. math::
        E(x) = \tfrac12 k \sum_i x_i^2, \qquad \nabla E(x) = k x.

    Args:
        k: spring constant, ``> 0``.
    """

    kernel_name = "harmonic"

    def __init__(
        self, k: float = 1.0, dtype: torch.dtype = torch.float32, device: DeviceLike = None
    ):
        super().__init__(dtype=dtype, device=device)
        self.k = real_number(type(self).__name__, "k", k, positive=True, allow_tensor=True)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * self.k * (x * x).sum(dim=-1)

    def _energy_gradient(self, x: torch.Tensor) -> torch.Tensor:
        return self.k * x

    def _kernel_params(self) -> dict[str, Any]:
        return {"k": self.k}


class RosenbrockModel(AnalyticModel):
    r"""Rosenbrock's banana valley (``d >= 2``); for ``a = 1`` its minimum is 0 at ``x = 1``.

    .. math::
        E(x) = \sum_{i=1}^{d-1} \big[(a - x_i)^2 + b (x_{i+1} - x_i^2)^2\big],

        \partial_j E(x) = [j<d]\,\big(-2(a - x_j) - 4 b x_j (x_{j+1} - x_j^2)\big)
                        + [j>1]\; 2 b (x_j - x_{j-1}^2).

    Args:
        a: valley position.
        b: valley steepness, ``> 0``.
    """

    kernel_name = "rosenbrock"

    def __init__(
        self,
        a: float = 1.0,
        b: float = 100.0,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
    ):
        super().__init__(dtype=dtype, device=device)
        owner = type(self).__name__
        self.a = real_number(owner, "a", a, allow_tensor=True)
        self.b = real_number(owner, "b", b, positive=True, allow_tensor=True)

    def _check_dim(self, dim: int) -> None:
        if dim < 2:
            raise ValueError(f"RosenbrockModel needs states of dimension >= 2, got dimension {dim}")

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        head, tail = x[:, :-1], x[:, 1:]
        return ((self.a - head).square() + self.b * (tail - head * head).square()).sum(dim=-1)

    def _energy_gradient(self, x: torch.Tensor) -> torch.Tensor:
        head, tail = x[:, :-1], x[:, 1:]
        valley = tail - head * head
        grad = torch.zeros_like(x)
        grad[:, :-1] = -2.0 * (self.a - head) - (4.0 * self.b) * head * valley
        grad[:, 1:] += (2.0 * self.b) * valley
        return grad

    def _kernel_params(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b}


class AckleyModel(AnalyticModel):
    r"""Ackley's function: a nearly flat outer region with a sharp global minimum at 0.

    With :math:`r = \sqrt{\tfrac1d \sum_i x_i^2}` and :math:`S = \tfrac1d \sum_i \cos(c x_i)`:

    .. math::
        E(x) = -a\, e^{-b r} - e^{S} + a + e,

        \partial_j E(x) = \frac{a b}{\sqrt d}\, e^{-b r}\, \frac{x_j}{\lVert x \rVert}
                        + \frac{c}{d}\, \sin(c x_j)\, e^{S}.

    The first term is a cone's gradient: its modulus stays ``a b e^{-b r} / √d`` however close
    ``x`` is to 0, and at ``x = 0`` it has no limit (the direction ``x/‖x‖`` is undefined).
    There the gradient is defined as its symmetric value, 0 (0 is in the cone's
    subdifferential), so it is finite everywhere (autograd through ``sqrt(mean(x²))`` gives
    NaN there). ``r`` and the direction are computed after scaling ``x`` by ``max_j |x_j|``,
    so they stay exact where ``‖x‖²`` underflows.

    Args:
        a: depth of the outer funnel.
        b: ``> 0``, its decay rate in ``r``.
        c: frequency of the cosine ripples.
    """

    kernel_name = "ackley"

    def __init__(
        self,
        a: float = 20.0,
        b: float = 0.2,
        c: float = 2.0 * math.pi,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
    ):
        super().__init__(dtype=dtype, device=device)
        owner = type(self).__name__
        self.a = real_number(owner, "a", a, allow_tensor=True)
        self.b = real_number(owner, "b", b, positive=True, allow_tensor=True)
        self.c = real_number(owner, "c", c, allow_tensor=True)

    @staticmethod
    def _polar(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``r`` ``[B, 1]`` and the unit direction ``x/‖x‖`` ``[B, d]`` (0 where ``x = 0``)."""
        peak = x.abs().amax(dim=-1, keepdim=True)
        nonzero = peak > 0
        scaled = x / torch.where(nonzero, peak, torch.ones_like(peak))  # max |entry| is 1
        scaled_norm = torch.linalg.vector_norm(scaled, dim=-1, keepdim=True)  # >= 1 if nonzero
        direction = scaled / torch.where(nonzero, scaled_norm, torch.ones_like(scaled_norm))
        return peak * scaled_norm / math.sqrt(x.shape[-1]), direction

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        r, _ = self._polar(x)
        s = torch.cos(self.c * x).mean(dim=-1)
        return -self.a * torch.exp(-self.b * r.squeeze(-1)) - torch.exp(s) + (self.a + math.e)

    def _energy_gradient(self, x: torch.Tensor) -> torch.Tensor:
        d = x.shape[-1]
        r, direction = self._polar(x)
        s = torch.cos(self.c * x).mean(dim=-1, keepdim=True)
        cone = (self.a * self.b / math.sqrt(d)) * torch.exp(-self.b * r) * direction
        return cone + (self.c / d) * torch.sin(self.c * x) * torch.exp(s)

    def _kernel_params(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "c": self.c}


class RastriginModel(AnalyticModel):
    r"""Rastrigin's function: a quadratic bowl with a grid of cosine local minima.

    .. math::
        E(x) = a d + \sum_i \big(x_i^2 - a \cos(2\pi x_i)\big), \qquad
        \partial_i E(x) = 2 x_i + 2\pi a \sin(2\pi x_i).

    Args:
        a: ripple amplitude.
    """

    kernel_name = "rastrigin"

    def __init__(
        self, a: float = 10.0, dtype: torch.dtype = torch.float32, device: DeviceLike = None
    ):
        super().__init__(dtype=dtype, device=device)
        self.a = real_number(type(self).__name__, "a", a, allow_tensor=True)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        ripples = x * x - self.a * torch.cos(2.0 * math.pi * x)
        return self.a * x.shape[-1] + ripples.sum(dim=-1)

    def _energy_gradient(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x + (2.0 * math.pi * self.a) * torch.sin(2.0 * math.pi * x)

    def _kernel_params(self) -> dict[str, Any]:
        return {"a": self.a}


class HimmelblauModel(AnalyticModel):
    r"""Himmelblau's function on :math:`\mathbb R^2` (four minima of energy 0).

    With :math:`u = x_1^2 + x_2 - 11` and :math:`v = x_1 + x_2^2 - 7`:

    .. math::
        E(x) = u^2 + v^2, \qquad \nabla E(x) = (4 x_1 u + 2 v,\; 2 u + 4 x_2 v).
    """

    kernel_name = "himmelblau"

    def _check_dim(self, dim: int) -> None:
        _require_dim(self, dim, 2)

    @staticmethod
    def _residuals(
        x: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        x1, x2 = x[:, 0], x[:, 1]
        return x1, x2, x1 * x1 + x2 - 11.0, x1 + x2 * x2 - 7.0

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        _, _, u, v = self._residuals(x)
        return u * u + v * v

    def _energy_gradient(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2, u, v = self._residuals(x)
        return torch.stack((4.0 * x1 * u + 2.0 * v, 2.0 * u + 4.0 * x2 * v), dim=-1)

    def _kernel_params(self) -> dict[str, Any]:
        return {}


class BoothModel(AnalyticModel):
    r"""Booth's function on :math:`\mathbb R^2` (minimum 0 at ``(1, 3)``).

    With :math:`u = x_1 + 2 x_2 - 7` and :math:`v = 2 x_1 + x_2 - 5`:

    .. math::
        E(x) = u^2 + v^2, \qquad \nabla E(x) = (2 u + 4 v,\; 4 u + 2 v).
    """

    kernel_name = "booth"

    def _check_dim(self, dim: int) -> None:
        _require_dim(self, dim, 2)

    @staticmethod
    def _residuals(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1, x2 = x[:, 0], x[:, 1]
        return x1 + 2.0 * x2 - 7.0, 2.0 * x1 + x2 - 5.0

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self._residuals(x)
        return u * u + v * v

    def _energy_gradient(self, x: torch.Tensor) -> torch.Tensor:
        u, v = self._residuals(x)
        return torch.stack((2.0 * u + 4.0 * v, 4.0 * u + 2.0 * v), dim=-1)

    def _kernel_params(self) -> dict[str, Any]:
        return {}


class StyblinskiTangModel(AnalyticModel):
    r"""Styblinski-Tang function, minimum near :math:`x_i = -2.9035` in every coordinate.

    .. math::
        E(x) = \tfrac12 \sum_i (x_i^4 - 16 x_i^2 + 5 x_i), \qquad
        \partial_i E(x) = 2 x_i^3 - 16 x_i + \tfrac52.
    """

    kernel_name = "styblinski_tang"

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        x2 = x * x
        return 0.5 * (x2 * x2 - 16.0 * x2 + 5.0 * x).sum(dim=-1)

    def _energy_gradient(self, x: torch.Tensor) -> torch.Tensor:
        return 2.0 * x * x * x - 16.0 * x + 2.5

    def _kernel_params(self) -> dict[str, Any]:
        return {}


class BananaModel(AnalyticModel):
    r"""Haario's twisted Gaussian ("banana", ``d >= 2``): :math:`\mathcal N(0, \mathrm{diag}(s^2,
    1, \dots, 1))` bent along the parabola :math:`x_2 = -b (x_1^2 - s^2)`, a standard test of how a
    sampler follows a narrow curved ridge (Haario, Saksman and Tamminen, 1999).

    With :math:`u = x_2 + b (x_1^2 - s^2)`:

    .. math::
        E(x) = \frac{x_1^2}{2 s^2} + \frac{u^2}{2} + \frac12 \sum_{i>2} x_i^2,

        \nabla E(x) = \Big(\frac{x_1}{s^2} + 2 b\, x_1 u,\; u,\; x_3, \dots, x_d\Big).

    It is normalised in closed form and sampled exactly: :math:`x_1 \sim \mathcal N(0, s^2)`,
    :math:`x_2 = y - b (x_1^2 - s^2)` with :math:`y \sim \mathcal N(0, 1)`, the other coordinates
    standard normal; so :math:`\mathbb E[x_2] = 0` and :math:`\mathrm{Var}(x_2) = 1 + 2 b^2 s^4`.

    Args:
        curvature: ``b``, the bend (0: a Gaussian; Haario et al. use 0.03 and 0.1 with ``s = 10``).
        scale: ``s > 0``, the standard deviation of ``x_1``.
    """

    kernel_name = "banana"

    def __init__(
        self,
        curvature: float = 0.03,
        scale: float = 10.0,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
    ):
        super().__init__(dtype=dtype, device=device)
        owner = type(self).__name__
        self.curvature = real_number(owner, "curvature", curvature, allow_tensor=True)
        self.scale = real_number(owner, "scale", scale, positive=True, allow_tensor=True)

    def _check_dim(self, dim: int) -> None:
        if dim < 2:
            raise ValueError(f"BananaModel needs states of dimension >= 2, got dimension {dim}")

    def _untwisted(self, x: torch.Tensor) -> torch.Tensor:
        """``u = x_2 + b (x_1^2 - s^2)`` ``[B]``, standard normal under the model."""
        return x[:, 1] + self.curvature * (x[:, 0].square() - self.scale**2)

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        u, rest = self._untwisted(x), x[:, 2:]
        return 0.5 * (x[:, 0].square() / self.scale**2 + u.square() + rest.square().sum(dim=-1))

    def _energy_gradient(self, x: torch.Tensor) -> torch.Tensor:
        x1, u = x[:, 0], self._untwisted(x)
        d1 = x1 / self.scale**2 + (2.0 * self.curvature) * x1 * u
        return torch.cat((d1[:, None], u[:, None], x[:, 2:]), dim=-1)

    def _kernel_params(self) -> dict[str, Any]:
        return {"curvature": self.curvature, "scale": self.scale}


# Old names (TorchEBM before 0.5), kept so code written against them runs unchanged.
GaussianEnergy = GaussianModel
DoubleWellEnergy = DoubleWellModel
HarmonicEnergy = HarmonicModel
RosenbrockEnergy = RosenbrockModel
AckleyEnergy = AckleyModel
RastriginEnergy = RastriginModel
