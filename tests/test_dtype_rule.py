"""The chain dtype rule (issue 11), for every sampler and backend.

Rule: an explicit ``dtype=`` is honoured; otherwise the chains take ``x``'s dtype when a floating
``x`` is given, else the model's floating parameter dtype (a parameter-less model: its
``dtype``), else the default dtype. Half dtypes integrate in float32 and return half. Warnings:
one, at construction, only for an explicit full-precision ``dtype=`` that differs from the
model's parameters; none otherwise.
"""

from __future__ import annotations

import itertools
import warnings

import pytest
import torch
from torch import nn

from torchebm.core import BaseModel, DoubleWellModel, GaussianModel, TorchEBMModule
from torchebm.samplers import (
    GradientDescentSampler,
    HamiltonianMonteCarlo,
    LangevinDynamics,
    MetropolisAdjustedLangevin,
    NesterovSampler,
)

F32, F64, BF16 = torch.float32, torch.float64, torch.bfloat16

SAMPLERS = {
    "langevin": lambda m, **kw: LangevinDynamics(m, step_size=0.01, noise_scale=0.1, **kw),
    "mala": lambda m, **kw: MetropolisAdjustedLangevin(m, step_size=0.01, **kw),
    "hmc": lambda m, **kw: HamiltonianMonteCarlo(m, step_size=0.05, n_leapfrog_steps=2, **kw),
    "gd": lambda m, **kw: GradientDescentSampler(m, step_size=0.01, **kw),
    "nesterov": lambda m, **kw: NesterovSampler(m, step_size=0.01, momentum=0.9, **kw),
}
BACKENDS = ("auto", "fused", "reference")


class Net(BaseModel):
    """``E(x) = sum_j w_j (x_j - m_j)^2 / 2 + sum_j tanh(x_j)``: parameters, elementwise only
    (bfloat16 matrix products are slow on some CPUs, and the rule is about dtypes)."""

    def __init__(self):
        super().__init__()
        self.m = nn.Parameter(torch.tensor([0.5, -0.5]))
        self.w = nn.Parameter(torch.tensor([1.0, 2.0]))

    def forward(self, x):
        return (0.5 * self.w * (x - self.m) ** 2 + torch.tanh(x)).sum(-1)


def expected(dtype_arg, model_dtype, x_dtype):
    if dtype_arg is not None:
        return dtype_arg
    if x_dtype is not None:
        return x_dtype
    return model_dtype


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_combination_of_dtype_model_and_x(sampler, backend):
    # dtype given or not x model dtype x x given (and its dtype) or not: 4 * 3 * 3 = 36 cases.
    models = {dt: Net().to(dt) for dt in (F32, F64, BF16)}  # one each: the MLP check caches per model
    for dtype_arg, model_dtype, x_dtype in itertools.product(
        (None, F32, F64, BF16), (F32, F64, BF16), (None, F32, F64)
    ):
        model = models[model_dtype]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kw = {} if dtype_arg is None else {"dtype": dtype_arg}
            s = SAMPLERS[sampler](model, backend=backend, **kw)
            gen = torch.Generator().manual_seed(1)
            if x_dtype is None:
                out = s.sample(dim=2, n_samples=5, n_steps=3, generator=gen)
            else:
                out = s.sample(x=torch.randn(5, 2, dtype=x_dtype), n_steps=3, generator=gen)
        case = f"dtype={dtype_arg}, model {model_dtype}, x {x_dtype}"
        want = expected(dtype_arg, model_dtype, x_dtype)
        assert out.dtype == want, case
        assert out.shape == (5, 2) and torch.isfinite(out.float()).all(), case
        mismatch = dtype_arg in (F32, F64) and dtype_arg != model_dtype
        messages = [str(w.message) for w in caught]
        if mismatch:
            assert len(messages) == 1 and "model is evaluated in" in messages[0], (case, messages)
        else:
            assert messages == [], (case, messages)
        if x_dtype is None:
            assert s.dtype == (dtype_arg or model_dtype), case


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_a_parameterless_model_gives_its_dtype(sampler):
    # GaussianModel has buffers only: its dtype (which follows .double()) is the chains'.
    model = GaussianModel(torch.zeros(2), torch.eye(2)).double()
    s = SAMPLERS[sampler](model)
    assert s.dtype == F64
    assert s.sample(dim=2, n_samples=3, n_steps=2).dtype == F64
    assert s.sample(x=torch.zeros(3, 2), n_steps=2).dtype == F32  # x's dtype wins


