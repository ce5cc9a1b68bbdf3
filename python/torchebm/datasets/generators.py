"""TorchEBM 0.8.9's dataset classes (``torchebm.datasets.TwoMoonsDataset``...), as
``torch.utils.data.Dataset`` wrappers of the generators of :mod:`torchebm.datasets.toy2d`.

Each class takes 0.8.9's constructor arguments (its shape parameters, then ``device``,
``dtype=torch.float32``, ``seed``), draws its points once at construction into ``.data``
(``[n_samples, 2]``), and offers ``get_data()``, ``regenerate(seed=None)``, ``len()`` and indexing
(a ``DataLoader`` batches it). The shape parameters are mapped onto the generators' (each class
says how): the same distributions as 0.8.9's (two moons and the checkerboard on 0.8.9's
coordinates), not the same points. A dataset of one's own subclasses
:class:`BaseSyntheticDataset` and implements ``_generate_data(self)``, as in 0.8.9.

``seed`` seeds a private ``torch.Generator``: the same seed gives the same points, and the global
RNG is neither used nor reseeded (0.8.9 calls ``torch.manual_seed(seed)``). Without a seed the
points come from the global RNG.
"""

from __future__ import annotations

from typing import Optional, Union

from abc import ABC, abstractmethod

import torch
from torch.utils.data import Dataset

from torchebm.datasets import toy2d

DeviceLike = Optional[Union[str, torch.device]]


class BaseSyntheticDataset(Dataset, ABC):
    """A synthetic 2-D point set drawn once; subclasses implement :meth:`_generate_data`.

    Args:
        n_samples: number of points, ``> 0``.
        device, dtype: of ``.data``.
        seed: seeds the draw (see the module docstring); None: the global RNG.
    """

    def __init__(
        self,
        n_samples: int,
        device: DeviceLike = None,
        dtype: torch.dtype = torch.float32,
        seed: Optional[int] = None,
    ):
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples <= 0:
            raise ValueError(f"{type(self).__name__}: n_samples must be a positive int, got {n_samples!r}")
        self.n_samples = n_samples
        self.device = device
        self.dtype = dtype
        self.seed = seed
        self.data: Optional[torch.Tensor] = None
        self._generate()

    @abstractmethod
    def _generate_data(self) -> torch.Tensor:
        """The points, ``[n_samples, 2]`` (any device and floating dtype: ``.data`` gets the
        dataset's), drawn from :attr:`generator`."""

    @property
    def generator(self) -> Optional[torch.Generator]:
        """The draw's random source: a CPU generator seeded with ``seed``, or None (the global
        RNG) without a seed."""
        return self._generator

    def _noise(self, points: torch.Tensor, std: float) -> torch.Tensor:
        """``points + std * N(0, I)`` from :attr:`generator` (no draw when ``std == 0``)."""
        if std < 0:
            raise ValueError(f"{type(self).__name__}: noise must be >= 0, got {std!r}")
        if std == 0:
            return points
        eps = torch.randn(points.shape, generator=self.generator, dtype=torch.float64, device=points.device)
        return points + std * eps.to(points.dtype)

    def _generate(self) -> None:
        self._generator = None if self.seed is None else torch.Generator().manual_seed(self.seed)
        points = torch.as_tensor(self._generate_data())
        self.data = points.to(device=self.device, dtype=self.dtype)

    def regenerate(self, seed: Optional[int] = None) -> None:
        """Draw the points again, with ``seed`` if given (it replaces the stored seed)."""
        if seed is not None:
            self.seed = seed
        self._generate()

    def get_data(self) -> torch.Tensor:
        """All the points, ``[n_samples, 2]``."""
        return self.data

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, idx: int) -> torch.Tensor:
        return self.data[idx]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_samples={len(self)}, device={self.device}, dtype={self.dtype})"


