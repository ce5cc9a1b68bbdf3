"""torchebm.diagnostics: ESS, Monte Carlo standard error, split R-hat, acceptance summaries.

The estimators are checked on processes whose answer is known in closed form: i.i.d. normals
(ESS = number of draws) and AR(1) chains ``y_t = phi y_{t-1} + sqrt(1 - phi^2) e_t`` with
integrated autocorrelation time ``tau = (1 + phi) / (1 - phi)``. The bands are about five
standard deviations of each estimator (stated per test) at the fixed seeds used.
"""

from __future__ import annotations

import math

import pytest
import torch

from torchebm.core import GaussianModel
from torchebm.diagnostics import (
    AcceptanceSummary,
    acceptance_summary,
    effective_sample_size,
    monte_carlo_standard_error,
    split_rhat,
)
from torchebm.diagnostics.effective_sample_size import autocovariance
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics


def ar1(m: int, n: int, phi: float, seed: int, *event: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(m, n, *event, generator=g, dtype=torch.float64)
    y = torch.empty_like(e)
    y[:, 0] = e[:, 0]
    scale = math.sqrt(1 - phi * phi)
    for t in range(1, n):
        y[:, t] = phi * y[:, t - 1] + scale * e[:, t]
    return y


def test_autocovariance_matches_the_direct_sum():
    y = torch.randn(3, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    acov = autocovariance(y)
    c = y - y.mean(-1, keepdim=True)
    for k in (0, 1, 7, 49):
        direct = (c[:, : 50 - k] * c[:, k:]).sum(-1) / 50
        torch.testing.assert_close(acov[:, k], direct)


@pytest.mark.parametrize("method", ["geyer", "batch_means"])
def test_ess_of_iid_draws_is_the_number_of_draws(method):
    """8 chains x 2000 i.i.d. draws: ESS within 20% of 16000 (the estimators' relative sd is
    about 3-4% here)."""
    y = torch.randn(8, 2000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ess = float(effective_sample_size(y, method))
    print(f"{method}: ESS {ess:.0f} of 16000")
    assert 0.8 * 16000 < ess < 1.2 * 16000


@pytest.mark.parametrize("method, band", [("geyer", 0.2), ("batch_means", 0.25)])
def test_ess_of_ar1_chains_matches_the_autocorrelation_time(method, band):
    """AR(1), phi = 0.9: tau = 19, so 16 x 10000 draws have ESS 8421. Geyer's estimate has a
    relative sd of about 4% here; batch means (batches of 100) about 4% plus a ~10% bias."""
    phi = 0.9
    y = ar1(16, 10000, phi, seed=2)
    expected = 16 * 10000 * (1 - phi) / (1 + phi)
    ess = float(effective_sample_size(y, method))
    print(f"{method}: ESS {ess:.0f}, expected {expected:.0f}")
    assert abs(ess / expected - 1) < band


def test_ess_and_mcse_per_event_element():
    y = ar1(4, 4000, 0.5, 3, 2, 3)
    ess = effective_sample_size(y)
    assert ess.shape == (2, 3) and ess.dtype == torch.float64
    expected = 4 * 4000 / 3.0
    assert bool(((ess / expected - 1).abs() < 0.25).all()), ess
    mcse = monte_carlo_standard_error(y)
    torch.testing.assert_close(mcse, y.reshape(-1, 2, 3).std(0) / ess.sqrt())


def test_ess_of_constant_draws_is_not_nan():
    assert float(effective_sample_size(torch.ones(2, 10))) == 20.0


def test_split_rhat_is_one_for_agreeing_chains():
    y = torch.randn(4, 1000, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for rank in (True, False):
        r = float(split_rhat(y, rank_normalized=rank))
        print(f"rank_normalized={rank}: R-hat {r:.4f}")
        assert r < 1.01


def test_split_rhat_flags_a_chain_stuck_elsewhere():
    y = torch.randn(4, 1000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    y[0] += 2.0
    assert float(split_rhat(y)) > 1.1 and float(split_rhat(y, rank_normalized=False)) > 1.1


def test_split_rhat_flags_a_trend_within_one_chain():
    y = torch.randn(1, 2000, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    y[0, 1000:] += 1.5
    assert float(split_rhat(y)) > 1.1


def test_rank_normalized_rhat_flags_chains_that_differ_in_scale_only():
    """Same mean, sd 1 versus 3: the classic R-hat cannot see it, the folded (tail) one does."""
    y = torch.randn(4, 2000, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    y[2:] *= 3.0
    classic = float(split_rhat(y, rank_normalized=False))
    ranked = float(split_rhat(y))
    print(f"classic {classic:.3f}, rank-normalised {ranked:.3f}")
    assert classic < 1.02 and ranked > 1.05


def test_split_rhat_shape_per_event_element():
    y = torch.randn(3, 100, 2, 5)
    assert split_rhat(y).shape == (2, 5)


def test_diagnostics_reject_too_few_draws():
    with pytest.raises(ValueError, match=r"at least 4 draws, got shape \(2, 3\)"):
        effective_sample_size(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\[n_chains, n_draws, \*event\], got shape \(5,\)"):
        split_rhat(torch.zeros(5))
    with pytest.raises(ValueError, match=r"method must be one of"):
        effective_sample_size(torch.zeros(2, 8), method="spectral")


def test_ess_of_sampler_trajectories():
    """On a real run: HMC on a standard normal mixes fast, Langevin with a tiny step slowly."""
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(8))
    fast = HamiltonianMonteCarlo(model, step_size=0.3, n_leapfrog_steps=5).sample(
        x=x0, n_steps=400, return_trajectory=True, generator=torch.Generator().manual_seed(9)
    )
    slow = LangevinDynamics(model, step_size=0.005).sample(
        x=x0, n_steps=400, return_trajectory=True, generator=torch.Generator().manual_seed(9)
    )
    ess_fast, ess_slow = effective_sample_size(fast), effective_sample_size(slow)
    print(f"ESS HMC {ess_fast.tolist()}, ESS slow Langevin {ess_slow.tolist()}")
    assert bool((ess_fast > 1000).all()) and bool((ess_slow < 200).all())
    assert bool((split_rhat(fast) < 1.02).all())


# ------------------------------------------------------------------ acceptance
def test_acceptance_summary_from_sampler_diagnostics():
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    _, diag = HamiltonianMonteCarlo(model, step_size=0.2, n_leapfrog_steps=4).sample(
        dim=2, n_samples=200, n_steps=20, return_diagnostics=True
    )
    summary = acceptance_summary(diag)
    assert isinstance(summary, AcceptanceSummary) and summary.n_steps == 20
    assert summary.mean == pytest.approx(float(diag["acceptance_rate"].mean()))
    assert 0.8 < summary.mean <= 1.0 and summary.min <= summary.mean <= summary.max
    assert "acceptance" in str(summary)


def test_acceptance_summary_from_rates_and_masks():
    s = acceptance_summary(torch.tensor([0.0, 0.5, 1.0, 1.0]))
    assert (s.mean, s.min, s.max, s.first_half, s.second_half) == (0.625, 0.0, 1.0, 0.25, 1.0)
    mask = torch.tensor([[True, False], [True, True]])
    s = acceptance_summary(mask)
    assert (s.mean, s.first_half, s.second_half, s.n_steps) == (0.75, 0.5, 1.0, 2)


def test_acceptance_summary_of_langevin_diagnostics_explains():
    _, diag = LangevinDynamics(GaussianModel(torch.zeros(2), torch.eye(2)), step_size=0.1).sample(
        dim=2, n_samples=2, n_steps=3, return_diagnostics=True
    )
    with pytest.raises(KeyError, match="no 'acceptance_rate'"):
        acceptance_summary(diag)
    with pytest.raises(ValueError, match="non-empty"):
        acceptance_summary(torch.tensor([]))
