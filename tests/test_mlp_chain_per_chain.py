"""Per-chain schedules ``[n_steps, B]`` in the whole-chain MLP ops (mlp_langevin_chain,
mlp_mala_chain, mlp_hmc_chain) on the CPU, and the samplers running them after a per-chain
warm-up.

A chain's states depend only on its own row of x0, its own schedule values and its own noise
(indexed over the whole batch), so chain ``i`` of a per-chain call must equal, bit for bit,
chain ``i`` of a call with the ``[n_steps]`` schedule of column ``i`` (the same arithmetic).
The pure-PyTorch references with per-chain schedules (autograd gradients) agree to rounding.

The KS test's threshold is the Kolmogorov distribution's 1 - 1e-5 quantile (false alarm
probability 1e-5 per dimension), as in tests/test_adaptation.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from torchebm import kernels
from torchebm.core import BaseModel
from torchebm.kernels import mlp as mlpk
from torchebm.samplers import HamiltonianMonteCarlo, MetropolisAdjustedLangevin
from torchebm.samplers import mcmc_sampler

pytestmark = pytest.mark.skipif(not kernels.available(), reason="compiled kernels not built")

F64 = torch.float64
KS_ALPHA = 1e-5
# 70 chains: one full tile of 64 float32 chains (two of 32 float64 chains) and a partial one.
B = 70
# Chains on both sides of every tile boundary, the first and the last.
EDGES = [0, 31, 32, 63, 64, 69]
KINDS = ["langevin", "mala", "hmc"]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _network(dtype):
    """A 2-32-32-1 tanh network, steep enough that MALA and HMC reject some proposals."""
    g = _gen(3)
    widths = [2, 32, 32, 1]
    weights = [torch.randn(o, i, generator=g, dtype=F64) * (3.0 / i**0.5)
               for i, o in zip(widths[:-1], widths[1:])]
    weights[-1] = weights[-1] * 6.0
    biases = [0.3 * torch.randn(o, generator=g, dtype=F64) for o in widths[1:]]
    tanh = mlpk.ACTIVATIONS["tanh"]
    return dict(weights=[w.to(dtype) for w in weights], biases=[b.to(dtype) for b in biases],
                activations=[tanh, tanh, mlpk.ACTIVATIONS["identity"]], act_params=[0.0] * 9,
                out_scale=1.0, out_offset=0.0)


def _run(kind, x0, net, first, second=None, *, op_of=None, **kw):
    """One call of the ``kind`` chain op (or its reference, ``op_of="reference"``) with the
    schedules ``first`` (Langevin/MALA a, HMC step size) and ``second`` (Langevin/MALA b)."""
    name = {"langevin": "mlp_langevin_chain", "mala": "mlp_mala_chain", "hmc": "mlp_hmc_chain"}[kind]
    op = getattr(mlpk, name + ("_reference" if op_of == "reference" else ""))
    kw = dict(dict(seed=11, thin=2, record_trajectory=True, record_energy=True), **kw)
    if kind == "langevin":
        return op(x0, **net, a=first, b=second, clamp_min=-4.0, clamp_max=4.0, grad_clip=30.0, **kw)
    if kind == "mala":
        return op(x0, **net, a=first, b=second, **kw)
    n_leapfrog = kw.pop("n_leapfrog_", 3)
    return op(x0, **net, step_size=first, n_leapfrog=n_leapfrog,
              inv_mass=torch.tensor([0.5, 2.0], dtype=x0.dtype), **kw)


def _schedules(kind, n, generator):
    """Per-chain schedules [n, B] varying over steps and chains (HMC: step sizes; else a and
    b = sqrt(2 a) times a per-chain noise scale)."""
    a = 0.002 + 0.02 * torch.rand(n, B, generator=generator, dtype=F64)
    if kind == "hmc":
        return 5 * a, None
    return a, torch.sqrt(2 * a) * (0.5 + torch.rand(1, B, generator=generator, dtype=F64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_each_chain_equals_its_own_schedule(kind, dtype):
    """Chain i of a per-chain call equals chain i of the call with column i as the [n_steps]
    schedule, bit for bit (states, trajectory); the whole call equals the per-step reference
    loop with per-chain coefficients to rounding."""
    net = _network(dtype)
    x0 = torch.randn(B, 2, generator=_gen(1), dtype=dtype)
    first, second = _schedules(kind, 8, _gen(2))
    out = _run(kind, x0, net, first, second)
    if kind != "langevin":
        assert 0.2 < float(out[3].mean()) < 0.98  # some proposals rejected, some accepted
    for i in EDGES:
        col = _run(kind, x0, net, first[:, i].contiguous(),
                   None if second is None else second[:, i].contiguous())
        assert torch.equal(out[0][i], col[0][i]), f"chain {i}: final state"
        assert torch.equal(out[1][i], col[1][i]), f"chain {i}: trajectory"
    want = _run(kind, x0, net, first, second, op_of="reference")
    tol = dict(rtol=1e-9, atol=1e-9) if dtype == F64 else dict(rtol=1e-4, atol=1e-4)
    if kind != "langevin":
        # An accept decision may flip on float32 rounding; in float64 none does here.
        assert torch.equal(out[3], want[3]) or dtype == torch.float32
    if dtype == F64:
        for got, ref in zip(out, want):
            torch.testing.assert_close(got, ref, **tol)
    else:
        # float32: the chains whose final states agree to rounding; at least 95% of them.
        close = (out[0] - want[0]).abs().amax(dim=1) <= 1e-3
        assert close.double().mean() >= 0.95


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_equal_entries_equal_the_one_value_per_step_form(kind, dtype):
    """A [n_steps, B] schedule whose rows hold one value each equals the [n_steps] schedule of
    those values bit for bit (every output), contiguous or as a stride-0 view."""
    net = _network(dtype)
    x0 = torch.randn(B, 2, generator=_gen(4), dtype=dtype)
    first, second = _schedules(kind, 7, _gen(5))
    first, second = first[:, 0], None if second is None else second[:, 0]
    want = _run(kind, x0, net, first, second)
    rows = lambda s: None if s is None else s[:, None].expand(7, B).contiguous()
    got = _run(kind, x0, net, rows(first), rows(second))
    assert all(torch.equal(u, v) for u, v in zip(got, want))


@pytest.mark.parametrize("schedule_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", KINDS)
def test_stride_zero_views_equal_their_copies(kind, schedule_dtype):
    """Per-chain values constant over the steps, as a sampler passes adapted step sizes:
    ``v.expand(n_steps, B)`` (stride 0) equals its contiguous copy bit for bit."""
    net = _network(F64)
    x0 = torch.randn(B, 2, generator=_gen(6), dtype=F64)
    first, second = _schedules(kind, 1, _gen(7))
    first, second = first[0].to(schedule_dtype), None if second is None else second[0].to(schedule_dtype)
    view = lambda s: None if s is None else s.expand(6, B)
    copy = lambda s: None if s is None else s.expand(6, B).contiguous()
    assert view(first).stride(0) == 0
    got = _run(kind, x0, net, view(first), view(second))
    want = _run(kind, x0, net, copy(first), copy(second))
    assert all(torch.equal(u, v) for u, v in zip(got, want))


@pytest.mark.parametrize("constant", [False, True], ids=["varying", "stride0"])
@pytest.mark.parametrize("kind", KINDS)
def test_blocks_of_steps_equal_one_call(kind, constant):
    """Calls over consecutive slices of per-chain schedules, each from the state the previous
    one returned with first_step advanced (MCMCSampler._run_chain's blocks), equal one call."""
    net = _network(torch.float32)
    x0 = torch.randn(B, 2, generator=_gen(8))
    n = 9
    first, second = _schedules(kind, n, _gen(9))
    if constant:
        first = first[0].expand(n, B)
        second = None if second is None else second[0].expand(n, B)
    one = _run(kind, x0, net, first, second, thin=1)
    x, parts = x0, []
    for start, stop in [(0, 3), (3, 4), (4, 9)]:
        part = _run(kind, x, net, first[start:stop],
                    None if second is None else second[start:stop], thin=1, first_step=start)
        x = part[0]
        parts.append(part)
    assert torch.equal(x, one[0])
    assert torch.equal(torch.cat([p[1] for p in parts], 1), one[1])
    for k in range(2, len(one)):  # energy_mean, acceptance_rate
        assert torch.equal(torch.cat([p[k] for p in parts]), one[k])


def test_schedules_are_checked_naming_the_argument():
    net = _network(F64)
    x0 = torch.randn(4, 2, dtype=F64)
    a = torch.full((5, 4), 0.01, dtype=F64)
    with pytest.raises(RuntimeError, match=r"mlp_mala_chain: b must be a per-step tensor \[n_steps\] "
                                           r"or \[n_steps, B\] \(B = 4 chains\), got \[5, 3\]"):
        mlpk.mlp_mala_chain(x0, **net, a=a, b=torch.ones(5, 3, dtype=F64))
    with pytest.raises(RuntimeError, match=r"mlp_langevin_chain: a must be a per-step tensor "
                                           r"\[n_steps\] or \[n_steps, B\], got \[5, 4, 1\]"):
        mlpk.mlp_langevin_chain(x0, **net, a=a[..., None], b=a)
    with pytest.raises(RuntimeError, match=r"mlp_langevin_chain: b must have n_steps = 5 entries, got 4"):
        mlpk.mlp_langevin_chain(x0, **net, a=a, b=a[:4])
    bad = a.clone()
    bad[2, 1] = 0.0
    with pytest.raises(RuntimeError, match=r"mlp_hmc_chain: step_size\[2, 1\] must be finite and > 0"):
        mlpk.mlp_hmc_chain(x0, **net, step_size=bad, n_leapfrog=2)
    with pytest.raises(RuntimeError, match=r"mlp_mala_chain: b\[2, 1\] must be finite and > 0"):
        mlpk.mlp_mala_chain(x0, **net, a=a, b=bad)
    with pytest.raises(RuntimeError, match=r"mlp_langevin_chain: a\[:, 3\] must be finite"):
        mlpk.mlp_langevin_chain(x0, **net, a=torch.tensor([0.1, 0.1, 0.1, float("inf")],
                                                          dtype=F64).expand(5, 4), b=a)


@pytest.mark.parametrize("kind", KINDS)
def test_per_chain_schedules_pass_opcheck(kind):
    """The ops' schemas, fake kernels and registrations with [n_steps, B] schedules."""
    net = _network(F64)
    x0 = torch.randn(5, 2, dtype=F64)
    first, second = _schedules(kind, 4, _gen(10))
    first, second = first[:, :5].contiguous(), None if second is None else second[:, :5].contiguous()
    w = (net["weights"], net["biases"], net["activations"], net["act_params"], 1.0, 0.0)
    if kind == "langevin":
        op, args = torch.ops.torchebm.mlp_langevin_chain, (
            x0, *w, first, second, -4.0, 4.0, None, 3, 2, True, True, 1)
    elif kind == "mala":
        op, args = torch.ops.torchebm.mlp_mala_chain, (x0, *w, first, second, 3, 2, True, True, 1)
    else:
        op, args = torch.ops.torchebm.mlp_hmc_chain, (
            x0, *w, first, 2, None, 3, 2, True, True, 1)
    torch.library.opcheck(op, args)
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode(allow_non_fake_inputs=True):
        out = op(*args)
    assert [tuple(o.shape) for o in out][:3] == [(5, 2), (5, 2, 2), (4,)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hmc_leapfrog_count_per_transition(dtype):
    """mlp_hmc_chain's leapfrog_steps [n_steps]: transition t takes leapfrog_steps[t] leapfrog
    steps (n_leapfrog ignored). Transition t equals a one-step call with n_leapfrog =
    leapfrog_steps[t] and first_step = t bit for bit; the whole call equals the reference loop
    to rounding, and blocks of transitions equal one call."""
    net = _network(dtype)
    x0 = torch.randn(B, 2, generator=_gen(30), dtype=dtype)
    eps, _ = _schedules("hmc", 6, _gen(31))
    steps = torch.tensor([1, 4, 2, 2, 5, 3])
    kw = dict(record_energy=True, thin=1)
    out = _run("hmc", x0, net, eps, leapfrog_steps=steps, **kw)
    assert 0.2 < float(out[3].mean()) < 0.98
    x = x0
    for t in range(6):
        x = _run("hmc", x, net, eps[t : t + 1], leapfrog_steps=None, first_step=t,
                 n_leapfrog_=int(steps[t]), **kw)[0]
        assert torch.equal(x, out[1][:, t]), f"transition {t}"
    want = _run("hmc", x0, net, eps, op_of="reference", leapfrog_steps=steps, **kw)
    if dtype == F64:
        for got, ref in zip(out, want):
            torch.testing.assert_close(got, ref, rtol=1e-9, atol=1e-9)
    blocks = [_run("hmc", x0, net, eps[:2], leapfrog_steps=steps[:2], **kw)]
    blocks.append(_run("hmc", blocks[0][0], net, eps[2:], leapfrog_steps=steps[2:], first_step=2,
                       **kw))
    assert torch.equal(blocks[1][0], out[0])
    assert torch.equal(torch.cat([b[3] for b in blocks]), out[3])


def test_leapfrog_steps_are_checked():
    net = _network(F64)
    x0 = torch.randn(4, 2, dtype=F64)
    eps = torch.full((3,), 0.1, dtype=F64)
    with pytest.raises(RuntimeError, match=r"mlp_hmc_chain: leapfrog_steps\[1\] must be in \[1, 2\^31 - 1\]"):
        mlpk.mlp_hmc_chain(x0, **net, step_size=eps, n_leapfrog=2,
                           leapfrog_steps=torch.tensor([2, 0, 1]))
    with pytest.raises(RuntimeError, match=r"mlp_hmc_chain: leapfrog_steps must be a per-step tensor"):
        mlpk.mlp_hmc_chain(x0, **net, step_size=eps, n_leapfrog=2,
                           leapfrog_steps=torch.tensor([2, 1]))
    with pytest.raises(RuntimeError, match=r"mlp_hmc_chain: leapfrog_steps must be an int64 tensor"):
        mlpk.mlp_hmc_chain(x0, **net, step_size=eps, n_leapfrog=2,
                           leapfrog_steps=torch.tensor([2, 1, 1], dtype=torch.int32))
    args = (x0, net["weights"], net["biases"], net["activations"], net["act_params"], 1.0, 0.0,
            eps, 2, None, 3, 1, True, True, 0, torch.tensor([2, 1, 3]))
    torch.library.opcheck(torch.ops.torchebm.mlp_hmc_chain, args)


# ---- the samplers --------------------------------------------------------------------------


class SoftplusEnergy(BaseModel):
    """A 1-D MLP energy E(x) = sum_j w_j softplus(s_j x + c_j) + b with w_j > 0 and slopes s_j
    of both signs: it grows linearly on both sides, so exp(-E) is normalisable."""

    def __init__(self):
        super().__init__(dtype=F64)
        torch.manual_seed(16)
        self.net = nn.Sequential(nn.Linear(1, 8), nn.Softplus(), nn.Linear(8, 1)).double()
        with torch.no_grad():
            self.net[0].weight.copy_(torch.linspace(-2, 2, 8).view(8, 1))
            self.net[2].weight.abs_()

    def forward(self, x):
        return self.net(x).squeeze(-1)


def _target(model):
    """The target's CDF on a grid (quadrature) and exact draws from it (inverse CDF)."""
    grid = torch.linspace(-15, 15, 30001, dtype=F64)
    with torch.no_grad():
        e = model(grid.view(-1, 1))
    cdf = torch.cumsum(torch.exp(-(e - e.min())), 0)
    cdf = (cdf / cdf[-1]).numpy()
    xs = grid.numpy()

    def draws(n, generator):
        u = torch.rand(n, generator=generator, dtype=F64).numpy()
        return torch.from_numpy(np.interp(u, cdf, xs)).view(n, 1)

    return (lambda v: np.interp(v, xs, cdf)), draws


SAMPLER_CASES = [
    pytest.param(MetropolisAdjustedLangevin, {}, id="mala"),
    pytest.param(HamiltonianMonteCarlo, {"n_leapfrog_steps": 3}, id="hmc", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("cls, kw", SAMPLER_CASES)
def test_per_chain_adapted_mlp_sampler_runs_its_chain_op(cls, kw, require_path, monkeypatch):
    """After warmup(per_chain=True) an MLP energy runs its whole-chain op (schedules
    [n_steps, B]), the same chains as the per-step fused path to rounding."""
    require_path(cls, "fused", F64)
    model = SoftplusEnergy()
    s = cls(model, step_size=0.1, dtype=F64, **kw)
    x = s.warmup(n_samples=64, dim=1, n_steps=30, generator=_gen(12), per_chain=True)
    assert s.adaptation.per_chain and s.adaptation.step_size.unique().numel() == 64
    chain = s.sample(x=x, n_steps=20, return_trajectory=True, generator=_gen(13))
    assert s.last_path == "chain" and s.last_route.op == cls.algorithm.mlp_chain_op
    monkeypatch.setattr(mcmc_sampler.mlp, "recognise_mlp", lambda model, x: (None, "mlp: off"))
    fused = s.sample(x=x, n_steps=20, return_trajectory=True, generator=_gen(13))
    assert s.last_path == "fused"
    # Gradients summed in another order: rounding, which may flip an accept decision of a few
    # chains; at least 95% of them agree.
    close = (chain - fused).abs().amax(dim=(1, 2)) <= 1e-8
    assert close.double().mean() >= 0.95


@pytest.mark.parametrize("cls, kw", SAMPLER_CASES)
def test_per_chain_adapted_mlp_chain_path_is_exact(cls, kw, require_path):
    """4000 chains started from exact draws of the 1-D MLP density, per-chain step sizes from a
    warm-up on other chains (so each chain's step size is independent of its start): MALA/HMC
    with a fixed step size leaves the target invariant, so after 200 steps on the chain path
    one draw per chain is an i.i.d. sample of the target, KS-tested against its CDF."""
    require_path(cls, "fused", F64)
    model = SoftplusEnergy()
    cdf, draws = _target(model)
    s = cls(model, step_size=0.1, dtype=F64, **kw)
    s.warmup(x=draws(4000, _gen(20)), n_steps=100, generator=_gen(21), per_chain=True)
    assert s.adaptation.step_size.unique().numel() > 1000
    out = s.sample(x=draws(4000, _gen(22)), n_steps=200, generator=_gen(23))
    assert s.last_path == "chain"
    sample = out.view(-1).numpy()
    result = stats.kstest(sample, cdf)
    threshold = stats.kstwo.ppf(1 - KS_ALPHA, sample.size)
    assert result.statistic < threshold, f"KS D = {result.statistic:.5f}, threshold {threshold:.5f}"


def test_chees_adapted_mlp_sampler_runs_its_chain_op(require_path, monkeypatch):
    """After a ChEES warm-up (jittered trajectory lengths) an MLP energy runs mlp_hmc_chain with
    one leapfrog count per transition: the same chains as the per-step fused path to rounding
    (the jitter advanced alike on both paths)."""
    require_path(HamiltonianMonteCarlo, "fused", F64)
    s = HamiltonianMonteCarlo(SoftplusEnergy(), step_size=0.1, n_leapfrog_steps=3, dtype=F64)
    x = s.warmup(n_samples=64, dim=1, n_steps=30, generator=_gen(40), adapt="chees")
    # A trajectory length of 5 step sizes, so that the jittered counts vary between transitions.
    state = s.state_dict()
    state["adaptation.step_size"] = torch.tensor(0.3, dtype=F64)
    state["adaptation.trajectory_length"] = torch.tensor(1.5, dtype=F64)
    s.load_state_dict(state)
    chain = s.sample(x=x, n_steps=12, return_trajectory=True, generator=_gen(41))
    assert s.last_path == "chain" and s.last_route.op == "mlp_hmc_chain"
    s.load_state_dict(state)  # the jitter's position before the chain run
    monkeypatch.setattr(mcmc_sampler.mlp, "recognise_mlp", lambda model, x: (None, "mlp: off"))
    fused = s.sample(x=x, n_steps=12, return_trajectory=True, generator=_gen(41))
    assert s.last_path == "fused"
    close = (chain - fused).abs().amax(dim=(1, 2)) <= 1e-8
    assert close.double().mean() >= 0.95
