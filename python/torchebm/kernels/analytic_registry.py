"""The built-in analytic models as the kernels know them: the Python mirror of the C++ table
``TORCHEBM_ANALYTIC_MODELS`` in ``csrc/include/torchebm/energies.h`` (``tests/test_models.py``
checks that the compiled library agrees, row by row).

Every Python list of the analytic models derives from :data:`ANALYTIC_KERNELS`: the parameter
order of ``ops.kernel_args`` (``ops.ENERGY_PARAMS``), the names ``reference.analytic_energy_grad``
accepts, and the model class of each kernel in :mod:`torchebm.core.analytic_models`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AnalyticKernel:
    """One row of the table."""

    name: str
    """The kernel name (``energy`` argument of the ops, first half of ``kernel_spec()``)."""
    params: tuple[str, ...]
    """Scalar parameters, in the order the kernels take them."""
    tensors: tuple[str, ...]
    """Tensor parameters (the Gaussian's ``mean [d]`` and ``precision [d, d]``)."""
    fixed_dim: int
    """The state dimension ``d`` the model is defined for; 0: any."""
    min_dim: int
    """The least ``d``."""
    model: str
    """The class in :mod:`torchebm.core.analytic_models` whose closed form the kernel computes."""


ANALYTIC_KERNELS: dict[str, AnalyticKernel] = {
    k.name: k
    for k in (
        AnalyticKernel("gaussian", (), ("mean", "precision"), 0, 1, "GaussianModel"),
        AnalyticKernel("double_well", ("barrier_height", "b"), (), 0, 1, "DoubleWellModel"),
        AnalyticKernel("harmonic", ("k",), (), 0, 1, "HarmonicModel"),
        AnalyticKernel("rosenbrock", ("a", "b"), (), 0, 2, "RosenbrockModel"),
        AnalyticKernel("ackley", ("a", "b", "c"), (), 0, 1, "AckleyModel"),
        AnalyticKernel("rastrigin", ("a",), (), 0, 1, "RastriginModel"),
        AnalyticKernel("himmelblau", (), (), 2, 2, "HimmelblauModel"),
        AnalyticKernel("booth", (), (), 2, 2, "BoothModel"),
        AnalyticKernel("styblinski_tang", (), (), 0, 1, "StyblinskiTangModel"),
        AnalyticKernel("banana", ("curvature", "scale"), (), 0, 2, "BananaModel"),
    )
}
"""Kernel name -> :class:`AnalyticKernel`, in the C++ table's order."""

__all__ = ["ANALYTIC_KERNELS", "AnalyticKernel"]
