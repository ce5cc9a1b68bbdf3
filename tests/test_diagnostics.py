"""torchebm.diagnostics: the building blocks, the estimators' statistics, argument checks, the
``Diagnostics`` of a sampler run, and acceptance summaries. (Agreement with ArviZ is checked
in tests/test_diagnostics_arviz.py.)

Estimators are checked on processes whose answer is known in closed form: i.i.d. normals
(ESS = number of draws) and AR(1) chains ``y_t = phi y_{t-1} + sqrt(1 - phi^2) e_t`` with
integrated autocorrelation time ``tau = (1 + phi) / (1 - phi)``. Each uses many independent
replicates at once (event elements are independent estimates), so the bands come from the
replicates' own spread, as stated per test.
"""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import scipy.stats
import torch

from torchebm.core import GaussianModel
from torchebm.diagnostics import (
    AcceptanceSummary,
    Diagnostics,
    acceptance_summary,
    ess,
    mcse,
    rhat,
)
from torchebm.diagnostics.draws import autocovariance, average_ranks, median, quantile, z_scale
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics, MetropolisAdjustedLangevin


def ar1(m: int, n: int, phi: float, seed: int, *event: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(m, n, *event, generator=g, dtype=torch.float64)
    y = torch.empty_like(e)
    y[:, 0] = e[:, 0]
    scale = math.sqrt(1 - phi * phi)
    for t in range(1, n):
        y[:, t] = phi * y[:, t - 1] + scale * e[:, t]
    return y


# ------------------------------------------------------------------ building blocks
def test_autocovariance_matches_the_direct_sum():
    y = torch.randn(3, 50, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    acov = autocovariance(y)
    c = y - y.mean(-1, keepdim=True)
    for k in (0, 1, 7, 49):
        direct = (c[:, : 50 - k] * c[:, k:]).sum(-1) / 50
        torch.testing.assert_close(acov[:, k], direct)


def test_average_ranks_match_scipy_with_ties():
    g = torch.Generator().manual_seed(1)
    flat = torch.randint(0, 5, (3, 40), generator=g).double()
    flat[2] = torch.randn(40, generator=g, dtype=torch.float64)  # one row without ties
    expected = np.stack([scipy.stats.rankdata(row, method="average") for row in flat.numpy()])
    np.testing.assert_array_equal(average_ranks(flat).numpy(), expected)


def test_z_scale_uses_blom_offset():
    """Draws 1..S in one chain: ranks 1..S, z = ndtri((r - 3/8) / (S + 1/4))."""
    y = torch.arange(1.0, 9.0, dtype=torch.float64).reshape(1, 2, 4)
    expected = scipy.stats.norm.ppf((np.arange(1, 9) - 0.375) / 8.25).reshape(1, 2, 4)
    np.testing.assert_allclose(z_scale(y).numpy(), expected, rtol=1e-12)


def test_median_is_the_mean_of_the_middle_values_and_quantiles_are_type_7():
    g = torch.Generator().manual_seed(2)
    for size in (6, 7):
        y = torch.randn(4, 1, size, generator=g, dtype=torch.float64)
        np.testing.assert_array_equal(median(y).numpy(), np.median(y.numpy().reshape(4, -1), 1))
        for p in (0.05, 0.5, 0.93):
            np.testing.assert_allclose(
                quantile(y, p).numpy(), np.quantile(y.numpy().reshape(4, -1), p, axis=1),
                rtol=1e-14,
            )  # fmt: skip
    # torch.median would take the lower middle value: here 1.0 instead of 1.5.
    assert float(median(torch.tensor([[[0.0, 1.0, 2.0, 3.0]]]))) == 1.5


# ------------------------------------------------------------------ estimator statistics
@pytest.mark.parametrize("method", ["bulk", "mean", "tail"])
def test_ess_of_iid_draws_is_the_number_of_draws(method):
    """200 independent replicates of 8 chains x 2000 i.i.d. draws (one per event element). The
    spread of a single estimate is its sd over the replicates (about 2% of 16000); the
    replicates' mean must lie within one such sd of 16000 (any bias is smaller than the noise),
    and the sd must be below 5% (the estimate is useful)."""
    y = torch.randn(8, 2000, 200, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    estimates = ess(y, method)
    mean, sd = float(estimates.mean()), float(estimates.std())
    print(f"{method}: ESS {mean:.0f} +- {sd:.0f} of 16000")
    assert abs(mean - 16000) < sd and sd < 0.05 * 16000


@pytest.mark.parametrize("method", ["bulk", "mean"])
def test_ess_of_ar1_chains_matches_the_autocorrelation_time(method):
    """AR(1), phi = 0.9: tau = 19, so 8 x 4000 draws hold 1684 effective ones. 100 replicates:
    their mean is within one single-estimate sd (about 7%) of 1684, and that sd is below 10%."""
    phi = 0.9
    y = ar1(8, 4000, phi, 2, 100)
    expected = 8 * 4000 * (1 - phi) / (1 + phi)
    estimates = ess(y, method)
    mean, sd = float(estimates.mean()), float(estimates.std())
    print(f"{method}: ESS {mean:.0f} +- {sd:.0f}, expected {expected:.0f}")
    assert abs(mean - expected) < sd and sd < 0.1 * expected


def test_mcse_of_the_mean_matches_the_spread_of_chain_means():
    """MCSE(mean) estimates the sd of the mean over all draws. AR(1), phi = 0.5 (tau = 3), 4
    chains x 3000 draws: the true sd is sqrt(3 / 12000) = 0.0158. Over 200 replicates the
    average MCSE must match the replicates' own spread of means within 3 standard errors of
    that spread (an sd of 200 replicates has relative standard error 1/sqrt(2 * 199) = 5%)."""
    y = ar1(4, 3000, 0.5, 3, 200)
    spread = float(y.mean(dim=(0, 1)).std())
    estimate = float(mcse(y, "mean").mean())
    print(f"MCSE {estimate:.5f}, spread of the means {spread:.5f}, exact {math.sqrt(3 / 12000):.5f}")
    assert abs(estimate / spread - 1) < 3 / math.sqrt(2 * 199)


def test_ess_and_rhat_per_event_element():
    y = ar1(4, 400, 0.5, 3, 2, 3)
    for value in (ess(y), ess(y, "tail"), rhat(y), mcse(y, "sd")):
        assert value.shape == (2, 3) and value.dtype == torch.float64
    assert ess(y[..., 0, 0]).shape == ()


def test_ess_of_constant_draws_is_the_number_of_draws_and_nan_draws_give_nan():
    assert float(ess(torch.ones(2, 10))) == 20.0
    y = torch.randn(2, 10, 3, dtype=torch.float64)
    y[1, 4, 1] = math.nan
    for value in (ess(y), rhat(y), mcse(y)):
        assert torch.isnan(value[1]) and not torch.isnan(value[[0, 2]]).any()


def test_rhat_is_one_for_agreeing_chains():
    y = torch.randn(4, 1000, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for method in ("rank", "split", "identity"):
        r = float(rhat(y, method))
        print(f"{method}: R-hat {r:.4f}")
        assert r < 1.01


def test_rhat_flags_a_chain_stuck_elsewhere_and_a_trend_within_chains():
    y = torch.randn(4, 1000, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    stuck = y.clone()
    stuck[0] += 2.0
    assert float(rhat(stuck)) > 1.1 and float(rhat(stuck, "split")) > 1.1
    trend = y.clone()
    trend[:, 500:] += 1.5  # every chain moves mid-run: only the split halves see it
    assert float(rhat(trend)) > 1.1 and float(rhat(trend, "identity")) < 1.01


def test_rank_rhat_flags_chains_that_differ_in_scale_only():
    """Same mean, sd 1 versus 3: the split R-hat cannot see it, the folded (tail) one does."""
    y = torch.randn(4, 2000, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    y[2:] *= 3.0
    split, ranked = float(rhat(y, "split")), float(rhat(y))
    print(f"split {split:.3f}, rank-normalised {ranked:.3f}")
    assert split < 1.02 and ranked > 1.05


# ------------------------------------------------------------------ argument checks
def test_diagnostics_reject_bad_arguments():
    with pytest.raises(ValueError, match=r"at least 4 draws, got draws of shape \(2, 3\)"):
        ess(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\[n_chains, n_draws, \*event\], got shape \(5,\)"):
        rhat(torch.zeros(5))
    with pytest.raises(ValueError, match=r"at least 2 chain\(s\)"):
        rhat(torch.zeros(1, 10))
    with pytest.raises(ValueError, match=r"method must be one of"):
        ess(torch.zeros(2, 8), method="spectral")
    with pytest.raises(ValueError, match=r"method must be one of"):
        rhat(torch.zeros(2, 8), method="rank_normalized")
    with pytest.raises(ValueError, match=r"method must be one of"):
        mcse(torch.zeros(2, 8), method="tail")
    with pytest.raises(ValueError, match=r"needs prob, one probability"):
        ess(torch.randn(2, 8), method="quantile")
    with pytest.raises(ValueError, match=r"prob must lie in \(0, 1\)"):
        mcse(torch.randn(2, 8), method="quantile", prob=1.5)
    with pytest.raises(ValueError, match=r"needs prob=\(low, high\)"):
        ess(torch.randn(2, 8), method="local", prob=0.3)
    with pytest.raises(ValueError, match=r"method='bulk' takes no prob"):
        ess(torch.randn(2, 8), prob=0.3)


def test_batch_means_ess_is_gone():
    """Batch means with batches of sqrt(n) read 4-100x too high when tau exceeds sqrt(n); the
    method is removed (ArviZ's ESS methods replace it), and asking for it says which exist."""
    with pytest.raises(ValueError, match=r"method must be one of \('bulk', 'tail'"):
        ess(ar1(4, 400, 0.99, 0), method="batch_means")


# ------------------------------------------------------------------ Diagnostics of a run
@pytest.mark.parametrize("backend", ["fused", "reference"])
def test_sampler_diagnostics_report_bulk_ess_and_rank_rhat(backend):
    """Both recording paths (the whole-chain op and the step loop) hand their kept states to
    the diagnostics, whose ess()/rhat() are those of the trajectory: HMC on a standard normal
    mixes fast, Langevin with a tiny step slowly."""
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(8))
    fast, diag = HamiltonianMonteCarlo(
        model, step_size=0.3, n_leapfrog_steps=5, backend=backend
    ).sample(
        x=x0, n_steps=400, return_trajectory=True, return_diagnostics=True,
        generator=torch.Generator().manual_seed(9),
    )  # fmt: skip
    assert torch.equal(diag.draws, fast)
    torch.testing.assert_close(diag.ess(), ess(fast), rtol=0, atol=0)
    torch.testing.assert_close(diag.rhat(), rhat(fast), rtol=0, atol=0)
    torch.testing.assert_close(diag.ess("tail", burn_in=100), ess(fast[:, 100:], "tail"))
    slow = LangevinDynamics(model, step_size=0.005, backend=backend).sample(
        x=x0, n_steps=400, return_trajectory=True, generator=torch.Generator().manual_seed(9)
    )
    ess_fast, ess_slow = ess(fast), ess(slow)
    print(f"{backend}: bulk ESS HMC {ess_fast.tolist()}, slow Langevin {ess_slow.tolist()}")
    assert bool((ess_fast > 1000).all()) and bool((ess_slow < 200).all())
    assert bool((diag.rhat() < 1.02).all()) and bool((rhat(slow) > 1.05).any())


def test_sampler_diagnostics_without_return_trajectory_still_have_draws():
    model = GaussianModel(torch.zeros(3), torch.eye(3))
    final, diag = MetropolisAdjustedLangevin(model, step_size=0.3, backend="reference").sample(
        dim=3, n_samples=4, n_steps=50, thin=2, return_diagnostics=True
    )
    assert final.shape == (4, 3) and diag.draws.shape == (4, 25, 3)
    torch.testing.assert_close(diag.draws[:, -1], final)
    assert diag.ess().shape == (3,) and diag.rhat("split").shape == (3,)
    copy = pickle.loads(pickle.dumps(diag))
    torch.testing.assert_close(copy.ess(), diag.ess())
    with pytest.raises(ValueError, match=r"burn_in must be an int in \[0, 25\)"):
        diag.ess(burn_in=25)
    bare = Diagnostics(diag["mean"], diag["var"], diag["energy"], n_chains=4)
    with pytest.raises(RuntimeError, match="hold no draws"):
        bare.ess()


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
