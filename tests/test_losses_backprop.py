"""``ContrastiveDivergence(backprop_through_chain=...)``: detached negatives by default, the
gradient of the unrolled Langevin chain on request.

Off, the loss's parameter gradient is that of the CD loss with the negatives as constants. On,
the negatives come from the sampler's own chain (equal to its reference path for the same
generator), and the gradient is the total derivative of the unrolled chain: checked against a
forward-mode derivative worked out by hand for a quadratic energy, and against central finite
differences of the loss itself for a small network.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from torchebm.core import BaseModel, ExponentialDecayScheduler
from torchebm.losses import ContrastiveDivergence, PersistentContrastiveDivergence
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics, MALA

F64 = torch.float64


class Quadratic(BaseModel):
    """``E(x) = w |x|^2 / 2 + c sum_i x_i``, scalar parameters ``w``, ``c``."""

    def __init__(self, w: float = 1.3, c: float = -0.4):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=F64))
        self.c = nn.Parameter(torch.tensor(c, dtype=F64))

    def forward(self, x):
        return 0.5 * self.w * x.square().sum(-1) + self.c * x.sum(-1)


class TinyNet(BaseModel):
    """``E(x) = v^T tanh(W x + u) + |x|^2 / 4`` on ``x [B, 2]``, 3 hidden units, float64."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(torch.randn(3, 2, generator=g, dtype=F64))
        self.u = nn.Parameter(torch.randn(3, generator=g, dtype=F64))
        self.v = nn.Parameter(torch.randn(3, generator=g, dtype=F64))

    def forward(self, x):
        return torch.tanh(x @ self.W.T + self.u) @ self.v + 0.25 * x.square().sum(-1)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def data(n: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 2, generator=gen(seed), dtype=F64)


def make(model, *, backprop: bool, k_steps: int = 4, alpha: float = 0.0, sampler_kw=None, **kw):
    sampler = LangevinDynamics(model, dtype=F64, **{"step_size": 0.05, **(sampler_kw or {})})
    return ContrastiveDivergence(
        model=model, sampler=sampler, k_steps=k_steps, energy_reg_weight=alpha,
        backprop_through_chain=backprop, **kw,
    )


def params_grad(loss, model):
    return torch.autograd.grad(loss, list(model.parameters()))


def constant_negatives_grad(model, x, negatives, alpha):
    """The CD loss's gradient with ``negatives`` constants (written out, not the loss's code)."""
    e_pos, e_neg = model(x), model(negatives.detach())
    loss = e_pos.mean() - e_neg.mean() + alpha * (e_pos.square().mean() + e_neg.square().mean())
    return params_grad(loss, model)


def assert_grads_close(got, expected, **tol):
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, **tol)


# ---------------------------------------------------------------- off: negatives are constants


