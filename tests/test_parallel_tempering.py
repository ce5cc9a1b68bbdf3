"""Parallel tempering: the replica_swap op against its reference, the ladder, and the sampler's
exactness on a 1-D double well with a barrier of 10 kT."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from torchebm import kernels
from torchebm.core import BaseModel, DoubleWellModel
from torchebm.kernels import ops, reference
from torchebm.losses import ContrastiveDivergence
from torchebm.samplers import (
    MALA,
    HamiltonianMonteCarlo,
    LangevinDynamics,
    ParallelTempering,
    geometric_ladder,
)
from torchebm.samplers.tempered_model import TemperedModel

needs_kernels = pytest.mark.skipif(not kernels.available(), reason="compiled kernels not built")

# E(x) = h (x^2 - 1)^2: wells at +-1, barrier E(0) - E(+-1) = h = 10 kT at beta = 1.
BARRIER = 10.0
BETAS = geometric_ladder(5, 0.1)  # the hottest chain sees a barrier of 1 kT


def double_well_cdf(beta: float):
    """CDF of exp(-beta E) on a fine grid (trapezoid quadrature), as a callable."""
    grid = np.linspace(-3.0, 3.0, 60001)
    dens = np.exp(-beta * BARRIER * (grid**2 - 1.0) ** 2)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]
    return lambda x: np.interp(x, grid, cdf)


# ---- the op -----------------------------------------------------------------------------------


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("k_temps", [1, 2, 5])
@pytest.mark.parametrize("event", [(1,), (2, 3)])
def test_replica_swap_matches_reference(dtype, k_temps, event):
    g = torch.Generator().manual_seed(k_temps)
    x = torch.randn(k_temps, 33, *event, generator=g, dtype=dtype)
    energy = 3.0 * torch.randn(k_temps, 33, generator=g, dtype=dtype)
    betas = geometric_ladder(k_temps, 0.2)
    u = ops.philox_uniform([max(k_temps - 1, 0), 33], 123, 9, dtype)
    for parity in (0, 1):
        drawn = ops.replica_swap(x, energy, betas, parity, seed=123, step=9)
        given = ops.replica_swap(x, energy, betas, parity, uniform=u)
        expected = reference.replica_swap(x, energy, betas, parity, u)
        for a, b, c in zip(drawn, given, expected):
            assert torch.equal(a, c) and torch.equal(b, c)
        # Only pairs of this parity are proposed, and a swap moves both states and energies.
        assert not drawn[2][(parity + 1) % 2 :: 2].any()
        if parity < k_temps - 1:  # some pair proposed
            assert drawn[2].any()


@needs_kernels
def test_replica_swap_accepts_with_the_metropolis_probability():
    n = 200_000
    g = torch.Generator().manual_seed(0)
    energy = torch.randn(2, n, generator=g, dtype=torch.float64)
    x = torch.randn(2, n, 1, generator=g, dtype=torch.float64)
    accepted = ops.replica_swap(x, energy, [1.0, 0.4], 0, seed=5, step=1)[2][0].double()
    p = torch.exp((0.6 * (energy[0] - energy[1])).clamp(max=0.0))
    # Independent Bernoulli(p_i) draws: SE of the mean is sqrt(sum p(1-p)) / n; 5 SE.
    se = math.sqrt(float((p * (1 - p)).sum())) / n
    assert abs(float(accepted.mean() - p.mean())) < 5 * se, (float(accepted.mean()), float(p.mean()), se)


@needs_kernels
def test_replica_swap_rejects_nan_energy_and_checks_arguments():
    x = torch.zeros(2, 3, 1)
    energy = torch.tensor([[float("nan"), 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert not ops.replica_swap(x, energy, [1.0, 0.5], 0, seed=1)[2][0, 0]
    with pytest.raises(RuntimeError, match="betas must hold one value per temperature"):
        ops.replica_swap(x, energy, [1.0], 0)
    with pytest.raises(RuntimeError, match="parity must be 0"):
        ops.replica_swap(x, energy, [1.0, 0.5], 2)
    with pytest.raises(RuntimeError, match="energy must be"):
        ops.replica_swap(x, energy[:, :2], [1.0, 0.5], 0)
    with pytest.raises(RuntimeError, match="not differentiable"):
        ops.replica_swap(x.requires_grad_(), energy, [1.0, 0.5], 0)


@needs_kernels
def test_replica_swap_passes_opcheck():
    # Schema, fake kernel (shapes under torch.compile), no aliasing of inputs and outputs.
    x, energy = torch.randn(4, 9, 2), torch.randn(4, 9)
    torch.library.opcheck(torch.ops.torchebm.replica_swap.default,
                          (x, energy, [1.0, 0.5, 0.25, 0.125], 1, None, 3, 4))


# ---- the ladder and the tempered model --------------------------------------------------------


def test_geometric_ladder_has_a_constant_ratio():
    betas = geometric_ladder(5, 0.01)
    assert betas[0] == 1.0 and math.isclose(betas[-1], 0.01)
    ratios = [b / a for a, b in zip(betas, betas[1:])]
    assert all(math.isclose(r, ratios[0]) for r in ratios)
    assert geometric_ladder(1, 0.5) == [1.0]
    with pytest.raises(ValueError, match="beta_min"):
        geometric_ladder(3, 1.5)


def test_ladder_must_start_at_one_and_decrease():
    sampler = MALA(DoubleWellModel(), step_size=0.01)
    with pytest.raises(ValueError, match=r"betas\[0\] must be 1"):
        ParallelTempering(sampler, betas=[0.9, 0.5])
    with pytest.raises(ValueError, match="must decrease"):
        ParallelTempering(sampler, betas=[1.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="schedule"):
        ParallelTempering(sampler, schedule="random")


def test_tempered_analytic_model_keeps_the_chain_kernels():
    model = DoubleWellModel(barrier_height=BARRIER)
    hot = TemperedModel(model, 0.25)
    x = torch.linspace(-2, 2, 7).unsqueeze(1)
    assert torch.allclose(hot(x), 0.25 * model(x))
    assert torch.allclose(hot.gradient(x), 0.25 * model.gradient(x))
    assert hot.kernel_spec() == ("double_well", {"barrier_height": 2.5, "b": 1.0})


# ---- the sampler --------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["chain", "loop"])
def double_well_run(request):
    """MALA PT on the double well, 1024 ladders (independent columns) started in the left
    well; the cold chain's kept states and every temperature's final states. On both routes:
    all temperatures in one chain-op call per round (what the analytic model gets), and one
    sample() call per temperature (forced by a blocker)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as patch:
            if request.param == "loop":
                patch.setattr(ParallelTempering, "_chain_blocker", lambda self, state, mk: "forced")
            torch.manual_seed(1)
            model = DoubleWellModel(barrier_height=BARRIER)
            pt = ParallelTempering(MALA(model, step_size=0.02), betas=BETAS, swap_every=10)
            x0 = torch.full((1024, 1), -1.0, dtype=torch.float64)
            pt = pt.double()
            trajectory, diag = pt.sample(x=x0, n_steps=1500, thin=10, return_trajectory=True,
                                         return_diagnostics=True)
            assert pt.last_route.path == request.param
            return pt, trajectory, diag, x0
    finally:
        torch.set_num_threads(before)


