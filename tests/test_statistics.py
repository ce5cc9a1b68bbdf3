"""Statistical correctness of the samplers, with tolerances from Monte Carlo standard errors.

Every test runs many independent chains from a fixed seed and, after a burn-in sized from the
chain's contraction rate (stated in each test), keeps ONE draw per chain: the draws are then
independent, so the standard error of a statistic is its sample standard deviation over
chains divided by sqrt(n_chains) (no autocorrelation to estimate). A test fails when a
statistic is more than 5 standard errors from its exact value (a false alarm probability of
about 6e-7 per comparison), or when a KS statistic exceeds the Kolmogorov distribution's
1 - 1e-5 quantile. A failing test prints the statistic, its standard error and the threshold;
``pytest -s`` prints them for passing tests too.

Each test runs on every path: ``reference`` always; ``fused`` (per-step ops around a model
whose ``gradient`` is overridden, so it has no ``kernel_spec``) and ``chain`` (whole-chain op on
the built-in analytic model) once their ops are built; until then they are skipped, naming the
missing op.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from torch import nn

from torchebm.core import BaseModel, DoubleWellModel, GaussianModel
from torchebm.kernels import dispatch, reference
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics, MetropolisAdjustedLangevin
from torchebm.samplers.hmc import kinetic_energy, leapfrog

SIGMAS = 5.0
KS_ALPHA = 1e-5
PATHS = ["reference", "fused", "chain"]


class NoSpecGaussian(GaussianModel):
    def gradient(self, x, model_kwargs=None):
        return super().gradient(x, model_kwargs)


class NoSpecDoubleWell(DoubleWellModel):
    def gradient(self, x, model_kwargs=None):
        return super().gradient(x, model_kwargs)


def _gen(path: str, seed: int) -> torch.Generator:
    # A different seed per path, so that the three paths are independent trials (with one
    # seed, the chain and fused paths would draw the very same Philox numbers).
    return torch.Generator().manual_seed(1000 * PATHS.index(path) + seed)


@pytest.fixture
def make_sampler(require_path):
    """``make_sampler(cls, path, model_cls, model_args, **kw)``: the sampler on ``path`` (the
    per-step paths get a model without a kernel spec), or a skip naming the missing kernel."""

    def make(cls, path, model_cls, model_args, **kw):
        require_path(cls, path)
        if path == "fused":
            model_cls = {GaussianModel: NoSpecGaussian, DoubleWellModel: NoSpecDoubleWell}[model_cls]
        model = model_cls(*model_args) if isinstance(model_args, tuple) else model_cls(**model_args)
        return cls(model, backend="reference" if path == "reference" else "fused", **kw)

    return make


def _within(name: str, stat: float, expected: float, se: float, sigmas: float = SIGMAS) -> str:
    z = (stat - expected) / se
    line = (
        f"{name}: statistic {stat:.5f}, expected {expected:.5f}, standard error {se:.5f}, "
        f"|z| = {abs(z):.2f}, threshold {sigmas:.1f}"
    )
    print(line)
    assert abs(z) <= sigmas, line
    return line


def _check_moments(draws: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, label: str):
    """Each mean component and covariance entry within 5 standard errors (one draw per chain:
    the standard error of a mean is sd / sqrt(n), of a covariance entry the sd of the products
    of centred coordinates over sqrt(n))."""
    x = draws.double()
    n = x.shape[0]
    centred = x - x.mean(0)
    emp = centred.T @ centred / (n - 1)
    rows = []  # (|z|, name, statistic, expected, standard error)
    for i in range(x.shape[1]):
        se = float(x[:, i].std() / math.sqrt(n))
        stat = float(x[:, i].mean())
        rows.append((abs(stat - float(mean[i])) / se, f"mean[{i}]", stat, float(mean[i]), se))
        for j in range(i, x.shape[1]):
            se = float((centred[:, i] * centred[:, j]).std() / math.sqrt(n))
            stat = float(emp[i, j])
            rows.append((abs(stat - float(cov[i, j])) / se, f"cov[{i},{j}]", stat, float(cov[i, j]), se))
    rows.sort(reverse=True)
    lines = [
        f"{label} {name}: statistic {stat:.5f}, expected {exp:.5f}, standard error {se:.5f}, "
        f"|z| = {z:.2f}, threshold {SIGMAS:.1f}"
        for z, name, stat, exp, se in rows
    ]
    print(f"{label}: {len(rows)} moments, worst:\n  " + "\n  ".join(lines[:2]))
    failing = [line for (z, *_), line in zip(rows, lines) if z > SIGMAS]
    assert not failing, "\n".join(failing)


def _target(dim: int):
    if dim == 2:
        return torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.5], [0.5, 2.0]])
    g = torch.Generator().manual_seed(11)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    eig = torch.linspace(0.5, 2.0, dim, dtype=torch.float64)
    cov = (q * eig) @ q.T
    return torch.linspace(-1.0, 1.0, dim), (0.5 * (cov + cov.T)).float()


# ----------------------------------------------------------------------------- Gaussians
N_CHAINS = 4000


@pytest.mark.parametrize("dim", [2, 10])
@pytest.mark.parametrize("path", PATHS)
def test_langevin_matches_its_discretised_gaussian_stationary_law(path, dim, make_sampler):
    r"""Unadjusted Langevin with step eta on N(mu, Sigma) (precision P) is stationary at
    N(mu, (P - eta P^2 / 2)^{-1}) exactly, so the O(eta) bias is corrected, not tolerated:
    mean and covariance are compared with that law. eta = 0.05 and the precision's eigenvalues
    lie in [0.45, 1.3] (2-D) or [0.5, 2] (10-D): the contraction 1 - eta*lambda_min <= 0.978 per
    step leaves, after 800 steps, less than 1e-7 of the start's offset."""
    mean, cov = _target(dim)
    eta = 0.05
    s = make_sampler(LangevinDynamics, path, GaussianModel, (mean, cov), step_size=eta)
    draws = s.sample(dim=dim, n_samples=N_CHAINS, n_steps=800, generator=_gen(path, dim))
    assert s.last_path == path
    p = torch.linalg.inv(cov.double())
    cov_eta = torch.linalg.inv(p - eta * p @ p / 2)
    _check_moments(draws, mean.double(), cov_eta, f"Langevin {path} {dim}-D")