@pytest.mark.parametrize("persistent", [False, True])
def test_off_the_gradient_treats_the_negatives_as_constants(persistent):
    model = TinyNet()
    cd = make(model, backprop=False, alpha=0.1, persistent=persistent, buffer_size=32, init_steps=2)
    assert cd.backprop_through_chain is False
    x = data()
    loss, negatives = cd(x, generator=gen(2))
    assert not negatives.requires_grad
    got = params_grad(loss, model)
    assert_grads_close(got, constant_negatives_grad(model, x, negatives, 0.1), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- on: the sampler's chain, differentiated


@pytest.mark.parametrize(
    "sampler_kw",
    [{}, dict(clamp=(-0.8, 0.9), grad_clip=0.3), dict(noise_std=0.02),
     dict(step_size=ExponentialDecayScheduler(0.1, 0.8))],
)
def test_on_the_negatives_are_the_samplers_reference_chain(sampler_kw):
    x = data()
    ref = make(TinyNet(), backprop=False, k_steps=6, sampler_kw={**sampler_kw, "backend": "reference"})
    unrolled = make(TinyNet(), backprop=True, k_steps=6, sampler_kw=copy.deepcopy(sampler_kw))
    for call in range(2):  # the second call continues the schedules on both
        _, expected = ref(x, generator=gen(10 + call))
        loss, got = unrolled(x, generator=gen(10 + call))
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        assert not got.requires_grad and loss.requires_grad
    if "clamp" in sampler_kw:
        assert float(got.min()) >= -0.8 and float(got.max()) <= 0.9
    for name in ("step_size", "noise_scale"):
        assert unrolled.sampler.schedulers[name].step_count == 12  # k_steps per call


def test_on_the_gradient_differs_from_the_constant_negatives_one():
    model = TinyNet()
    cd = make(model, backprop=True, alpha=0.1)
    x = data()
    loss, negatives = cd(x, generator=gen(3))
    got = params_grad(loss, model)
    detached = constant_negatives_grad(model, x, negatives, 0.1)
    gap = max(float((g - d).abs().max()) for g, d in zip(got, detached))
    assert gap > 1e-4, gap


def hand_unrolled_grad(model: Quadratic, x, cd, seed):
    """``dL/dw``, ``dL/dc`` of ``L = mean E(x+) - mean E(x_k)`` by forward-mode differentiation
    of the chain ``x_{t+1} = x_t - a_t (w x_t + c) + b_t xi_t``:
    ``dx_{t+1}/dw = (1 - a_t w) dx_t/dw - a_t x_t``, ``dx_{t+1}/dc = (1 - a_t w) dx_t/dc - a_t``,
    ``dE(x_k)/dw = |x_k|^2 / 2 + (w x_k + c) . dx_k/dw``, likewise for c. The noise xi_t is the
    loss's: ``k`` draws of ``randn([B, d])`` from the generator (CD draws nothing else)."""
    w, c = float(model.w.detach()), float(model.c.detach())
    g = gen(seed)
    sampler = copy.deepcopy(cd.sampler)  # the same schedules, not advanced here
    xt, dxw, dxc = x.clone(), torch.zeros_like(x), torch.zeros_like(x)
    for _ in range(cd.k_steps):
        a, b = sampler._coefficients()
        xi = torch.randn(x.shape, generator=g, dtype=F64)
        xt, dxw, dxc = (
            xt - a * (w * xt + c) + b * xi,
            (1 - a * w) * dxw - a * xt,
            (1 - a * w) * dxc - a,
        )
        sampler.step_schedulers()
    force = w * xt + c  # dE/dx at x_k
    dw = 0.5 * x.square().sum(-1).mean() - (0.5 * xt.square().sum(-1) + (force * dxw).sum(-1)).mean()
    dc = x.sum(-1).mean() - (xt.sum(-1) + (force * dxc).sum(-1)).mean()
    return dw, dc


@pytest.mark.parametrize(
    "sampler_kw",
    [{}, dict(noise_std=0.3), dict(step_size=ExponentialDecayScheduler(0.2, 0.7))],
)
def test_on_the_gradient_is_the_hand_unrolled_derivative_of_a_quadratic(sampler_kw):
    model = Quadratic()
    cd = make(model, backprop=True, k_steps=5, sampler_kw=sampler_kw)
    x = data()
    dw, dc = hand_unrolled_grad(model, x, cd, seed=4)
    loss, _ = cd(x, generator=gen(4))
    got_w, got_c = params_grad(loss, model)
    torch.testing.assert_close(got_w, dw, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_c, dc, rtol=1e-12, atol=1e-12)


def test_on_the_gradient_matches_finite_differences_of_the_loss():
    model = TinyNet(seed=5)
    cd = make(model, backprop=True, k_steps=6, alpha=0.05, sampler_kw=dict(step_size=0.1, grad_clip=50.0))
    x = data(n=8)
    loss, _ = cd(x, generator=gen(6))
    got = params_grad(loss, model)

    def loss_at() -> float:
        with torch.no_grad():
            return float(cd(x, generator=gen(6))[0])

    h = 1e-6
    for p, g in zip(model.parameters(), got):
        fd = torch.empty_like(p)
        for i in range(p.numel()):
            flat = p.data.view(-1)
            orig = float(flat[i])
            flat[i] = orig + h
            up = loss_at()
            flat[i] = orig - h
            down = loss_at()
            flat[i] = orig
            fd.view(-1)[i] = (up - down) / (2 * h)
        torch.testing.assert_close(g, fd, rtol=1e-6, atol=1e-8)
    # The detached gradient is not the derivative of this loss.
    _, negatives = cd(x, generator=gen(6))
    detached = constant_negatives_grad(model, x, negatives, 0.05)
    assert max(float((d - g).abs().max()) for d, g in zip(detached, got)) > 1e-4


# ---------------------------------------------------------------- reproducibility and bookkeeping


def test_a_generator_seed_reproduces_loss_negatives_and_gradient():
    def run(seed):
        model = TinyNet()
        cd = make(model, backprop=True, persistent=True, buffer_size=64, init_steps=3, new_sample_ratio=0.2)
        loss, negatives = cd(data(), generator=gen(seed))
        return loss, negatives, params_grad(loss, model)

    l1, n1, g1 = run(7)
    l2, n2, g2 = run(7)
    assert torch.equal(l1, l2) and torch.equal(n1, n2)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
    _, n3, _ = run(8)
    assert not torch.equal(n1, n3)


def test_persistent_buffer_stores_detached_negatives():
    model = TinyNet()
    sampler = LangevinDynamics(model, step_size=0.05, dtype=F64)
    cd = PersistentContrastiveDivergence(
        model=model, sampler=sampler, k_steps=4, buffer_size=32, init_steps=0, backprop_through_chain=True
    )
    loss, negatives = cd(data(), generator=gen(1))
    assert not cd.replay_buffer.requires_grad and cd.replay_buffer.grad_fn is None
    assert any(torch.equal(row, negatives[0]) for row in cd.replay_buffer)
    assert all(g.abs().sum() > 0 for g in params_grad(loss, model))


def test_under_no_grad_the_chain_runs_without_a_graph():
    x = data()
    with torch.no_grad():
        loss, negatives = make(TinyNet(), backprop=True)(x, generator=gen(2))
    assert not loss.requires_grad and not negatives.requires_grad
    loss_g, negatives_g = make(TinyNet(), backprop=True)(x, generator=gen(2))
    torch.testing.assert_close(negatives, negatives_g, rtol=0, atol=0)
    torch.testing.assert_close(loss, loss_g.detach(), rtol=0, atol=0)


@pytest.mark.parametrize("sampler_cls", [MALA, HamiltonianMonteCarlo])
def test_a_sampler_other_than_langevin_is_a_type_error(sampler_cls):
    model = TinyNet()
    sampler = sampler_cls(model, step_size=0.05, dtype=F64)
    with pytest.raises(TypeError, match=rf"backprop_through_chain=True .* LangevinDynamics sampler, got {sampler_cls.__name__}"):
        ContrastiveDivergence(model=model, sampler=sampler, backprop_through_chain=True)
    ContrastiveDivergence(model=model, sampler=sampler)  # off: any sampler
    cd = make(model, backprop=True)
    cd.sampler = sampler  # swapped after construction: caught at the call
    with pytest.raises(TypeError, match="LangevinDynamics sampler"):
        cd(data())
