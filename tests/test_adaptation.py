"""Step-size and trajectory adaptation (torchebm.samplers.adaptation) and the per-chain step
sizes of the per-step ops.

Statistical tolerances come from Monte Carlo standard errors, as in tests/test_statistics.py:
each test keeps per-chain quantities of many independent chains, so a standard error is the
sample standard deviation over chains divided by sqrt(n_chains) (no autocorrelation to
estimate), and a test fails beyond 5 standard errors (false alarm probability about 6e-7), or
when a KS statistic exceeds the Kolmogorov distribution's 1 - 1e-5 quantile.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from torchebm.core import GaussianModel
from torchebm.kernels import ops, reference
from torchebm.samplers import HamiltonianMonteCarlo, MetropolisAdjustedLangevin
from torchebm.samplers.adaptation import (
    MAX_LEAPFROG_STEPS,
    DualAveraging,
    halton,
    jittered_leapfrog_steps,
)

SIGMAS = 5.0
KS_ALPHA = 1e-5


class NoSpecGaussian(GaussianModel):
    """A Gaussian without a kernel spec: its samplers run the per-step loop, not a chain op."""

    def gradient(self, x, model_kwargs=None):
        return super().gradient(x, model_kwargs)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- the ops
@pytest.fixture
def per_step_ops(require_path):
    require_path(HamiltonianMonteCarlo, "fused")
    require_path(MetropolisAdjustedLangevin, "fused")


# 3000 chains of 3 elements: rows straddle the CPU kernels' work items (4096 and 8192 elements);
# (6,): one element per chain, the state's one row holding every chain.
SHAPES = [(3000, 3), (7, 3, 4), (5, 1), (6,)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_per_chain_coefficients_equal_floats_bit_for_bit(per_step_ops, dtype, shape):
    g = _gen(0)
    x, grad, p, y, grad_y = (torch.randn(shape, generator=g, dtype=dtype) for _ in range(5))
    energy_x, energy_y = torch.randn(2, shape[0], generator=g, dtype=dtype)
    b = shape[0]

    def chains(v):
        return torch.full((b,), v, dtype=dtype)

    for noise in (None, torch.randn(shape, generator=g, dtype=dtype)):
        for clamp, clip in (((None, None), None), ((-0.5, 0.7), 0.3)):
            floats = ops.langevin_update(x, grad, noise, 0.137, 0.41, *clamp, clip, seed=5, step=3)
            tensors = ops.langevin_update(x, grad, noise, chains(0.137), chains(0.41), *clamp, clip,
                                          seed=5, step=3)
            assert torch.equal(floats, tensors)
    for inv_mass in (None, torch.tensor(0.7, dtype=dtype), torch.rand(shape[-1], generator=g, dtype=dtype) + 0.5):
        for kick, drift in ((0.0685, 0.137), (0.137, 0.0)):
            floats = ops.leapfrog_kick_drift(x, p, grad, kick, drift, inv_mass)
            tensors = ops.leapfrog_kick_drift(x, p, grad, chains(kick), chains(drift), inv_mass)
            assert all(torch.equal(u, v) for u, v in zip(floats, tensors))
    floats = ops.mala_select(x, y, grad, grad_y, energy_x, energy_y, 0.137, 0.41, seed=2, step=9)
    tensors = ops.mala_select(x, y, grad, grad_y, energy_x, energy_y, chains(0.137), chains(0.41),
                              seed=2, step=9)
    assert all(torch.equal(u, v) for u, v in zip(floats, tensors))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_per_chain_coefficients_match_the_reference(per_step_ops, dtype):
    g = _gen(1)
    shape = (300, 3, 2)
    x, grad, p, y, grad_y, noise = (torch.randn(shape, generator=g, dtype=dtype) for _ in range(6))
    energy_x, energy_y = torch.randn(2, shape[0], generator=g, dtype=dtype)
    a = torch.rand(shape[0], generator=g, dtype=dtype) * 0.5
    b = torch.rand(shape[0], generator=g, dtype=dtype) + 0.1
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ops.langevin_update(x, grad, noise, a, b, -1.0, 1.5, 0.8),
                               reference.langevin_update(x, grad, noise, a, b, -1.0, 1.5, 0.8), **tol)
    inv_mass = torch.rand(2, generator=g, dtype=dtype) + 0.5
    for fused, ref in zip(ops.leapfrog_kick_drift(x, p, grad, a, b, inv_mass),
                          reference.leapfrog_kick_drift(x, p, grad, a, b, inv_mass)):
        torch.testing.assert_close(fused, ref, **tol)
    u = torch.rand(shape[0], generator=g, dtype=dtype).clamp_min(1e-6)
    fused = ops.mala_select(x, y, grad, grad_y, energy_x, energy_y, a, b, u)
    ref = reference.mala_select(x, y, grad, grad_y, energy_x, energy_y, a, b, u)
    log_r = reference.mala_log_accept_ratio(x, y, grad, grad_y, energy_x, energy_y, a, b)
    clear = (torch.log(u) - log_r).abs() > 1e-3  # decisions away from a rounding tie
    assert clear.sum() > 250
    assert torch.equal(fused[3][clear], ref[3][clear])
    # And each chain's ratio uses its own (a, b): chain 0's coefficients for every chain differ.
    swapped = ops.mala_select(x, y, grad, grad_y, energy_x, energy_y, a.roll(1), b.roll(1), u)
    assert not torch.equal(swapped[3], fused[3])


def test_per_chain_coefficients_are_checked(per_step_ops):
    x = torch.randn(4, 2)
    with pytest.raises(RuntimeError, match=r"a must be a float or a per-chain tensor of shape \[4\]"):
        ops.langevin_update(x, x, None, torch.ones(3), 1.0)
    with pytest.raises(RuntimeError, match="per-chain kick must have the dtype of x"):
        ops.leapfrog_kick_drift(x, x, x, torch.ones(4, dtype=torch.float64), 1.0)
    with pytest.raises(RuntimeError, match=r"drift\[2\] must be finite"):
        ops.leapfrog_kick_drift(x, x, x, 1.0, torch.tensor([1.0, 1.0, math.inf, 1.0]))
    with pytest.raises(RuntimeError, match=r"mala_select: b\[1\] must be finite and > 0"):
        e = torch.zeros(4)
        ops.mala_select(x, x, x, x, e, e, 0.1, torch.tensor([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(RuntimeError, match="not differentiable in its per-chain a"):
        ops.langevin_update(x, x, None, torch.ones(4, requires_grad=True), 1.0)


def test_per_chain_coefficients_backward(per_step_ops):
    """The autograd of langevin_update and leapfrog_kick_drift scales each row by its chain's
    coefficient (gradcheck in float64)."""
    g = _gen(2)
    x, grad, noise, p = (torch.randn(3, 2, generator=g, dtype=torch.float64, requires_grad=True)
                         for _ in range(4))
    a, b = torch.rand(3, dtype=torch.float64, generator=g), torch.rand(3, dtype=torch.float64, generator=g)
    assert torch.autograd.gradcheck(lambda x, grad, noise: ops.langevin_update(x, grad, noise, a, b),
                                    (x, grad, noise))
    assert torch.autograd.gradcheck(lambda x, p, grad: ops.leapfrog_kick_drift(x, p, grad, a, b),
                                    (x, p, grad))


def test_per_chain_coefficients_fake_kernels(per_step_ops):
    x = torch.empty(4, 2, device="meta")
    a = torch.empty(4, device="meta")
    assert ops.langevin_update(x, x, None, a, a).shape == (4, 2)
    assert ops.leapfrog_kick_drift(x, x, x, a, a)[0].shape == (4, 2)
    with pytest.raises(RuntimeError, match="a_chain is on cpu but x is on meta"):
        ops.langevin_update(x, x, None, torch.ones(4), 1.0)


@pytest.fixture
def chain_ops(require_path):
    for cls in (HamiltonianMonteCarlo, MetropolisAdjustedLangevin):
        require_path(cls, "chain")


def _chain_run(kind, x0, first, second, per_chain_rows=None):
    """One whole-chain op call on the double well (d = 3), 9 steps, seed 11; ``first`` and
    ``second`` are its schedules (HMC: step size and ignored)."""
    args = dict(params=[1.5, 1.0], seed=11, thin=3, record_trajectory=True, record_energy=True)
    if kind == "langevin":
        return ops.langevin_chain("double_well", x0, first, second, clamp_min=-5.0, clamp_max=5.0,
                                  grad_clip=40.0, **args)
    if kind == "mala":
        return ops.mala_chain("double_well", x0, first, second, **args)
    return ops.hmc_chain("double_well", x0, first, 4, torch.tensor([0.5, 1.0, 2.0], dtype=x0.dtype),
                         **args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["langevin", "mala", "hmc"])
def test_chain_ops_take_per_chain_schedules(chain_ops, dtype, kind):
    """A schedule [n_steps, B] gives chain i the values of column i: the run equals, row for
    row and bit for bit, the run with the [n_steps] schedule of that chain's values (a chain
    depends only on its own noise, indexed over the whole batch); equal columns equal the
    [n_steps] schedule outright, and a stride-0 [n_steps, B] view equals its copy."""
    b, n = 200, 9
    x0 = torch.randn(b, 3, generator=_gen(14), dtype=dtype)
    a1 = torch.linspace(0.02, 0.01, n, dtype=torch.float64)
    a2 = torch.linspace(0.005, 0.03, n, dtype=torch.float64)
    if kind == "hmc":
        a1, a2 = 5 * a1, 5 * a2
    pick = torch.arange(b) % 3 == 1  # chains on the second schedule
    per_chain_a = torch.where(pick[None, :], a2[:, None], a1[:, None])
    per_chain_b = torch.sqrt(2 * per_chain_a)
    run = _chain_run(kind, x0, per_chain_a, per_chain_b)
    run1 = _chain_run(kind, x0, a1, torch.sqrt(2 * a1))
    run2 = _chain_run(kind, x0, a2, torch.sqrt(2 * a2))
    for out, one, two in zip(run[:2], run1[:2], run2[:2]):  # final states, trajectories
        assert torch.equal(out[~pick], one[~pick]) and torch.equal(out[pick], two[pick])
    equal = _chain_run(kind, x0, a1[:, None].expand(n, b).contiguous(),
                       torch.sqrt(2 * a1)[:, None].expand(n, b).contiguous())
    assert all(torch.equal(u, v) for u, v in zip(equal, run1))
    constant = torch.full((b,), 0.013, dtype=torch.float64)
    view = _chain_run(kind, x0, constant.expand(n, b), torch.sqrt(2 * constant).expand(n, b))
    copy = _chain_run(kind, x0, constant.expand(n, b).contiguous(),
                      torch.sqrt(2 * constant).expand(n, b).contiguous())
    assert all(torch.equal(u, v) for u, v in zip(view, copy))


def test_chain_schedules_are_checked(chain_ops):
    x0 = torch.randn(4, 3)
    with pytest.raises(RuntimeError, match=r"must be a per-step tensor \[n_steps\] or \[n_steps, B\] \(B = 4"):
        ops.mala_chain("double_well", x0, torch.ones(5, 3, dtype=torch.float64) * 0.01,
                       torch.ones(5, 3, dtype=torch.float64), [1.0, 1.0])
    bad = torch.full((5, 4), 0.01, dtype=torch.float64)
    bad[2, 1] = -1.0
    with pytest.raises(RuntimeError, match=r"step_size\[2, 1\] must be finite and > 0"):
        ops.hmc_chain("double_well", x0, bad, 2, None, [1.0, 1.0])
    with pytest.raises(RuntimeError, match=r"step_size\[:, 3\] must be finite and > 0"):
        ops.hmc_chain("double_well", x0, torch.tensor([0.1, 0.1, 0.1, 0.0],
                                                      dtype=torch.float64).expand(5, 4), 2, None, [1.0, 1.0])


@pytest.mark.parametrize("cls, kw", [(MetropolisAdjustedLangevin, {}),
                                     (HamiltonianMonteCarlo, {"n_leapfrog_steps": 3})])
def test_per_chain_adapted_chain_path_equals_fused_path(chain_ops, cls, kw):
    """After a per-chain warm-up, the analytic model's chain op (schedules [n_steps, B]) runs
    what the per-step loop runs (MALA bit for bit; HMC's chain op sums the kinetic energy in
    another order, as in tests/test_kernels_chain.py: the same states up to rounding)."""
    chain = cls(GaussianModel(MEAN, torch.diag(STD**2)), step_size=0.05, **kw)
    x = chain.warmup(n_samples=64, dim=2, n_steps=30, generator=_gen(15), per_chain=True)
    fused = cls(NoSpecGaussian(MEAN, torch.diag(STD**2)), step_size=0.05, **kw)
    fused.load_state_dict(chain.state_dict())
    a = chain.sample(x=x, n_steps=20, return_trajectory=True, generator=_gen(16))
    b = fused.sample(x=x, n_steps=20, return_trajectory=True, generator=_gen(16))
    assert (chain.last_path, fused.last_path) == ("chain", "fused")
    if cls is MetropolisAdjustedLangevin:
        assert torch.equal(a, b)
    else:
        close = (a - b).abs().amax(dim=(1, 2)) <= 1e-4
        assert close.double().mean() >= 0.95


# ----------------------------------------------------------------------------- leapfrog_steps
def _hmc_varying_loop(x0, eps, steps, inv_mass, seed):
    """The per-step loop hmc_chain with ``leapfrog_steps=steps`` equals (the double well (1.5,
    1), d = 3): transition t is leapfrog_kick_drift's half kick + drift, steps[t] - 1 kick +
    drift pairs and a final half kick, then metropolis_select, the accepted state's gradient
    and energy carried over."""
    params = [1.5, 1.0]
    x = x0.clone()
    e, g = ops.analytic_energy_grad("double_well", x, params, None, None)
    for t in range(eps.shape[0]):
        h, n_leap = eps[t].item(), int(steps[t])
        p = ops.philox_normal(x.shape, seed, t, x.dtype) / inv_mass.sqrt()
        h0 = e + 0.5 * (inv_mass * p * p).sum(-1)
        xn, p = ops.leapfrog_kick_drift(x, p, g, h / 2, h, inv_mass)
        for step in range(1, n_leap + 1):
            en, gn = ops.analytic_energy_grad("double_well", xn, params, None, None)
            if step < n_leap:
                xn, p = ops.leapfrog_kick_drift(xn, p, gn, h, h, inv_mass)
        _, p = ops.leapfrog_kick_drift(xn, p, gn, h / 2, 0.0, inv_mass)
        h1 = en + 0.5 * (inv_mass * p * p).sum(-1)
        x, acc = ops.metropolis_select(h0 - h1, x, xn, None, seed, t)
        e = torch.where(acc, en, e)
        g = torch.where(acc[:, None], gn, g)
    return x


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hmc_chain_takes_a_leapfrog_count_per_transition(chain_ops, dtype):
    """``leapfrog_steps[t]`` leapfrog steps at transition t: the chain equals its per-step loop
    (to rounding: the loop sums the kinetic energy in another order, as in
    tests/test_kernels_chain.py), equals bit for bit one-transition calls with ``n_leapfrog =
    leapfrog_steps[t]`` and ``first_step = t``, and two calls over the halves of the schedules;
    equal entries give the ``n_leapfrog`` form bit for bit."""
    b, n = 300, 7
    x0 = torch.randn(b, 3, generator=_gen(21), dtype=dtype)
    eps = torch.linspace(0.15, 0.1, n, dtype=torch.float64)
    steps = torch.tensor([1, 4, 2, 7, 3, 1, 5])
    inv_mass = torch.tensor([0.5, 1.0, 2.0], dtype=dtype)
    args = dict(params=[1.5, 1.0], seed=11)
    whole = ops.hmc_chain("double_well", x0, eps, 1, inv_mass, thin=1, record_trajectory=True,
                          record_energy=True, leapfrog_steps=steps, **args)
    x = x0
    for t in range(n):
        x, _, _, _ = ops.hmc_chain("double_well", x, eps[t:t + 1], int(steps[t]), inv_mass,
                                   first_step=t, **args)
    assert torch.equal(x, whole[0])
    first = ops.hmc_chain("double_well", x0, eps[:3], 1, inv_mass, thin=1, record_trajectory=True,
                          record_energy=True, leapfrog_steps=steps[:3], **args)
    second = ops.hmc_chain("double_well", first[0], eps[3:], 1, inv_mass, thin=1,
                           record_trajectory=True, record_energy=True, leapfrog_steps=steps[3:],
                           first_step=3, **args)
    for k in range(1, 4):  # trajectory, energy_mean, acceptance_rate
        assert torch.equal(torch.cat([first[k], second[k]], dim=1 if k == 1 else 0), whole[k])
    assert torch.equal(second[0], whole[0])
    loop = _hmc_varying_loop(x0, eps, steps, inv_mass, 11)
    close = (whole[0] - loop).abs().amax(-1) <= 1e3 * torch.finfo(dtype).eps * (1 + loop.abs().amax(-1))
    assert close.double().mean() >= 0.99
    same = ops.hmc_chain("double_well", x0, eps, 1, inv_mass, leapfrog_steps=torch.full((n,), 4),
                         **args)
    assert all(torch.equal(u, v) for u, v in
               zip(same, ops.hmc_chain("double_well", x0, eps, 4, inv_mass, **args)))


def test_leapfrog_steps_are_checked(chain_ops):
    x0 = torch.randn(4, 3)
    eps = torch.full((5,), 0.1, dtype=torch.float64)

    def run(steps):
        return ops.hmc_chain("double_well", x0, eps, 2, None, [1.0, 1.0], leapfrog_steps=steps)

    with pytest.raises(RuntimeError, match=r"leapfrog_steps must be a per-step tensor \[n_steps\] \(n_steps = 5\), got shape \[4\]"):
        run(torch.ones(4, dtype=torch.int64))
    with pytest.raises(RuntimeError, match="leapfrog_steps must be an int64 tensor, got Int"):
        run(torch.ones(5, dtype=torch.int32))
    with pytest.raises(RuntimeError, match=r"leapfrog_steps\[3\] must be in \[1, 2\^31 - 1\].*got 0"):
        run(torch.tensor([1, 2, 3, 0, 1]))
    with pytest.raises(RuntimeError, match=r"leapfrog_steps\[0\] must be in \[1, 2\^31 - 1\].*got 2147483648"):
        run(torch.tensor([2**31, 2, 3, 1, 1]))
    meta = torch.empty(4, 3, device="meta")
    out = ops.hmc_chain("double_well", meta, eps, 2, None, [1.0, 1.0],
                        leapfrog_steps=torch.ones(5, dtype=torch.int64))
    assert out[0].shape == (4, 3) and out[3].shape == (5,)
    with pytest.raises(RuntimeError, match="leapfrog_steps must be an int64 tensor \\[n_steps\\]"):
        ops.hmc_chain("double_well", meta, eps, 2, None, [1.0, 1.0],
                      leapfrog_steps=torch.ones(4, dtype=torch.int64))


def test_leapfrog_steps_pass_opcheck(chain_ops):
    x0 = torch.randn(6, 3, dtype=torch.float64)
    eps = torch.full((4,), 0.1, dtype=torch.float64)
    torch.library.opcheck(torch.ops.torchebm.hmc_chain,
                          ("double_well", x0, eps, 1, None, [1.0, 1.0], None, None, 3, 1, True,
                           True, 0, torch.tensor([2, 1, 3, 2])))


# ----------------------------------------------------------------------------- dual averaging
def test_dual_averaging_follows_its_equations():
    """Three iterations against the recursion written out (module docstring)."""
    eps0, delta, stats_ = 0.3, 0.6, [0.9, 0.2, 0.55]
    da = DualAveraging(torch.tensor([eps0], dtype=torch.float64), delta)
    mu, h, log_bar = math.log(10 * eps0), 0.0, 0.0
    for m, alpha in enumerate(stats_, start=1):
        step = float(da.update(torch.tensor([alpha], dtype=torch.float64)))
        h = (1 - 1 / (m + 10)) * h + (delta - alpha) / (m + 10)
        log_step = mu - math.sqrt(m) / 0.05 * h
        log_bar = m**-0.75 * log_step + (1 - m**-0.75) * log_bar
        assert step == pytest.approx(math.exp(log_step), rel=1e-12)
        assert float(da.final) == pytest.approx(math.exp(log_bar), rel=1e-12)


def test_halton_sequence_and_jittered_leapfrog_steps():
    assert [halton(n) for n in range(1, 8)] == [0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]
    assert jittered_leapfrog_steps(1.0, 0.1, "halton", 3) == (8, 0.75)  # ceil(0.75 / 0.1)
    assert jittered_leapfrog_steps(1.0, 0.3, None, 3) == (4, 1.0)
    assert jittered_leapfrog_steps(1e9, 0.1, None, 1)[0] == MAX_LEAPFROG_STEPS == 1000
    assert jittered_leapfrog_steps(1e-9, 0.1, "halton", 1)[0] == 1


# ----------------------------------------------------------------------------- acceptance
def _chain_acceptance(trajectory: torch.Tensor) -> torch.Tensor:
    """Per chain, the fraction of steps that moved ``[B]`` (a continuous target: a proposal
    equals the current state with probability 0, so a move is an acceptance)."""
    moved = (trajectory[:, 1:] != trajectory[:, :-1]).flatten(2).any(dim=2)
    return moved.double().mean(dim=1)


def _acceptance_within_mcse(sampler, x, n_steps, target, label, generator):
    trajectory = sampler.sample(x=x, n_steps=n_steps, return_trajectory=True, generator=generator)
    acc = _chain_acceptance(trajectory)
    # The chains are independent: the standard error of the mean acceptance is the standard
    # deviation of the per-chain acceptance over chains / sqrt(n_chains).
    se = float(acc.std()) / math.sqrt(acc.numel())
    z = (float(acc.mean()) - target) / se
    line = f"{label}: acceptance {float(acc.mean()):.4f}, target {target}, se {se:.4f}, |z| {abs(z):.2f}"
    print(line)
    assert abs(z) <= SIGMAS, line


def test_mala_acceptance_reaches_its_target():
    """MALA with one dual-averaged step size on a 10-d standard Gaussian: 256 chains, 300
    warm-up steps from eta = 0.05, then 101 steps at the adapted eta."""
    s = MetropolisAdjustedLangevin(GaussianModel(torch.zeros(10), torch.eye(10)), step_size=0.05)
    g = _gen(3)
    x = s.warmup(n_samples=256, dim=10, n_steps=300, generator=g)
    _acceptance_within_mcse(s, x, 101, 0.574, "MALA shared", g)


@pytest.mark.slow
def test_hmc_acceptance_reaches_its_target():
    """HMC (L = 4) with one dual-averaged step size on a 50-d Gaussian with variances
    log-spaced in [0.1, 1] (a spread of frequencies: on an isotropic Gaussian the acceptance of
    a fixed L oscillates with the step size, and the adapted average step lands off target)."""
    d = 50
    s = HamiltonianMonteCarlo(GaussianModel(torch.zeros(d), torch.diag(torch.logspace(-1, 0, d))),
                              step_size=0.05, n_leapfrog_steps=4)
    g = _gen(4)
    x = s.warmup(n_samples=256, dim=d, n_steps=300, generator=g)
    _acceptance_within_mcse(s, x, 101, 0.65, "HMC shared", g)


# ----------------------------------------------------------------------------- exactness
MEAN = torch.tensor([1.0, -2.0])
STD = torch.tensor([0.5, 2.0])


def _ks_gaussian(draws: torch.Tensor, label: str) -> None:
    for j in range(draws.shape[1]):
        sample = draws[:, j].double().numpy()
        result = stats.kstest(sample, stats.norm(loc=float(MEAN[j]), scale=float(STD[j])).cdf)
        threshold = stats.kstwo.ppf(1 - KS_ALPHA, sample.size)
        line = f"{label} dim {j}: KS D = {result.statistic:.5f}, threshold {threshold:.5f}"
        print(line)
        assert result.statistic < threshold, line


ADAPTED = [
    pytest.param(MetropolisAdjustedLangevin, {}, {"per_chain": False}, id="mala",
                 marks=pytest.mark.slow),
    pytest.param(MetropolisAdjustedLangevin, {}, {"per_chain": True}, id="mala-per-chain"),
    pytest.param(HamiltonianMonteCarlo, {"n_leapfrog_steps": 3}, {"per_chain": True},
                 id="hmc-per-chain", marks=pytest.mark.slow),
    pytest.param(HamiltonianMonteCarlo, {"n_leapfrog_steps": 2}, {"adapt": "chees"},
                 id="hmc-chees", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("cls, kw, warm", ADAPTED)
def test_adapted_samplers_are_exact(per_step_ops, cls, kw, warm):
    """4000 chains from N(0, I): 150 warm-up steps, then 300 steps with the adapted (fixed)
    settings on a Gaussian of standard deviations (0.5, 2). The wide dimension (variance 4) is
    the slowest: its offset contracts by at least a factor 1 - eta / 4 per MALA step (the
    Langevin drift at step eta; HMC moves faster), so with every adapted step size above 0.1
    (asserted) the 300 steps leave below exp(-7.5) < 1e-3 standard deviations of the initial
    offset, far below the KS resolution 1 / sqrt(4000) = 0.016; one draw per chain is then an
    i.i.d. sample for a KS test per dimension."""
    model = NoSpecGaussian(MEAN, torch.diag(STD**2))
    s = cls(model, step_size=0.05, **kw)
    g = _gen(5)
    x = s.warmup(n_samples=4000, dim=2, n_steps=150, generator=g, **warm)
    assert float(s.adaptation.step_size.min()) > 0.1
    draws = s.sample(x=x, n_steps=300, generator=g)
    _ks_gaussian(draws, f"{cls.__name__} {warm}")


# ----------------------------------------------------------------------------- per chain vs shared
@pytest.mark.parametrize("backend", ["fused", "reference"])
@pytest.mark.parametrize("cls, kw", [(MetropolisAdjustedLangevin, {}),
                                     (HamiltonianMonteCarlo, {"n_leapfrog_steps": 3})])
def test_per_chain_equals_shared_when_equal(per_step_ops, backend, cls, kw):
    model = NoSpecGaussian(MEAN, torch.diag(STD**2))
    shared = cls(model, step_size=0.05, backend=backend, **kw)
    x = shared.warmup(n_samples=64, dim=2, n_steps=20, generator=_gen(6))
    state = shared.state_dict()
    state["adaptation.step_size"] = state["adaptation.step_size"].expand(64).clone()
    state["adaptation.per_chain"] = torch.tensor(True)
    per_chain = cls(model, step_size=0.05, backend=backend, **kw)
    per_chain.load_state_dict(state)
    assert per_chain.adaptation.per_chain and per_chain.adaptation.step_size.shape == (64,)
    a = shared.sample(x=x, n_steps=30, return_trajectory=True, generator=_gen(7))
    b = per_chain.sample(x=x, n_steps=30, return_trajectory=True, generator=_gen(7))
    assert shared.last_path == per_chain.last_path == backend
    assert torch.equal(a, b)


def test_per_chain_step_sizes_differ(per_step_ops):
    s = HamiltonianMonteCarlo(NoSpecGaussian(MEAN, torch.diag(STD**2)), step_size=0.05,
                              n_leapfrog_steps=3)
    x = s.warmup(n_samples=32, dim=2, n_steps=50, generator=_gen(8), per_chain=True)
    assert s.adaptation.step_size.shape == (32,) and s.adaptation.step_size.unique().numel() == 32
    s.sample(x=x, n_steps=5)
    assert s.last_path == "fused"
    with pytest.raises(ValueError, match="adapted 32 per-chain step sizes, but x has 8 chains"):
        s.sample(x=x[:8], n_steps=5)
    s.reset_adaptation()
    s.sample(x=x[:8], n_steps=5)


def test_shared_adapted_step_size_runs_the_chain_op(require_path):
    require_path(MetropolisAdjustedLangevin, "chain")
    s = MetropolisAdjustedLangevin(GaussianModel(MEAN, torch.diag(STD**2)), step_size=0.05)
    x = s.warmup(n_samples=32, dim=2, n_steps=30, generator=_gen(9))
    s.sample(x=x, n_steps=5)
    assert s.last_path == "chain"


def test_chees_jitters_the_number_of_leapfrog_steps(per_step_ops, require_path):
    require_path(HamiltonianMonteCarlo, "chain")
    """On a Gaussian of standard deviations (0.1, 3) the step size is set by the narrow
    dimension and the trajectory by the wide one, so T spans several steps."""
    s = HamiltonianMonteCarlo(GaussianModel(torch.zeros(2), torch.diag(torch.tensor([0.01, 9.0]))),
                              step_size=0.05, n_leapfrog_steps=4)
    x = s.warmup(n_samples=64, dim=2, n_steps=200, generator=_gen(10), adapt="chees")
    assert s.adaptation.trajectory_length > 4 * float(s.adaptation.step_size)
    seen = [s._next_leapfrog_steps() for _ in range(8)]
    assert len(set(seen)) > 1  # Halton fractions of the trajectory length
    s.sample(x=x, n_steps=3)
    assert s.last_path == "chain"  # the jittered counts go to hmc_chain as leapfrog_steps


@pytest.mark.parametrize("jitter", ["halton", "uniform"])
def test_jittered_chees_chain_path_equals_fused_path(per_step_ops, require_path, jitter,
                                                     monkeypatch):
    """After a jittered ChEES warm-up the analytic model's chain op (leapfrog_steps) draws the
    same sequence of L as the per-step loop and runs the same transitions (HMC's chain op sums
    the kinetic energy in another order: the same states up to rounding); a run in blocks
    equals one call bit for bit, and both leave the jitter where the per-step loop leaves it."""
    require_path(HamiltonianMonteCarlo, "chain")
    cov = torch.diag(torch.tensor([0.01, 9.0]))
    chain = HamiltonianMonteCarlo(GaussianModel(torch.zeros(2), cov), step_size=0.05,
                                  n_leapfrog_steps=4)
    x = chain.warmup(n_samples=64, dim=2, n_steps=100, generator=_gen(22), adapt="chees",
                     jitter=jitter)
    state = chain.state_dict()
    fused = HamiltonianMonteCarlo(NoSpecGaussian(torch.zeros(2), cov), step_size=0.05,
                                  n_leapfrog_steps=4)
    fused.load_state_dict(state)
    a = chain.sample(x=x, n_steps=20, return_trajectory=True, generator=_gen(23))
    b = fused.sample(x=x, n_steps=20, return_trajectory=True, generator=_gen(23))
    assert (chain.last_path, fused.last_path) == ("chain", "fused")
    close = (a - b).abs().amax(dim=(1, 2)) <= 1e-4
    assert close.double().mean() >= 0.95
    assert chain.adaptation.jitter_count == fused.adaptation.jitter_count
    blocked = HamiltonianMonteCarlo(GaussianModel(torch.zeros(2), cov), step_size=0.05,
                                    n_leapfrog_steps=4)
    blocked.load_state_dict(state)
    from torchebm.samplers import mcmc_sampler
    monkeypatch.setattr(mcmc_sampler, "_FIRST_BLOCK_WORK", 1)  # blocks of one step
    monkeypatch.setattr(blocked, "chain_block_seconds", 0.0)
    assert torch.equal(blocked.sample(x=x, n_steps=20, return_trajectory=True,
                                      generator=_gen(23)), a)


def test_jittered_chees_chain_path_is_exact(require_path):
    """The jittered ChEES sampler on the chain path: as test_adapted_samplers_are_exact (150
    warm-up steps, 300 adapted steps, KS per dimension; 2000 chains, KS resolution 0.022), with
    the analytic model so the 300 steps run as one hmc_chain call with per-transition leapfrog
    counts."""
    require_path(HamiltonianMonteCarlo, "chain")
    s = HamiltonianMonteCarlo(GaussianModel(MEAN, torch.diag(STD**2)), step_size=0.05,
                              n_leapfrog_steps=2)
    g = _gen(24)
    x = s.warmup(n_samples=2000, dim=2, n_steps=150, generator=g, adapt="chees")
    assert float(s.adaptation.step_size.min()) > 0.1
    draws = s.sample(x=x, n_steps=300, generator=g)
    assert s.last_path == "chain"
    _ks_gaussian(draws, "HamiltonianMonteCarlo chees (chain op)")


def test_warmup_arguments_are_checked():
    model = GaussianModel(MEAN, torch.diag(STD**2))
    with pytest.raises(ValueError, match="adapt='chees' adapts an HMC trajectory length"):
        MetropolisAdjustedLangevin(model).warmup(n_samples=2, dim=2, n_steps=2, adapt="chees")
    hmc = HamiltonianMonteCarlo(model)
    with pytest.raises(ValueError, match="use per_chain=False"):
        hmc.warmup(n_samples=2, dim=2, n_steps=2, adapt="chees", per_chain=True)
    with pytest.raises(ValueError, match=r"target_accept must be in \(0, 1\)"):
        hmc.warmup(n_samples=2, dim=2, n_steps=2, target_accept=1.0)
    with pytest.raises(ValueError, match="adapt must be one of"):
        hmc.warmup(n_samples=2, dim=2, n_steps=2, adapt="nuts")
    with pytest.raises(ValueError, match="jitter must be one of"):
        hmc.warmup(n_samples=2, dim=2, n_steps=2, adapt="chees", jitter="sobol")


# ----------------------------------------------------------------------------- state_dict
@pytest.mark.parametrize("warm", [{"per_chain": True}, {"adapt": "chees", "jitter": "uniform"}],
                         ids=["per-chain", "chees-uniform"])
def test_state_dict_round_trip(per_step_ops, warm):
    model = NoSpecGaussian(MEAN, torch.diag(STD**2))
    s = HamiltonianMonteCarlo(model, step_size=0.05, n_leapfrog_steps=3)
    x = s.warmup(n_samples=16, dim=2, n_steps=20, generator=_gen(11), **warm)
    state = s.state_dict()
    assert "adaptation.step_size" in state and "adaptation.dual_h_bar" in state
    fresh = HamiltonianMonteCarlo(model, step_size=0.05, n_leapfrog_steps=3)
    fresh.load_state_dict(state)
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, state[key]), key
    a = s.sample(x=x, n_steps=10, return_trajectory=True, generator=_gen(12))
    b = fresh.sample(x=x, n_steps=10, return_trajectory=True, generator=_gen(12))
    assert torch.equal(a, b)


def test_state_dict_without_adaptation_loads_strictly():
    model = GaussianModel(MEAN, torch.diag(STD**2))
    s = MetropolisAdjustedLangevin(model, step_size=0.05)
    plain = s.state_dict()
    assert not any(k.startswith("adaptation.") for k in plain)
    s.warmup(n_samples=4, dim=2, n_steps=3, generator=_gen(13))
    s.load_state_dict(plain)  # strict: a checkpoint without adaptation clears it
    assert s.adaptation is None
    with pytest.raises(RuntimeError, match="adaptation.bogus"):
        s.load_state_dict({**plain, "adaptation.bogus": torch.zeros(1)})