@pytest.mark.parametrize("dim", [2, 10])
@pytest.mark.parametrize("path", PATHS)
def test_mala_samples_the_gaussian_exactly(path, dim, make_sampler):
    """MALA (eta = 0.1) on N(mu, Sigma): exact, so moments match the target itself. The
    acceptance rate is above 0.95, the Langevin contraction 1 - 0.1*lambda_min <= 0.955 per
    accepted step: 500 steps bring the start's influence below 1e-9."""
    mean, cov = _target(dim)
    s = make_sampler(MetropolisAdjustedLangevin, path, GaussianModel, (mean, cov), step_size=0.1)
    draws, diag = s.sample(dim=dim, n_samples=N_CHAINS, n_steps=500, return_diagnostics=True,
                           generator=_gen(path, 20 + dim))
    assert s.last_path == path
    print(f"MALA {path} {dim}-D acceptance {float(diag['acceptance_rate'].mean()):.3f}")
    _check_moments(draws, mean.double(), cov.double(), f"MALA {path} {dim}-D")


@pytest.mark.parametrize("dim", [2, 10])
@pytest.mark.parametrize("path", PATHS)
def test_hmc_samples_the_gaussian_exactly(path, dim, make_sampler):
    """HMC (eps = 0.25, L = 6, trajectory time 1.5 ~ a quarter period of the slowest mode) on
    N(mu, Sigma): exact; 150 MH steps mix it many times over."""
    mean, cov = _target(dim)
    s = make_sampler(HamiltonianMonteCarlo, path, GaussianModel, (mean, cov), step_size=0.25,
                 n_leapfrog_steps=6)
    draws, diag = s.sample(dim=dim, n_samples=N_CHAINS, n_steps=150, return_diagnostics=True,
                           generator=_gen(path, 40 + dim))
    assert s.last_path == path
    print(f"HMC {path} {dim}-D acceptance {float(diag['acceptance_rate'].mean()):.3f}")
    _check_moments(draws, mean.double(), cov.double(), f"HMC {path} {dim}-D")


