"""torchebm.utils.visualization: grids, landscapes, samples, trajectories, diagnostics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from torchebm.utils import (  # noqa: E402
    energy_grid,
    plot_diagnostics,
    plot_energy_landscape,
    plot_samples,
    plot_trajectories,
)


def quadratic(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (x**2).sum(-1)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_energy_grid_is_the_model_evaluated_on_a_meshgrid():
    X, Y, Z = energy_grid(quadratic, (-1.0, 2.0), (0.0, 3.0), resolution=7)
    assert X.shape == Y.shape == Z.shape == (7, 7)
    assert X[0, 0] == -1.0 and X[0, -1] == 2.0 and Y[0, 0] == 0.0 and Y[-1, 0] == 3.0
    np.testing.assert_allclose(Z, 0.5 * (X**2 + Y**2), rtol=1e-6)


def test_energy_grid_batches_and_blanks_non_finite_energies():
    def spiky(x):
        e = quadratic(x)
        return torch.where(x[:, 0] > 0.5, torch.full_like(e, float("inf")), e)

    _, _, Z = energy_grid(spiky, (0.0, 1.0), (0.0, 1.0), resolution=11, batch_size=7)
    assert np.isnan(Z[:, -1]).all() and np.isfinite(Z[:, 0]).all()


@pytest.mark.parametrize("bad", [dict(x_range=(1.0, 1.0)), dict(resolution=1), dict(x_range=3.0)])
def test_energy_grid_rejects_bad_boxes_by_name(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        energy_grid(quadratic, **bad)


def test_energy_grid_rejects_a_model_without_one_energy_per_point():
    with pytest.raises(ValueError, match="one energy per point"):
        energy_grid(lambda x: x, resolution=4)


@pytest.mark.parametrize("kind", ["contourf", "contour", "heatmap"])
def test_landscape_kinds_draw_and_label_a_colorbar(kind):
    ax = plot_energy_landscape(quadratic, kind=kind, resolution=20, log_scale=kind == "heatmap")
    assert len(ax.figure.axes) == 2  # the plot and its colour bar
    assert ax.get_xlim() == (-3.0, 3.0)


def test_samples_over_a_landscape_fit_the_box_to_the_points():
    pts = torch.randn(300, 2) * 0.2 + torch.tensor([5.0, -5.0])
    ax = plot_samples(pts, quadratic, resolution=20, title="t")
    lo, hi = ax.get_xlim()
    assert lo < 5.0 < hi and hi - lo < 4.0
    assert ax.get_title() == "t"


def test_samples_reject_points_that_are_not_two_dimensional():
    with pytest.raises(ValueError, match=r"samples must have shape \[N, 2\]"):
        plot_samples(torch.randn(10, 3))


def test_trajectories_draw_one_path_per_chain_up_to_max_chains():
    traj = torch.cumsum(0.1 * torch.randn(12, 30, 2), dim=1)
    ax = plot_trajectories(traj, quadratic, max_chains=4, resolution=20, mark_ends=False)
    assert len(ax.lines) == 4
    ax = plot_trajectories(traj[0], mark_ends=True)  # a single chain [n_steps, 2]
    assert len(ax.lines) == 3  # path, start, end


def test_diagnostics_read_the_dict_form_with_acceptance():
    diag = {"energy": torch.randn(50), "acceptance_rate": torch.rand(50), "mean": torch.randn(50, 2)}
    fig = plot_diagnostics(diag)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "energy" and titles[1].startswith("acceptance rate")


def test_diagnostics_read_the_tensor_form_energy_in_slot_two():
    diag = torch.zeros(40, 3, 5, 2)
    diag[:, 2] = 7.0
    fig = plot_diagnostics(diag, smooth=1)
    (ax,) = fig.axes
    np.testing.assert_allclose(ax.lines[0].get_ydata(), 7.0)


def test_diagnostics_without_energy_or_acceptance_are_an_error():
    with pytest.raises(ValueError, match="neither"):
        plot_diagnostics({"mean": torch.zeros(3, 2)})