class GaussianMixtureDataset(BaseSyntheticDataset):
    """``n_components`` Gaussians of standard deviation ``std`` with means on a circle of radius
    ``radius``: :func:`~torchebm.datasets.toy2d.gaussian_ring`."""

    def __init__(self, n_samples: int = 2000, n_components: int = 8, std: float = 0.05,
                 radius: float = 1.0, device: DeviceLike = None, dtype: torch.dtype = torch.float32,
                 seed: Optional[int] = None):
        self.n_components, self.std, self.radius = n_components, std, radius
        super().__init__(n_samples, device, dtype, seed)

    def _generate_data(self):
        return toy2d.gaussian_ring(self.n_samples, n_components=self.n_components, radius=self.radius,
                                   std=self.std, generator=self.generator, dtype=torch.float64)


class EightGaussiansDataset(BaseSyntheticDataset):
    """Eight Gaussians of standard deviation ``std`` with means on a circle of radius ``scale``:
    :func:`~torchebm.datasets.toy2d.eight_gaussians`."""

    def __init__(self, n_samples: int = 2000, std: float = 0.02, scale: float = 2.0,
                 device: DeviceLike = None, dtype: torch.dtype = torch.float32, seed: Optional[int] = None):
        self.std, self.scale = std, scale
        super().__init__(n_samples, device, dtype, seed)

    def _generate_data(self):
        return toy2d.eight_gaussians(self.n_samples, radius=self.scale, std=self.std, generator=self.generator,
                                     dtype=torch.float64)


class TwoMoonsDataset(BaseSyntheticDataset):
    """Two interleaved unit half circles with Gaussian noise ``noise``:
    :func:`~torchebm.datasets.toy2d.two_moons` with ``scale=1``, moved back from the origin by
    ``(1/2, 1/4)`` (0.8.9's coordinates: the upper moon ``(cos t, sin t)``, the lower one
    ``(1 - cos t, 1/2 - sin t)``)."""

    def __init__(self, n_samples: int = 2000, noise: float = 0.05, device: DeviceLike = None,
                 dtype: torch.dtype = torch.float32, seed: Optional[int] = None):
        self.noise = noise
        super().__init__(n_samples, device, dtype, seed)

    def _generate_data(self):
        points = toy2d.two_moons(self.n_samples, noise=self.noise, scale=1.0, generator=self.generator,
                                 dtype=torch.float64)
        return points + torch.tensor([0.5, 0.25], dtype=torch.float64)


class SwissRollDataset(BaseSyntheticDataset):
    """A swiss roll with parameter ``t ~ U[arclength pi, 3 arclength pi]``:
    :func:`~torchebm.datasets.toy2d.swiss_roll`, scaled so that its outer radius is 2, then
    Gaussian noise ``noise``."""

    def __init__(self, n_samples: int = 2000, noise: float = 0.05, arclength: float = 3.0,
                 device: DeviceLike = None, dtype: torch.dtype = torch.float32, seed: Optional[int] = None):
        self.noise, self.arclength = noise, arclength
        super().__init__(n_samples, device, dtype, seed)

    def _generate_data(self):
        scale = 2.0 / (3 * self.arclength * torch.pi)  # outer radius: scale * 3 arclength pi = 2
        return toy2d.swiss_roll(self.n_samples, noise=self.noise, scale=scale, arclength=self.arclength,
                                generator=self.generator, dtype=torch.float64)


class CircleDataset(BaseSyntheticDataset):
    """One circle of radius ``radius`` with Gaussian noise ``noise``:
    :func:`~torchebm.datasets.toy2d.circles` with ``radii=(radius,)``."""

    def __init__(self, n_samples: int = 2000, noise: float = 0.05, radius: float = 1.0,
                 device: DeviceLike = None, dtype: torch.dtype = torch.float32, seed: Optional[int] = None):
        self.noise, self.radius = noise, radius
        super().__init__(n_samples, device, dtype, seed)

    def _generate_data(self):
        return toy2d.circles(self.n_samples, radii=(self.radius,), noise=self.noise, generator=self.generator,
                             dtype=torch.float64)


