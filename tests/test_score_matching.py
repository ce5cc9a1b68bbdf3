"""Score matching losses (torchebm.losses.score_matching) and the dsm_perturb op.

* Each loss's value and parameter gradient equal those of its defining formula, written here
  independently in closed form (float64, a one-hidden-layer log-cosh energy whose gradient and
  Hessian are known), the gradient checked against central finite differences of the formula,
  with the random probes / noise fixed by the generator.
* Training a Gaussian energy (learnable mean and Cholesky factor of the precision) with each
  loss recovers the data's mean and covariance within bounds derived from the Monte Carlo
  standard errors of the sample.
* dsm_perturb against its oracle (kernels/reference.py), its in-kernel noise against
  philox_normal, its argument checks, autograd and fake kernel (torch.library.opcheck).
* The deliberate differences from TorchEBM 0.8.9 (score_matching.py's module docstring).
"""

from __future__ import annotations

import ast
import glob
import math
import os

import pytest
import torch
from torch import nn

from torchebm import kernels
from torchebm.core import BaseScoreMatching as CoreBaseScoreMatching
from torchebm.kernels import dispatch, ops, reference
from torchebm.losses import (
    BaseScoreMatching,
    DenoisingScoreMatching,
    ScoreMatching,
    SlicedScoreMatching,
)

F64 = torch.float64
HAS_DSM_KERNEL = dispatch.has_kernel("dsm_perturb", "cpu")
needs_kernel = pytest.mark.skipif(not HAS_DSM_KERNEL, reason="dsm_perturb kernel not built")


# ---- a closed-form energy --------------------------------------------------------------------