def test_without_model_dtype_the_default_dtype_is_used():
    class Quadratic(nn.Module):  # a plain module, no parameters, no dtype
        def forward(self, x):
            return 0.5 * (x * x).sum(-1)

    s = LangevinDynamics(Quadratic(), step_size=0.01)
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(F64)
        assert s.dtype == F64 and s.sample(dim=2, n_samples=2, n_steps=2).dtype == F64
    finally:
        torch.set_default_dtype(previous)
    assert s.sample(dim=2, n_samples=2, n_steps=2).dtype == F32


def test_integer_x_takes_the_model_dtype():
    s = LangevinDynamics(Net().double(), step_size=0.01)
    assert s.sample(x=torch.zeros(3, 2, dtype=torch.int64), n_steps=2).dtype == F64


def test_model_double_float64_x_stays_float64_as_in_0_8_9():
    # The reported case: model.double(), float64 x, the sampler's default dtype.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = LangevinDynamics(Net().double(), step_size=0.01, noise_scale=0.1)
        out = s.sample(x=torch.randn(4, 2, dtype=F64), n_steps=5)
    assert out.dtype == F64


@pytest.mark.parametrize("backend", BACKENDS)
def test_half_dtype_is_integrated_in_float32_and_returned_in_half(backend):
    # The double well's gradient is elementwise (autocast leaves it in float32; a Gaussian's
    # is a matmul, which CPU autocast runs in bfloat16), so an explicit bfloat16 sampler must
    # give exactly the float32 chains, rounded once at the end.
    model = DoubleWellModel()
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    half = LangevinDynamics(model, step_size=0.01, dtype=BF16, backend=backend)
    full = LangevinDynamics(model, step_size=0.01, dtype=F32, backend=backend)
    out = half.sample(x=x, n_steps=20, generator=torch.Generator().manual_seed(3))
    ref = full.sample(x=x, n_steps=20, generator=torch.Generator().manual_seed(3))
    assert half.state_dtype() == F32 and out.dtype == BF16
    torch.testing.assert_close(out, ref.to(BF16), rtol=0, atol=0)
    traj = half.sample(x=x, n_steps=4, return_trajectory=True)
    assert traj.dtype == BF16 and traj.shape == (64, 4, 2)


def test_bfloat16_model_and_dtype_on_the_cpu_one_behaviour_no_warning():
    # Issue 11: LangevinDynamics(m_bf16, ..., dtype=torch.bfloat16) printed three contradictory
    # warnings and returned float32. Now: CPU autocast in bfloat16, bfloat16 chains, silently.
    model = Net().to(BF16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = LangevinDynamics(model, step_size=0.01, noise_scale=0.1, dtype=BF16)
        out = s.sample(dim=2, n_samples=8, n_steps=5)
    assert s.use_mixed_precision and s.autocast_available and s.amp_dtype == BF16
    assert out.dtype == BF16 and torch.isfinite(out.float()).all()


def test_explicit_half_dtype_evaluates_a_float32_model_under_autocast():
    seen = []

    class Probe(Net):
        def forward(self, x):
            if not torch.compiler.is_compiling():  # not the torch.export trace of the MLP check
                seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
            return super().forward(x)

    s = LangevinDynamics(Probe(), step_size=0.01, dtype=BF16, backend="reference")
    s.sample(dim=2, n_samples=3, n_steps=2)
    assert seen and all(on and dt == BF16 for on, dt in seen)


def test_autocast_available_exists_as_in_0_8_9():
    module = TorchEBMModule()
    assert module.autocast_available is False
    module.setup_mixed_precision(True, BF16)
    assert module.autocast_available is True
    module.setup_mixed_precision(False)
    assert module.autocast_available is False


@pytest.mark.parametrize("dtype", [torch.float16, BF16, F32, F64])
def test_force_fp32_gradient_computes_in_float32_for_every_input_dtype(dtype):
    seen = []

    class Probe(Net):
        force_fp32_gradient = True

        def forward(self, x):
            seen.append(x.dtype)
            return super().forward(x)

    model = Probe()  # float32 weights: the float32 forward works for inputs of any dtype
    x = torch.randn(4, 2, dtype=dtype)
    grad = model.gradient(x)
    assert seen == [F32]  # the forward of the gradient ran in float32, float64 input included
    assert grad.dtype == dtype and grad.shape == x.shape
