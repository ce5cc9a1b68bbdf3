"""Whole-chain kernels (langevin_chain, mala_chain, hmc_chain) and analytic_energy_grad:
closed forms vs the reference, chain == per-step fused loop with the same seed, thinning and
per-step statistics, independence from thread count and batch split, exactness of the
stationary distributions (tolerances from Monte Carlo standard errors), argument errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchebm import kernels
from torchebm.kernels import ops, reference

pytestmark = pytest.mark.skipif(not kernels.available(), reason="compiled kernels not built")

DTYPES = [torch.float32, torch.float64]
Z_BOUND = 5.0


def _gaussian_params(d, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(d, d, generator=g, dtype=torch.float64)
    prec = A @ A.T / d + torch.eye(d, dtype=torch.float64)
    prec = 0.5 * (prec + prec.T)
    return torch.randn(d, generator=g, dtype=torch.float64).to(dtype) * 0.3, prec.to(dtype)


# (name, params, d, scale of the starting points)
MODELS = [
    ("gaussian", [], 5, 1.0),
    ("double_well", [2.0, 1.0], 4, 1.0),
    ("harmonic", [1.5], 3, 1.0),
    ("rosenbrock", [1.0, 100.0], 3, 0.5),
    ("ackley", [20.0, 0.2, 2 * math.pi], 4, 1.0),
    ("rastrigin", [10.0], 3, 1.0),
    ("himmelblau", [], 2, 2.0),
    ("booth", [], 2, 2.0),
    ("styblinski_tang", [], 4, 2.0),
    ("banana", [0.4, 1.5], 3, 1.0),
]
MODEL_IDS = [m[0] for m in MODELS]


def _model_args(name, params, d, dtype):
    if name == "gaussian":
        mean, prec = _gaussian_params(d, dtype)
        return name, params, mean, prec
    return name, params, None, None


def _x0(B, d, dtype, scale=1.0, seed=1):
    return scale * torch.randn(B, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


# ---- analytic_energy_grad --------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,params,d,scale", MODELS, ids=MODEL_IDS)
@pytest.mark.parametrize("strided", [False, True])
def test_analytic_energy_grad_matches_reference(dtype, name, params, d, scale, strided):
    _, params, mean, prec = _model_args(name, params, d, dtype)
    x = _x0(301, d, dtype, scale)
    if strided:
        x = x.T.contiguous().T
    e, g = ops.analytic_energy_grad(name, x, params, mean, prec)
    e_ref, g_ref = reference.analytic_energy_grad(name, x.double(), params, None if mean is None else mean.double(), None if prec is None else prec.double())
    eps = torch.finfo(dtype).eps
    scale_e = 1 + e_ref.abs()
    scale_g = 1 + g_ref.abs().amax(-1, keepdim=True)
    assert ((e.double() - e_ref).abs() / scale_e).max() < 64 * eps
    assert ((g.double() - g_ref).abs() / scale_g).max() < 64 * eps


@pytest.mark.parametrize("name,params,d,scale", MODELS, ids=MODEL_IDS)
def test_analytic_gradient_is_the_gradient_of_the_energy(name, params, d, scale):
    _, params, mean, prec = _model_args(name, params, d, torch.float64)
    x = _x0(50, d, torch.float64, scale).requires_grad_()
    e_ref, _ = reference.analytic_energy_grad(name, x, params, mean, prec)
    (auto,) = torch.autograd.grad(e_ref.sum(), x)
    _, g = ops.analytic_energy_grad(name, x.detach(), params, mean, prec)
    torch.testing.assert_close(g, auto, rtol=1e-10, atol=1e-10)


def test_ackley_gradient_is_finite_at_the_origin():
    e, g = ops.analytic_energy_grad("ackley", torch.zeros(3, 4), [20.0, 0.2, 2 * math.pi])
    assert torch.isfinite(g).all() and torch.equal(g, torch.zeros(3, 4))
    assert e.abs().max() < 1e-5


# ---- chain == per-step loop ------------------------------------------------------------------


def _schedules(n, dtype=torch.float64):
    a = torch.linspace(2e-3, 5e-4, n, dtype=torch.float64)
    return a, torch.sqrt(2 * a)


def _langevin_loop(name, x0, a, b, params, mean, prec, clamp, clip, seed):
    x = x0.clone()
    states, energies = [], []
    for t in range(a.shape[0]):
        e, g = ops.analytic_energy_grad(name, x, params, mean, prec)
        x = ops.langevin_update(x, g, None, a[t].item(), b[t].item(), *clamp, clip, seed, t)
        states.append(x)
        energies.append(ops.analytic_energy_grad(name, x, params, mean, prec)[0])
    return x, states, energies


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,params,d,scale", MODELS, ids=MODEL_IDS)
def test_langevin_chain_equals_per_step_loop(dtype, name, params, d, scale):
    _, params, mean, prec = _model_args(name, params, d, dtype)
    x0 = _x0(257, d, dtype, scale)
    a, b = _schedules(12)
    clamp, clip = (-4.0, 4.0), 50.0
    x, traj, e_mean = ops.langevin_chain(name, x0, a, b, params, mean, prec, *clamp, clip, 1234, 3, True, True)
    x_loop, states, energies = _langevin_loop(name, x0, a, b, params, mean, prec, clamp, clip, 1234)
    assert torch.equal(x, x_loop)
    assert traj.shape == (257, 4, d)
    for k in range(4):
        assert torch.equal(traj[:, k], states[3 * k + 2])
    want_mean = torch.stack([e.double().mean() for e in energies]).to(dtype)
    torch.testing.assert_close(e_mean, want_mean, rtol=8 * torch.finfo(dtype).eps, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,params,d,scale", MODELS, ids=MODEL_IDS)
def test_mala_chain_equals_per_step_loop(dtype, name, params, d, scale):
    _, params, mean, prec = _model_args(name, params, d, dtype)
    x0 = _x0(200, d, dtype, scale)
    a, b = _schedules(10)
    x, traj, e_mean, acc_rate = ops.mala_chain(name, x0, a, b, params, mean, prec, 77, 2, True, True)
    xs = x0.clone()
    ex, gx = ops.analytic_energy_grad(name, xs, params, mean, prec)
    rates, means, states = [], [], []
    for t in range(10):
        y = ops.langevin_update(xs, gx, None, a[t].item(), b[t].item(), seed=77, step=t)
        ey, gy = ops.analytic_energy_grad(name, y, params, mean, prec)
        xs, gx, ex, acc = ops.mala_select(xs, y, gx, gy, ex, ey, a[t].item(), b[t].item(), None, 77, t)
        rates.append(acc.double().mean())
        means.append(ex.double().mean())
        states.append(xs)
    assert torch.equal(x, xs)
    assert torch.equal(traj[:, 2], states[5])
    torch.testing.assert_close(acc_rate, torch.stack(rates).to(dtype), rtol=0, atol=1e-7)
    torch.testing.assert_close(e_mean, torch.stack(means).to(dtype), rtol=8 * torch.finfo(dtype).eps, atol=0)


def _hmc_loop(name, x0, eps, L, inv_mass, params, mean, prec, seed):
    """The per-step loop hmc_chain equals; returns (x, acceptance rates, gradient evaluations)."""
    n_grad = 0

    def energy_grad(x):
        nonlocal n_grad
        n_grad += 1
        return ops.analytic_energy_grad(name, x, params, mean, prec)

    x = x0.clone()
    e, g = energy_grad(x)
    m = torch.ones((), dtype=x0.dtype) if inv_mass is None else inv_mass
    rates = []
    for t in range(eps.shape[0]):
        h = eps[t].item()
        p = ops.philox_normal(x.shape, seed, t, x.dtype)
        if inv_mass is not None:
            p = p / inv_mass.sqrt()
        h0 = e + 0.5 * (m * p * p).sum(-1)
        xn, p = ops.leapfrog_kick_drift(x, p, g, h / 2, h, inv_mass)
        for l in range(1, L + 1):
            en, gn = energy_grad(xn)
            if l < L:
                xn, p = ops.leapfrog_kick_drift(xn, p, gn, h, h, inv_mass)
        _, p = ops.leapfrog_kick_drift(xn, p, gn, h / 2, 0.0, inv_mass)
        h1 = en + 0.5 * (m * p * p).sum(-1)
        x, acc = ops.metropolis_select(h0 - h1, x, xn, None, seed, t)
        e = torch.where(acc, en, e)
        g = torch.where(acc[:, None], gn, g)
        rates.append(acc.double().mean())
    return x, torch.stack(rates), n_grad


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,params,d,scale", MODELS, ids=MODEL_IDS)
@pytest.mark.parametrize("mass", [None, "diagonal"])
def test_hmc_chain_equals_per_step_loop(dtype, name, params, d, scale, mass):
    _, params, mean, prec = _model_args(name, params, d, dtype)
    x0 = _x0(150, d, dtype, scale)
    eps = torch.linspace(0.02, 0.01, 8, dtype=torch.float64)
    if name == "rosenbrock":
        eps = eps / 10
    inv_mass = None if mass is None else torch.linspace(0.5, 1.5, d, dtype=dtype)
    x, _, _, rate = ops.hmc_chain(name, x0, eps, 5, inv_mass, params, mean, prec, 5, 1, False, False)
    x_loop, rates, n_grad = _hmc_loop(name, x0, eps, 5, inv_mass, params, mean, prec, 5)
    # The count docs/kernels.md, ops.hmc_chain and hmc_chain_kernel.cpp state: L gradients per
    # transition, plus one of x0 at the start of the call.
    assert n_grad == 1 + 8 * 5
    # The per-step loop sums the kinetic energy in another order: the same decisions except on
    # ties at rounding level, and states equal to rounding.
    torch.testing.assert_close(rate, rates.to(dtype), rtol=0, atol=1.5 / 150)
    close = ((x - x_loop).abs().amax(-1) <= 1e3 * torch.finfo(dtype).eps * (1 + x.abs().amax(-1)))
    assert close.double().mean() >= 0.99


# ---- structure: thinning, zero steps, thread count, batch split ------------------------------


def test_zero_steps_return_a_copy_of_x0_and_empty_records():
    x0 = torch.randn(10, 3)
    empty = torch.zeros(0, dtype=torch.float64)
    x, traj, em = ops.langevin_chain("harmonic", x0, empty, empty, [1.0], record_trajectory=True, record_energy=True)
    assert torch.equal(x, x0) and x.data_ptr() != x0.data_ptr()
    assert traj.shape == (10, 0, 3) and em.shape == (0,)
    x, traj, em, acc = ops.hmc_chain("harmonic", x0, empty, 3, None, [1.0])
    assert torch.equal(x, x0) and acc.shape == (0,) and traj.shape == (0,)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("chain", ["langevin", "mala", "hmc"])
@pytest.mark.parametrize("name", ["gaussian", "double_well", "rosenbrock"])
def test_chains_do_not_depend_on_thread_count(dtype, chain, name):
    spec = {m[0]: m for m in MODELS}[name]
    _, params, mean, prec = _model_args(name, spec[1], 8 if name != "rosenbrock" else 3, dtype)
    d = 8 if name != "rosenbrock" else 3
    x0 = _x0(3000, d, dtype, 0.5)
    a, b = _schedules(6)
    if name == "rosenbrock":  # stiff: keep the steps stable
        a, b = a / 10, b / math.sqrt(10)

    def run():
        if chain == "langevin":
            return ops.langevin_chain(name, x0, a, b, params, mean, prec, None, None, None, 3, 2, True, True)
        if chain == "mala":
            return ops.mala_chain(name, x0, a, b, params, mean, prec, 3, 2, True, True)
        return ops.hmc_chain(name, x0, a * 5, 3, None, params, mean, prec, 3, 2, True, True)

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(2)
        two = run()
    finally:
        torch.set_num_threads(before)
    for u, v in zip(one, two):
        assert torch.isfinite(u).all()
        assert torch.equal(u, v)


@settings(max_examples=20, deadline=None)
@given(
    B=st.integers(1, 300),
    keep=st.integers(1, 300),
    model=st.sampled_from(MODELS),
    dtype=st.sampled_from(DTYPES),
    chain=st.sampled_from(["langevin", "mala", "hmc"]),
    n_steps=st.integers(1, 5),
    seed=st.integers(-(2**63), 2**63 - 1),
)
def test_each_chain_is_independent_of_the_others(B, keep, model, dtype, chain, n_steps, seed):
    # Chain i draws from elements i*d .. i*d+d-1 of each step's stream: running the first k chains
    # alone gives the same first k rows, whatever the batch size and block split.
    name, params, d, scale = model
    _, params, mean, prec = _model_args(name, params, d, dtype)
    keep = min(keep, B)
    x0 = _x0(B, d, dtype, scale)
    a, b = _schedules(n_steps)
    if name == "rosenbrock":
        a, b = a / 10, b / math.sqrt(10)

    def run(x):
        if chain == "langevin":
            return ops.langevin_chain(name, x, a, b, params, mean, prec, seed=seed)[0]
        if chain == "mala":
            return ops.mala_chain(name, x, a, b, params, mean, prec, seed=seed)[0]
        return ops.hmc_chain(name, x, a * 5, 2, None, params, mean, prec, seed=seed)[0]

    torch.testing.assert_close(run(x0)[:keep], run(x0[:keep].clone()), rtol=0, atol=0, equal_nan=True)


# ---- exactness -------------------------------------------------------------------------------


def _check(name, stat, se, bound=Z_BOUND):
    z = stat / se
    assert abs(z) < bound, f"{name}: statistic {stat:.4g}, standard error {se:.3g}, |z| = {abs(z):.2f} >= {bound}"


def test_unadjusted_langevin_has_its_exact_stationary_variance_on_a_harmonic_well():
    # x' = x - eta k x + sqrt(2 eta) xi has stationary variance 1 / (k (1 - eta k / 2)).
    k, eta, n_chains = 2.0, 0.1, 20000
    x0 = torch.zeros(n_chains, 1, dtype=torch.float64)
    a = torch.full((200,), eta, dtype=torch.float64)
    x, _, _ = ops.langevin_chain("harmonic", x0, a, torch.sqrt(2 * a), [k], seed=31)
    want = 1.0 / (k * (1 - eta * k / 2))
    var = x.var().item()
    _check("ULA variance - exact", var - want, want * math.sqrt(2.0 / n_chains))


@pytest.mark.parametrize("chain", ["mala", "hmc"])
def test_metropolised_chains_sample_a_correlated_gaussian(chain):
    d, n_chains = 2, 8000
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.5]], dtype=torch.float64)
    prec = torch.linalg.inv(cov)
    mean = torch.tensor([0.5, -1.0], dtype=torch.float64)
    x0 = torch.randn(n_chains, d, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 3
    if chain == "mala":
        a = torch.full((300,), 0.3, dtype=torch.float64)
        x, _, _, acc = ops.mala_chain("gaussian", x0, a, torch.sqrt(2 * a), [], mean, prec, seed=4)
    else:
        eps = torch.full((60,), 0.3, dtype=torch.float64)
        x, _, _, acc = ops.hmc_chain("gaussian", x0, eps, 6, None, [], mean, prec, seed=4)
    assert 0.3 < acc[-20:].mean() < 1.0
    for j in range(d):
        _check(f"mean[{j}]", x[:, j].mean().item() - mean[j].item(), math.sqrt(cov[j, j] / n_chains))
        _check(f"var[{j}]", x[:, j].var().item() - cov[j, j].item(), cov[j, j].item() * math.sqrt(2 / n_chains))
    c = torch.cov(x.T)[0, 1].item()
    se = math.sqrt((cov[0, 0] * cov[1, 1] + cov[0, 1] ** 2) / n_chains)
    _check("cov[0,1]", c - cov[0, 1].item(), se)


@pytest.mark.parametrize("chain", ["mala", "hmc"])
def test_metropolised_chains_keep_the_banana_exact(chain):
    # Started from exact draws (x1 = s z1, x2 = y - b (x1^2 - s^2)), the chains stay exact: the
    # untwisted coordinates z1 = x1 / s and u = x2 + b (x1^2 - s^2) are independent N(0, 1), and
    # E[x2] = 0, Var(x2) = 1 + 2 b^2 s^4.
    b, s, n_chains = 0.4, 1.5, 8000
    z = torch.randn(n_chains, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x1 = s * z[:, 0]
    x0 = torch.stack([x1, z[:, 1] - b * (x1 * x1 - s * s)], -1)
    if chain == "mala":
        a = torch.full((200,), 0.05, dtype=torch.float64)
        x, _, _, acc = ops.mala_chain("banana", x0, a, torch.sqrt(2 * a), [b, s], seed=8)
    else:
        eps = torch.full((40,), 0.2, dtype=torch.float64)
        x, _, _, acc = ops.hmc_chain("banana", x0, eps, 5, None, [b, s], seed=8)
    assert 0.5 < acc.mean() < 1.0
    z1, u = x[:, 0] / s, x[:, 1] + b * (x[:, 0] ** 2 - s * s)
    for name, v in (("z1", z1), ("u", u)):
        _check(f"mean {name}", v.mean().item(), math.sqrt(1 / n_chains))
        _check(f"var {name} - 1", v.var().item() - 1, math.sqrt(2 / n_chains))
    _check("corr(z1, u)", torch.corrcoef(torch.stack([z1, u]))[0, 1].item(), math.sqrt(1 / n_chains))
    _check("mean x2", x[:, 1].mean().item(), math.sqrt((1 + 2 * b**2 * s**4) / n_chains))
    # the chains moved: a sampler that stood still would pass the checks above trivially
    assert (x - x0).abs().amax(-1).gt(0).double().mean() > 0.5


def test_hmc_rejects_trajectories_that_diverge_to_nan():
    # A huge step on a stiff Rosenbrock overflows to inf/NaN: every such proposal is rejected.
    x0 = torch.randn(64, 3, dtype=torch.float64)
    eps = torch.full((3,), 10.0, dtype=torch.float64)
    x, _, _, acc = ops.hmc_chain("rosenbrock", x0, eps, 20, None, [1.0, 100.0], seed=0)
    assert torch.isfinite(x).all()
    assert acc.max() < 0.2


# ---- argument errors -------------------------------------------------------------------------

_x = torch.zeros(4, 2)
_s = torch.full((3,), 0.01, dtype=torch.float64)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: ops.langevin_chain("no_such_model", _x, _s, _s), "energy must be one of gaussian"),
        (lambda: ops.langevin_chain("double_well", _x, _s, _s, [1.0]), r"'double_well' takes 2 scalar params, got 1"),
        (lambda: ops.langevin_chain("himmelblau", torch.zeros(4, 3), _s, _s), "'himmelblau' needs d == 2"),
        (lambda: ops.langevin_chain("rosenbrock", torch.zeros(4, 1), _s, _s, [1.0, 1.0]), "'rosenbrock' needs d >= 2"),
        (lambda: ops.langevin_chain("gaussian", _x, _s, _s), "needs mean"),
        (lambda: ops.langevin_chain("gaussian", _x, _s, _s, [], torch.zeros(3), torch.eye(2)), r"mean must have shape \[2\]"),
        (lambda: ops.langevin_chain("gaussian", _x, _s, _s, [], torch.zeros(2), torch.eye(3)), r"precision must have shape \[2, 2\]"),
        (lambda: ops.langevin_chain("harmonic", _x, _s, _s, [1.0], torch.zeros(2)), "takes no mean/precision"),
        (lambda: ops.langevin_chain("harmonic", torch.zeros(4), _s, _s, [1.0]), r"x0 must have shape \[B, d\]"),
        (lambda: ops.langevin_chain("harmonic", _x, _s, _s[:2], [1.0]), "b must have n_steps = 3 entries, got 2"),
        (lambda: ops.langevin_chain("harmonic", _x, _s.view(3, 1), _s, [1.0]), r"a must be a per-step tensor \[n_steps\] or \[n_steps, B\]"),
        (lambda: ops.langevin_chain("harmonic", _x, torch.tensor([0.1, math.nan, 0.1]), _s, [1.0]), r"a\[1\] must be finite, got nan"),
        (lambda: ops.langevin_chain("harmonic", _x, _s, _s, [math.inf]), r"params\[0\] of 'harmonic' must be finite"),
        (lambda: ops.langevin_chain("harmonic", _x, _s, _s, [1.0], thin=0), "thin must be >= 1, got 0"),
        (lambda: ops.langevin_chain("harmonic", _x.int(), _s, _s, [1.0]), "x0 must be float32 or float64"),
        (lambda: ops.mala_chain("harmonic", _x, _s, torch.zeros(3, dtype=torch.float64), [1.0]), r"b\[0\] must be finite and > 0, got 0"),
        (lambda: ops.hmc_chain("harmonic", _x, _s, 0, None, [1.0]), "n_leapfrog must be >= 1, got 0"),
        (lambda: ops.hmc_chain("harmonic", _x, _s, 2**31, None, [1.0]), r"n_leapfrog must be <= 2\^31 - 1"),
        (lambda: ops.hmc_chain("harmonic", _x, _s, 2, torch.ones(2, dtype=torch.int32), [1.0]), "inv_mass must be float32 or float64, got Int"),
        (lambda: ops.hmc_chain("harmonic", _x, -_s, 2, None, [1.0]), r"step_size\[0\] must be finite and > 0"),
        (lambda: ops.hmc_chain("harmonic", _x, _s, 2, torch.ones(3), [1.0]), r"inv_mass must be None, a 0-d tensor, or \[2\]"),
        (lambda: ops.hmc_chain("harmonic", _x, _s, 2, torch.tensor([1.0, -1.0]), [1.0]), "inv_mass must be finite and > 0"),
        (lambda: ops.analytic_energy_grad("booth", torch.zeros(3, 5)), "'booth' needs d == 2"),
    ],
)
def test_bad_chain_arguments_raise_runtime_error_naming_them(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()


def test_kernel_args_turn_a_spec_into_op_arguments():
    mean, prec = torch.zeros(2), torch.tensor([[2.0, 0.5], [0.3, 1.0]])
    name, params, m, p = ops.kernel_args(("gaussian", {"mean": mean, "precision": prec}), torch.float64)
    assert name == "gaussian" and params == [] and m.dtype == torch.float64
    torch.testing.assert_close(p, torch.tensor([[2.0, 0.4], [0.4, 1.0]], dtype=torch.float64))
    assert ops.kernel_args(("double_well", {"b": 1.5, "barrier_height": 3.0}), torch.float32) == (
        "double_well",
        [3.0, 1.5],
        None,
        None,
    )
    with pytest.raises(ValueError, match="not a built-in kernel"):
        ops.kernel_args(("mlp", {}), torch.float32)
    with pytest.raises(ValueError, match="lacks parameters"):
        ops.kernel_args(("ackley", {"a": 1.0}), torch.float32)


@pytest.mark.parametrize("op", ["langevin_chain", "mala_chain", "hmc_chain"])
def test_chain_with_no_chains_reports_zero_means(op):
    x0 = torch.empty(0, 3, dtype=torch.float64)
    coef = torch.full((4,), 0.01, dtype=torch.float64)
    if op == "langevin_chain":
        out = torch.ops.torchebm.langevin_chain(
            "harmonic", x0, coef, coef, [1.0], None, None, None, None, None, 0, 1, False, True)
    elif op == "mala_chain":
        out = torch.ops.torchebm.mala_chain("harmonic", x0, coef, coef, [1.0], None, None, 0, 1, False, True)
    else:
        out = torch.ops.torchebm.hmc_chain("harmonic", x0, coef, 3, None, [1.0], None, None, 0, 1, False, True)
    assert out[0].shape == (0, 3)
    for per_step in out[2:]:
        assert torch.equal(per_step, torch.zeros(4, dtype=torch.float64)), per_step