class LogCoshEnergy(nn.Module):
    """E(x) = sum_k a_k log cosh(w_k . x + b_k) + c/2 |x|^2, x [B, D] -> [B]."""

    def __init__(self, d=3, h=4, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = nn.Parameter(torch.rand(h, generator=g, dtype=F64) + 0.5)
        self.w = nn.Parameter(torch.randn(h, d, generator=g, dtype=F64))
        self.b = nn.Parameter(torch.randn(h, generator=g, dtype=F64) * 0.3)
        self.c = nn.Parameter(torch.tensor(0.7, dtype=F64))

    def forward(self, x):
        u = x @ self.w.T + self.b
        return (self.a * (u.abs() + torch.log1p(torch.exp(-2 * u.abs())) - math.log(2))).sum(-1) \
            + 0.5 * self.c * (x * x).sum(-1)


def closed_form(theta, x):
    """(grad_x E [B, D], (H v) callable, tr H [B]) of LogCoshEnergy with theta = (a, w, b, c)."""
    a, w, b, c = theta
    u = x @ w.T + b
    t = torch.tanh(u)
    sech2 = 1 - t * t
    grad = (a * t) @ w + c * x
    trace = (a * sech2) @ (w * w).sum(1) + c * x.shape[1]

    def vhv(v):  # v^T H v per row
        return (a * sech2 * (v @ w.T) ** 2).sum(1) + c * (v * v).sum(1)

    return grad, vhv, trace


def theta_of(model):
    return [p.detach().clone() for p in (model.a, model.w, model.b, model.c)]


def fd_gradient(formula, theta, h=1e-6):
    """Central finite differences of formula(theta) (a float) in every entry of theta."""
    grads = []
    for i, p in enumerate(theta):
        gp = torch.zeros_like(p)
        for j in range(p.numel()):
            up = [q.clone() for q in theta]
            dn = [q.clone() for q in theta]
            up[i].view(-1)[j] += h
            dn[i].view(-1)[j] -= h
            gp.view(-1)[j] = (formula(up) - formula(dn)) / (2 * h)
        grads.append(gp)
    return grads


def check_against_formula(loss_fn, model, x, formula, seed):
    """The loss's value and parameter gradient at generator seed `seed` equal formula's (which
    fixes the same draws) and formula's finite-difference gradient."""
    theta = theta_of(model)
    model.zero_grad()
    loss = loss_fn(x, generator=torch.Generator().manual_seed(seed))
    loss.backward()
    want = formula(theta)
    torch.testing.assert_close(loss.detach(), torch.tensor(want, dtype=F64), rtol=1e-9, atol=1e-10)
    got = [model.a.grad, model.w.grad, model.b.grad, model.c.grad]
    for g_auto, g_fd in zip(got, fd_gradient(formula, theta)):
        # central differences with h = 1e-6 on an O(1) smooth function: error ~1e-9
        torch.testing.assert_close(g_auto, g_fd, rtol=1e-6, atol=1e-7)


def data(b=16, d=3, seed=1):
    return torch.randn(b, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


# ---- gradients equal the finite-difference gradients of the defining formulas -------------------


def test_exact_score_matching_matches_its_formula():
    model, x = LogCoshEnergy(), data()

    def formula(theta):  # J = mean [1/2 |s|^2 + tr grad s], s = -grad E
        grad, _, trace = closed_form(theta, x)
        return float((0.5 * (grad * grad).sum(1) - trace).mean())

    check_against_formula(ScoreMatching(model=model, hessian_method="exact"), model, x, formula, 0)


def test_hutchinson_score_matching_matches_its_formula():
    model, x, k = LogCoshEnergy(), data(), 3
    # probe k of row i is row k B + i of one draw (the batch tiled K times)
    v = torch.randn(k * x.shape[0], x.shape[1], generator=torch.Generator().manual_seed(5), dtype=F64).sign()

    def formula(theta):  # tr H estimated by 1/K sum_k v_k^T H v_k, Rademacher v_k
        grad, _, _ = closed_form(theta, x)
        trace = closed_form(theta, x.repeat(k, 1))[1](v).view(k, -1).mean(0)
        return float((0.5 * (grad * grad).sum(1) - trace).mean())

    loss_fn = ScoreMatching(model=model, hessian_method="hutchinson", hutchinson_samples=k)
    check_against_formula(loss_fn, model, x, formula, 5)


def test_approx_score_matching_matches_its_formula():
    model, x, k = LogCoshEnergy(), data(), 2
    v = torch.randn(k * x.shape[0], x.shape[1], generator=torch.Generator().manual_seed(6), dtype=F64)

    def formula(theta):  # Gaussian probes, exact v^T H v (central differences agree to O(h^2))
        grad, _, _ = closed_form(theta, x)
        trace = closed_form(theta, x.repeat(k, 1))[1](v).view(k, -1).mean(0)
        return float((0.5 * (grad * grad).sum(1) - trace).mean())

    loss_fn = ScoreMatching(model=model, hessian_method="approx", hutchinson_samples=k)
    theta = theta_of(model)
    loss = loss_fn(x, generator=torch.Generator().manual_seed(6))
    loss.backward()
    # h = eps^(1/3) = 6e-6 in float64: truncation h^2 ~ 4e-11, rounding eps / h ~ 4e-11
    torch.testing.assert_close(loss.detach(), torch.tensor(formula(theta), dtype=F64), rtol=1e-8, atol=1e-8)
    for g_auto, g_fd in zip([model.a.grad, model.w.grad, model.b.grad, model.c.grad],
                            fd_gradient(formula, theta)):
        torch.testing.assert_close(g_auto, g_fd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("projection_type", ["rademacher", "gaussian", "sphere"])
def test_sliced_score_matching_matches_its_formula(projection_type):
    model, x, k = LogCoshEnergy(), data(), 3
    gen = torch.Generator().manual_seed(7)
    v = torch.randn(k * x.shape[0], x.shape[1], generator=gen, dtype=F64)
    if projection_type == "rademacher":
        v = v.sign()
    elif projection_type == "sphere":
        v = v / v.norm(dim=1, keepdim=True) * math.sqrt(x.shape[1])
    tiled = x.repeat(k, 1)

    def formula(theta):  # mean over rows and probes of v^T grad s v + 1/2 (v^T s)^2
        grad, vhv, _ = closed_form(theta, tiled)
        return float((0.5 * ((v * grad).sum(1)) ** 2 - vhv(v)).mean())

    loss_fn = SlicedScoreMatching(model=model, n_projections=k, projection_type=projection_type)
    check_against_formula(loss_fn, model, x, formula, 7)


@pytest.mark.parametrize(
    "backend",
    ["reference", pytest.param("fused", marks=needs_kernel)],
)
def test_denoising_score_matching_matches_its_formula(backend):
    model, x, sigma = LogCoshEnergy(), data(), 0.3
    gen = torch.Generator().manual_seed(8)
    if backend == "reference":
        xi = torch.randn(x.shape, generator=gen, dtype=F64)
    else:  # the fused path keys Philox by one 64-bit seed drawn from the generator
        seed = int(torch.randint(0, 2**63 - 1, (), generator=gen, dtype=torch.int64))
        xi = ops.philox_normal(x.shape, seed, 0, F64)

    def formula(theta):  # 1/2 |s(x + sigma xi) - (-xi / sigma)|^2
        grad, _, _ = closed_form(theta, x + sigma * xi)
        return float((0.5 * ((-grad + xi / sigma) ** 2).sum(1)).mean())

    loss_fn = DenoisingScoreMatching(model=model, noise_scale=sigma, backend=backend)
    check_against_formula(loss_fn, model, x, formula, 8)
    assert loss_fn.last_path == backend


def test_regularisation_adds_the_mean_squared_energy_gradient():
    model, x, lam = LogCoshEnergy(), data(), 0.25
    plain = ScoreMatching(model=model)(x)
    reg = ScoreMatching(model=model, regularization_strength=lam)(x)
    grad, _, _ = closed_form(theta_of(model), x)
    torch.testing.assert_close(reg - plain, lam * (grad * grad).sum(1).mean())
    custom = ScoreMatching(model=model, regularization_strength=lam,
                           custom_regularization=lambda x, m: m(x).square().mean())(x)
    torch.testing.assert_close(custom - plain, lam * model(x).square().mean())


# ---- training a Gaussian recovers its mean and covariance ---------------------------------------

MEAN = torch.tensor([1.0, -0.5], dtype=F64)
COV = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=F64)
N = 2000


class GaussianEnergy(nn.Module):
    """E(x) = 1/2 (x - mu)^T L L^T (x - mu), mu and lower-triangular L learnable."""

    def __init__(self, d=2):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(d, dtype=F64))
        self.l_raw = nn.Parameter(torch.eye(d, dtype=F64))

    def forward(self, x):
        z = (x - self.mu) @ torch.tril(self.l_raw)
        return 0.5 * (z * z).sum(-1)

    def covariance(self):
        lo = torch.tril(self.l_raw.detach())
        return torch.linalg.inv(lo @ lo.T)


def gaussian_data():
    g = torch.Generator().manual_seed(2026)
    return MEAN + torch.randn(N, 2, generator=g, dtype=F64) @ torch.linalg.cholesky(COV).T


def train(loss_fn, model, x, steps, average_last):
    """Full-batch Adam, learning rate 0.1 decayed linearly to 0.01; returns the mean and
    covariance averaged over the last `average_last` steps (averaging out the jitter of the
    probes or noise, redrawn every step)."""
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1 - 0.9 * t / steps)
    gen = torch.Generator().manual_seed(3)
    means, covs = [], []
    for t in range(steps):
        opt.zero_grad()
        loss_fn(x, generator=gen).backward()
        opt.step()
        sched.step()
        if t >= steps - average_last:
            means.append(model.mu.detach().clone())
            covs.append(model.covariance())
    return torch.stack(means).mean(0), torch.stack(covs).mean(0)


