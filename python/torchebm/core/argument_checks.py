"""Constructor-argument checks shared by models and schedulers.

Each returns the normalised value or raises with a message that names the owner, the argument,
the value received and what was expected.
"""

from __future__ import annotations

import math
import numbers

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


def count(owner: str, name: str, value: object, *, minimum: int) -> int:
    """``value`` as an int ``>= minimum``; an integral float such as ``1e3`` is accepted."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {value!r} ({type(value).__name__})")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")
    return value
