"""torchebm.datasets: two-dimensional toy distributions (``toy2d``), returned as Tensor[n, 2]."""

from torchebm.datasets.toy2d import (
    TOY_DATASETS,
    checkerboard,
    circles,
    eight_gaussian_means,
    eight_gaussians,
    gaussian_grid,
    make_toy2d,
    pinwheel,
    swiss_roll,
    two_moons,
)

__all__ = [
    "TOY_DATASETS",
    "checkerboard",
    "circles",
    "eight_gaussian_means",
    "eight_gaussians",
    "gaussian_grid",
    "make_toy2d",
    "pinwheel",
    "swiss_roll",
    "two_moons",
]