@pytest.mark.parametrize(
    "eta, noise_std, expected",
    [
        (0.5, None, 1.0 / (1.0 - 0.5 / 2.0)),  # sigma^2 / (1 - eta / (2 sigma^2)), sigma = 1
        (0.1, None, 1.0 / (1.0 - 0.1 / 2.0)),
        (0.5, 0.5, 0.25 / (2 * 0.5 - 0.5**2)),  # decoupled noise s: s^2 / (2 eta - eta^2)
    ],
)
@pytest.mark.parametrize("path", PATHS)
def test_unadjusted_langevin_exact_stationary_variance_1d(path, eta, noise_std, expected, make_sampler):
    """x' = (1 - eta) x + s xi on N(0, 1) has stationary variance s^2 / (1 - (1 - eta)^2),
    i.e. sigma^2 / (1 - eta / (2 sigma^2)) for s = sqrt(2 eta). 20000 chains, one draw each;
    the variance's standard error is sd((x - xbar)^2) / sqrt(n). Burn-in 300 steps
    ((1 - eta)^600 < 1e-13). For eta = 0.5 the bias to the target variance 1 is also shown to be
    resolved (> 5 standard errors)."""
    kw = {"noise_std": noise_std} if noise_std is not None else {}
    s = make_sampler(LangevinDynamics, path, GaussianModel, (torch.zeros(1), torch.eye(1)),
                 step_size=eta, **kw)
    x = s.sample(dim=1, n_samples=20000, n_steps=300, generator=_gen(path, 3))
    assert s.last_path == path
    x = x.double().squeeze(1)
    sq = (x - x.mean()) ** 2
    var, se = float(sq.mean()), float(sq.std() / math.sqrt(x.numel()))
    _within(f"ULA {path} eta={eta} s={noise_std} variance", var, expected, se)
    if eta == 0.5 and noise_std is None:
        assert abs(var - 1.0) / se > SIGMAS, "the discretisation bias should be resolved"


# ----------------------------------------------------------------------------- double well
def _quadrature_cdf(energy, lo: float, hi: float):
    """The CDF of the 1-D density ``exp(-energy(x))`` on ``[lo, hi]``, by the trapezoid rule."""
    grid = np.linspace(lo, hi, 200001)
    density = np.exp(-energy(grid))
    cdf = np.concatenate([[0.0], np.cumsum((density[1:] + density[:-1]) / 2 * np.diff(grid))])
    cdf /= cdf[-1]
    return lambda x: np.interp(x, grid, cdf)


def _double_well_cdf(h: float):
    return _quadrature_cdf(lambda x: h * (x**2 - 1.0) ** 2, -4.0, 4.0)


def _ks(draws: torch.Tensor, label: str, h: float, cdf=None) -> None:
    sample = draws.double().flatten().numpy()
    n = sample.size
    result = stats.kstest(sample, cdf if cdf is not None else _double_well_cdf(h))
    threshold = stats.kstwo.ppf(1 - KS_ALPHA, n)
    line = (
        f"{label}: KS statistic D = {result.statistic:.5f} (p = {result.pvalue:.3g}), scale "
        f"1/sqrt(n) = {1 / math.sqrt(n):.5f}, threshold D < {threshold:.5f} (alpha {KS_ALPHA})"
    )
    print(line)
    assert result.statistic < threshold, line


N_WELL = 10000


