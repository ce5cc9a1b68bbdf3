"""GradientDescentSampler and NesterovSampler (TorchEBM 0.8.9's deterministic samplers): the
recursions on a quadratic energy, where they have a closed form, on both paths; the 0.8.9
signatures, checks and repr."""

import inspect

import pytest
import torch

from torchebm.core import GaussianModel, LinearScheduler
from torchebm.samplers import GradientDescentSampler, NesterovSampler

F64 = torch.float64


def quadratic():
    cov = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64)
    return GaussianModel(torch.tensor([0.5, -1.0], dtype=F64), cov, dtype=F64)


def x0():
    return torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=F64)


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_gradient_descent_is_the_linear_recursion_on_a_quadratic(backend):
    model = quadratic()
    sampler = GradientDescentSampler(model, step_size=0.1, dtype=F64, backend=backend)
    out = sampler.sample(x=x0(), n_steps=25)
    # grad E = P (x - mu): x_n - mu = (I - eta P)^n (x_0 - mu)
    a = torch.eye(2, dtype=F64) - 0.1 * model.precision
    want = model.mean + (x0() - model.mean) @ torch.linalg.matrix_power(a, 25).T
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    assert sampler.last_path == ("fused" if backend == "auto" else "reference")


@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_nesterov_follows_its_recursion_with_a_scheduled_step(backend):
    model = quadratic()
    schedule = LinearScheduler(0.2, 0.05, 10)
    sampler = NesterovSampler(model, step_size=schedule, momentum=0.7, dtype=F64, backend=backend)
    out, diag = sampler.sample(x=x0(), n_steps=12, return_diagnostics=True)
    x, v = x0(), torch.zeros_like(x0())
    for eta in LinearScheduler(0.2, 0.05, 10).values(12):
        v = 0.7 * v - eta * ((x + 0.7 * v) - model.mean) @ model.precision.T
        x = x + v
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(diag["energy"][-1], model(x).mean(), rtol=1e-12, atol=1e-12)
    assert schedule.step_count == 12


def test_descent_reaches_the_mode():
    out = NesterovSampler(quadratic(), step_size=0.2, dtype=F64).sample(x=x0(), n_steps=300)
    torch.testing.assert_close(out, quadratic().mean.expand(6, 2), rtol=0, atol=1e-10)


def test_signatures_match_0_8_9():
    gd = list(inspect.signature(GradientDescentSampler.__init__).parameters)
    nv = list(inspect.signature(NesterovSampler.__init__).parameters)
    assert gd[1:5] == ["model", "step_size", "dtype", "device"]
    assert nv[1:6] == ["model", "step_size", "momentum", "dtype", "device"]
    assert inspect.signature(NesterovSampler.__init__).parameters["momentum"].default == 0.9


@pytest.mark.parametrize("momentum", [1.0, -0.1, float("nan")])
def test_momentum_outside_unit_interval_is_refused(momentum):
    with pytest.raises(ValueError, match="momentum must be"):
        NesterovSampler(quadratic(), momentum=momentum)


def test_repr_names_model_and_parameters():
    assert repr(GradientDescentSampler(quadratic(), step_size=0.1)) == (
        "GradientDescentSampler(model=GaussianModel, step_size=0.1)"
    )
    assert repr(NesterovSampler(quadratic(), step_size=0.1, momentum=0.5)) == (
        "NesterovSampler(model=GaussianModel, step_size=0.1, momentum=0.5)"
    )


def test_no_whole_chain_kernel_is_claimed():
    sampler = GradientDescentSampler(quadratic(), step_size=0.1, dtype=F64)
    sampler.sample(x=x0(), n_steps=2)
    assert sampler.last_route.skipped == ("chain: GradientDescentSampler has no whole-chain kernel",)
