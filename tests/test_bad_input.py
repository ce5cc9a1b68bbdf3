"""Bad input: each case raises an error that names the argument and the value received.

Documented choices pinned here:
* ``x`` on another CPU/CUDA device is moved to the sampler's device, and an integer ``x`` is
  cast to the chain dtype (a floating ``x`` keeps its dtype: tests/test_dtype_rule.py), not
  rejected;
* ``n_steps=0`` is valid (returns ``x`` itself, as in 0.8.9); negative ``n_steps`` is not;
* ``n_samples`` is ignored when ``x`` is given (0.8.9), but a ``dim`` that contradicts ``x``
  raises.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.core import BaseModel, ConstantScheduler, DoubleWellModel, GaussianModel
from torchebm.kernels import dispatch
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics, MetropolisAdjustedLangevin

SAMPLERS = [LangevinDynamics, HamiltonianMonteCarlo, MetropolisAdjustedLangevin]


def gaussian():
    return GaussianModel(torch.zeros(2), torch.eye(2))


@pytest.fixture(params=SAMPLERS, ids=lambda c: c.__name__)
def sampler(request):
    return request.param(gaussian(), step_size=0.1)


# ------------------------------------------------------------------ constructor arguments
@pytest.mark.parametrize("cls", SAMPLERS)
def test_zero_step_size(cls):
    with pytest.raises(ValueError, match=r"step_size must be positive, got 0\.0"):
        cls(gaussian(), step_size=0.0)


@pytest.mark.parametrize("cls", SAMPLERS)
def test_negative_step_size(cls):
    with pytest.raises(ValueError, match=r"step_size must be positive, got -0\.1"):
        cls(gaussian(), step_size=-0.1)


@pytest.mark.parametrize("cls", SAMPLERS)
def test_nan_step_size(cls):
    with pytest.raises(ValueError, match=r"step_size must be finite, got nan"):
        cls(gaussian(), step_size=float("nan"))


@pytest.mark.parametrize("cls", SAMPLERS)
def test_non_numeric_step_size(cls):
    with pytest.raises(TypeError, match=r"step_size must be a float or a BaseScheduler, got '0\.1'"):
        cls(gaussian(), step_size="0.1")


@pytest.mark.parametrize("cls", [LangevinDynamics, MetropolisAdjustedLangevin])
def test_zero_noise_scale(cls):
    with pytest.raises(ValueError, match=r"noise_scale must be positive, got 0\.0"):
        cls(gaussian(), noise_scale=0.0)


def test_zero_noise_scale_as_scheduler_is_allowed():
    LangevinDynamics(gaussian(), noise_scale=ConstantScheduler(0.0))


def test_negative_noise_std():
    with pytest.raises(ValueError, match=r"noise_std must be non-negative, got -1\.0"):
        LangevinDynamics(gaussian(), noise_std=-1.0)


def test_non_positive_grad_clip():
    with pytest.raises(ValueError, match=r"grad_clip must be positive, got 0\.0"):
        LangevinDynamics(gaussian(), grad_clip=0.0)


def test_clamp_min_not_below_max():
    with pytest.raises(ValueError, match=r"clamp min must be < max, got \(1\.0, -1\.0\)"):
        LangevinDynamics(gaussian(), clamp=(1.0, -1.0))


def test_clamp_not_a_pair():
    with pytest.raises(ValueError, match=r"clamp must be a \(min, max\) pair, got \(0\.0,\)"):
        LangevinDynamics(gaussian(), clamp=(0.0,))


def test_zero_leapfrog_steps():
    with pytest.raises(ValueError, match=r"n_leapfrog_steps must be positive \(>= 1\), got 0"):
        HamiltonianMonteCarlo(gaussian(), n_leapfrog_steps=0)


def test_fractional_leapfrog_steps():
    with pytest.raises(TypeError, match=r"n_leapfrog_steps must be an int, got 2\.5"):
        HamiltonianMonteCarlo(gaussian(), n_leapfrog_steps=2.5)


def test_negative_mass():
    with pytest.raises(ValueError, match=r"mass must be positive and finite, got -1\.0"):
        HamiltonianMonteCarlo(gaussian(), mass=-1.0)


def test_mass_tensor_with_a_non_positive_entry():
    with pytest.raises(ValueError, match=r"mass must be positive and finite, got tensor\(\[1\., 0\.\]\)"):
        HamiltonianMonteCarlo(gaussian(), mass=torch.tensor([1.0, 0.0]))


def test_mass_tensor_of_the_wrong_rank():
    with pytest.raises(ValueError, match=r"mass must be a float or a 1-D floating tensor.*shape \(2, 2\)"):
        HamiltonianMonteCarlo(gaussian(), mass=torch.eye(2))


def test_mass_that_does_not_fit_the_state():
    s = HamiltonianMonteCarlo(gaussian(), mass=torch.ones(3))
    with pytest.raises(ValueError, match=r"mass of shape \(3,\) does not match states of dimension 2"):
        s.sample(dim=2, n_samples=2, n_steps=1)


@pytest.mark.parametrize("cls", SAMPLERS)
def test_unknown_backend(cls):
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'fused', 'reference', 'compiled'\), got 'gpu'"):
        cls(gaussian(), backend="gpu")


@pytest.mark.parametrize("cls", SAMPLERS)
def test_unknown_integrator(cls):
    with pytest.raises(ValueError, match=r"integrator must be None or .*got 'rk4'"):
        cls(gaussian(), integrator="rk4")


@pytest.mark.parametrize("cls", SAMPLERS)
def test_missing_model(cls):
    with pytest.raises(TypeError, match=r"missing the model to sample from"):
        cls()


@pytest.mark.parametrize("cls", SAMPLERS)
def test_model_that_is_not_a_module(cls):
    with pytest.raises(TypeError, match=r"model must be an nn.Module .*got function"):
        cls(lambda x: x.sum(-1))


@pytest.mark.parametrize("cls", SAMPLERS)
def test_model_and_energy_function_both_given(cls):
    with pytest.raises(TypeError, match=r"both model= and energy_function="):
        cls(gaussian(), energy_function=gaussian())


@pytest.mark.parametrize("cls", SAMPLERS)
def test_non_floating_dtype(cls):
    with pytest.raises(TypeError, match=r"dtype must be a floating-point torch.dtype, got torch.int64"):
        cls(gaussian(), dtype=torch.int64)


# ------------------------------------------------------------------ sample() arguments
def test_negative_n_steps(sampler):
    with pytest.raises(ValueError, match=r"n_steps must be >= 0, got -5"):
        sampler.sample(dim=2, n_steps=-5)


def test_fractional_n_steps(sampler):
    with pytest.raises(TypeError, match=r"n_steps must be an int, got 2\.5"):
        sampler.sample(dim=2, n_steps=2.5)


def test_integral_float_counts_are_accepted_alike(sampler):
    # One count check for every integer argument: 2.0 is 2 for n_samples as for n_steps.
    out = sampler.sample(dim=2, n_samples=3.0, n_steps=2.0, thin=1.0)
    assert out.shape == (3, 2)
    with pytest.raises(TypeError, match=r"n_samples must be an int, got 2\.5"):
        sampler.sample(dim=2, n_samples=2.5, n_steps=1)


def test_zero_thin(sampler):
    with pytest.raises(ValueError, match=r"thin must be positive \(>= 1\), got 0"):
        sampler.sample(dim=2, n_steps=5, thin=0)


def test_negative_thin(sampler):
    with pytest.raises(ValueError, match=r"thin must be positive \(>= 1\), got -2"):
        sampler.sample(dim=2, n_steps=5, thin=-2)


def test_zero_n_samples(sampler):
    with pytest.raises(ValueError, match=r"n_samples must be positive \(>= 1\), got 0"):
        sampler.sample(dim=2, n_samples=0, n_steps=1)


def test_n_chains_contradicting_n_samples(sampler):
    with pytest.raises(ValueError, match=r"n_chains=3 .* disagrees with n_samples=5"):
        sampler.sample(dim=2, n_samples=5, n_chains=3, n_steps=1)


def test_non_positive_dim(sampler):
    with pytest.raises(ValueError, match=r"dim must be a positive int or a tuple of positive ints, got 0"):
        sampler.sample(dim=0, n_samples=2, n_steps=1)


def test_dim_tuple_with_a_negative_entry(sampler):
    with pytest.raises(ValueError, match=r"dim must be .* got \(2, -1\)"):
        sampler.sample(dim=(2, -1), n_samples=2, n_steps=1)


def test_missing_dim_that_cannot_be_inferred():
    s = LangevinDynamics(DoubleWellModel(), step_size=0.1)
    with pytest.raises(ValueError, match=r"dim must be provided when x is None .*DoubleWellModel"):
        s.sample(n_samples=2, n_steps=1)


def test_dim_contradicting_x(sampler):
    with pytest.raises(ValueError, match=r"dim=3 does not match x of shape \(4, 2\)"):
        sampler.sample(x=torch.zeros(4, 2), dim=3, n_steps=1)


def test_scalar_x(sampler):
    with pytest.raises(ValueError, match=r"x must have shape \[n_samples, \*event\].*0-d"):
        sampler.sample(x=torch.tensor(1.0), n_steps=1)


def test_x_with_no_chains(sampler):
    with pytest.raises(ValueError, match=r"x must hold at least one chain of at least one element, got shape \(0, 2\)"):
        sampler.sample(x=torch.zeros(0, 2), n_steps=1)


def test_x_of_the_wrong_event_size_for_the_model(sampler):
    with pytest.raises(ValueError, match=r"GaussianModel is defined for dimension 2, got states of dimension 3"):
        sampler.sample(x=torch.zeros(4, 3), n_steps=1)


def test_x_that_is_not_a_tensor(sampler):
    with pytest.raises(TypeError, match=r"x must be a torch.Tensor, got list"):
        sampler.sample(x=[[0.0, 0.0]], n_steps=1)


def test_nan_in_x(sampler):
    x = torch.zeros(4, 2)
    x[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"x must be finite, got 1 NaN and 0 infinite values \(first at index \(1, 0\): nan\)"):
        sampler.sample(x=x, n_steps=1)


def test_inf_in_x(sampler):
    x = torch.zeros(4, 2)
    x[2, 1] = float("inf")
    with pytest.raises(ValueError, match=r"x must be finite, got 0 NaN and 1 infinite values \(first at index \(2, 1\): inf\)"):
        sampler.sample(x=x, n_steps=1)


def test_complex_x(sampler):
    with pytest.raises(TypeError, match=r"x must be real, got dtype torch.complex64"):
        sampler.sample(x=torch.zeros(2, 2, dtype=torch.complex64), n_steps=1)


def test_float64_x_keeps_its_dtype(sampler):
    # No dtype= given: the chains take x's dtype (the dtype rule, tests/test_dtype_rule.py).
    out = sampler.sample(x=torch.zeros(3, 2, dtype=torch.float64), n_steps=2)
    assert out.dtype == torch.float64


def test_integer_x_is_cast_to_the_sampler_dtype(sampler):
    out = sampler.sample(x=torch.zeros(3, 2, dtype=torch.int64), n_steps=2)
    assert out.dtype == torch.float32


def test_x_on_a_device_without_data(sampler):
    with pytest.raises(ValueError, match=r"x is on device meta"):
        sampler.sample(x=torch.zeros(3, 2, device="meta"), n_steps=1)


def test_model_on_another_device_than_the_sampler():
    model = gaussian()
    s = LangevinDynamics(model, step_size=0.1)
    model.to("meta")
    with pytest.raises(ValueError, match=r"the model is on meta but the sampler on cpu"):
        s.sample(dim=2, n_samples=2, n_steps=1)


def test_y_given_twice(sampler):
    with pytest.raises(ValueError, match=r"y given both as y= and as model_kwargs\['y'\]"):
        sampler.sample(dim=2, n_steps=1, y=torch.zeros(1), model_kwargs={"y": torch.zeros(1)})


def test_model_kwargs_not_a_dict(sampler):
    with pytest.raises(TypeError, match=r"model_kwargs must be a dict, got list"):
        sampler.sample(dim=2, n_steps=1, model_kwargs=[1])


def test_generator_of_the_wrong_type(sampler):
    with pytest.raises(TypeError, match=r"generator must be a torch.Generator, got int"):
        sampler.sample(dim=2, n_steps=1, generator=0)


def test_fused_backend_without_an_applicable_kernel(monkeypatch):
    monkeypatch.setattr(dispatch, "op_blocker", lambda name, device: f"{name} missing (test)")
    s = LangevinDynamics(gaussian(), step_size=0.1, backend="fused")
    with pytest.raises(dispatch.NoKernelError, match=r"backend='fused' but no compiled kernel applies.*langevin_chain missing"):
        s.sample(dim=2, n_samples=2, n_steps=1)


def test_model_returning_the_wrong_energy_shape():
    class Bad(BaseModel):
        def forward(self, x):
            return x  # [B, d], not [B]

    s = MetropolisAdjustedLangevin(Bad(), step_size=0.1)
    with pytest.raises(ValueError, match=r"Bad.forward must return one energy per chain, shape \(2,\) .* got shape \(2, 2\)"):
        s.sample(dim=2, n_samples=3, n_steps=1)


def test_plain_module_without_gradient_is_sampled_through_autograd():
    class Plain(nn.Module):
        def forward(self, x):
            return 0.5 * (x * x).sum(-1)

    out = LangevinDynamics(Plain(), step_size=0.1).sample(dim=2, n_samples=3, n_steps=2)
    assert out.shape == (3, 2)