def assert_recovers(mean, cov, target_cov):
    # Score matching's minimiser for a Gaussian energy on N points is the sample mean and the
    # (1/N) sample covariance (the stationarity conditions are mu = x_bar and
    # (P S + S P) / 2 = I). Their Monte Carlo standard errors for Gaussian data are
    # sqrt(C_jj / N) for mean j and sqrt((C_ij^2 + C_ii C_jj) / N) for covariance entry ij
    # (C = COV, N data points). Bound: 4 standard errors per entry.
    se_mean = torch.sqrt(torch.diagonal(COV) / N)
    se_cov = torch.sqrt((COV**2 + torch.outer(torch.diagonal(COV), torch.diagonal(COV))) / N)
    assert torch.all((mean - MEAN).abs() < 4 * se_mean), (mean, MEAN, se_mean)
    assert torch.all((cov - target_cov).abs() < 4 * se_cov), (cov, target_cov, se_cov)


def assert_near_sample_optimum(mean, cov, x, extra_cov, frac):
    """The fit is the sample optimum up to `frac` standard errors (the optimiser converged)."""
    xbar = x.mean(0)
    s = (x - xbar).T @ (x - xbar) / x.shape[0] + extra_cov
    se_mean = torch.sqrt(torch.diagonal(COV) / N)
    se_cov = torch.sqrt((COV**2 + torch.outer(torch.diagonal(COV), torch.diagonal(COV))) / N)
    assert torch.all((mean - xbar).abs() < frac * se_mean), (mean, xbar)
    assert torch.all((cov - s).abs() < frac * se_cov), (cov, s)