def test_cold_chain_visits_both_wells_in_equal_proportion(double_well_run):
    pt, trajectory, diag, _ = double_well_run
    draws = trajectory[:, trajectory.shape[1] // 2 :, 0]  # second half: [ladder, draw]
    right = (draws > 0).double()
    p = float(right.mean())
    # The ladders (columns) are independent, so the per-ladder means of the mode indicator are
    # iid: MCSE = sd(per-ladder means) / sqrt(n_ladders), i.e. an ESS of p(1-p) / MCSE^2 draws
    # of the indicator; 4 MCSE.
    mcse = float(right.mean(dim=1).std()) / math.sqrt(right.shape[0])
    ess = p * (1 - p) / mcse**2
    assert abs(p - 0.5) < 4 * mcse, (p, mcse, ess)
    assert ess > 500, ess  # the bound is not vacuous: hundreds of independent crossings


def test_plain_samplers_stay_in_the_starting_well(double_well_run, one_thread):
    _, _, _, x0 = double_well_run
    model = DoubleWellModel(barrier_height=BARRIER, dtype=torch.float64)
    torch.manual_seed(2)
    # The PT base sampler (MALA, step 0.02) and Langevin at a step where it is accurate in the
    # wells (step * curvature = 0.005 * 8 * BARRIER = 0.4; at 0.02 it is 1.6, close to
    # Langevin's stability limit of 2, and the chain hops by discretisation error).
    for sampler in (LangevinDynamics(model, step_size=0.005, dtype=torch.float64),
                    MALA(model, step_size=0.02, dtype=torch.float64)):
        final = sampler.sample(x=x0, n_steps=1500)
        # Kramers: escape over 10 kT takes far longer than these 1500 steps.
        assert float((final > 0).double().mean()) < 0.02


def test_every_temperature_has_the_exact_marginal(double_well_run):
    pt, _, _, _ = double_well_run
    # The final states of the 1024 independent ladders are iid draws of each temperature's
    # marginal exp(-beta_k E): KS test against the quadrature CDF, alpha = 1e-3 per temperature.
    for k, beta in enumerate(BETAS):
        sample = pt.replicas[k, :, 0].numpy()
        result = stats.kstest(sample, double_well_cdf(beta))
        assert result.pvalue > 1e-3, (k, beta, result)


def test_swap_and_round_trip_diagnostics(double_well_run):
    _, _, diag, x0 = double_well_run
    b = x0.shape[0]
    assert diag.n_rounds == 150
    # DEO alternates parities: pairs 0 and 2 proposed in 75 rounds, pairs 1 and 3 in 75.
    assert diag.swap_attempts.tolist() == [75 * b] * 4
    assert ((diag.swap_acceptance_rate > 0.2) & (diag.swap_acceptance_rate < 1)).all()
    # Each of the K replicas of a ladder needs at least 2 (K - 1) = 8 rounds per round trip.
    assert 0 < float(diag.round_trip_rate) <= len(BETAS) / 8


def test_stochastic_even_odd_schedule(one_thread):
    torch.manual_seed(3)
    pt = ParallelTempering(MALA(DoubleWellModel(BARRIER), step_size=0.01), betas=BETAS,
                           swap_every=2, schedule="seo")
    _, diag = pt.sample(x=torch.full((64, 1), -1.0), n_steps=400, return_diagnostics=True)
    rounds = diag.swap_attempts[:2] // 64  # rounds of parity 0 and 1
    assert int(rounds.sum()) == 200
    # Fair coin: 200 rounds, SD 7.1 rounds per parity; 5 SD.
    assert abs(int(rounds[0]) - 100) < 5 * math.sqrt(200 * 0.25)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_reproducible_for_a_seed(backend, one_thread):
    def run(seed):
        torch.manual_seed(seed)
        pt = ParallelTempering(HamiltonianMonteCarlo(DoubleWellModel(BARRIER), step_size=0.05,
                                                     n_leapfrog_steps=3, backend=backend),
                               betas=BETAS, swap_every=3)
        out, diag = pt.sample(x=torch.zeros(16, 1), n_steps=30, return_diagnostics=True)
        return out, diag.swap_accepts, pt.replicas

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(s, t) for s, t in zip(a, b))
    assert not torch.equal(a[2], c[2])


