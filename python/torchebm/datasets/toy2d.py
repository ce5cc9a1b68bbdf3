"""Two-dimensional toy distributions for training and testing energy-based models.

Every generator has the same calling convention::

    x = eight_gaussians(n_samples, *, <shape parameters>, seed=None, generator=None,
                        device=None, dtype=None)        # -> Tensor[n_samples, 2]

Randomness comes from ``generator`` (a ``torch.Generator``), or from a fresh CPU generator
seeded with ``seed``, or, when neither is given, from torch's global generator, so
``torch.manual_seed`` reproduces a draw. Points are drawn in float64 on the generator's device
and then cast to ``dtype`` (default: ``torch.get_default_dtype()``) and moved to ``device``
(default: the generator's device), so a seed gives the same points on every device up to the
final cast.

``TOY_DATASETS`` maps each name (``"eight_gaussians"``, ``"gaussian_grid"``, ``"two_moons"``,
``"circles"``, ``"swiss_roll"``, ``"checkerboard"``, ``"pinwheel"``) to its generator, and
``make_toy2d(name, n_samples, **kwargs)`` dispatches by name.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Sequence, Union

import torch

DeviceLike = Optional[Union[str, torch.device]]

__all__ = [
    "gaussian_ring",
    "eight_gaussians",
    "eight_gaussian_means",
    "gaussian_grid",
    "two_moons",
    "circles",
    "swiss_roll",
    "checkerboard",
    "pinwheel",
    "TOY_DATASETS",
    "make_toy2d",
]


class _Draws:
    """The calling convention of one generator call: the random source (``seed`` or
    ``generator``: float64 draws on the generator's device) and the output's ``device`` and
    ``dtype``, applied by :meth:`finish`."""

    def __init__(
        self,
        seed: Optional[int],
        generator: Optional[torch.Generator],
        device: DeviceLike,
        dtype: Optional[torch.dtype],
    ):
        if seed is not None and generator is not None:
            raise ValueError(
                f"pass either seed or generator, not both (got seed={seed!r} and a generator)"
            )
        if seed is not None:
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise TypeError(f"seed must be an int, got {seed!r} ({type(seed).__name__})")
            generator = torch.Generator().manual_seed(seed)
        self.generator = generator
        self.device = generator.device if generator is not None else torch.device("cpu")
        self.out_device = device if device is not None else self.device
        self.out_dtype = dtype

    def normal(self, *shape: int) -> torch.Tensor:
        return torch.randn(
            *shape, generator=self.generator, device=self.device, dtype=torch.float64
        )

    def uniform(self, *shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=self.generator, device=self.device, dtype=torch.float64)

    def component(self, n: int, n_components: int) -> torch.Tensor:
        """Index of the mixture component of each point, uniform over ``n_components``."""
        return torch.randint(
            n_components, (n,), generator=self.generator, device=self.device
        )

    def finish(self, points: torch.Tensor) -> torch.Tensor:
        """The float64 ``points`` cast to the call's dtype (default: torch's default dtype) on
        its device."""
        dtype = self.out_dtype if self.out_dtype is not None else torch.get_default_dtype()
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating-point dtype, got {dtype}")
        return points.to(device=self.out_device, dtype=dtype)


def _check_int(name: str, value: int, allow_zero: bool = False) -> int:
    """``value`` as an int (not a bool) that is > 0, or >= 0 when ``allow_zero``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        kind = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{name} must be a {kind} int, got {value!r}")
    return value


