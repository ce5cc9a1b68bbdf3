"""Models: energies, closed-form gradients, kernel specs, argument checks, old names, dtype and
device handling, and the module base class."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import torchebm.core as core
from torchebm import kernels
from torchebm.core import analytic_models
from torchebm.kernels import reference
from torchebm.kernels.analytic_registry import ANALYTIC_KERNELS
from torchebm.core import (
    AckleyModel,
    AnalyticModel,
    BananaModel,
    BaseEnergyFunction,
    BaseModel,
    BoothModel,
    CompositeEnergy,
    CompositeModel,
    DoubleWellModel,
    EnergyModel,
    GaussianModel,
    HarmonicModel,
    HimmelblauModel,
    MLP,
    RastriginModel,
    RosenbrockModel,
    StyblinskiTangModel,
    TorchEBMModule,
    warn_once,
)

F64 = torch.float64
COV = [[1.0, 0.5], [0.5, 2.0]]


def gaussian(dim: int = 3, dtype=F64) -> GaussianModel:
    g = torch.Generator().manual_seed(dim)
    a = torch.randn(dim, dim, generator=g, dtype=F64)
    return GaussianModel(
        torch.randn(dim, generator=g, dtype=F64),
        a @ a.T + dim * torch.eye(dim, dtype=F64),
        dtype=dtype,
    )


# (factory, state dimensions it is defined for), all in float64.
ANALYTIC = {
    "gaussian": (lambda: gaussian(3), (3,)),
    "double_well": (lambda: DoubleWellModel(barrier_height=1.5, b=0.7, dtype=F64), (1, 2, 5)),
    "harmonic": (lambda: HarmonicModel(k=2.5, dtype=F64), (1, 2, 5)),
    "rosenbrock": (lambda: RosenbrockModel(a=0.5, b=3.0, dtype=F64), (2, 3, 5)),
    "ackley": (lambda: AckleyModel(dtype=F64), (1, 2, 5)),
    "rastrigin": (lambda: RastriginModel(a=3.0, dtype=F64), (1, 2, 5)),
    "himmelblau": (lambda: HimmelblauModel(dtype=F64), (2,)),
    "booth": (lambda: BoothModel(dtype=F64), (2,)),
    "styblinski_tang": (lambda: StyblinskiTangModel(dtype=F64), (1, 2, 5)),
    "banana": (lambda: BananaModel(curvature=0.4, scale=1.5, dtype=F64), (2, 3, 5)),
}


def autograd_gradient(model: BaseModel, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    (g,) = torch.autograd.grad(model(x).sum(), x)
    return g


# --- energies against hand formulas ----------------------------------------------------------


def test_gaussian_energy_is_half_mahalanobis_distance():
    model = GaussianModel(torch.tensor([1.0, -1.0]), torch.tensor(COV), dtype=F64)
    x = torch.tensor([[2.0, 1.0], [1.0, -1.0]], dtype=F64)
    diff = x - torch.tensor([1.0, -1.0], dtype=F64)
    expected = 0.5 * torch.einsum(
        "bi,ij,bj->b", diff, torch.linalg.inv(torch.tensor(COV, dtype=F64)), diff
    )
    torch.testing.assert_close(model(x), expected)
    assert model(x)[1] == 0.0


def test_double_well_energy_has_wells_at_plus_minus_b_and_barrier_h_b4():
    model = DoubleWellModel(barrier_height=2.0, b=1.5, dtype=F64)
    x = torch.tensor([[1.5, -1.5], [0.0, 1.5], [0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(model(x), torch.tensor([0.0, 2.0 * 1.5**4, 4.0 * 1.5**4], dtype=F64))


def test_harmonic_energy_is_half_k_squared_norm():
    x = torch.tensor([[1.0, 2.0, -2.0]], dtype=F64)
    torch.testing.assert_close(HarmonicModel(k=3.0)(x), torch.tensor([13.5], dtype=F64))


def test_rosenbrock_energy_matches_sum_over_consecutive_pairs():
    x = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 2.0]], dtype=F64)
    # second row: (1-0)^2 + 100(0-0)^2 + (1-0)^2 + 100(2-0)^2
    torch.testing.assert_close(RosenbrockModel()(x), torch.tensor([0.0, 402.0], dtype=F64))


def test_ackley_energy_is_zero_at_origin_and_matches_formula_elsewhere():
    model = AckleyModel()
    assert abs(model(torch.zeros(1, 4, dtype=F64)).item()) < 1e-12
    x = [0.5, -1.0]
    r = math.sqrt((0.25 + 1.0) / 2)
    s = (math.cos(2 * math.pi * 0.5) + math.cos(2 * math.pi * -1.0)) / 2
    expected = -20 * math.exp(-0.2 * r) - math.exp(s) + 20 + math.e
    assert model(torch.tensor([x], dtype=F64)).item() == pytest.approx(expected, rel=1e-12)


def test_rastrigin_energy_is_zero_at_origin_and_counts_a_per_dimension():
    model = RastriginModel(a=10.0)
    assert model(torch.zeros(1, 3, dtype=F64)).item() == pytest.approx(0.0, abs=1e-12)
    # x = 0.5 in every coordinate: cos(pi) = -1, so each term is 0.25 + 10
    assert model(torch.full((1, 3), 0.5, dtype=F64)).item() == pytest.approx(30 + 3 * 10.25)


@pytest.mark.parametrize(
    "minimum", [(3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126)]
)
def test_himmelblau_energy_vanishes_at_its_four_minima(minimum):
    assert HimmelblauModel()(torch.tensor([minimum], dtype=F64)).item() < 1e-9


def test_booth_energy_vanishes_at_one_three_and_matches_formula():
    model = BoothModel()
    assert model(torch.tensor([[1.0, 3.0]], dtype=F64)).item() == 0.0
    assert model(torch.tensor([[0.0, 0.0]], dtype=F64)).item() == 49.0 + 25.0


def test_styblinski_tang_energy_matches_formula_and_minimum():
    model = StyblinskiTangModel()
    x = torch.full((1, 2), -2.903534, dtype=F64)
    assert model(x).item() == pytest.approx(2 * -39.16617, rel=1e-6)
    assert model(torch.tensor([[1.0]], dtype=F64)).item() == pytest.approx(0.5 * (1 - 16 + 5))


def test_banana_energy_is_half_squared_norm_in_untwisted_coordinates():
    # x = (s z1, y - b (x1^2 - s^2), z3): E = (z1^2 + y^2 + z3^2) / 2, the standard normal's.
    b, s = 0.4, 1.5
    z = torch.tensor([[0.3, -1.2, 2.0], [-2.0, 0.5, 0.0], [0.0, 0.0, 0.0]], dtype=F64)
    x1 = s * z[:, 0]
    x = torch.stack([x1, z[:, 1] - b * (x1 * x1 - s * s), z[:, 2]], -1)
    model = BananaModel(curvature=b, scale=s, dtype=F64)
    torch.testing.assert_close(model(x), 0.5 * (z * z).sum(-1))
    assert BananaModel(curvature=0.0, scale=1.0)(torch.tensor([[1.0, 2.0]])).item() == 2.5
    with pytest.raises(ValueError, match="dimension >= 2, got dimension 1"):
        model(torch.zeros(3, 1, dtype=F64))
    with pytest.raises(ValueError, match="scale must be positive"):
        BananaModel(scale=0.0)


# --- closed-form gradients against autograd ---------------------------------------------------

CASES = [(name, dim) for name, (_, dims) in ANALYTIC.items() for dim in dims]


@pytest.mark.parametrize("name,dim", CASES)
@pytest.mark.parametrize("batch", [1, 7])
def test_closed_form_gradient_matches_autograd(name, dim, batch):
    model = ANALYTIC[name][0]()
    x = 2.0 * torch.randn(
        batch, dim, generator=torch.Generator().manual_seed(batch * 10 + dim), dtype=F64
    )
    torch.testing.assert_close(
        model.gradient(x), autograd_gradient(model, x), rtol=1e-10, atol=1e-10
    )


@settings(max_examples=40, deadline=None)
@given(
    name=st.sampled_from(sorted(ANALYTIC)),
    data=st.data(),
)
def test_closed_form_gradient_matches_autograd_at_arbitrary_points(name, data):
    factory, dims = ANALYTIC[name]
    dim = data.draw(st.sampled_from(dims))
    # No subnormals: there the oracle itself breaks (autograd of Ackley's sqrt of an underflowed
    # norm gives inf); the closed form's behaviour at such points is pinned by
    # test_ackley_gradient_keeps_the_cone_slope_where_the_squared_norm_underflows.
    values = data.draw(
        st.lists(
            st.floats(-4.0, 4.0, allow_subnormal=False), min_size=2 * dim, max_size=2 * dim
        )
    )
    x = torch.tensor(values, dtype=F64).reshape(2, dim)
    model = factory()
    expected = autograd_gradient(model, x)
    torch.testing.assert_close(
        model.gradient(x), expected, rtol=1e-9, atol=1e-9 * (1 + expected.abs().max().item())
    )


@pytest.mark.parametrize("name", sorted(ANALYTIC))
def test_analytic_models_accept_a_single_unbatched_state(name):
    factory, dims = ANALYTIC[name]
    model = factory()
    x = torch.linspace(-1.0, 1.5, dims[-1], dtype=F64)
    energy = model(x)
    assert energy.shape == (1,)
    torch.testing.assert_close(energy, model(x.unsqueeze(0)))
    grad = model.gradient(x)
    assert grad.shape == x.shape
    torch.testing.assert_close(grad, model.gradient(x.unsqueeze(0)).squeeze(0))


def test_ackley_gradient_keeps_the_cone_slope_where_the_squared_norm_underflows():
    model = AckleyModel()
    x = torch.tensor([[1e-200, 0.0], [-1e-170, 1e-170]], dtype=F64)
    slope = 20.0 * 0.2 / math.sqrt(2.0)  # a b / sqrt(d): the ripple term is ~1e-170 here
    expected = torch.tensor([[slope, 0.0], [-slope / math.sqrt(2), slope / math.sqrt(2)]])
    torch.testing.assert_close(model.gradient(x), expected.to(F64))
    assert model(x).abs().max().item() < 1e-12


def test_ackley_gradient_is_zero_not_nan_at_the_origin():
    model = AckleyModel()
    x = torch.zeros(3, 4, dtype=F64)
    assert torch.equal(model.gradient(x), torch.zeros_like(x))
    assert torch.equal(autograd_gradient(model, x), torch.zeros_like(x))


@pytest.mark.parametrize("name", sorted(ANALYTIC))
def test_gradient_is_detached_and_works_under_no_grad(name):
    factory, dims = ANALYTIC[name]
    model = factory()
    x = torch.randn(4, dims[0], dtype=F64, requires_grad=True)
    with torch.no_grad():
        g = model.gradient(x)
    assert not g.requires_grad and g.grad_fn is None
    assert x.grad is None


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", sorted(ANALYTIC))
def test_energy_and_gradient_are_computed_in_the_input_dtype(name, dtype):
    model = ANALYTIC[name][0]()
    x = torch.randn(3, ANALYTIC[name][1][0], dtype=dtype)
    assert model(x).dtype == dtype
    assert model.gradient(x).dtype == dtype


def test_gaussian_in_float32_promotes_its_buffers_for_float64_input():
    model = GaussianModel([0.0, 0.0], COV)  # stored in float32
    x = torch.tensor([[1.0 / 3.0, 0.1]], dtype=F64)
    expected = 0.5 * x @ torch.linalg.inv(torch.tensor(COV, dtype=F64)) @ x.T
    assert model(x).dtype == F64
    torch.testing.assert_close(model(x), expected.reshape(1), rtol=1e-6, atol=0)


def test_integer_states_are_read_in_the_model_dtype():
    model = HarmonicModel(k=2.0)
    x = torch.tensor([[1, 2]])
    assert model(x).dtype == torch.float32 and model(x).item() == 5.0
    assert model.gradient(x).dtype == torch.float32


def test_force_fp32_gradient_computes_half_input_in_float32():
    class Fp32Harmonic(HarmonicModel):
        force_fp32_gradient = True

    x = torch.tensor([[3.0e-3, 1.0]], dtype=torch.bfloat16)
    g = Fp32Harmonic(k=1.0 / 3.0).gradient(x)
    assert g.dtype == torch.bfloat16
    assert g[0, 0] == (x[0, 0].float() / 3.0).to(torch.bfloat16)


# --- kernel_spec ------------------------------------------------------------------------------


def test_kernel_spec_describes_each_analytic_model():
    g = GaussianModel(torch.tensor([1.0, -1.0]), torch.tensor(COV))
    name, params = g.kernel_spec()
    assert name == "gaussian" and set(params) == {"mean", "precision"}
    assert params["mean"] is g.mean and params["mean"].shape == (2,)
    torch.testing.assert_close(params["precision"], torch.linalg.inv(torch.tensor(COV)))
    assert DoubleWellModel(barrier_height=3.0, b=0.5).kernel_spec() == (
        "double_well",
        {"barrier_height": 3.0, "b": 0.5},
    )
    assert HarmonicModel(k=2.0).kernel_spec() == ("harmonic", {"k": 2.0})
    assert RosenbrockModel(a=2.0, b=5.0).kernel_spec() == ("rosenbrock", {"a": 2.0, "b": 5.0})
    assert AckleyModel(a=1.0, b=2.0, c=3.0).kernel_spec() == (
        "ackley",
        {"a": 1.0, "b": 2.0, "c": 3.0},
    )
    assert RastriginModel(a=4.0).kernel_spec() == ("rastrigin", {"a": 4.0})
    assert HimmelblauModel().kernel_spec() == ("himmelblau", {})
    assert BoothModel().kernel_spec() == ("booth", {})
    assert StyblinskiTangModel().kernel_spec() == ("styblinski_tang", {})
    assert BananaModel(curvature=0.1, scale=2.0).kernel_spec() == (
        "banana",
        {"curvature": 0.1, "scale": 2.0},
    )


def test_kernel_spec_params_are_python_floats():
    for factory, _ in ANALYTIC.values():
        _, params = factory().kernel_spec()
        for value in params.values():
            assert isinstance(value, (float, torch.Tensor))
            if not isinstance(value, torch.Tensor):
                assert type(value) is float


def test_kernel_spec_survives_a_subclass_that_keeps_the_closed_form():
    class Tuned(DoubleWellModel):
        def __init__(self):
            super().__init__(barrier_height=4.0)

    assert Tuned().kernel_spec() == ("double_well", {"barrier_height": 4.0, "b": 1.0})


def test_kernel_spec_is_none_when_a_subclass_overrides_forward():
    class Shifted(HarmonicModel):
        def forward(self, x):
            return super().forward(x) + 1.0

    assert Shifted().kernel_spec() is None


def test_kernel_spec_is_none_when_a_subclass_overrides_gradient():
    class Clipped(GaussianModel):
        def gradient(self, x, model_kwargs=None):
            return super().gradient(x).clamp(-1, 1)

    assert Clipped([0.0], [[1.0]]).kernel_spec() is None


def test_kernel_spec_is_none_when_an_instance_replaces_forward():
    model = HarmonicModel()
    model.forward = lambda x: (x**4).sum(-1)
    assert model.kernel_spec() is None


def test_kernel_spec_is_none_for_models_without_a_closed_form():
    class Quartic(BaseModel):
        def forward(self, x):
            return (x**4).sum(-1)

    assert Quartic().kernel_spec() is None
    assert CompositeModel([HarmonicModel(), DoubleWellModel()]).kernel_spec() is None
    assert EnergyModel(MLP(2, [4])).kernel_spec() is None


# --- the table of analytic models: C++ (energies.h), kernels/analytic_registry.py, core -------


def test_every_registered_kernel_has_its_core_model_and_reference_and_is_tested_here():
    for kernel in ANALYTIC_KERNELS.values():
        cls = getattr(core, kernel.model)
        assert issubclass(cls, AnalyticModel) and cls.kernel_name == kernel.name, kernel
        assert kernel.model in core.__all__, kernel.model
        _, params = ANALYTIC[kernel.name][0]().kernel_spec()
        assert set(params) == set(kernel.params + kernel.tensors), (kernel, params)
    named = {
        cls.kernel_name
        for cls in vars(analytic_models).values()
        if isinstance(cls, type) and issubclass(cls, AnalyticModel) and "kernel_name" in cls.__dict__
    }
    assert named == set(ANALYTIC_KERNELS)
    assert set(reference.ANALYTIC_CLOSED_FORMS) == set(ANALYTIC_KERNELS)
    assert set(ANALYTIC) == set(ANALYTIC_KERNELS)  # each model is tested in this file


@pytest.mark.skipif(not kernels.available(), reason="compiled kernels not built")
def test_the_compiled_table_of_analytic_models_is_the_python_registry():
    with pytest.raises(RuntimeError) as unknown:
        kernels.ops.analytic_energy_grad("no_such_model", torch.zeros(1, 2))
    listed = str(unknown.value).split("energy must be one of ")[1].split("; got")[0]
    assert listed.split(", ") == list(ANALYTIC_KERNELS)
    for k in ANALYTIC_KERNELS.values():
        d = max(k.fixed_dim, k.min_dim)
        params = [1.0] * len(k.params)
        with pytest.raises(RuntimeError, match=f"'{k.name}' takes {len(k.params)} scalar params"):
            kernels.ops.analytic_energy_grad(k.name, torch.zeros(1, d), params + [1.0])
        if k.tensors:
            continue  # the gaussian: its dimension is its mean's
        kernels.ops.analytic_energy_grad(k.name, torch.zeros(1, d), params)
        if k.fixed_dim:
            with pytest.raises(RuntimeError, match=f"'{k.name}' needs d == {k.fixed_dim}"):
                kernels.ops.analytic_energy_grad(k.name, torch.zeros(1, d + 1), params)
        else:
            kernels.ops.analytic_energy_grad(k.name, torch.zeros(1, d + 3), params)
        if k.min_dim > 1:
            with pytest.raises(RuntimeError, match=f"'{k.name}' needs d [=>]= {k.min_dim}"):
                kernels.ops.analytic_energy_grad(k.name, torch.zeros(1, k.min_dim - 1), params)


# --- argument checks: each names the argument and the value -----------------------------------

BAD_ARGUMENTS = [
    (lambda: DoubleWellModel(barrier_height=-1.0), ValueError, "barrier_height", "-1.0"),
    (lambda: DoubleWellModel(barrier_height="high"), TypeError, "barrier_height", "'high'"),
    (lambda: DoubleWellModel(b=float("nan")), ValueError, "b must be finite", "nan"),
    (lambda: HarmonicModel(k=0.0), ValueError, "k must be positive", "0.0"),
    (lambda: HarmonicModel(k=True), TypeError, "k must be a float", "True"),
    (lambda: RosenbrockModel(a=float("inf")), ValueError, "a must be finite", "inf"),
    (lambda: RosenbrockModel(b=-100.0), ValueError, "b must be positive", "-100.0"),
    (lambda: AckleyModel(a=None), TypeError, "a must be a float", "None"),
    (lambda: AckleyModel(b=0.0), ValueError, "b must be positive", "0.0"),
    (lambda: AckleyModel(c=float("nan")), ValueError, "c must be finite", "nan"),
    (lambda: RastriginModel(a=[10.0]), TypeError, "a must be a float", "[10.0]"),
    (lambda: GaussianModel(torch.zeros(2, 2), torch.eye(2)), ValueError, "mean", "(2, 2)"),
    (
        lambda: GaussianModel(torch.zeros(3), torch.eye(2)),
        ValueError,
        "cov must have shape (3, 3)",
        "(2, 2)",
    ),
    (
        lambda: GaussianModel(torch.zeros(2), [[1.0, 0.5], [0.0, 1.0]]),
        ValueError,
        "cov must be symmetric",
        "0.5",
    ),
    (
        lambda: GaussianModel(torch.zeros(2), [[1.0, 2.0], [2.0, 1.0]]),
        ValueError,
        "cov must be positive definite",
        "2.",
    ),
    (
        lambda: GaussianModel([float("nan"), 0.0], torch.eye(2)),
        ValueError,
        "mean must be finite",
        "nan",
    ),
    (
        lambda: GaussianModel(torch.zeros(2), torch.eye(2), dtype=torch.int64),
        TypeError,
        "dtype",
        "torch.int64",
    ),
    (lambda: CompositeModel([]), ValueError, "models", "[]"),
    (lambda: CompositeModel([HarmonicModel(), nn.Linear(2, 1)]), TypeError, "models[1]", "Linear"),
    (
        lambda: CompositeModel([HarmonicModel()], weights=[1.0, 2.0]),
        ValueError,
        "weights",
        "[1.0, 2.0]",
    ),
    (lambda: CompositeModel([HarmonicModel()], weights=["x"]), TypeError, "weights[0]", "'x'"),
    (lambda: EnergyModel(network=lambda x: x), TypeError, "network", "function"),
    (lambda: MLP(0, [8]), ValueError, "input_dim", "0"),
    (lambda: MLP(2, [8, -1]), ValueError, "hidden_dims[1]", "-1"),
    (lambda: MLP(2, [8], output_dim=2.5), TypeError, "output_dim", "2.5"),
]


@pytest.mark.parametrize(
    "build,error,argument,value",
    BAD_ARGUMENTS,
    ids=[f"{i}-{a[2]}" for i, a in enumerate(BAD_ARGUMENTS)],
)
def test_bad_constructor_argument_error_names_argument_and_value(build, error, argument, value):
    with pytest.raises(error) as info:
        build()
    message = str(info.value)
    assert argument in message and value in message, message


@pytest.mark.parametrize(
    "model,x,fragment",
    [
        (RosenbrockModel(), torch.zeros(4, 1), "dimension >= 2, got dimension 1"),
        (HimmelblauModel(), torch.zeros(4, 3), "dimension 2, got states of dimension 3"),
        (BoothModel(), torch.zeros(1), "dimension 2, got states of dimension 1"),
        (
            GaussianModel(torch.zeros(2), torch.eye(2)),
            torch.zeros(4, 3),
            "dimension 2, got states of dimension 3",
        ),
        (
            HarmonicModel(),
            torch.zeros(4, 2, 2),
            "shape (batch, dim) or (dim,), got shape (4, 2, 2)",
        ),
        (HarmonicModel(), torch.zeros(4, 0), "got x of shape (4, 0)"),
    ],
)
def test_state_of_wrong_dimension_is_rejected_with_its_shape(model, x, fragment):
    for call in (model, model.gradient):
        with pytest.raises(ValueError) as info:
            call(x)
        assert fragment in str(info.value)


def test_analytic_gradient_rejects_model_kwargs():
    with pytest.raises(TypeError, match=r"model_kwargs \['y'\]"):
        HarmonicModel().gradient(torch.zeros(2, 2), model_kwargs={"y": torch.zeros(2)})


def test_analytic_gradient_accepts_empty_model_kwargs():
    assert HarmonicModel().gradient(torch.ones(2, 2), model_kwargs={}).shape == (2, 2)


# --- GaussianModel specifics ------------------------------------------------------------------


def test_gaussian_stores_mean_and_precision_with_torchebm_state_dict_keys():
    model = GaussianModel(torch.tensor([1.0, -1.0]), torch.tensor(COV))
    assert list(model.state_dict()) == ["mean", "cov_inv"]
    assert model.precision is model.cov_inv
    torch.testing.assert_close(model.cov, torch.tensor(COV))
    torch.testing.assert_close(model.cov_inv @ torch.tensor(COV), torch.eye(2), atol=1e-6, rtol=0)
    assert torch.equal(model.cov_inv, model.cov_inv.T)


def test_gaussian_state_dict_round_trips_into_a_fresh_model():
    source = GaussianModel(torch.tensor([1.0, -1.0]), torch.tensor(COV))
    target = GaussianModel(torch.zeros(2), torch.eye(2))
    target.load_state_dict(source.state_dict())
    x = torch.randn(5, 2)
    torch.testing.assert_close(target(x), source(x))


class _AtenOps(TorchDispatchMode):
    """Records the name of every aten op that runs inside the ``with`` block."""

    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


_BATCHED_MATMULS = {"bmm", "baddbmm"}


def test_gaussian_energy_uses_no_batched_matmul():
    # TorchEBM 0.8.9 expands the precision to [B, d, d] and calls bmm (20x slower than one mm).
    model, x = gaussian(4), torch.randn(64, 4, dtype=F64)
    with _AtenOps() as batched:  # the recorder sees a batched matmul when one runs
        x[:, None, :] @ model.cov_inv.expand(64, 4, 4)
    assert _BATCHED_MATMULS & set(batched.names), batched.names
    with _AtenOps() as ran:
        model(x)
        model.gradient(x)
    assert "mm" in ran.names and not _BATCHED_MATMULS & set(ran.names), ran.names


def test_gaussian_accepts_python_lists_and_integer_tensors():
    model = GaussianModel([1, 2], torch.tensor([[2, 0], [0, 2]]))
    assert model.mean.dtype == torch.float32
    assert model(torch.tensor([[1.0, 4.0]])).item() == pytest.approx(1.0)


# --- dtype and device -------------------------------------------------------------------------


def test_models_default_to_float32_on_cpu_whatever_the_global_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        assert HarmonicModel().dtype == torch.float32
        assert GaussianModel([0.0], [[1.0]]).mean.dtype == torch.float32
    finally:
        torch.set_default_dtype(previous)
    assert HarmonicModel().device == torch.device("cpu")


def test_dtype_argument_is_honoured_and_to_moves_buffers():
    model = GaussianModel([0.0, 1.0], COV, dtype=F64)
    assert model.dtype == F64 and model.mean.dtype == F64 and model.cov_inv.dtype == F64
    assert DoubleWellModel(dtype=F64).dtype == F64
    model.float()
    assert model.dtype == torch.float32 and model.cov_inv.dtype == torch.float32


def test_device_and_dtype_follow_the_first_parameter():
    model = EnergyModel(MLP(2, [4]).double())
    assert model.dtype == F64
    model.float()
    assert model.dtype == torch.float32
    assert model.device == torch.device("cpu")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_analytic_models_run_on_the_device_of_x_and_report_cuda_without_index():
    model = GaussianModel([0.0, 1.0], COV).to("cuda")
    assert model.device == torch.device("cuda")
    x = torch.randn(8, 2, device="cuda")
    assert model.gradient(x).device == x.device
    assert DoubleWellModel().gradient(x).device == x.device


# --- BaseModel: autograd gradient -------------------------------------------------------------


class Quartic(BaseModel):
    """E(x) = Σ x⁴ / 4 over every non-batch dimension, so ∇E = x³."""

    def forward(self, x):
        return (x**4).flatten(1).sum(-1) / 4


def test_base_model_is_abstract():
    with pytest.raises(TypeError):
        BaseModel()


def test_base_model_gradient_is_autograd_gradient_detached_in_input_dtype():
    model = Quartic()
    x = torch.randn(5, 3, dtype=F64, requires_grad=True)
    with torch.no_grad():
        g = model.gradient(x)
    torch.testing.assert_close(g, x.detach() ** 3)
    assert g.dtype == F64 and not g.requires_grad and x.grad is None


def test_base_model_gradient_handles_image_shaped_states():
    x = torch.randn(4, 2, 3, 3)
    torch.testing.assert_close(Quartic().gradient(x), x**3)


def test_base_model_gradient_builds_no_second_order_graph():
    class Net(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, x):
            return self.linear(x).squeeze(-1) ** 2

    model = Net()
    g = model.gradient(torch.randn(3, 2))
    assert g.grad_fn is None
    assert all(p.grad is None for p in model.parameters())


def test_base_model_gradient_passes_model_kwargs_to_forward():
    class Conditional(BaseModel):
        def forward(self, x, y):
            return ((x - y) ** 2).sum(-1) / 2

    x, y = torch.randn(4, 2), torch.randn(4, 2)
    torch.testing.assert_close(Conditional().gradient(x, model_kwargs={"y": y}), x - y)


def test_base_model_gradient_rejects_energy_of_wrong_shape():
    class PerCoordinate(BaseModel):
        def forward(self, x):
            return x**2

    with pytest.raises(ValueError, match=r"expected shape \(B,\), but got \(4, 2\)"):
        PerCoordinate().gradient(torch.randn(4, 2))


def test_base_model_gradient_rejects_energy_that_does_not_depend_on_x():
    class Constant(BaseModel):
        def forward(self, x):
            return torch.zeros(x.shape[0])

    with pytest.raises(RuntimeError, match="Cannot compute gradient"):
        Constant().gradient(torch.randn(4, 2))


def test_base_model_gradient_accepts_a_single_unbatched_state():
    class Norm(BaseModel):
        def forward(self, x):
            return (x**2).sum(-1) / 2

    x = torch.randn(3)
    torch.testing.assert_close(Norm().gradient(x), x)


def test_base_model_force_fp32_gradient_computes_half_input_in_float32():
    seen = []

    class Recorder(Quartic):
        force_fp32_gradient = True

        def forward(self, x):
            seen.append(x.dtype)
            return super().forward(x)

    g = Recorder().gradient(torch.randn(2, 2, dtype=torch.bfloat16))
    assert seen == [torch.float32] and g.dtype == torch.bfloat16


def test_base_model_rejects_a_non_dtype_positional_argument():
    class Needs(BaseModel):
        def __init__(self, dim):
            super().__init__(dim)

        def forward(self, x):
            return x.sum(-1)

    with pytest.raises(TypeError, match=r"dtype must be a torch.dtype, got 3 \(int\)"):
        Needs(3)


def test_base_model_hooks_fire_when_called():
    calls = []
    model = Quartic()
    model.register_forward_hook(lambda *args: calls.append(1))
    model(torch.randn(2, 2))
    model.gradient(torch.randn(2, 2))
    assert calls == [1, 1]


# --- old names and the seeds' constructor calls ------------------------------------------------


def test_old_model_names_are_the_new_classes():
    assert core.BaseEnergyFunction is BaseModel
    assert core.GaussianEnergy is GaussianModel
    assert core.DoubleWellEnergy is DoubleWellModel
    assert core.HarmonicEnergy is HarmonicModel
    assert core.RosenbrockEnergy is RosenbrockModel
    assert core.AckleyEnergy is AckleyModel
    assert core.RastriginEnergy is RastriginModel
    assert issubclass(CompositeEnergy, CompositeModel)


def test_analytic_models_import_from_base_model_like_torchebm():
    from torchebm.core.base_model import GaussianModel as FromBaseModel
    from torchebm.core.base_model import StyblinskiTangModel as Other

    assert FromBaseModel is GaussianModel and Other is StyblinskiTangModel
    with pytest.raises(ImportError):
        from torchebm.core.base_model import NoSuchModel  # noqa: F401


def test_seed_constructor_calls_build_working_models():
    device = torch.device("cpu")
    mean, cov = torch.tensor([1.0, -1.0]), torch.tensor(COV)
    built = [
        core.GaussianEnergy(mean, cov, device=device),  # seed 003
        core.GaussianEnergy(mean=torch.zeros(2), cov=torch.eye(2)),  # seed 004
        GaussianModel(mean, cov).to(device),  # seed 002
        core.DoubleWellEnergy(barrier_height=2.0),  # seed 003
        core.DoubleWellEnergy(barrier_height=5.0),  # seed 000
        core.DoubleWellEnergy(),  # seed 000
        DoubleWellModel(),  # seed 001
        EnergyModel(network=MLP(input_dim=2, hidden_dims=[32, 32], output_dim=1)),  # seed 004
    ]
    x = torch.randn(6, 2)
    for model in built:
        assert model(x).shape == (6,)
        assert model.gradient(x).shape == (6, 2)
    assert core.DoubleWellEnergy(barrier_height=2.0).gradient(torch.tensor([0.0])).shape == (1,)


def test_seed_style_energy_function_subclass_gets_a_gradient():
    class MLPEnergy(BaseEnergyFunction):  # seed 000
        def __init__(self, input_dim, hidden_dim=64):
            super().__init__()
            self.network = nn.Sequential(
                nn.Linear(input_dim, hidden_dim), nn.SELU(), nn.Linear(hidden_dim, 1)
            )

        def forward(self, x):
            return self.network(x).squeeze(-1)

    model = MLPEnergy(input_dim=2, hidden_dim=32)
    x = torch.randn(5, 2)
    torch.testing.assert_close(model.gradient(x), autograd_gradient(model, x))


def test_composite_energy_takes_energy_functions_and_weights():
    parts = [HarmonicModel(k=1.0), DoubleWellModel()]
    model = CompositeEnergy(energy_functions=parts, weights=[0.5, 2.0])
    assert model.energy_functions is model.models
    x = torch.randn(4, 2, dtype=F64)
    torch.testing.assert_close(model(x), 0.5 * parts[0](x) + 2.0 * parts[1](x))


# --- CompositeModel, EnergyModel, MLP ---------------------------------------------------------


def test_composite_gradient_is_weighted_sum_of_part_gradients():
    parts = [gaussian(2), DoubleWellModel(dtype=F64), AckleyModel(dtype=F64)]
    model = CompositeModel(parts, weights=[1.0, -0.5, 3.0])
    x = torch.randn(6, 2, dtype=F64)
    torch.testing.assert_close(model.gradient(x), autograd_gradient(model, x))
    torch.testing.assert_close(model(x), parts[0](x) - 0.5 * parts[1](x) + 3.0 * parts[2](x))


def test_composite_default_weights_are_one_and_parts_are_submodules():
    net = EnergyModel(MLP(2, [4]))
    model = CompositeModel([HarmonicModel(), net])
    assert model.weights == [1.0, 1.0]
    assert len(list(model.parameters())) == len(list(net.parameters()))


def test_energy_model_squeezes_a_column_of_energies():
    net = MLP(input_dim=3, hidden_dims=[8, 8], output_dim=1)
    model = EnergyModel(network=net)
    x = torch.randn(5, 3)
    assert net(x).shape == (5, 1)
    torch.testing.assert_close(model(x), net(x).squeeze(-1))
    assert model(x[:1]).shape == (1,)


def test_energy_model_rejects_a_network_with_several_outputs():
    with pytest.raises(ValueError, match=r"shape \(batch,\) or \(batch, 1\), got shape \(5, 2\)"):
        EnergyModel(MLP(3, [4], output_dim=2))(torch.randn(5, 3))


def test_mlp_stacks_linear_layers_with_the_given_activation():
    net = MLP(2, [16, 8], output_dim=3, activation=nn.Tanh)
    kinds = [type(layer) for layer in net.layers]
    assert kinds == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    assert net(torch.randn(4, 2)).shape == (4, 3)
    assert [type(layer) for layer in MLP(2, []).layers] == [nn.Linear]


# --- TorchEBMModule ---------------------------------------------------------------------------


def test_module_probe_buffer_is_not_saved():
    assert HarmonicModel().state_dict() == {}


def test_mixed_precision_runs_cpu_autocast():
    model = HarmonicModel()
    model.setup_mixed_precision(True, torch.bfloat16)
    assert model.use_mixed_precision and model.autocast_available
    with model.autocast_context():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    model.setup_mixed_precision(False)
    assert not model.autocast_available


def test_mixed_precision_without_an_autocast_warns_and_stays_off():
    model = HarmonicModel().to("meta")
    with pytest.warns(UserWarning, match="needs a device with an autocast"):
        model.setup_mixed_precision(True)
    assert not model.use_mixed_precision and not model.autocast_available


def test_module_reports_default_dtype_without_arguments():
    module = TorchEBMModule()
    assert module.dtype == torch.get_default_dtype() and module.device == torch.device("cpu")
    assert TorchEBMModule(dtype=F64).dtype == F64


def test_warn_once_warns_the_first_time_only():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            warn_once("test_models:warn_once", "old spelling", DeprecationWarning)
    assert [str(w.message) for w in caught] == ["old spelling"]


def test_analytic_models_share_the_analytic_base():
    for factory, _ in ANALYTIC.values():
        assert isinstance(factory(), AnalyticModel)
