"""Whole-chain MLP kernels (torchebm.kernels.mlp): the recogniser, the fused gradient against
autograd, and the chain ops against the per-step fused path with the same seed."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
import torch.nn.functional as F
from torch import nn

from torchebm import kernels
from torchebm.core import MLP, BaseModel, EnergyModel
from torchebm.kernels import ops
from torchebm.kernels import mlp as mlpk

pytestmark = pytest.mark.skipif(not kernels.available(), reason="compiled kernels not built")

SELU = (1.6732632423543772848170429916717, 1.0507009873554804934193349852946, 1.0)

# name -> (module factory, kernel activation, kernel params)
ACTIVATIONS = {
    "relu": (nn.ReLU, "relu", (0.0, 0.0, 0.0)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.1), "leaky_relu", (0.1, 0.0, 0.0)),
    "elu": (lambda: nn.ELU(0.7), "elu", (0.7, 1.0, 1.0)),
    "selu": (nn.SELU, "elu", SELU),
    "celu": (lambda: nn.CELU(0.6), "celu", (0.6, 1 / 0.6, 1 / float(np.float32(0.6)))),
    "silu": (nn.SiLU, "silu", (0.0, 0.0, 0.0)),
    "gelu": (nn.GELU, "gelu", (0.0, 0.0, 0.0)),
    "gelu_tanh": (lambda: nn.GELU("tanh"), "gelu_tanh", (0.0, 0.0, 0.0)),
    "tanh": (nn.Tanh, "tanh", (0.0, 0.0, 0.0)),
    "sigmoid": (nn.Sigmoid, "sigmoid", (0.0, 0.0, 0.0)),
    "softplus": (lambda: nn.Softplus(2.0, 5.0), "softplus", (2.0, 5.0, 0.0)),
}


class SeqEnergy(nn.Module):
    """A user model: nn.Sequential, energy = squeeze of its output."""

    def __init__(self, *layers):
        super().__init__()
        self.net = nn.Sequential(*layers)
        self.forward = lambda x: self.net(x).squeeze(-1)


def seq_model(widths, act, dtype=torch.float64, seed=0, final=None):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(ACTIVATIONS[act][0]())
    if final is not None:
        layers.append(final)
    return SeqEnergy(*layers).to(dtype)


def autograd_energy_grad(model, x):
    xr = x.detach().clone().requires_grad_(True)
    e = model(xr)
    (g,) = torch.autograd.grad(e.sum(), xr)
    return e.detach(), g


def recognised(model, x):
    spec, reason = mlpk.recognise_mlp(model, x)
    assert spec is not None, reason
    return spec


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-300))


# ---- the recogniser --------------------------------------------------------------------------


def test_recognises_torchebm_energy_model_and_mlp():
    model = EnergyModel(MLP(2, [16, 8], activation=nn.SELU))
    x = torch.randn(5, 2)
    spec = recognised(model, x)
    assert [l.activation for l in spec.layers] == ["elu", "elu", "identity"]
    assert [tuple(l.weight.shape) for l in spec.layers] == [(16, 2), (8, 16), (1, 8)]
    assert spec.layers[0].weight is model.network.layers[0].weight  # the live parameter
    torch.testing.assert_close(spec.energy(x), model(x))


def test_recognises_functional_forms_and_output_transforms():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.l2, self.l3 = nn.Linear(3, 8), nn.Linear(8, 8, bias=False), nn.Linear(8, 4)

        def forward(self, x):
            h = F.softplus(self.l1(x), beta=2.0, threshold=10.0)
            h = torch.tanh(self.l2(h))
            return -0.5 * self.l3(h).mean(dim=1) + 3.0

    model = Functional().double()
    x = torch.randn(6, 3, dtype=torch.float64)
    spec = recognised(model, x)
    assert [l.activation for l in spec.layers] == ["softplus", "tanh", "identity"]
    assert spec.layers[0].params[:2] == (2.0, 10.0)
    assert spec.layers[1].bias is None
    assert spec.out_scale == pytest.approx(-0.125) and spec.out_offset == 3.0
    torch.testing.assert_close(spec.energy(x), model(x))


def test_recognises_matrix_products_as_linear_maps():
    class Handwritten(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = nn.Parameter(torch.randn(2, 8))  # [in, out]: h @ w1
            self.b1 = nn.Parameter(torch.randn(8))
            self.w2 = nn.Parameter(torch.randn(6, 8))  # [out, in]: h @ w2.T
            self.b2 = nn.Parameter(torch.randn(6))
            self.v = nn.Parameter(torch.randn(6))

        def forward(self, x):
            h = torch.tanh(x @ self.w1 + self.b1)
            h = F.silu(torch.addmm(self.b2, h, self.w2.T))
            return h @ self.v

    model = Handwritten().double()
    x = torch.randn(7, 2, dtype=torch.float64)
    spec = recognised(model, x)
    assert [(l.layout, l.activation) for l in spec.layers] == [
        ("transposed", "tanh"), ("linear", "silu"), ("row", "identity")]
    assert spec.layers[0].weight is model.w1 and spec.layers[0].bias is model.b1
    torch.testing.assert_close(spec.energy(x), model(x))
    e, g = mlpk.mlp_energy_grad(x, **spec.op_args())
    e_ref, g_ref = autograd_energy_grad(model, x)
    assert rel_err(g, g_ref) < 1e-12 and rel_err(e, e_ref) < 1e-12


def test_recognises_class_level_lambda_forward_and_eval_dropout():
    class Lam(BaseModel):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 1))

        forward = lambda self, x: self.net(x).squeeze(-1)  # noqa: E731

    model = Lam()
    x = torch.randn(4, 2)
    spec, reason = mlpk.recognise_mlp(model, x)
    assert spec is None and "dropout in training mode" in reason
    spec = recognised(model.eval(), x)
    assert [l.activation for l in spec.layers] == ["relu", "identity"]


class _Conv(nn.Module):
    def __init__(self):
        super().__init__()
        self.c, self.l = nn.Conv1d(1, 1, 1), nn.Linear(2, 1)

    def forward(self, x):
        return self.l(x).squeeze(-1)


class _Skip(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.l2 = nn.Linear(2, 2), nn.Linear(2, 1)

    def forward(self, x):
        return self.l2(F.relu(self.l1(x)) + x).squeeze(-1)


class _Pow(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(2, 2)

    def forward(self, x):
        return self.l1(x).pow(2).sum(-1)


class _Kwarg(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(2, 1)

    def forward(self, x, y):
        return self.l1(x).squeeze(-1)


class _Column(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(2, 1)

    def forward(self, x):
        return self.l1(x)


class _BatchBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(2, 1)

    def forward(self, x):
        return (self.l1(x) if x.shape[0] > 100 else -self.l1(x)).squeeze(-1)


class _Gradient(EnergyModel):
    def gradient(self, x, model_kwargs=None):
        return torch.zeros_like(x)


@pytest.mark.parametrize(
    "model, x, expected",
    [
        (_Conv(), torch.randn(3, 2), "model contains Conv1d (c)"),
        (_Skip(), torch.randn(3, 2), "combines two values computed from x with aten.add"),
        (_Pow(), torch.randn(3, 2), "forward calls aten.pow"),
        (_Kwarg(), torch.randn(3, 2), "torch.export could not trace forward"),
        (_Column(), torch.randn(3, 2), "forward returns shape [B, 1]"),
        (_BatchBranch(), torch.randn(3, 2), "depends on the batch size"),
        (nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Tanh(), nn.Linear(4, 1), nn.Flatten(0)),
         torch.randn(3, 2), "two activations in a row (relu, then tanh)"),
        (nn.Sequential(nn.Linear(2, 1), nn.Flatten(0)), torch.randn(3, 2, dtype=torch.float64),
         "parameters are torch.float32 but x is torch.float64"),
        (nn.Sequential(nn.Linear(2, 1), nn.Flatten(0)), torch.randn(3, 1, 2), "x has shape [3, 1, 2]"),
        (_Gradient(nn.Linear(2, 1)), torch.randn(3, 2), "overrides gradient()"),
    ],
)
def test_refuses_with_a_reason(model, x, expected):
    spec, reason = mlpk.recognise_mlp(model, x)
    assert spec is None
    assert reason.startswith("mlp: ") and expected in reason, reason


def test_parameter_change_is_picked_up_without_retracing(monkeypatch):
    model = seq_model([2, 16, 1], "tanh", seed=1)
    x = torch.randn(40, 2, dtype=torch.float64)
    spec = recognised(model, x)
    traces = []
    export = torch.export.export
    monkeypatch.setattr(torch.export, "export", lambda *a, **k: traces.append(1) or export(*a, **k))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model(x).sum().backward()
    opt.step()
    assert recognised(model, x) is spec and not traces  # a cache hit: same spec, no trace
    e, g = mlpk.mlp_energy_grad(x, **spec.op_args())
    e_ref, g_ref = autograd_energy_grad(model, x)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(e, e_ref, rtol=1e-12, atol=1e-12)
    # A replaced parameter tensor is a new model for the cache.
    model.net[0].weight = nn.Parameter(model.net[0].weight.detach() * 2)
    assert recognised(model, x) is not spec and len(traces) == 1


def test_changed_python_constant_is_noticed():
    class Tempered(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.temperature = nn.Linear(2, 1), 2.0

        def forward(self, x):
            return self.l1(x).squeeze(-1) / self.temperature

    model = Tempered()
    x = torch.randn(3, 2)
    assert recognised(model, x).out_scale == pytest.approx(0.5)
    model.temperature = 4.0
    assert recognised(model, x).out_scale == pytest.approx(0.25)


_probe_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-2.0, 2.0),
    st.sampled_from([0.0, 1e6, -1e6, math.inf, -math.inf, math.nan]),
)


@given(
    st.lists(
        st.tuples(_probe_values, _probe_values, st.floats(-3e-4, 3e-4), st.booleans()),
        min_size=1,
        max_size=4,
    ),
    st.sampled_from([1e-4, 1e-9]),
)
def test_probe_comparison_is_allclose(pairs, tol):
    # got: an unrelated value, or want nudged by an amount around the tolerance.
    want = [w for w, _, _, _ in pairs]
    got = [w * (1 + nudge) + nudge if nudged else g for w, g, nudge, nudged in pairs]
    scale = max([1.0] + [abs(w) for w in want if math.isfinite(w)])
    w, g = torch.tensor(want, dtype=torch.float64), torch.tensor(got, dtype=torch.float64)
    close = torch.allclose(w, g, rtol=tol, atol=tol * scale, equal_nan=True)
    assert (mlpk._mismatch(want, got, tol) is None) == close


# ---- gradients against autograd --------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
def test_energy_grad_matches_autograd(act, dtype):
    model = seq_model([3, 32, 16, 1], act, dtype=dtype, seed=2)
    x = 2 * torch.randn(100, 3, dtype=dtype)
    spec = recognised(model, x)
    assert spec.layers[0].activation == ACTIVATIONS[act][1]
    assert spec.layers[0].params == pytest.approx(ACTIVATIONS[act][2], rel=1e-15)
    e, g = mlpk.mlp_energy_grad(x, **spec.op_args())
    e_ref, g_ref = autograd_energy_grad(model, x)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert rel_err(g, g_ref) < tol and rel_err(e, e_ref) < tol, (rel_err(g, g_ref), rel_err(e, e_ref))


@pytest.mark.parametrize(
    "widths, final, scale",
    [
        ([4, 1], None, 1.0),  # one Linear: a constant gradient
        ([4, 5, 3], nn.Tanh(), -2.0),  # summed outputs through a final activation
        ([4, 7, 7, 2], None, 0.5),  # identity hidden activation below
    ],
)
def test_energy_grad_of_other_shapes(widths, final, scale):
    torch.manual_seed(3)
    layers = [nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
    if len(widths) == 4:
        layers.insert(1, nn.SiLU())
    if final is not None:
        layers.append(final)

    class Summed(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(*layers)

        def forward(self, x):
            return scale * self.net(x).sum(-1) - 1.0

    model = Summed().double()
    x = torch.randn(70, widths[0], dtype=torch.float64)  # 70: a full tile and a partial one
    spec = recognised(model, x)
    e, g = mlpk.mlp_energy_grad(x, **spec.op_args())
    e_ref, g_ref = autograd_energy_grad(model, x)
    assert rel_err(g, g_ref) < 1e-12 and rel_err(e, e_ref) < 1e-12


def test_extreme_inputs_and_nan():
    vals = torch.tensor([-1e4, -800, -100, -87.5, -20, -1e-8, 0.0, 1e-8, 20, 88, 100, 1e4],
                        dtype=torch.float64)
    x = vals.view(-1, 1)
    w = [torch.ones(1, 1, dtype=torch.float64)] * 2
    b = [torch.zeros(1, dtype=torch.float64)] * 2
    for act, (_, kind, params) in ACTIVATIONS.items():
        args = (w, b, [mlpk.ACTIVATIONS[kind], 0], list(params) + [0.0, 0.0, 0.0], 1.0, 0.0)
        e, g = mlpk.mlp_energy_grad(x, *args)
        e_ref, g_ref = mlpk.mlp_energy_grad_reference(x, *args)
        torch.testing.assert_close(e, e_ref, rtol=1e-12, atol=1e-300, msg=act)
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-300, msg=act)
        e_nan, _ = mlpk.mlp_energy_grad(torch.full((1, 1), math.nan, dtype=torch.float64), *args)
        assert torch.isnan(e_nan).all() or act == "relu", act


def test_instruction_sets_agree(monkeypatch):
    model = seq_model([2, 24, 24, 1], "selu", dtype=torch.float32, seed=4)
    x = torch.randn(100, 2)
    args = recognised(model, x).op_args()
    e0, g0 = mlpk.mlp_energy_grad(x, **args)
    for isa in ("avx2", "generic"):
        monkeypatch.setenv("TORCHEBM_MLP_ISA", isa)
        e, g = mlpk.mlp_energy_grad(x, **args)
        torch.testing.assert_close(g, g0, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(e, e0, rtol=1e-5, atol=1e-6)


# ---- chains against the per-step fused path --------------------------------------------------


def fused_langevin(model, x0, a, b, seed, clamp=(None, None), grad_clip=None, thin=1):
    x, traj, energies = x0.clone(), [], []
    for t in range(len(a)):
        e, g = autograd_energy_grad(model, x)
        if t > 0:
            energies.append(e.mean())
        x = ops.langevin_update(x, g, None, a[t], b[t], clamp[0], clamp[1], grad_clip, seed, t)
        if (t + 1) % thin == 0:
            traj.append(x)
    energies.append(model(x).detach().mean())
    return x, torch.stack(traj, 1), torch.stack(energies)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_langevin_chain_equals_fused_per_step_path(dtype):
    model = seq_model([2, 64, 64, 1], "selu", dtype=dtype, seed=5)
    x0 = torch.randn(150, 2, dtype=dtype)
    n = 50
    a = torch.full((n,), 0.01, dtype=torch.float64)
    b = torch.linspace(0.2, 0.1, n, dtype=torch.float64)
    spec = recognised(model, x0)
    x, traj, em = mlpk.mlp_langevin_chain(
        x0, **spec.op_args(), a=a, b=b, clamp_min=-3.0, clamp_max=3.0, grad_clip=50.0,
        seed=2024, thin=5, record_trajectory=True, record_energy=True,
    )
    x_ref, traj_ref, em_ref = fused_langevin(
        model, x0, a.tolist(), b.tolist(), 2024, (-3.0, 3.0), 50.0, thin=5
    )
    tol = 1e-9 if dtype == torch.float64 else 1e-4
    torch.testing.assert_close(x, x_ref, rtol=0, atol=tol)
    torch.testing.assert_close(traj, traj_ref, rtol=0, atol=tol)
    torch.testing.assert_close(em, em_ref, rtol=tol, atol=tol)


def fused_mala(model, x0, a, b, seed):
    x = x0.clone()
    ex, gx = autograd_energy_grad(model, x)
    acc, energies = [], []
    for t in range(len(a)):
        y = ops.langevin_update(x, gx, None, a[t], b[t], None, None, None, seed, t)
        ey, gy = autograd_energy_grad(model, y)
        x, gx, ex, accepted = ops.mala_select(x, y, gx, gy, ex, ey, a[t], b[t], None, seed, t)
        acc.append(accepted.double().mean())
        energies.append(ex.mean())
    return x, torch.stack(energies), torch.stack(acc)


def fused_hmc(model, x0, eps, n_leapfrog, inv_mass, seed):
    x = x0.clone()
    e, g = autograd_energy_grad(model, x)
    m = torch.ones((), dtype=x.dtype) if inv_mass is None else inv_mass
    acc = []
    for t, h in enumerate(eps):
        p = ops.philox_normal(x.shape, seed, t, x.dtype) / torch.sqrt(m)
        h0 = e + 0.5 * (m * p * p).sum(-1)
        y, p = ops.leapfrog_kick_drift(x, p, g, h / 2, h, inv_mass)
        for l in range(n_leapfrog):
            ey, gy = autograd_energy_grad(model, y)
            if l < n_leapfrog - 1:
                y, p = ops.leapfrog_kick_drift(y, p, gy, h, h, inv_mass)
        p = p - (h / 2) * gy
        h1 = ey + 0.5 * (m * p * p).sum(-1)
        x, accepted = ops.metropolis_select(h0 - h1, x, y, None, seed, t)
        g = torch.where(accepted[:, None], gy, g)
        e = torch.where(accepted, ey, e)
        acc.append(accepted.double().mean())
    return x, torch.stack(acc)


def test_mala_chain_equals_fused_per_step_path():
    model = seq_model([2, 32, 32, 1], "silu", seed=6)
    with torch.no_grad():  # a steep energy, so that some proposals are rejected
        model.net[0].weight.mul_(3)
        model.net[4].weight.mul_(20)
    x0 = torch.randn(100, 2, dtype=torch.float64)
    n = 30
    a = torch.full((n,), 0.3, dtype=torch.float64)
    b = torch.full((n,), math.sqrt(2 * 0.3), dtype=torch.float64)
    spec = recognised(model, x0)
    x, _, em, acc = mlpk.mlp_mala_chain(x0, **spec.op_args(), a=a, b=b, seed=7, record_energy=True)
    x_ref, em_ref, acc_ref = fused_mala(model, x0, a.tolist(), b.tolist(), 7)
    torch.testing.assert_close(acc, acc_ref, rtol=0, atol=0)
    assert 0.5 < float(acc.mean()) < 0.95
    torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-9)
    torch.testing.assert_close(em, em_ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("inv_mass", [None, torch.tensor([0.5, 2.0], dtype=torch.float64)])
def test_hmc_chain_equals_fused_per_step_path(inv_mass):
    model = seq_model([2, 32, 1], "tanh", seed=8)
    with torch.no_grad():  # a steep energy, so that some trajectories are rejected
        model.net[0].weight.mul_(3)
        model.net[2].weight.mul_(20)
    x0 = torch.randn(80, 2, dtype=torch.float64)
    eps = torch.full((12,), 0.2, dtype=torch.float64)
    spec = recognised(model, x0)
    x, _, _, acc = mlpk.mlp_hmc_chain(x0, **spec.op_args(), step_size=eps, n_leapfrog=4,
                                      inv_mass=inv_mass, seed=9)
    x_ref, acc_ref = fused_hmc(model, x0, eps.tolist(), 4, inv_mass, 9)
    torch.testing.assert_close(acc, acc_ref, rtol=0, atol=0)
    assert 0.5 < float(acc.mean()) < 1.0
    torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-9)


def test_references_match_the_ops():
    model = seq_model([2, 8, 1], "softplus", seed=10)
    x0 = torch.randn(9, 2, dtype=torch.float64)
    args = recognised(model, x0).op_args()
    a = torch.full((4,), 0.05, dtype=torch.float64)
    b = torch.full((4,), 0.3, dtype=torch.float64)
    kw = dict(seed=11, thin=2, record_trajectory=True, record_energy=True)
    for op, ref, extra in [
        (mlpk.mlp_langevin_chain, mlpk.mlp_langevin_chain_reference, dict(a=a, b=b)),
        (mlpk.mlp_mala_chain, mlpk.mlp_mala_chain_reference, dict(a=a, b=b)),
        (mlpk.mlp_hmc_chain, mlpk.mlp_hmc_chain_reference, dict(step_size=a, n_leapfrog=3)),
    ]:
        out, want = op(x0, **args, **extra, **kw), ref(x0, **args, **extra, **kw)
        assert len(out) == len(want)
        for o, w in zip(out, want):
            torch.testing.assert_close(o, w, rtol=1e-9, atol=1e-9)


def test_chains_do_not_depend_on_thread_count_or_batch_split():
    model = seq_model([3, 16, 16, 1], "gelu_tanh", dtype=torch.float32, seed=12)
    x0 = torch.randn(300, 3)
    args = recognised(model, x0).op_args()
    a, b = torch.full((10,), 0.01, dtype=torch.float64), torch.full((10,), 0.1, dtype=torch.float64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = mlpk.mlp_mala_chain(x0, **args, a=a, b=b, seed=3, record_energy=True)
        torch.set_num_threads(2)
        two = mlpk.mlp_mala_chain(x0, **args, a=a, b=b, seed=3, record_energy=True)
    finally:
        torch.set_num_threads(threads)
    for u, v in zip(one, two):
        assert torch.equal(u, v)
    # Each chain depends only on its own row (the noise index is global, so take a prefix).
    head = mlpk.mlp_mala_chain(x0[:70], **args, a=a, b=b, seed=3)
    assert torch.equal(head[0], one[0][:70])


def test_empty_batch_and_no_steps():
    model = seq_model([2, 4, 1], "relu", seed=13)
    args = recognised(model, torch.randn(2, 2, dtype=torch.float64)).op_args()
    x0 = torch.empty(0, 2, dtype=torch.float64)
    a = torch.full((3,), 0.1, dtype=torch.float64)
    x, traj, em = mlpk.mlp_langevin_chain(x0, **args, a=a, b=a, record_trajectory=True,
                                         record_energy=True)
    assert x.shape == (0, 2) and traj.shape == (0, 3, 2) and torch.equal(em, torch.zeros(3, dtype=torch.float64))
    x1 = torch.randn(5, 2, dtype=torch.float64)
    x, traj, em = mlpk.mlp_langevin_chain(x1, **args, a=a[:0], b=a[:0])
    assert torch.equal(x, x1) and traj.numel() == 0 and em.numel() == 0


def test_argument_errors_name_the_argument():
    model = seq_model([2, 4, 1], "relu", seed=14)
    x = torch.randn(3, 2, dtype=torch.float64)
    args = recognised(model, x).op_args()
    with pytest.raises(RuntimeError, match=r"mlp_energy_grad: weights\[1\] must have shape"):
        mlpk.mlp_energy_grad(x, [args["weights"][0], torch.zeros(1, 3, dtype=torch.float64)],
                             args["biases"], args["activations"], args["act_params"])
    with pytest.raises(RuntimeError, match=r"mlp_energy_grad: weights\[0\] must have x's dtype"):
        mlpk.mlp_energy_grad(x.float(), **args)
    with pytest.raises(RuntimeError, match=r"activations\[0\] must be an activation code"):
        mlpk.mlp_energy_grad(x, args["weights"], args["biases"], [99, 0], args["act_params"])
    a = torch.full((2,), 0.1, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"mlp_mala_chain: b\[1\] must be finite and > 0"):
        mlpk.mlp_mala_chain(x, **args, a=a, b=torch.tensor([0.1, 0.0], dtype=torch.float64))


def test_inputs_that_require_grad_are_refused():
    model = seq_model([2, 4, 1], "relu", seed=17)
    x = torch.randn(3, 2, dtype=torch.float64)
    args = recognised(model, x).op_args()
    with pytest.raises(RuntimeError, match=r"mlp_energy_grad: the op is not differentiable, but its argument x requires grad"):
        mlpk.mlp_energy_grad(x.clone().requires_grad_(), **args)
    live = dict(args, weights=[l.weight for l in recognised(model, x).layers])
    with pytest.raises(RuntimeError, match=r"argument weights\[0\] requires grad"):
        mlpk.mlp_energy_grad(x, **live)
    with torch.no_grad():
        mlpk.mlp_energy_grad(x, **live)


def test_fake_kernels_give_the_output_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    model = seq_model([2, 4, 1], "relu", seed=15)
    args = recognised(model, torch.randn(2, 2, dtype=torch.float64)).op_args()
    with FakeTensorMode(allow_non_fake_inputs=True):
        x0 = torch.empty(7, 2, dtype=torch.float64)
        a = torch.empty(6, dtype=torch.float64)
        out = mlpk.mlp_hmc_chain(x0, **args, step_size=a, n_leapfrog=2, thin=4,
                                 record_trajectory=True, record_energy=True)
        assert [tuple(o.shape) for o in out] == [(7, 2), (7, 1, 2), (6,), (6,)]
        e, g = mlpk.mlp_energy_grad(x0, **args)
        assert e.shape == (7,) and g.shape == (7, 2)
    # A meta tensor among real ones reaches the fake kernel, which refuses it.
    with pytest.raises(RuntimeError, match=r"mlp_energy_grad: weights\[0\] is on cpu but x is on meta"):
        mlpk.mlp_energy_grad(torch.empty(7, 2, dtype=torch.float64, device="meta"), **args)


def test_chain_op_compiles_with_fullgraph():
    model = seq_model([2, 8, 1], "tanh", seed=16)
    x0 = torch.randn(20, 2, dtype=torch.float64)
    args = recognised(model, x0).op_args()
    a = torch.full((5,), 0.01, dtype=torch.float64)

    def run(x):
        return mlpk.mlp_langevin_chain(x, **args, a=a, b=a, seed=3, thin=2,
                                       record_trajectory=True, record_energy=True)

    compiled = torch.compile(run, fullgraph=True, backend="aot_eager")
    for u, v in zip(compiled(x0), run(x0)):
        assert torch.equal(u, v)


# ---- statistics ------------------------------------------------------------------------------


@pytest.mark.slow
def test_mala_and_hmc_sample_a_one_dimensional_mlp_density():
    from scipy import stats

    # E(x) = sum_j w_j softplus(a_j x + c_j) + b with w_j > 0 and slopes a_j of both signs: it
    # grows linearly on both sides, so exp(-E) is normalisable; its CDF by quadrature.
    torch.manual_seed(16)
    model = SeqEnergy(nn.Linear(1, 8), nn.Softplus(), nn.Linear(8, 1)).double()
    with torch.no_grad():
        model.net[0].weight.copy_(torch.linspace(-2, 2, 8).view(8, 1))
        model.net[2].weight.abs_()
    grid = torch.linspace(-15, 15, 30001, dtype=torch.float64).view(-1, 1)
    spec = recognised(model, grid[:4])
    args = spec.op_args()
    with torch.no_grad():
        e = spec.energy(grid)
    cdf = torch.cumsum(torch.exp(-(e - e.min())), 0)
    cdf = (cdf / cdf[-1]).numpy()
    xs = grid.view(-1).numpy()
    x0 = torch.zeros(4000, 1, dtype=torch.float64)
    a = torch.full((400,), 0.2, dtype=torch.float64)
    mala = mlpk.mlp_mala_chain(x0, **args, a=a, b=torch.sqrt(2 * a), seed=17)[0]
    eps = torch.full((200,), 0.3, dtype=torch.float64)
    hmc = mlpk.mlp_hmc_chain(x0, **args, step_size=eps, n_leapfrog=5, seed=18)[0]
    for name, sample in (("mala", mala), ("hmc", hmc)):
        stat, p = stats.kstest(sample.view(-1).numpy(), lambda v: np.interp(v, xs, cdf))
        assert p > 1e-3, f"{name}: KS statistic {stat:.4f}, p = {p:.2e} (threshold p > 1e-3)"
