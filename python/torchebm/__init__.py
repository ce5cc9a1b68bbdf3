"""torchebm: energy-based models in PyTorch, with MCMC samplers in fused C++/CUDA kernels.

The public API follows TorchEBM's documentation; see README.md.
"""

import torch  # noqa: F401  (the extension links libtorch: import torch first)

__version__ = "0.1.0"

from torchebm import kernels  # noqa: E402
from torchebm import core  # noqa: E402
from torchebm import samplers  # noqa: E402
from torchebm import losses  # noqa: E402
from torchebm import datasets  # noqa: E402
from torchebm import diagnostics  # noqa: E402
from torchebm import utils  # noqa: E402

__all__ = ["core", "samplers", "losses", "datasets", "diagnostics", "utils", "kernels", "__version__"]
