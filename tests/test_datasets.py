"""The 2-D toy distributions: calling convention (shape, dtype, device, seeding) shared by all,
and each distribution's defining property, with tolerances from the sampling error."""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.datasets import (
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

NAMES = sorted(TOY_DATASETS)
N = 20_000


def test_the_seven_distributions_are_registered():
    assert NAMES == sorted([
        "eight_gaussians", "gaussian_grid", "two_moons", "circles", "swiss_roll",
        "checkerboard", "pinwheel",
    ])


@pytest.mark.parametrize("name", NAMES)
def test_shape_dtype_and_device(name):
    x = make_toy2d(name, 100, seed=0)
    assert x.shape == (100, 2) and x.dtype == torch.get_default_dtype() and x.device.type == "cpu"
    assert torch.isfinite(x).all()
    x64 = make_toy2d(name, 10, seed=0, dtype=torch.float64, device="cpu")
    assert x64.dtype == torch.float64
    assert make_toy2d(name, 0, seed=0).shape == (0, 2)


@pytest.mark.parametrize("name", NAMES)
def test_seed_and_generator_reproduce_a_draw(name):
    a = make_toy2d(name, 500, seed=3)
    assert torch.equal(a, make_toy2d(name, 500, seed=3))
    assert not torch.equal(a, make_toy2d(name, 500, seed=4))
    b = make_toy2d(name, 500, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)  # seed=s is a fresh CPU generator seeded with s
    torch.manual_seed(5)
    c = make_toy2d(name, 500)
    torch.manual_seed(5)
    assert torch.equal(c, make_toy2d(name, 500))  # no seed: the global generator


@pytest.mark.parametrize("name", NAMES)
def test_a_float32_draw_is_the_float64_draw_rounded(name):
    lo = make_toy2d(name, 300, seed=1, dtype=torch.float32)
    hi = make_toy2d(name, 300, seed=1, dtype=torch.float64)
    assert torch.equal(lo, hi.float())


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="either seed or generator"):
        eight_gaussians(10, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="n_samples must be a non-negative int, got -1"):
        eight_gaussians(-1)
    with pytest.raises(ValueError, match="n_samples must be a non-negative int, got 2.5"):
        two_moons(2.5)
    with pytest.raises(TypeError, match="seed must be an int"):
        circles(10, seed="1")
    with pytest.raises(ValueError, match="std must be >= 0, got -0.1"):
        eight_gaussians(10, std=-0.1)
    with pytest.raises(ValueError, match="n_per_side must be a positive int"):
        gaussian_grid(10, n_per_side=0)
    with pytest.raises(ValueError, match="radii must be a non-empty sequence"):
        circles(10, radii=())
    with pytest.raises(ValueError, match="name must be one of"):
        make_toy2d("spiral", 10)
    with pytest.raises(TypeError, match="floating-point"):
        pinwheel(10, dtype=torch.int64)


def _within(value: float, target: float, se: float, k: float = 5.0) -> bool:
    return abs(value - target) < k * se


def test_eight_gaussians_has_equal_modes_of_the_given_width():
    x = eight_gaussians(N, radius=3.0, std=0.1, seed=0, dtype=torch.float64)
    means = eight_gaussian_means(3.0)
    assert means.shape == (8, 2)
    assert torch.allclose(means.norm(dim=1), torch.full((8,), 3.0, dtype=torch.float64))
    label = torch.cdist(x, means).argmin(dim=1)
    freq = torch.bincount(label, minlength=8).double() / N
    se = math.sqrt((1 / 8) * (7 / 8) / N)
    assert all(_within(f, 1 / 8, se) for f in freq.tolist()), freq
    resid = x - means[label]
    # Residual per coordinate ~ N(0, 0.1^2): its std has relative standard error 1/sqrt(2N).
    assert _within(resid.std().item(), 0.1, 0.1 / math.sqrt(2 * 2 * N))


def test_gaussian_grid_is_centred_with_equal_cells():
    x = gaussian_grid(N, n_per_side=3, spacing=2.0, std=0.05, seed=0, dtype=torch.float64)
    cell = torch.round(x / 2.0)  # the grid points are -2, 0, 2 on each axis
    assert set(cell.flatten().tolist()) == {-1.0, 0.0, 1.0}
    counts = torch.unique(cell, dim=0, return_counts=True)[1].double() / N
    se = math.sqrt((1 / 9) * (8 / 9) / N)
    assert counts.numel() == 9 and all(_within(c, 1 / 9, se) for c in counts.tolist())
    assert _within((x - 2.0 * cell).std().item(), 0.05, 0.05 / math.sqrt(4 * N))


