"""Annealed importance sampling: log Z of a Gaussian (closed form) and of a 1-D double well
(quadrature) within the estimator's standard error; the reverse-AIS upper bound."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import integrate

from torchebm.core import DoubleWellModel, GaussianModel
from torchebm.samplers import MALA, AnnealedImportanceSampler, HamiltonianMonteCarlo, LangevinDynamics
from torchebm.samplers.annealed_importance import fit_gaussian, gaussian_log_normaliser

F64 = torch.float64
# Every statistical check below allows 4 standard errors (two-sided false-failure rate 6e-5
# for a normal statistic); the estimators' SEs are from the delta method (forward) and the
# sample SD of the reverse log-weights (upper bound).
Z_BOUND = 4.0


def gaussian_target():
    cov = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64)
    mean = torch.tensor([1.0, -0.5], dtype=F64)
    log_z = math.log(2 * math.pi) + 0.5 * math.log(float(torch.linalg.det(cov)))
    return GaussianModel(mean, cov, dtype=F64), mean, cov, log_z


def double_well_target(h=4.0):
    """E = h (x^2 - 1)^2 in 1-D; log Z and exact samples by quadrature (inverse CDF)."""
    z, _ = integrate.quad(lambda x: math.exp(-h * (x * x - 1.0) ** 2), -4, 4, epsabs=1e-13)
    grid = np.linspace(-3.0, 3.0, 200001)
    dens = np.exp(-h * (grid**2 - 1.0) ** 2)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(grid))])
    cdf /= cdf[-1]

    def draw(n, seed):
        u = np.random.default_rng(seed).uniform(size=n)
        return torch.tensor(np.interp(u, cdf, grid), dtype=F64).unsqueeze(1)

    return DoubleWellModel(barrier_height=h, dtype=F64), math.log(z), draw


@pytest.fixture(params=["chain", "loop"])
def route(request, monkeypatch):
    """Each AIS test on both routes: the chain op with in-kernel weights (what the analytic
    models below get), and the sample() loop, forced by a blocker."""
    if request.param == "loop":
        monkeypatch.setattr(AnnealedImportanceSampler, "_chain_blocker", lambda self, x: "forced by the test")
    return request.param


def test_gaussian_log_normaliser_is_the_closed_form():
    _, mean, cov, log_z = gaussian_target()
    assert math.isclose(gaussian_log_normaliser(GaussianModel(mean, cov, dtype=F64)), log_z, rel_tol=1e-12)


@pytest.mark.parametrize("kernel", ["mala", "hmc"])
def test_log_z_of_a_gaussian_within_its_standard_error(kernel, route, one_thread):
    target, mean, cov, exact = gaussian_target()
    torch.manual_seed(0)
    sampler = (MALA(target, step_size=0.1, dtype=F64) if kernel == "mala"
               else HamiltonianMonteCarlo(target, step_size=0.2, n_leapfrog_steps=3, dtype=F64))
    base = GaussianModel(torch.zeros(2), 4.0 * torch.eye(2), dtype=F64)
    ais = AnnealedImportanceSampler(sampler, n_temps=100, base=base)
    result = ais.estimate(1000)
    assert ais.last_route.path == route
    assert result.log_z_se < 0.1  # not vacuous
    assert abs(result.log_z - exact) < Z_BOUND * result.log_z_se, (result.log_z, exact, result.log_z_se)
    # Jensen: the mean log-weight is below log Z (in expectation; here by many SEs).
    assert result.lower_bound < exact


def test_log_z_of_a_double_well_within_its_standard_error(route, one_thread):
    model, exact, draw = double_well_target()
    torch.manual_seed(1)
    ais = AnnealedImportanceSampler(MALA(model, step_size=0.02, dtype=F64), n_temps=150)
    # The base is the Gaussian fitted to exact samples (as to training data).
    result = ais.estimate(1000, base_samples=draw(5000, 0), target_samples=draw(1000, 1))
    assert ais.last_route.path == route
    assert result.log_z_se < 0.1
    assert abs(result.log_z - exact) < Z_BOUND * result.log_z_se, (result.log_z, exact, result.log_z_se)
    # Bidirectional Monte Carlo: the reverse bound is above log Z and above the forward
    # estimate, each within its SE.
    assert result.upper_bound > exact - Z_BOUND * result.upper_bound_se, (result.upper_bound, exact)
    joint_se = math.hypot(result.upper_bound_se, result.log_z_se)
    assert result.upper_bound > result.log_z - Z_BOUND * joint_se, (result.upper_bound, result.log_z)


def test_fit_gaussian_and_argument_checks():
    x = torch.randn(4000, 2, dtype=F64) * torch.tensor([2.0, 0.5], dtype=F64) + 1.0
    base = fit_gaussian(x)
    # Sample mean and SD of 4000 draws: SEs 2/63 and 0.5/63; 5 SE.
    assert torch.allclose(base.mean, torch.ones(2, dtype=F64), atol=5 * 2 / 63)
    assert torch.allclose(base.cov.diagonal().sqrt(), torch.tensor([2.0, 0.5], dtype=F64), rtol=0.1)
    target, *_ = gaussian_target()
    sampler = MALA(target, step_size=0.1, dtype=F64)
    with pytest.raises(ValueError, match="betas must run from 0 to 1"):
        AnnealedImportanceSampler(sampler, betas=[0.1, 1.0])
    with pytest.raises(ValueError, match="betas must increase"):
        AnnealedImportanceSampler(sampler, betas=[0.0, 0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="base_samples"):
        AnnealedImportanceSampler(sampler).estimate(10)
    with pytest.raises(TypeError, match="GaussianModel"):
        AnnealedImportanceSampler(sampler, base=target.mean)


def test_reproducible_for_a_seed(route, one_thread):
    target, *_ = gaussian_target()
    base = GaussianModel(torch.zeros(2), torch.eye(2), dtype=F64)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        ais = AnnealedImportanceSampler(LangevinDynamics(target, step_size=0.05, dtype=F64),
                                        n_temps=10, base=base)
        return ais.estimate(50, generator=g).log_weights

    assert torch.equal(run(0), run(0)) and not torch.equal(run(0), run(1))


@pytest.mark.parametrize("kernel", ["langevin", "hmc"])
def test_both_routes_agree_in_distribution(kernel, one_thread, monkeypatch):
    """The chain route (in-kernel weights) and the loop route estimate the same log Z: on the
    double well, with 3 steps per temperature (which tests the repeated path positions), the
    two estimates differ by less than Z_BOUND of their joint standard error (independent
    runs). Unadjusted Langevin too: both routes run the same biased transitions."""
    model, _, draw = double_well_target()
    sampler = (LangevinDynamics(model, step_size=0.01, dtype=F64) if kernel == "langevin"
               else HamiltonianMonteCarlo(model, step_size=0.1, n_leapfrog_steps=3, dtype=F64))
    base = fit_gaussian(draw(5000, 2))
    results = {}
    for route in ("chain", "loop"):
        if route == "loop":
            monkeypatch.setattr(AnnealedImportanceSampler, "_chain_blocker", lambda self, x: "forced")
        ais = AnnealedImportanceSampler(sampler, n_temps=40, base=base, n_steps_per_temp=3)
        results[route] = ais.estimate(1000, generator=torch.Generator().manual_seed(3))
        assert ais.last_route.path == route
    a, b = results["chain"], results["loop"]
    joint = math.hypot(a.log_z_se, b.log_z_se)
    assert joint < 0.1
    assert abs(a.log_z - b.log_z) < Z_BOUND * joint, (a.log_z, b.log_z, joint)


@pytest.mark.parametrize("kernel", ["mala", "hmc"])
def test_a_long_anneal_runs_in_blocks_equal_to_one_call(kernel, monkeypatch):
    """The chain route runs a long anneal in blocks (so that Ctrl-C stops it between them):
    blocks of a few steps give the one-call log weights and samples bit for bit."""
    from torchebm.kernels import ops
    from torchebm.samplers import mcmc_sampler

    target, *_ = gaussian_target()
    base = GaussianModel(torch.zeros(2), torch.eye(2), dtype=F64)
    make = (lambda: MALA(target, step_size=0.1, dtype=F64)) if kernel == "mala" else \
        (lambda: HamiltonianMonteCarlo(target, step_size=0.1, n_leapfrog_steps=3, dtype=F64))

    def run(block_work):
        calls = []
        with monkeypatch.context() as m:
            op_name = make().algorithm.chain_op
            real = getattr(ops, op_name)
            m.setattr(ops, op_name, lambda *a, **k: calls.append(k["first_step"]) or real(*a, **k))
            if block_work is not None:
                m.setattr(mcmc_sampler, "_FIRST_BLOCK_WORK", block_work)
            ais = AnnealedImportanceSampler(make(), n_temps=12, base=base, n_steps_per_temp=2)
            result = ais.estimate(16, generator=torch.Generator().manual_seed(5))
        assert ais.last_route.path == "chain"
        return result, calls

    one, one_calls = run(None)
    # 3 steps per block: a gradient costs 16 chains x (d = 2 + the Gaussian's 2 + 4 elements)
    # (mcmc_sampler._first_chain_block), an HMC step 3 gradients.
    blocks, block_calls = run(16 * (2 + 6) * (3 if kernel == "hmc" else 1) * 3)
    # 11 temperatures between 0 and 1, 2 steps each: 22 steps in blocks of 3.
    assert one_calls == [0] and block_calls == list(range(0, 22, 3))
    assert torch.equal(one.log_weights, blocks.log_weights)
    assert torch.equal(one.samples, blocks.samples)


def test_chain_route_reason_is_visible():
    target, *_ = gaussian_target()
    base = GaussianModel(torch.zeros(2), torch.eye(2), dtype=F64)
    ais = AnnealedImportanceSampler(MALA(target, step_size=0.1, dtype=F64, backend="reference"),
                                    n_temps=5, base=base)
    ais.estimate(10)
    assert ais.last_route.path == "loop" and "backend='reference'" in ais.last_route.skipped[0]


@pytest.mark.slow
def test_example_reports_the_test_log_likelihood_of_the_ring_ebm():
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "examples/ais_toy2d.py", "--quick"], cwd=repo,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = re.search(r"test log-likelihood: EBM (\S+) \+- (\S+) nats, fitted Gaussian (\S+) nats",
                      proc.stdout)
    assert found, proc.stdout
    ebm, se, gaussian = (float(v) for v in found.groups())
    # Even briefly trained, the EBM models the eight modes better than one Gaussian.
    assert ebm - Z_BOUND * se > gaussian, proc.stdout