@pytest.mark.parametrize("path", PATHS)
def test_mala_is_exact_on_double_well(path, make_sampler):
    """MALA (eta = 0.1) on E = (x^2 - 1)^2, every chain started in the right well at x = 1:
    the well populations relax with a time of about 15 steps (measured), so after 300 steps the
    imbalance is below 1e-8 and one draw per chain from 10000 chains is an i.i.d. sample for
    the KS test against the density integrated by quadrature."""
    s = make_sampler(MetropolisAdjustedLangevin, path, DoubleWellModel, {"barrier_height": 1.0},
                 step_size=0.1)
    x = s.sample(x=torch.ones(N_WELL, 1), n_steps=300, generator=_gen(path, 5))
    assert s.last_path == path
    _ks(x, f"MALA {path} double well", 1.0)


@pytest.mark.parametrize("path", PATHS)
def test_hmc_is_exact_on_double_well(path, make_sampler):
    """HMC (eps = 0.25, L = 8) on E = (x^2 - 1)^2 from x = 1: the populations equilibrate
    within about 10 MH steps (measured); 150 steps, one draw per chain, KS against quadrature."""
    s = make_sampler(HamiltonianMonteCarlo, path, DoubleWellModel, {"barrier_height": 1.0},
                 step_size=0.25, n_leapfrog_steps=8)
    x = s.sample(x=torch.ones(N_WELL, 1), n_steps=150, generator=_gen(path, 6))
    assert s.last_path == path
    _ks(x, f"HMC {path} double well", 1.0)


class SoftplusNet(BaseModel):
    """A 1-D MLP energy, ``E(x) = softplus(2x - 1) + softplus(-3x - 1) + softplus(x + 2) / 2``
    (Linear -> Softplus -> Linear): convex, growing like 2.5x and 3|x| in the tails."""

    def __init__(self):
        super().__init__(dtype=torch.float64)
        self.net = nn.Sequential(nn.Linear(1, 3), nn.Softplus(), nn.Linear(3, 1)).double()
        with torch.no_grad():
            self.net[0].weight.copy_(torch.tensor([[2.0], [-3.0], [1.0]]))
            self.net[0].bias.copy_(torch.tensor([-1.0, -1.0, 2.0]))
            self.net[2].weight.copy_(torch.tensor([[1.0, 1.0, 0.5]]))
            self.net[2].bias.zero_()

    def forward(self, x):
        return self.net(x).squeeze(-1)


@pytest.mark.parametrize("cls", [MetropolisAdjustedLangevin, HamiltonianMonteCarlo])
def test_mlp_chain_kernels_are_exact_on_an_mlp_energy(cls, require_path):
    """MALA (eta = 0.2) and HMC (eps = 0.3, L = 6) on the whole-chain MLP path, 10000 chains from
    x = 0 for 200 steps (the target is convex and 1-D: mixing takes a few steps), one draw per
    chain, KS against the density integrated by quadrature."""
    require_path(cls, "fused", torch.float64)
    model = SoftplusNet()
    kw = {"step_size": 0.2} if cls is MetropolisAdjustedLangevin else {"step_size": 0.3, "n_leapfrog_steps": 6}
    s = cls(model, dtype=torch.float64, **kw)
    x = s.sample(x=torch.zeros(N_WELL, 1, dtype=torch.float64), n_steps=200,
                 generator=torch.Generator().manual_seed(8))
    assert s.last_path == "chain", s.last_route
    assert s.last_route.op == cls.algorithm.mlp_chain_op

    def energy(grid):
        with torch.no_grad():
            return model(torch.from_numpy(grid).unsqueeze(-1)).numpy()

    _ks(x, f"{cls.__name__} MLP chain", 0.0, cdf=_quadrature_cdf(energy, -12.0, 12.0))