def test_two_moons_without_noise_lie_on_their_half_circles():
    x = two_moons(2000, noise=0.0, scale=1.0, seed=0, dtype=torch.float64)
    p = x + torch.tensor([0.5, 0.25], dtype=torch.float64)  # undo the centring
    upper = (p.norm(dim=1) - 1).abs() < 1e-9
    lower = ((p - torch.tensor([1.0, 0.5], dtype=torch.float64)).norm(dim=1) - 1).abs() < 1e-9
    assert bool((upper | lower).all())
    assert bool((p[upper, 1] >= -1e-12).all()) and bool((p[lower, 1] <= 0.5 + 1e-12).all())
    se = math.sqrt(0.25 / 2000)
    assert _within(upper.double().mean().item(), 0.5, se)


def test_circles_without_noise_have_the_given_radii_and_uniform_angles():
    x = circles(N, radii=(0.5, 1.5, 2.5), noise=0.0, seed=0, dtype=torch.float64)
    r = x.norm(dim=1)
    nearest = torch.tensor([0.5, 1.5, 2.5], dtype=torch.float64)[(r[:, None] - torch.tensor([0.5, 1.5, 2.5], dtype=torch.float64)).abs().argmin(1)]
    assert torch.allclose(r, nearest, atol=1e-9)
    # Uniform angle: the mean of cos and sin is 0 with standard error sqrt(1/2 / N).
    theta = torch.atan2(x[:, 1], x[:, 0])
    se = math.sqrt(0.5 / N)
    assert _within(theta.cos().mean().item(), 0.0, se) and _within(theta.sin().mean().item(), 0.0, se)


def test_swiss_roll_without_noise_is_the_spiral_r_equals_scale_t():
    x = swiss_roll(2000, noise=0.0, scale=0.2, seed=0, dtype=torch.float64)
    t = x.norm(dim=1) / 0.2
    assert t.min() >= 1.5 * math.pi - 1e-9 and t.max() <= 4.5 * math.pi + 1e-9
    assert torch.allclose(x, 0.2 * t[:, None] * torch.stack([t.cos(), t.sin()], dim=1), atol=1e-9)


@pytest.mark.parametrize("n_cells", [4, 5])
def test_checkerboard_fills_only_and_evenly_the_dark_squares(n_cells):
    x = checkerboard(N, n_cells=n_cells, cell_size=0.5, seed=0, dtype=torch.float64)
    half = n_cells * 0.5 / 2
    assert x.min() >= -half and x.max() <= half
    ij = torch.floor((x + half) / 0.5).long().clamp(max=n_cells - 1)
    assert bool(((ij[:, 0] + ij[:, 1]) % 2 == 0).all())
    n_dark = (n_cells * n_cells + 1) // 2
    counts = torch.unique(ij, dim=0, return_counts=True)[1].double() / N
    se = math.sqrt((1 / n_dark) * (1 - 1 / n_dark) / N)
    assert counts.numel() == n_dark and all(_within(c, 1 / n_dark, se) for c in counts.tolist())


def test_pinwheel_arms_are_equally_likely_and_rotated_by_two_pi_over_n():
    n_arms = 5
    x = pinwheel(N, n_arms=n_arms, radial_std=0.0, tangential_std=0.0, rate=0.25, scale=1.0,
                 seed=0, dtype=torch.float64)
    # Without spread every point of arm k sits at radius 1, angle 2 pi k / K + rate * e.
    assert torch.allclose(x.norm(dim=1), torch.ones(N, dtype=torch.float64))
    angle = torch.remainder(torch.atan2(x[:, 1], x[:, 0]) - 0.25 * math.e, 2 * math.pi)
    sector = 2 * math.pi / n_arms
    k = torch.round(angle / sector).long() % n_arms
    offset = torch.remainder(angle, sector)
    assert bool((torch.minimum(offset, sector - offset) < 1e-9).all())
    freq = torch.bincount(k, minlength=n_arms).double() / N
    se = math.sqrt((1 / n_arms) * (1 - 1 / n_arms) / N)
    assert all(_within(f, 1 / n_arms, se) for f in freq.tolist())
