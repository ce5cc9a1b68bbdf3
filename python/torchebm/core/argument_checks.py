"""Constructor-argument checks shared by models and schedulers.

Each returns the normalised value or raises with a message that names the owner, the argument,
the value received and what was expected.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import torch


def check_dtype(dtype: object, *, floating: bool = True) -> torch.dtype:
    """``dtype`` if it is a ``torch.dtype`` (a floating one, unless ``floating=False``),
    else ``TypeError``."""
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype, got {dtype!r} ({type(dtype).__name__})")
    if floating and not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype}")
    return dtype


def real_number(
    owner: str,
    name: str,
    value: object,
    *,
    positive: bool = False,
    non_negative: bool = False,
    allow_tensor: bool = False,
) -> float:
    """``value`` as a finite Python float.

    ``bool`` is refused (``True`` for a step size is a bug, not a 1.0); a one-element tensor is
    accepted only with ``allow_tensor``.
    """
    if allow_tensor and isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{owner}: {name} must be a float or int, got {value!r} ({type(value).__name__})"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{owner}: {name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{owner}: {name} must be positive, got {value}")
    if non_negative and value < 0:
        raise ValueError(f"{owner}: {name} must be non-negative, got {value}")
    return value


def count(owner: str, name: str, value: object, *, minimum: int, maximum: Optional[int] = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``; an integral float such as ``1e3`` is
    accepted. ``maximum`` bounds a count that sizes work (e.g. ``N_LEAPFROG_MAX``)."""
    if type(value) is int and value >= minimum and (maximum is None or value <= maximum):
        return value  # the common case, checked in a few operations (every sample() call)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r} ({type(value).__name__})")
    value = int(value)
    if value < minimum:
        # "positive" as TorchEBM 0.8.9 words it, which scripts may match on.
        rule = "positive (>= 1)" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{owner}: {name} must be {rule}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{owner}: {name} must be <= {maximum}, got {value}")
    return value


N_LEAPFROG_MAX = 2**31 - 1
"""The most leapfrog steps per HMC transition: the kernels' int32 loop count (hmc_chain's
check), so every path accepts the same values."""


def scheduled_value(owner: str, name: str, value: object, *, positive: bool):
    """A hyper-parameter that may be scheduled: a :class:`~torchebm.core.BaseScheduler` as given
    (its values are not checked), else a finite real (a one-element tensor is read), ``> 0``
    when ``positive``, else ``>= 0``."""
    from torchebm.core.base_scheduler import BaseScheduler

    if isinstance(value, BaseScheduler):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{owner}: {name} must be a float or a BaseScheduler, got {value!r} "
            f"({type(value).__name__})"
        )
    return real_number(owner, name, value, positive=positive, non_negative=not positive)


def event_shape(owner: str, dim: object) -> tuple[int, ...]:
    """``dim`` (an int or a tuple of ints, each >= 1) as an event shape tuple."""
    dims = (dim,) if not isinstance(dim, (tuple, list, torch.Size)) else dim
    if len(dims) == 0:
        raise ValueError(f"{owner}: dim must be a positive int or a non-empty tuple, got {dim!r}")
    for d in dims:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1:
            raise ValueError(
                f"{owner}: dim must be a positive int or a tuple of positive ints, got {dim!r}"
            )
    return tuple(int(d) for d in dims)


def flag(owner: str, name: str, value: object) -> bool:
    """``value`` if it is a bool, else ``TypeError`` naming ``name`` and the value."""
    if not isinstance(value, bool):
        raise TypeError(f"{owner}: {name} must be a bool, got {value!r} ({type(value).__name__})")
    return value


def clamp_bounds(owner: str, clamp: object):
    """``clamp``: None, or a ``(lo, hi)`` pair of reals or Nones with ``lo < hi``, as floats."""
    if clamp is None:
        return None
    if not isinstance(clamp, (tuple, list)) or len(clamp) != 2:
        raise ValueError(f"{owner}: clamp must be a (min, max) pair, got {clamp!r}")
    lo, hi = clamp
    for name, bound in (("min", lo), ("max", hi)):
        if bound is not None and (
            isinstance(bound, bool) or not isinstance(bound, numbers.Real) or math.isnan(bound)
        ):
            raise ValueError(f"{owner}: clamp {name} must be a real number or None, got {bound!r}")
    lo = None if lo is None else float(lo)
    hi = None if hi is None else float(hi)
    if lo is not None and hi is not None and not lo < hi:
        raise ValueError(f"{owner}: clamp min must be < max, got {clamp!r}")
    return lo, hi


def diagonal_mass(owner: str, mass: object):
    """An HMC mass: None (unit), a positive finite float, or a positive finite floating tensor,
    0-d or ``[dim]`` (diagonal), returned detached."""
    if mass is None:
        return None
    if isinstance(mass, torch.Tensor):
        if not mass.is_floating_point() or mass.dim() > 1 or mass.numel() == 0:
            raise ValueError(
                f"{owner}: mass must be a float or a 1-D floating tensor [dim] (diagonal), got "
                f"a {mass.dtype} tensor of shape {tuple(mass.shape)}"
            )
        if not bool(torch.isfinite(mass).all()) or not bool((mass > 0).all()):
            raise ValueError(f"{owner}: mass must be positive and finite, got {mass}")
        return mass.detach()
    if isinstance(mass, bool) or not isinstance(mass, numbers.Real):
        raise TypeError(f"{owner}: mass must be None, a float or a tensor, got {mass!r}")
    if not 0 < float(mass) < float("inf"):
        raise ValueError(f"{owner}: mass must be positive and finite, got {mass}")
    return float(mass)
