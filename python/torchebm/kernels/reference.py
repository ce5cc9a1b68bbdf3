"""Pure-PyTorch reference of every fused op: the fallback and the oracle the kernels are
tested against. Each function takes the same arguments as its op in ``ops.py`` (noise passed
in explicitly) and mirrors the maths of ``csrc/include/torchebm/``.
"""

from __future__ import annotations

from typing import Optional

import torch


def langevin_update(
    x: torch.Tensor,
    grad: torch.Tensor,
    noise: torch.Tensor,
    a: float,
    b: float,
    clamp_min: Optional[float] = None,
    clamp_max: Optional[float] = None,
    grad_clip: Optional[float] = None,
) -> torch.Tensor:
    """``x' = clamp(x - a * clip(grad, -c, c) + b * noise, clamp_min, clamp_max)``."""
    if grad_clip is not None:
        grad = grad.clamp(-grad_clip, grad_clip)
    out = x - a * grad + b * noise
    if clamp_min is not None or clamp_max is not None:
        out = out.clamp(clamp_min, clamp_max)
    return out