def test_ks_check_rejects_unadjusted_langevin_with_a_large_step():
    """The KS check has power: unadjusted Langevin with eta = 0.05 (stable, but biased by
    O(eta)) on the same double well fails it, where MALA with twice the step passes."""
    s = LangevinDynamics(DoubleWellModel(barrier_height=1.0), step_size=0.05, backend="reference")
    x = s.sample(x=torch.ones(N_WELL, 1), n_steps=500, generator=torch.Generator().manual_seed(5))
    sample = x.double().flatten().numpy()
    d = stats.kstest(sample, _double_well_cdf(1.0)).statistic
    threshold = stats.kstwo.ppf(1 - KS_ALPHA, sample.size)
    print(f"ULA eta=0.05 double well: D = {d:.4f}, threshold {threshold:.4f}")
    assert d > threshold


# ----------------------------------------------------------------------------- leapfrog
def _kick_drifts():
    out = [pytest.param(reference.leapfrog_kick_drift, id="reference")]
    reason = dispatch.kernels_blocker(("leapfrog_kick_drift",), torch.device("cpu"), torch.float64)
    from torchebm.kernels import ops

    face = getattr(ops, "leapfrog_kick_drift", None)
    marks = [pytest.mark.skip(reason=f"kernel not available yet: {reason}")] if reason else []
    out.append(pytest.param(face or (lambda *a: torch.ops.torchebm.leapfrog_kick_drift(*a)),
                            id="fused", marks=marks))
    return out


def _anisotropic():
    mean, cov = _target(10)
    return GaussianModel(mean, cov, dtype=torch.float64)


@pytest.mark.parametrize("kick_drift", _kick_drifts())
@pytest.mark.parametrize("diagonal_mass", [False, True])
def test_leapfrog_is_reversible(kick_drift, diagonal_mass):
    """L steps forward, flip the momentum, L steps back: the start again, to float64 rounding
    (the largest deviation over 256 states and 40 steps is below 1e-11)."""
    model = DoubleWellModel(barrier_height=1.0, dtype=torch.float64)
    g = torch.Generator().manual_seed(8)
    x0 = torch.randn(256, 10, generator=g, dtype=torch.float64)
    p0 = torch.randn(256, 10, generator=g, dtype=torch.float64)
    inv_mass = (torch.rand(10, generator=g, dtype=torch.float64) + 0.5) if diagonal_mass else None
    x1, p1, g1, _ = leapfrog(x0, p0, model.gradient(x0), 0.02, 40, model.gradient,
                             inv_mass=inv_mass, kick_drift=kick_drift)
    assert (x1 - x0).abs().max() > 0.1  # it went somewhere
    x2, p2, _, _ = leapfrog(x1, -p1, g1, 0.02, 40, model.gradient, inv_mass=inv_mass,
                            kick_drift=kick_drift)
    err = max(float((x2 - x0).abs().max()), float((p2 + p0).abs().max()))
    print(f"leapfrog round trip max error {err:.3g} (threshold 1e-11)")
    assert err < 1e-11


@pytest.mark.parametrize("kick_drift", _kick_drifts())
def test_leapfrog_energy_error_is_second_order(kick_drift):
    """Over a fixed time T = 1, halving eps quarters the energy error |H(end) - H(start)|
    (mean over 512 random states of the 10-D double well): the ratio lies in [3.5, 4.5]."""
    model = DoubleWellModel(barrier_height=0.5, dtype=torch.float64)
    g = torch.Generator().manual_seed(9)
    x0 = torch.randn(512, 10, generator=g, dtype=torch.float64)
    p0 = torch.randn(512, 10, generator=g, dtype=torch.float64)
    h0 = model(x0) + kinetic_energy(p0)
    errors = []
    for eps in (0.04, 0.02, 0.01):
        n = round(1.0 / eps)
        x, p, _, _ = leapfrog(x0, p0, model.gradient(x0), eps, n, model.gradient,
                              kick_drift=kick_drift)
        errors.append(float((model(x) + kinetic_energy(p) - h0).abs().mean()))
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    print(f"leapfrog energy errors {errors}, ratios {ratios} (band [3.5, 4.5])")
    assert all(3.5 <= r <= 4.5 for r in ratios), (errors, ratios)