def test_score_matching_recovers_a_gaussian():
    x, model = gaussian_data(), GaussianEnergy()
    loss_fn = ScoreMatching(model=model)  # deterministic: L-BFGS to the sample optimum
    opt = torch.optim.LBFGS(model.parameters(), max_iter=100, tolerance_grad=1e-12,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(x)
        loss.backward()
        return loss

    opt.step(closure)
    mean, cov = model.mu.detach(), model.covariance()
    assert_near_sample_optimum(mean, cov, x, 0.0, 0.01)
    assert_recovers(mean, cov, COV)


def test_sliced_score_matching_recovers_a_gaussian():
    x, model = gaussian_data(), GaussianEnergy()
    loss_fn = SlicedScoreMatching(model=model, n_projections=1)
    mean, cov = train(loss_fn, model, x, steps=150, average_last=50)
    # unbiased for score matching's objective: near its sample optimum
    assert_near_sample_optimum(mean, cov, x, 0.0, 1.0)
    assert_recovers(mean, cov, COV)


def test_denoising_score_matching_recovers_a_gaussian():
    x, model, sigma = gaussian_data(), GaussianEnergy(), 0.3
    loss_fn = DenoisingScoreMatching(model=model, noise_scale=sigma)
    mean, cov = train(loss_fn, model, x, steps=150, average_last=50)
    # DSM fits the data convolved with N(0, sigma^2 I): covariance COV + sigma^2 I
    extra = sigma**2 * torch.eye(2, dtype=F64)
    assert_near_sample_optimum(mean, cov, x, extra, 1.0)
    assert_recovers(mean, cov, COV + extra)


# ---- the dsm_perturb op -------------------------------------------------------------------------


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(7, 3), (1000,), (5, 2, 9)])
def test_dsm_perturb_matches_the_oracle(dtype, shape):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(shape, generator=g, dtype=dtype)
    xi = torch.randn(shape, generator=g, dtype=dtype)
    got = ops.dsm_perturb(x, xi, 0.37, 0, 0)
    want = reference.dsm_perturb(x, xi, 0.37)
    for u, v in zip(got, want):  # same operations in the same dtype: within one rounding
        torch.testing.assert_close(u, v, rtol=2 * torch.finfo(dtype).eps, atol=2 * torch.finfo(dtype).eps)
    # in-kernel noise is philox_normal at (seed, step)
    drawn = ops.dsm_perturb(x, None, 0.37, 11, 3)
    given = ops.dsm_perturb(x, ops.philox_normal(shape, 11, 3, dtype), 0.37, 11, 3)
    for u, v in zip(drawn, given):
        assert torch.equal(u, v)


