"""The kernel layer: compiled ops (``ops``), their pure-PyTorch references (``reference``),
and what is available on this machine.
"""

from __future__ import annotations

import torch

from torchebm.kernels import ops, reference
from torchebm.kernels.loader import how_loaded, load_ops


def available() -> bool:
    """Whether the compiled CPU kernels are loaded (else the reference path runs)."""
    return load_ops()


def cuda_available() -> bool:
    """Whether CUDA kernels are registered (the build had CUDA) and a GPU is present."""
    return (
        load_ops()
        and torch.cuda.is_available()
        and torch._C._dispatch_has_kernel_for_dispatch_key("torchebm::langevin_update", "CUDA")
    )


def cuda_kernels_built() -> bool:
    """Whether the loaded library registered CUDA kernels (true even on a machine with no GPU)."""
    return load_ops() and torch._C._dispatch_has_kernel_for_dispatch_key(
        "torchebm::langevin_update", "CUDA"
    )


__all__ = ["available", "cuda_available", "cuda_kernels_built", "how_loaded", "ops", "reference"]
