"""torchebm.datasets: two-dimensional toy distributions (``toy2d``), returned as Tensor[n, 2], and
TorchEBM 0.8.9's dataset classes over them (``TwoMoonsDataset``..., in ``generators``)."""

from torchebm.datasets.generators import (
    BaseSyntheticDataset,
    CheckerboardDataset,
    CircleDataset,
    EightGaussiansDataset,
    GaussianMixtureDataset,
    GridDataset,
    PinwheelDataset,
    SwissRollDataset,
    TwoMoonsDataset,
)

from torchebm.datasets.toy2d import (
    TOY_DATASETS,
    checkerboard,
    circles,
    eight_gaussian_means,
    eight_gaussians,
    gaussian_grid,
    gaussian_ring,
    make_toy2d,
    pinwheel,
    swiss_roll,
    two_moons,
)

from torchebm.datasets import generators, toy2d

__all__ = [*generators.__all__, *toy2d.__all__]