@needs_kernel
def test_dsm_perturb_checks_its_arguments():
    x = torch.zeros(4, 2)
    with pytest.raises(RuntimeError, match="dsm_perturb: sigma must be finite and > 0"):
        ops.dsm_perturb(x, None, 0.0)
    with pytest.raises(RuntimeError, match=r"dsm_perturb: sigma = 1e-40 gives 1 / sigma"):
        ops.dsm_perturb(x, None, 1e-40)
    ops.dsm_perturb(x.double(), None, 1e-40)  # fine in float64
    with pytest.raises(RuntimeError, match="dsm_perturb: noise must have the shape of x"):
        ops.dsm_perturb(x, torch.zeros(4, 3), 0.1)
    with pytest.raises(RuntimeError, match="dsm_perturb: x must be float32 or float64"):
        ops.dsm_perturb(x.half(), None, 0.1)
    with pytest.raises(RuntimeError, match="dsm_perturb: step must be in"):
        ops.dsm_perturb(x, None, 0.1, 0, -1)


@needs_kernel
def test_dsm_perturb_gradients_pass_gradcheck():
    g = torch.Generator().manual_seed(9)
    x = torch.randn(3, 4, generator=g, dtype=F64, requires_grad=True)
    xi = torch.randn(3, 4, generator=g, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, xi: ops.dsm_perturb(x, xi, 0.4), (x, xi))
    out, _ = ops.dsm_perturb(x, None, 0.4, 1, 0)  # in-kernel noise: the gradient flows to x
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


@needs_kernel
def test_dsm_perturb_opcheck():
    g = torch.Generator().manual_seed(10)
    x = torch.randn(6, 5, generator=g)
    torch.library.opcheck(torch.ops.torchebm.dsm_perturb.default, (x, None, 0.2, 3, 1))
    torch.library.opcheck(torch.ops.torchebm.dsm_perturb.default, (x, torch.randn(6, 5, generator=g), 0.2, 3, 1))


def test_dsm_falls_back_to_the_reference_where_no_kernel_runs():
    model = GaussianEnergy().to(torch.float16)
    loss_fn = DenoisingScoreMatching(model=model, noise_scale=0.1)
    loss_fn(torch.zeros(8, 2, dtype=torch.float16))  # no float16 CPU kernel
    assert loss_fn.last_path == "reference"
    with pytest.raises(dispatch.NoKernelError, match="float16"):
        DenoisingScoreMatching(model=model, noise_scale=0.1, backend="fused")(
            torch.zeros(8, 2, dtype=torch.float16))
    if HAS_DSM_KERNEL:
        default = DenoisingScoreMatching(model=GaussianEnergy(), noise_scale=0.1)
        default(torch.zeros(8, 2, dtype=F64))
        assert default.last_path == "fused"


# ---- API and the differences from TorchEBM 0.8.9 ------------------------------------------------


def test_names_and_old_spellings():
    assert CoreBaseScoreMatching is BaseScoreMatching
    for cls in (ScoreMatching, SlicedScoreMatching, DenoisingScoreMatching):
        assert issubclass(cls, BaseScoreMatching)
    m = GaussianEnergy()
    assert ScoreMatching(energy_function=m).model is m
    with pytest.raises(TypeError, match="not both"):
        ScoreMatching(model=m, energy_function=m)
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        ScoreMatching(model=m, n_projections=3)
    with pytest.raises(ValueError, match="noise_scale must be positive"):
        DenoisingScoreMatching(model=m, noise_scale=0.0)
    with pytest.raises(ValueError, match="n_projections"):
        SlicedScoreMatching(model=m, n_projections=0)
    with pytest.raises(ValueError, match="regularization_strength must be >= 0"):
        ScoreMatching(model=m, regularization_strength=-0.1)
    with pytest.raises(TypeError, match="extra positional"):
        ScoreMatching(model=m)(data(4, 2), 1)