class LearnedWell(BaseModel):
    """h (x^2 - 1)^2 with a trainable h: a model without kernel_spec (the per-step path)."""

    def __init__(self):
        super().__init__()
        self.barrier_height = torch.nn.Parameter(torch.tensor(BARRIER))

    def forward(self, x):
        return self.barrier_height * (x * x - 1.0).square().sum(dim=-1)


@needs_kernels
def test_chain_route_runs_every_temperature_in_one_call(one_thread, monkeypatch):
    """A round on the chain route is one call of the sampler's chain op over the K B chains
    (counted), and leaves every copy's schedules where K sample() calls would."""
    from torchebm.core import ExponentialDecayScheduler

    calls = []
    real = ops.hmc_chain
    monkeypatch.setattr(ops, "hmc_chain", lambda *a, **kw: calls.append(kw["x0"].shape) or real(*a, **kw))
    sampler = HamiltonianMonteCarlo(DoubleWellModel(BARRIER), n_leapfrog_steps=2,
                                    step_size=ExponentialDecayScheduler(0.05, decay_rate=0.99))
    pt = ParallelTempering(sampler, betas=BETAS, swap_every=4)
    pt.sample(x=torch.zeros(16, 1), n_steps=10)
    assert pt.last_route.path == "chain"
    assert calls == [(len(BETAS) * 16, 1)] * 3  # rounds of 4, 4 and 2 steps
    loop = ParallelTempering(sampler, betas=BETAS, swap_every=4)
    monkeypatch.setattr(ParallelTempering, "_chain_blocker", lambda self, state, mk: "forced")
    loop.sample(x=torch.zeros(16, 1), n_steps=10)
    for a, b in zip(pt.samplers, loop.samplers):
        assert a.get_scheduled_value("step_size") == b.get_scheduled_value("step_size")


def test_loop_route_names_its_reason(one_thread):
    pt = ParallelTempering(MALA(DoubleWellModel(BARRIER), step_size=0.01, backend="reference"),
                           betas=BETAS)
    pt.sample(x=torch.zeros(8, 1), n_steps=2)
    assert pt.last_route.path == "loop" and "backend='reference'" in pt.last_route.skipped[0]


def test_pt_is_the_negative_sampler_of_persistent_cd(one_thread):
    torch.manual_seed(4)
    model = LearnedWell()
    pt = ParallelTempering(MALA(model, step_size=0.01), betas=BETAS, swap_every=5)
    loss_fn = ContrastiveDivergence(model, sampler=pt, k_steps=10, persistent=True, buffer_size=64)
    data = torch.randn(32, 1).sign()
    loss, negatives = loss_fn(data)
    loss.backward()
    assert torch.isfinite(loss) and model.barrier_height.grad is not None
    assert negatives.shape == data.shape
    assert [c.last_path for c in pt.samplers] == ["fused"] * len(BETAS)
    assert pt.last_route.path == "loop" and "kernel_spec" in pt.last_route.skipped[0]
    assert pt.replicas.shape == (len(BETAS), 32, 1)
    hot = pt.replicas[1:].clone()
    loss_fn(data)  # the hot replicas continue from the previous call
    assert not torch.equal(pt.replicas[1:], hot)
