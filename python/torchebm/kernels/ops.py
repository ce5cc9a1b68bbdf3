"""Python face of the compiled ops: one small function per op calling ``torch.ops.torchebm``,
with its fake (meta) kernel beside it so each op traces under ``torch.compile``.
"""

from __future__ import annotations

from typing import Optional

import torch

from torchebm.kernels.loader import load_ops

_LOADED = load_ops()


def langevin_update(
    x: torch.Tensor,
    grad: torch.Tensor,
    noise: Optional[torch.Tensor],
    a: float,
    b: float,
    clamp_min: Optional[float] = None,
    clamp_max: Optional[float] = None,
    grad_clip: Optional[float] = None,
    seed: int = 0,
    step: int = 0,
) -> torch.Tensor:
    """Fused ``x - a * clip(grad) + b * xi`` (then clamp); xi is ``noise`` or in-kernel Philox."""
    return torch.ops.torchebm.langevin_update(
        x, grad, noise, a, b, clamp_min, clamp_max, grad_clip, seed, step
    )


if _LOADED:

    @torch.library.register_fake("torchebm::langevin_update")
    def _(x, grad, noise, a, b, clamp_min, clamp_max, grad_clip, seed, step):
        return torch.empty_like(x)