@pytest.mark.parametrize("cls", [ScoreMatching, SlicedScoreMatching, DenoisingScoreMatching])
def test_the_data_keep_their_dtype(cls):
    # 0.8.9 casts the data to the loss's dtype (float32 by default): a float64 model then fails
    model = GaussianEnergy()
    loss = cls(model=model)(data(8, 2))
    assert loss.dtype == F64 and loss.dim() == 0


def _signatures_089():
    """Constructor parameter names of 0.8.9's losses, read from its source (if installed)."""
    root = os.path.join(os.path.dirname(__file__), "..", ".venv-torchebm089", "lib")
    found = glob.glob(os.path.join(root, "python3*", "site-packages", "torchebm", "losses",
                                   "score_matching.py"))
    if not found:
        return None
    tree = ast.parse(open(found[0]).read())
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            for f in node.body:
                if isinstance(f, ast.FunctionDef) and f.name == "__init__":
                    out[node.name] = [a.arg for a in f.args.args[1:]]
    return out


def test_constructors_take_the_089_arguments():
    old = _signatures_089()
    if old is None:
        pytest.skip("TorchEBM 0.8.9 is not installed next to the repository")
    import inspect

    for name, params in old.items():
        cls = {"ScoreMatching": ScoreMatching, "SlicedScoreMatching": SlicedScoreMatching,
               "DenoisingScoreMatching": DenoisingScoreMatching}[name]
        ours = list(inspect.signature(cls.__init__).parameters)[1:]
        assert ours[:len(params)] == params, (name, ours, params)


def test_unknown_methods_raise_instead_of_falling_back():
    # 0.8.9 warns and uses "exact" / "rademacher"
    m = GaussianEnergy()
    with pytest.raises(ValueError, match="hessian_method must be one of"):
        ScoreMatching(model=m, hessian_method="exactt")
    with pytest.raises(ValueError, match="projection_type must be one of"):
        SlicedScoreMatching(model=m, projection_type="normal")


def test_approx_estimates_the_trace_itself():
    # 0.8.9's "approx" divides the trace by D; ours agrees with "exact" on a quadratic energy
    # in expectation over its Gaussian probes: with K probes the estimate of tr P has standard
    # deviation sqrt(2 tr(P^2) / K) per row, over B rows sqrt(2 tr(P^2) / (K B)); bound 4 of them.
    d, b, k = 3, 64, 200
    model = GaussianEnergy(d)
    with torch.no_grad():
        model.l_raw.copy_(torch.tensor([[1.5, 0, 0], [0.3, 1.0, 0], [-0.2, 0.4, 0.8]], dtype=F64))
    x = data(b, d)
    exact = ScoreMatching(model=model)(x)
    approx = ScoreMatching(model=model, hessian_method="approx", hutchinson_samples=k)(
        x, generator=torch.Generator().manual_seed(0))
    lo = torch.tril(model.l_raw.detach())
    p = lo @ lo.T
    sd = math.sqrt(2 * float(torch.trace(p @ p)) / (k * b))
    assert abs(float((approx - exact).detach())) < 4 * sd
    # the trace scaled by 1/D (0.8.9) is off by (1 - 1/D) tr P, far outside that bound
    assert (1 - 1 / d) * float(torch.trace(p)) > 10 * 4 * sd


def test_sliced_and_exact_take_conditioning():
    class Conditional(nn.Module):
        def __init__(self):
            super().__init__()
            self.mu = nn.Parameter(torch.tensor([0.5, -1.0], dtype=F64))

        def forward(self, x, y):
            return 0.5 * ((x - self.mu * y[:, None]) ** 2).sum(-1)

    model, x = Conditional(), data(8, 2)
    y = torch.arange(8, dtype=F64)
    # E = |x - mu y|^2 / 2: s = -(x - mu y), tr grad s = -D
    want = (0.5 * ((x - model.mu.detach() * y[:, None]) ** 2).sum(1) - 2).mean()
    torch.testing.assert_close(ScoreMatching(model=model)(x, y=y), want)
    # at x = mu y (each row with its own y, the tiled copies too) the score is 0, and with
    # Rademacher probes v^T grad s v = -|v|^2 = -D exactly: the loss is -2
    x0 = model.mu.detach() * y[:, None]
    torch.testing.assert_close(SlicedScoreMatching(model=model, n_projections=4)(x0, y=y),
                               torch.tensor(-2.0, dtype=F64))


