"""torchebm: energy-based models in PyTorch, with MCMC samplers in fused C++/CUDA kernels.

The public API follows TorchEBM's documentation; see README.md.
"""

import torch  # noqa: F401  (the extension links libtorch: import torch first)


def _package_version() -> str:
    """The installed distribution's version (``torchebm-fused``), else pyproject.toml's (a source
    tree on ``sys.path`` without an install)."""
    from importlib import metadata

    try:
        return metadata.version("torchebm-fused")
    except metadata.PackageNotFoundError:
        import pathlib
        import tomllib

        pyproject = pathlib.Path(__file__).resolve().parents[2] / "pyproject.toml"
        with open(pyproject, "rb") as f:
            return tomllib.load(f)["project"]["version"]


__version__ = _package_version()

from torchebm import kernels  # noqa: E402
from torchebm import core  # noqa: E402
from torchebm import samplers  # noqa: E402
from torchebm import losses  # noqa: E402
from torchebm import datasets  # noqa: E402
from torchebm import diagnostics  # noqa: E402
from torchebm import utils  # noqa: E402
from torchebm import integrators  # noqa: E402
from torchebm._out_of_scope import module_getattr  # noqa: E402

__all__ = ["core", "samplers", "losses", "datasets", "diagnostics", "utils", "kernels", "integrators",
           "__version__"]

# TorchEBM 0.8.9's subpackages that this package leaves out (models, interpolants, couplings,
# cuda) raise an ImportError that says so.
__getattr__ = module_getattr("torchebm")
