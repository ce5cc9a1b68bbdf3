"""The kernel layer: compiled ops (``ops``), their pure-PyTorch references (``reference``),
the table of analytic models they know (``analytic_registry``), and what is available on this
machine.
"""

from __future__ import annotations

import torch

from torchebm.kernels import analytic_registry, ops, reference
from torchebm.kernels.dispatch import has_kernel
from torchebm.kernels.loader import how_loaded, load_ops


def available() -> bool:
    """Whether the compiled CPU kernels are loaded (else the reference path runs)."""
    return load_ops()


def cuda_kernels_built() -> bool:
    """Whether the loaded library registered CUDA kernels (true even on a machine with no GPU)."""
    return has_kernel("langevin_update", "cuda")


def cuda_available() -> bool:
    """Whether CUDA kernels are registered (the build had CUDA) and a GPU is present."""
    return cuda_kernels_built() and torch.cuda.is_available()


__all__ = [
    "analytic_registry",
    "available",
    "cuda_available",
    "cuda_kernels_built",
    "how_loaded",
    "ops",
    "reference",
]