class CheckerboardDataset(BaseSyntheticDataset):
    """Uniform on the squares ``(i, j)`` with ``floor(x) + floor(y)`` odd of a board covering
    ``[-range_limit, range_limit]^2`` (0.8.9's pattern), then Gaussian noise ``noise``:
    :func:`~torchebm.datasets.toy2d.checkerboard` mirrored in ``x`` (which swaps the dark and
    light squares), with unit squares when ``range_limit`` is a whole number, else 8 x 8
    squares of side ``range_limit / 4``."""

    def __init__(self, n_samples: int = 2000, range_limit: float = 4.0, noise: float = 0.0,
                 device: DeviceLike = None, dtype: torch.dtype = torch.float32, seed: Optional[int] = None):
        self.range_limit, self.noise = range_limit, noise
        super().__init__(n_samples, device, dtype, seed)

    def _generate_data(self):
        whole = float(self.range_limit).is_integer() and self.range_limit > 0
        n_cells, size = (2 * int(self.range_limit), 1.0) if whole else (8, self.range_limit / 4)
        points = toy2d.checkerboard(self.n_samples, n_cells=n_cells, cell_size=size,
                                    generator=self.generator, dtype=torch.float64)
        return self._noise(points * torch.tensor([-1.0, 1.0], dtype=torch.float64), self.noise)


class PinwheelDataset(BaseSyntheticDataset):
    """A pinwheel of ``n_classes`` arms (:func:`~torchebm.datasets.toy2d.pinwheel` with
    ``n_arms=n_classes``, ``tangential_std=angular_scale``, ``rate=spiral_scale / 20`` and
    ``scale=radial_scale * 3/4``, the generator's defaults at 0.8.9's default arguments), then
    Gaussian noise ``noise``."""

    def __init__(self, n_samples: int = 2000, n_classes: int = 5, noise: float = 0.05,
                 radial_scale: float = 2.0, angular_scale: float = 0.1, spiral_scale: float = 5.0,
                 device: DeviceLike = None, dtype: torch.dtype = torch.float32, seed: Optional[int] = None):
        self.n_classes, self.noise = n_classes, noise
        self.radial_scale, self.angular_scale, self.spiral_scale = radial_scale, angular_scale, spiral_scale
        super().__init__(n_samples, device, dtype, seed)

    def _generate_data(self):
        points = toy2d.pinwheel(self.n_samples, n_arms=self.n_classes, tangential_std=self.angular_scale,
                                rate=self.spiral_scale / 20, scale=self.radial_scale * 0.75,
                                generator=self.generator, dtype=torch.float64)
        return self._noise(points, self.noise)


class GridDataset(BaseSyntheticDataset):
    """The ``n_samples_per_dim^2`` points of a regular grid over
    ``[-range_limit, range_limit]^2``, each with Gaussian noise ``noise`` (so
    ``len(dataset) == n_samples_per_dim ** 2``)."""

    def __init__(self, n_samples_per_dim: int = 10, range_limit: float = 1.0, noise: float = 0.01,
                 device: DeviceLike = None, dtype: torch.dtype = torch.float32, seed: Optional[int] = None):
        if isinstance(n_samples_per_dim, bool) or not isinstance(n_samples_per_dim, int) or n_samples_per_dim <= 0:
            raise ValueError(f"GridDataset: n_samples_per_dim must be a positive int, got {n_samples_per_dim!r}")
        self.n_samples_per_dim, self.range_limit, self.noise = n_samples_per_dim, range_limit, noise
        super().__init__(n_samples_per_dim ** 2, device, dtype, seed)

    def _generate_data(self):
        side = torch.linspace(-self.range_limit, self.range_limit, self.n_samples_per_dim, dtype=torch.float64)
        points = torch.cartesian_prod(side, side)
        return self._noise(points, self.noise)


__all__ = [
    "BaseSyntheticDataset",
    "CheckerboardDataset",
    "CircleDataset",
    "EightGaussiansDataset",
    "GaussianMixtureDataset",
    "GridDataset",
    "PinwheelDataset",
    "SwissRollDataset",
    "TwoMoonsDataset",
]