@needs_kernel
def test_dsm_perturb_compiles_with_fullgraph():
    torch._dynamo.reset()
    x = data(16, 3)
    fn = lambda x: ops.dsm_perturb(x, None, 0.2, 3, 0)  # noqa: E731
    for got, want in zip(torch.compile(fn, fullgraph=True, backend="aot_eager")(x), fn(x)):
        assert torch.equal(got, want)


hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@needs_kernel
@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(0, 5), min_size=0, max_size=3),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64]),
    sigma=st.sampled_from([0.3, 1e-300, 1e300, 0.0, -1.0, math.inf, math.nan, 1e-30]),
    with_noise=st.booleans(),
    transposed=st.booleans(),
    step=st.sampled_from([0, 7, 2**32, -1]),
)
def test_dsm_perturb_fuzz_raises_or_matches_the_oracle(shape, dtype, sigma, with_noise, transposed, step):
    x = torch.randn(shape, dtype=F64).to(dtype)
    if transposed and x.dim() >= 2:
        x = x.transpose(0, 1)
    noise = torch.randn(x.shape, dtype=F64).to(dtype) if with_noise else None
    try:
        got = ops.dsm_perturb(x, noise, sigma, 5, step)
    except (RuntimeError, ValueError, TypeError):
        return
    xi = noise if with_noise else ops.philox_normal(x.shape, 5, step, dtype)
    want = reference.dsm_perturb(x, xi, sigma)
    eps = torch.finfo(dtype).eps
    for u, v in zip(got, want):
        assert u.shape == x.shape and u.dtype == dtype
        torch.testing.assert_close(u, v, rtol=2 * eps, atol=2 * eps, equal_nan=True)


def test_perturb_data_and_compute_score():
    model, x, sigma = LogCoshEnergy(), data(), 0.2
    loss_fn = DenoisingScoreMatching(model=model, noise_scale=sigma)
    x_tilde, eps = loss_fn.perturb_data(x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(eps, sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=F64))
    torch.testing.assert_close(x_tilde, x + eps)
    # the energy gradient (minus the score) at x + noise, as in 0.8.9
    torch.testing.assert_close(loss_fn.compute_score(x, eps), closed_form(theta_of(model), x + eps)[0])


def test_functional_path_equals_the_autograd_path():
    model, x = LogCoshEnergy(), data()
    grads = []
    for use_autograd in (True, False):
        model.zero_grad()
        template = None if use_autograd else LogCoshEnergy(seed=99)  # its own values unused
        loss = SlicedScoreMatching(model=model, use_autograd=use_autograd, functional_model=template)(
            x, generator=torch.Generator().manual_seed(0))
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for u, v in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(u, v)


def test_bare_model_kwargs_are_deprecated_but_passed():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.mu = nn.Parameter(torch.zeros(2, dtype=F64))

        def forward(self, x, scale=1.0):
            return 0.5 * scale * ((x - self.mu) ** 2).sum(-1)

    model, x = Scaled(), data(8, 2)
    with pytest.warns(DeprecationWarning, match="model_kwargs"):
        bare = ScoreMatching(model=model)(x, scale=3.0)
    torch.testing.assert_close(bare, ScoreMatching(model=model)(x, model_kwargs={"scale": 3.0}))
    # E = 3/2 |x - mu|^2: 1/2 |3 (x - mu)|^2 - tr(3 I)
    torch.testing.assert_close(bare, (4.5 * (x * x).sum(1) - 6).mean())