def _check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def gaussian_ring(
    n_samples: int,
    *,
    n_components: int = 8,
    radius: float = 2.0,
    std: float = 0.2,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: DeviceLike = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Equal-weight mixture of ``K = n_components`` isotropic Gaussians with means on a ring.

    ``p(x) = 1/K sum_k N(x; mu_k, std^2 I)`` with ``mu_k = radius (cos(2 pi k/K), sin(2 pi k/K))``,
    ``k = 0..K-1``.

    Returns:
        Tensor[n_samples, 2].
    """
    n = _check_int("n_samples", n_samples, allow_zero=True)
    k = _check_int("n_components", n_components)
    radius = _check_positive("radius", radius)
    std = _check_positive("std", std, allow_zero=True)
    draws = _Draws(seed, generator, device, dtype)
    angle = draws.component(n, k).to(torch.float64) * (2 * math.pi / k)
    means = radius * torch.stack([angle.cos(), angle.sin()], dim=1)
    return draws.finish(means + std * draws.normal(n, 2))


def eight_gaussians(
    n_samples: int,
    *,
    radius: float = 2.0,
    std: float = 0.2,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: DeviceLike = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Equal-weight mixture of 8 isotropic Gaussians on a ring: :func:`gaussian_ring` with
    ``n_components=8``.

    ``p(x) = 1/8 sum_k N(x; mu_k, std^2 I)`` with ``mu_k = radius (cos(2 pi k/8), sin(2 pi k/8))``,
    ``k = 0..7``. With the defaults (radius 2, std 0.2) neighbouring means are
    ``2 radius sin(pi/8) = 1.53`` apart, 7.7 standard deviations.

    Returns:
        Tensor[n_samples, 2].
    """
    return gaussian_ring(n_samples, n_components=8, radius=radius, std=std, seed=seed,
                         generator=generator, device=device, dtype=dtype)


def eight_gaussian_means(radius: float = 2.0) -> torch.Tensor:
    """The 8 means of :func:`eight_gaussians` with this ``radius``, as Tensor[8, 2] (float64)."""
    angle = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
    return radius * torch.stack([angle.cos(), angle.sin()], dim=1)


def gaussian_grid(
    n_samples: int,
    *,
    n_per_side: int = 5,
    spacing: float = 1.0,
    std: float = 0.1,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: DeviceLike = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Equal-weight mixture of ``n_per_side^2`` isotropic Gaussians on a square grid.

    Means ``spacing * (i - (m-1)/2, j - (m-1)/2)`` for ``i, j = 0..m-1`` with ``m = n_per_side``
    (the grid is centred on the origin), covariance ``std^2 I``.

    Returns:
        Tensor[n_samples, 2].
    """
    n = _check_int("n_samples", n_samples, allow_zero=True)
    n_per_side = _check_int("n_per_side", n_per_side)
    spacing = _check_positive("spacing", spacing)
    std = _check_positive("std", std, allow_zero=True)
    draws = _Draws(seed, generator, device, dtype)
    k = draws.component(n, n_per_side * n_per_side)
    ij = torch.stack([k // n_per_side, k % n_per_side], dim=1).to(torch.float64)
    means = spacing * (ij - (n_per_side - 1) / 2)
    return draws.finish(means + std * draws.normal(n, 2))


def two_moons(
    n_samples: int,
    *,
    noise: float = 0.1,
    scale: float = 2.0,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: DeviceLike = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Two interleaved half circles, centred on the origin.

    Each point picks a moon with probability 1/2 and ``t ~ U[0, pi]``. The upper moon is
    ``(cos t, sin t)``, the lower one ``(1 - cos t, 1/2 - sin t)``; the pair is shifted by
    ``-(1/2, 1/4)`` so its bounding box is centred, multiplied by ``scale``, and Gaussian noise
    of standard deviation ``noise`` is added: ``x = scale (m(t) - (1/2, 1/4)) + noise eps``.

    Returns:
        Tensor[n_samples, 2].
    """
    n = _check_int("n_samples", n_samples, allow_zero=True)
    noise = _check_positive("noise", noise, allow_zero=True)
    scale = _check_positive("scale", scale)
    draws = _Draws(seed, generator, device, dtype)
    lower = draws.component(n, 2).to(torch.float64)
    t = math.pi * draws.uniform(n)
    upper_x, upper_y = t.cos(), t.sin()
    x = upper_x + lower * (1 - 2 * upper_x)  # lower moon: 1 - cos t
    y = upper_y + lower * (0.5 - 2 * upper_y)  # lower moon: 1/2 - sin t
    centred = torch.stack([x - 0.5, y - 0.25], dim=1)
    return draws.finish(scale * centred + noise * draws.normal(n, 2))


def circles(
    n_samples: int,
    *,
    radii: Sequence[float] = (1.0, 2.0),
    noise: float = 0.05,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: DeviceLike = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Concentric circles centred on the origin.

    Each point picks one of the ``radii`` with equal probability and an angle
    ``theta ~ U[0, 2 pi)``: ``x = r (cos theta, sin theta) + noise eps``.

    Returns:
        Tensor[n_samples, 2].
    """
    n = _check_int("n_samples", n_samples, allow_zero=True)
    radii = [float(r) for r in radii]
    if not radii or min(radii) <= 0:
        raise ValueError(f"radii must be a non-empty sequence of positive numbers, got {radii!r}")
    noise = _check_positive("noise", noise, allow_zero=True)
    draws = _Draws(seed, generator, device, dtype)
    r = torch.tensor(radii, dtype=torch.float64, device=draws.device)[draws.component(n, len(radii))]
    theta = 2 * math.pi * draws.uniform(n)
    ring = r[:, None] * torch.stack([theta.cos(), theta.sin()], dim=1)
    return draws.finish(ring + noise * draws.normal(n, 2))


def swiss_roll(
    n_samples: int,
    *,
    noise: float = 0.1,
    scale: float = 0.2,
    arclength: float = 1.5,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: DeviceLike = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """A two-dimensional swiss roll (an Archimedean spiral with uniform parameter).

    ``t ~ U[arclength pi, 3 arclength pi]``, ``x = scale t (cos t, sin t) + noise eps``; with the
    defaults (``arclength = 1.5``, ``scale = 0.2``) the spiral reaches radius
    ``0.2 * 4.5 pi = 2.8``.

    Returns:
        Tensor[n_samples, 2].
    """
    n = _check_int("n_samples", n_samples, allow_zero=True)
    noise = _check_positive("noise", noise, allow_zero=True)
    scale = _check_positive("scale", scale)
    arclength = _check_positive("arclength", arclength)
    draws = _Draws(seed, generator, device, dtype)
    t = arclength * math.pi * (1 + 2 * draws.uniform(n))
    spiral = scale * t[:, None] * torch.stack([t.cos(), t.sin()], dim=1)
    return draws.finish(spiral + noise * draws.normal(n, 2))


def checkerboard(
    n_samples: int,
    *,
    n_cells: int = 4,
    cell_size: float = 1.0,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: DeviceLike = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Uniform density on the dark squares of a centred checkerboard.

    The board is ``n_cells x n_cells`` squares of side ``cell_size`` covering
    ``[-L/2, L/2]^2`` with ``L = n_cells * cell_size``. Square ``(i, j)`` (column ``i``, row
    ``j``, counted from the lower-left corner) is dark when ``i + j`` is even; the density is
    ``2 / L^2`` on dark squares (for even ``n_cells``) and 0 elsewhere.

    Returns:
        Tensor[n_samples, 2].
    """
    n = _check_int("n_samples", n_samples, allow_zero=True)
    n_cells = _check_int("n_cells", n_cells)
    cell_size = _check_positive("cell_size", cell_size)
    draws = _Draws(seed, generator, device, dtype)
    n_dark = (n_cells * n_cells + 1) // 2
    # Dark squares enumerated row by row: row j holds columns i = (j % 2), (j % 2) + 2, ...
    k = draws.component(n, n_dark)
    per_pair = n_cells  # two consecutive rows hold n_cells dark squares together
    pair, rest = k // per_pair, k % per_pair
    first_row_len = (n_cells + 1) // 2
    in_second = (rest >= first_row_len).long()
    row = 2 * pair + in_second
    col = 2 * (rest - in_second * first_row_len) + in_second
    corner = torch.stack([col, row], dim=1).to(torch.float64) * cell_size
    points = corner + cell_size * draws.uniform(n, 2) - n_cells * cell_size / 2
    return draws.finish(points)


def pinwheel(
    n_samples: int,
    *,
    n_arms: int = 5,
    radial_std: float = 0.3,
    tangential_std: float = 0.1,
    rate: float = 0.25,
    scale: float = 1.5,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
    device: DeviceLike = None,
    dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """A pinwheel: ``n_arms`` curved arms, equally likely, spiralling out of the origin.

    For arm ``k`` draw ``u = 1 + radial_std e1`` and ``v = tangential_std e2`` (``e ~ N(0, 1)``)
    and rotate the point ``(u, v)`` by ``theta = 2 pi k / n_arms + rate exp(u)``: the rotation
    grows with the distance from the centre, which bends each arm.
    ``x = scale R(theta) (u, v)``.

    Returns:
        Tensor[n_samples, 2].
    """
    n = _check_int("n_samples", n_samples, allow_zero=True)
    n_arms = _check_int("n_arms", n_arms)
    radial_std = _check_positive("radial_std", radial_std, allow_zero=True)
    tangential_std = _check_positive("tangential_std", tangential_std, allow_zero=True)
    scale = _check_positive("scale", scale)
    draws = _Draws(seed, generator, device, dtype)
    arm = draws.component(n, n_arms).to(torch.float64)
    e = draws.normal(n, 2)
    u = 1 + radial_std * e[:, 0]
    v = tangential_std * e[:, 1]
    theta = 2 * math.pi * arm / n_arms + rate * u.exp()
    c, s = theta.cos(), theta.sin()
    points = torch.stack([c * u - s * v, s * u + c * v], dim=1)
    return draws.finish(scale * points)


TOY_DATASETS: Dict[str, Callable[..., torch.Tensor]] = {
    "eight_gaussians": eight_gaussians,
    "gaussian_grid": gaussian_grid,
    "two_moons": two_moons,
    "circles": circles,
    "swiss_roll": swiss_roll,
    "checkerboard": checkerboard,
    "pinwheel": pinwheel,
}


def make_toy2d(name: str, n_samples: int, **kwargs) -> torch.Tensor:
    """Draw ``n_samples`` points from the toy distribution ``name`` (a key of ``TOY_DATASETS``);
    ``kwargs`` go to that generator. Returns Tensor[n_samples, 2]."""
    try:
        fn = TOY_DATASETS[name]
    except KeyError:
        raise ValueError(
            f"name must be one of {sorted(TOY_DATASETS)}, got {name!r}"
        ) from None
    return fn(n_samples, **kwargs)
