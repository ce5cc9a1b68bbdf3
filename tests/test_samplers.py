"""The samplers' API: signatures and defaults of TorchEBM 0.8.9, the seeds' call forms, return
shapes, diagnostics (dict and tensor), path reporting and dispatch, RNG reproducibility,
gradient counts, and parity between the three paths.

Paths: ``reference`` always runs; ``fused`` (per-step ops) and ``chain`` (whole-chain ops) run
once their ops are built and are skipped, naming the missing op, until then.
"""

from __future__ import annotations

import inspect
import pickle
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from torchebm.core import (
    BaseEnergyFunction,
    BaseModel,
    BaseSampler,
    ConstantScheduler,
    DoubleWellEnergy,
    GaussianEnergy,
    GaussianModel,
    HimmelblauModel,
    LinearScheduler,
    Schedulable,
    TorchEBMModule,
)
from torchebm.diagnostics import Diagnostics
from torchebm.kernels import dispatch, reference
from torchebm.samplers import (
    MALA,
    HamiltonianMonteCarlo,
    LangevinDynamics,
    MetropolisAdjustedLangevin,
)
from torchebm.samplers.hmc import kinetic_energy, leapfrog

SAMPLERS = [LangevinDynamics, HamiltonianMonteCarlo, MetropolisAdjustedLangevin]
SAMPLE_HEAD = [
    "x",
    "dim",
    "n_steps",
    "n_samples",
    "thin",
    "return_trajectory",
    "return_diagnostics",
    "reset_schedulers",
]


# --------------------------------------------------------------------------- helpers
def skip_unless_ops(*ops: str, dtype=torch.float32, device=torch.device("cpu")) -> None:
    reason = dispatch.kernels_blocker(ops, device, dtype)
    if reason is not None:
        pytest.skip(f"kernel not available yet: {reason}")


def gaussian(dim: int = 2, dtype=torch.float32) -> GaussianModel:
    cov = torch.eye(dim) + 0.5 * (torch.ones(dim, dim) - torch.eye(dim)) * (1.0 if dim > 1 else 0)
    return GaussianModel(torch.arange(dim, dtype=torch.float32) * 0.5, cov, dtype=dtype)


class NoSpecGaussian(GaussianModel):
    """The same Gaussian, but overriding ``gradient``: no kernel_spec, so the per-step paths run."""

    def gradient(self, x, model_kwargs=None):
        return super().gradient(x, model_kwargs)


class AutogradGaussian(BaseModel):
    """Standard normal through autograd only (``gradient`` is BaseModel's default)."""

    def __init__(self):
        super().__init__()
        self.n_forward = 0

    def forward(self, x):
        self.n_forward += 1
        return 0.5 * (x * x).sum(dim=-1)


class CountingGaussian(BaseModel):
    """Standard normal with a closed-form gradient that counts its calls."""

    def __init__(self):
        super().__init__()
        self.n_gradient = 0

    def forward(self, x):
        return 0.5 * (x * x).sum(dim=-1)

    def gradient(self, x, model_kwargs=None):
        self.n_gradient += 1
        return x.clone()


class ConditionalGaussian(BaseModel):
    def forward(self, x, y=None):
        return 0.5 * ((x - y) ** 2).sum(dim=-1)


class Elementwise(BaseModel):
    """``E = ½|x|²`` over any event shape."""

    def forward(self, x):
        return 0.5 * x.reshape(x.shape[0], -1).pow(2).sum(dim=1)


def make(cls, model=None, **kw):
    model = model if model is not None else gaussian()
    if cls is HamiltonianMonteCarlo:
        kw.setdefault("step_size", 0.2)
        kw.setdefault("n_leapfrog_steps", 3)
    else:
        kw.setdefault("step_size", 0.05)
    return cls(model, **kw)


# --------------------------------------------------------------------------- signatures
@pytest.mark.parametrize("cls", SAMPLERS)
def test_sample_signature_matches_0_8_9(cls):
    params = inspect.signature(cls.sample).parameters
    names = list(params)
    assert names[1:9] == SAMPLE_HEAD
    for name in ("y", "model_kwargs", "generator"):
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert params[name].default is None
    kinds = {p.kind for p in params.values()}
    assert inspect.Parameter.VAR_POSITIONAL not in kinds
    assert inspect.Parameter.VAR_KEYWORD not in kinds
    assert params["n_steps"].default == 100 and params["n_samples"].default == 1
    assert params["thin"].default == 1 and params["reset_schedulers"].default is True


@pytest.mark.parametrize("cls", SAMPLERS)
def test_constructor_signature_matches_0_8_9(cls):
    params = inspect.signature(cls.__init__).parameters
    positional = [
        n for n, p in params.items() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ][1:]
    assert positional[0] == "model"
    assert positional.index("dtype") < positional.index("device")
    # The last 0.8.9 parameter is `integrator`; our extras follow it, keyword-only.
    assert positional[-1] == "integrator"
    extras = [n for n, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert {"energy_function", "backend", "progress"} <= set(extras)
    kinds = {p.kind for p in params.values()}
    assert inspect.Parameter.VAR_POSITIONAL not in kinds
    assert inspect.Parameter.VAR_KEYWORD not in kinds
    # dtype=None (0.8.9: torch.float32) applies the dtype rule (docs/migration.md); an explicit
    # dtype=torch.float32 is honoured.
    assert params["dtype"].default is None and params["device"].default is None
    assert params["backend"].default == "auto"


def test_constructor_defaults_match_0_8_9():
    lp = inspect.signature(LangevinDynamics.__init__).parameters
    assert (lp["step_size"].default, lp["noise_scale"].default, lp["decay"].default) == (
        1e-3,
        1.0,
        0.0,
    )
    assert lp["clamp"].default is None
    assert {"noise_std", "grad_clip"} <= set(lp)
    hp = inspect.signature(HamiltonianMonteCarlo.__init__).parameters
    assert (hp["step_size"].default, hp["n_leapfrog_steps"].default, hp["mass"].default) == (
        1e-3,
        10,
        None,
    )


def test_class_hierarchy_matches_0_8_9():
    mro = LangevinDynamics.__mro__
    order = [mro.index(c) for c in (BaseSampler, Schedulable, TorchEBMModule, nn.Module)]
    assert order == sorted(order)
    assert MALA is MetropolisAdjustedLangevin
    assert inspect.isabstract(BaseSampler)


def test_repr_names_the_model_and_parameters():
    s = LangevinDynamics(gaussian(), step_size=0.01)
    assert repr(s) == (
        "LangevinDynamics(model=GaussianModel, step_size=0.01, noise_scale=1.0, "
        "integrator=EulerMaruyamaIntegrator)"
    )
    assert repr(HamiltonianMonteCarlo(gaussian())).startswith(
        "HamiltonianMonteCarlo(model=GaussianModel"
    )


# --------------------------------------------------------------------------- spellings
@pytest.mark.parametrize("cls", SAMPLERS)
def test_model_energy_function_and_positional_spellings(cls):
    model = gaussian()
    for sampler in (cls(model), cls(model=model), cls(energy_function=model)):
        assert sampler.model is model and sampler.energy_function is model
    other = gaussian()
    sampler = cls(model)
    sampler.energy_function = other  # seed 004's CD swaps the model this way
    assert sampler.model is other and sampler.energy_function is other


def test_scheduled_and_zero_noise_parameters_are_accepted():
    s = LangevinDynamics(gaussian(), step_size=LinearScheduler(0.1, 0.01, 10),
                         noise_scale=ConstantScheduler(0.0))
    x0 = torch.zeros(4, 2)
    out = s.sample(x=x0, n_steps=5)
    assert torch.isfinite(out).all()
    # noise_scale 0 from a scheduler: plain gradient descent, deterministic
    again = s.sample(x=x0, n_steps=5)
    torch.testing.assert_close(out, again)


def test_old_scheduler_names_work_in_samplers():
    s = LangevinDynamics(
        DoubleWellEnergy(barrier_height=5.0),
        step_size=LinearScheduler(initial_value=0.05, final_value=0.03, total_steps=100),
    )
    traj = s.sample(x=torch.tensor([[-2.0, 0.0]]), dim=2, n_steps=20, return_trajectory=True)
    assert traj.shape == (1, 20, 2)


# --------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("cls", SAMPLERS)
def test_return_shapes_final_trajectory_and_diagnostics(cls):
    s = make(cls, backend="reference")
    x = s.sample(dim=2, n_samples=7, n_steps=10)
    assert x.shape == (7, 2) and x.dtype == torch.float32
    traj = s.sample(dim=2, n_samples=7, n_steps=10, thin=3, return_trajectory=True)
    assert traj.shape == (7, 3, 2)
    out, diag = s.sample(dim=2, n_samples=7, n_steps=10, thin=3, return_diagnostics=True)
    assert out.shape == (7, 2)
    expected = {"mean", "var", "energy"} | (
        {"acceptance_rate"} if cls is not LangevinDynamics else set()
    )
    assert set(diag.keys()) == expected and isinstance(diag, dict)
    assert diag["mean"].shape == (3, 2) and diag["var"].shape == (3, 2)
    assert diag["energy"].shape == (3,)
    if cls is not LangevinDynamics:
        rate = diag["acceptance_rate"]
        assert rate.shape == (3,) and bool(((rate >= 0) & (rate <= 1)).all())
    traj, diag = s.sample(dim=2, n_samples=7, n_steps=10, return_trajectory=True,
                          return_diagnostics=True)
    assert traj.shape == (7, 10, 2) and diag.shape == (10, 3, 7, 2)


@pytest.mark.parametrize("cls", SAMPLERS)
def test_trajectory_ends_at_the_final_state_and_thins_after_steps(cls):
    s = make(cls, backend="reference")
    x0 = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    final = s.sample(x=x0, n_steps=6, generator=torch.Generator().manual_seed(3))
    traj = s.sample(x=x0, n_steps=6, thin=2, return_trajectory=True,
                    generator=torch.Generator().manual_seed(3))
    full = s.sample(x=x0, n_steps=6, return_trajectory=True,
                    generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(traj[:, -1], final)
    torch.testing.assert_close(traj, full[:, 1::2])  # states after steps 2, 4, 6


@pytest.mark.parametrize("cls", SAMPLERS)
def test_dim_as_int_or_tuple_and_inferred_from_gaussian_mean(cls):
    s = make(cls, model=Elementwise(), backend="reference")
    assert s.sample(dim=3, n_samples=2, n_steps=2).shape == (2, 3)
    assert s.sample(dim=(2, 3), n_samples=2, n_steps=2).shape == (2, 2, 3)
    g = make(cls, model=gaussian(3), backend="reference")
    assert g.sample(n_samples=4, n_steps=2).shape == (4, 3)  # seed 004: sample(n_samples=...)


def test_x_given_ignores_n_samples_as_in_0_8_9():
    s = LangevinDynamics(gaussian(), step_size=0.01)
    assert s.sample(x=torch.zeros(10, 2), n_samples=3, n_steps=2).shape == (10, 2)


def test_one_dimensional_x_is_one_chain_seed_003():
    s = LangevinDynamics(DoubleWellEnergy(barrier_height=2.0), step_size=0.001,
                         noise_scale=0.1, decay=0.1)
    traj, diag = s.sample(x=torch.tensor([0.0]), n_steps=50, return_trajectory=True,
                          return_diagnostics=True)
    assert traj.shape == (1, 50, 1)
    assert diag[:, 2, 0, 0].shape == (50,)
    assert traj[0, :, 0].numpy().shape == (50,)
    assert s.sample(x=torch.tensor([0.5, -0.5]), n_steps=3).shape == (2,)


@pytest.mark.parametrize("cls", SAMPLERS)
def test_zero_steps_return_x_itself(cls):
    s = make(cls)
    x = torch.randn(3, 2)
    assert s.sample(x=x, n_steps=0) is x
    traj, diag = s.sample(x=x, n_steps=0, return_trajectory=True, return_diagnostics=True)
    assert traj.shape == (3, 0, 2) and diag["energy"].shape == (0,)
    x64 = x.double()
    assert s.sample(x=x64, n_steps=0) is x64  # the chains take x's dtype (no dtype= given)


def test_output_is_a_new_tensor_and_input_untouched():
    s = LangevinDynamics(gaussian(), step_size=0.1)
    x = torch.zeros(4, 2)
    out = s.sample(x=x, n_steps=3)
    assert out is not x and torch.equal(x, torch.zeros(4, 2))


# --------------------------------------------------------------------------- diagnostics
def test_diagnostics_dict_and_tensor_views_agree():
    s = MALA(gaussian(), step_size=0.1, backend="reference")
    traj, diag = s.sample(dim=2, n_samples=6, n_steps=8, thin=2, return_trajectory=True,
                          return_diagnostics=True, generator=torch.Generator().manual_seed(0))
    assert isinstance(diag, Diagnostics)
    t = diag.tensor()
    assert diag.shape == t.shape == (4, 3, 6, 2)
    torch.testing.assert_close(t[:, 0], diag["mean"].unsqueeze(1).expand(4, 6, 2))
    torch.testing.assert_close(t[:, 1], diag["var"].unsqueeze(1).expand(4, 6, 2))
    per_chain = s.model(traj.reshape(-1, 2)).reshape(6, 4).T
    torch.testing.assert_close(t[:, 2, :, 0], per_chain)
    torch.testing.assert_close(diag["energy"], per_chain.mean(dim=1))
    torch.testing.assert_close(diag["mean"], traj.mean(dim=0))
    torch.testing.assert_close(diag["var"], traj.var(dim=0, unbiased=False).clamp(1e-10, 1e10))
    # Tensor behaviour: indexing, attributes, torch functions, numpy.
    assert diag[:, 2, 0, 0].shape == (4,)
    assert diag.cpu().shape == (4, 3, 6, 2) and diag.numpy().shape == (4, 3, 6, 2)
    assert np.asarray(diag).shape == (4, 3, 6, 2)
    torch.testing.assert_close(torch.mean(diag), t.mean())
    assert diag.dim() == 4 and diag.size(2) == 6
    # Dict behaviour.
    assert len(diag) == 4 and "acceptance_rate" in diag and list(diag)[:3] == ["mean", "var", "energy"]
    assert float(diag["acceptance_rate"].mean()) > 0.5


def test_diagnostics_single_chain_variance_is_zero():
    s = LangevinDynamics(gaussian(), step_size=0.01)
    _, diag = s.sample(dim=2, n_samples=1, n_steps=4, return_diagnostics=True)
    assert torch.equal(diag["var"], torch.zeros(4, 2))
    torch.testing.assert_close(diag["mean"][-1], _.squeeze(0))


def test_diagnostics_pickle_round_trip():
    import pickle

    s = HamiltonianMonteCarlo(gaussian(), step_size=0.2, n_leapfrog_steps=2)
    _, diag = s.sample(dim=2, n_samples=3, n_steps=4, return_diagnostics=True)
    back = pickle.loads(pickle.dumps(diag))
    assert set(back) == set(diag)
    torch.testing.assert_close(back.tensor(), diag.tensor())


def test_custom_sampler_setup_diagnostics_layout():
    class Probe(BaseSampler):
        def sample(self, *a, **k):
            return None

    d = Probe(gaussian())._setup_diagnostics(2, 5, n_samples=4)
    assert d.shape == (5, 3, 4, 2)


# --------------------------------------------------------------------------- paths
def test_reference_backend_takes_the_reference_path():
    for cls in SAMPLERS:
        s = make(cls, backend="reference")
        s.sample(dim=2, n_samples=2, n_steps=2)
        assert s.last_path == "reference"


@pytest.mark.parametrize("cls", SAMPLERS)
def test_auto_takes_the_fastest_available_path(cls):
    s = make(cls)
    assert s.last_path is None
    s.sample(dim=2, n_samples=2, n_steps=2)
    chain_ok = dispatch.kernels_blocker((cls.algorithm.chain_op,), torch.device("cpu"), torch.float32) is None
    step_ok = dispatch.kernels_blocker(cls.algorithm.step_ops, torch.device("cpu"), torch.float32) is None
    assert s.last_path == ("chain" if chain_ok else "fused" if step_ok else "reference")
    n = make(cls, model=NoSpecGaussian(torch.zeros(2), torch.eye(2)))
    n.sample(dim=2, n_samples=2, n_steps=2)
    assert n.last_path == ("fused" if step_ok else "reference")
    assert any("kernel_spec" in r for r in n.last_route.skipped)


@pytest.mark.parametrize("cls", SAMPLERS)
def test_model_kwargs_rule_out_the_chain_path(cls):
    s = make(cls, model=ConditionalGaussian())
    y = torch.ones(2, 2)
    s.sample(x=torch.zeros(2, 2), n_steps=2, y=y)
    assert s.last_path in ("fused", "reference")
    assert any("model_kwargs" in r for r in s.last_route.skipped)


@pytest.mark.parametrize("cls", SAMPLERS)
def test_fused_backend_raises_naming_why_when_no_kernel_applies(cls, monkeypatch):
    monkeypatch.setattr(
        dispatch, "op_blocker", lambda name, device: f"op torchebm::{name} is not built (test)"
    )
    s = make(cls, backend="fused")
    with pytest.raises(dispatch.NoKernelError, match=rf"backend='fused'.*torchebm::{cls.algorithm.chain_op}"):
        s.sample(dim=2, n_samples=2, n_steps=2)
    auto = make(cls)
    auto.sample(dim=2, n_samples=2, n_steps=2)
    assert auto.last_path == "reference"


def test_dispatch_falls_back_on_unsupported_dtype_and_device():
    kw = dict(chain_ops=("langevin_chain",), step_ops=("langevin_update",))
    for dtype, device in ((torch.float16, torch.device("cpu")), (torch.float32, torch.device("meta"))):
        route = dispatch.choose_path("auto", device=device, dtype=dtype, **kw)
        assert route.path == "reference"
        with pytest.raises(dispatch.NoKernelError, match="float16|meta"):
            dispatch.choose_path("fused", device=device, dtype=dtype, **kw)
    assert dispatch.choose_path("reference", device=torch.device("cpu"), dtype=torch.float32,
                                **kw).path == "reference"
    with pytest.raises(ValueError, match="backend must be one of"):
        dispatch.choose_path("cuda", device=torch.device("cpu"), dtype=torch.float32, **kw)


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("path", ["fused", "chain"])
def test_kernel_paths_run_and_report(cls, path, require_path):
    require_path(cls, path)
    model = gaussian() if path == "chain" else NoSpecGaussian(torch.zeros(2), torch.eye(2))
    s = make(cls, model=model, backend="fused")
    traj, diag = s.sample(dim=2, n_samples=5, n_steps=6, thin=2, return_trajectory=True,
                          return_diagnostics=True)
    assert s.last_path == path
    assert traj.shape == (5, 3, 2) and diag.shape == (3, 3, 5, 2)
    assert set(diag) == ({"mean", "var", "energy"} | ({"acceptance_rate"} if cls is not LangevinDynamics else set()))
    torch.testing.assert_close(diag["mean"], traj.mean(0))
    per_chain = s.model(traj.reshape(-1, 2)).reshape(5, 3).T
    torch.testing.assert_close(diag[:, 2, :, 0], per_chain, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(diag["energy"], per_chain.mean(1), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- parity
def _same_gen(seed=7):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("cls", SAMPLERS)
def test_chain_kernel_equals_per_step_fused_loop(cls, require_path):
    """Whole-chain op == per-step fused ops with the same Philox seed (float64)."""
    require_path(cls, "chain", torch.float64)
    require_path(cls, "fused", torch.float64)
    mean, cov = torch.tensor([0.5, -1.0]), torch.tensor([[1.0, 0.3], [0.3, 0.5]])
    kw = dict(dtype=torch.float64, backend="fused")
    sched = LinearScheduler(0.2 if cls is HamiltonianMonteCarlo else 0.1, 0.05, 5)
    chain = make(cls, GaussianModel(mean, cov), step_size=sched, **kw)
    fused = make(cls, NoSpecGaussian(mean, cov), step_size=sched, **kw)
    x0 = torch.randn(16, 2, dtype=torch.float64, generator=_same_gen(1))
    a = chain.sample(x=x0, n_steps=12, return_trajectory=True, generator=_same_gen())
    b = fused.sample(x=x0, n_steps=12, return_trajectory=True, generator=_same_gen())
    assert (chain.last_path, fused.last_path) == ("chain", "fused")
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def _philox_seed(gen_seed: int) -> int:
    return int(torch.randint(0, 2**63 - 1, (), generator=_same_gen(gen_seed)))


def test_fused_langevin_is_reference_maths_with_philox_noise(require_path):
    require_path(LangevinDynamics, "fused", torch.float64)
    from torchebm.kernels import ops

    model = NoSpecGaussian(torch.zeros(3), torch.eye(3))
    s = LangevinDynamics(model, step_size=0.1, noise_scale=0.7, clamp=(-1.5, 1.5),
                         grad_clip=2.0, dtype=torch.float64, backend="fused")
    x0 = torch.randn(8, 3, dtype=torch.float64, generator=_same_gen(2))
    out = s.sample(x=x0, n_steps=5, generator=_same_gen())
    seed, x = _philox_seed(7), x0
    b = 0.7 * (2 * 0.1) ** 0.5
    for t in range(5):
        noise = ops.philox_normal(list(x.shape), seed, t, torch.float64, x.device)
        x = reference.langevin_update(x, model.gradient(x), noise, 0.1, b, -1.5, 1.5, 2.0)
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)


def test_fused_mala_and_hmc_are_reference_maths_with_philox_draws(require_path):
    require_path(MALA, "fused", torch.float64)
    require_path(HamiltonianMonteCarlo, "fused", torch.float64)
    skip_unless_ops("philox_uniform", dtype=torch.float64)
    from torchebm.kernels import ops

    model = NoSpecGaussian(torch.zeros(3), torch.eye(3))
    x0 = torch.randn(8, 3, dtype=torch.float64, generator=_same_gen(2))
    seed = _philox_seed(7)

    mala = MALA(model, step_size=0.3, dtype=torch.float64, backend="fused")
    out = mala.sample(x=x0, n_steps=5, generator=_same_gen())
    x = x0
    a, b = 0.3, (2 * 0.3) ** 0.5
    for t in range(5):
        noise = ops.philox_normal(list(x.shape), seed, t, torch.float64, x.device)
        u = ops.philox_uniform([x.shape[0]], seed, t, torch.float64, x.device)
        y = reference.langevin_update(x, model.gradient(x), noise, a, b)
        x = reference.mala_select(x, y, model.gradient(x), model.gradient(y), model(x), model(y),
                                  a, b, u)[0]
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)

    hmc = HamiltonianMonteCarlo(model, step_size=0.3, n_leapfrog_steps=4, dtype=torch.float64,
                                backend="fused")
    out = hmc.sample(x=x0, n_steps=5, generator=_same_gen())
    x = x0
    for t in range(5):
        p = ops.philox_normal(list(x.shape), seed, t, torch.float64, x.device)
        u = ops.philox_uniform([x.shape[0]], seed, t, torch.float64, x.device)
        xl, pl, _, _ = leapfrog(x, p, model.gradient(x), 0.3, 4, model.gradient)
        log_r = model(x) + kinetic_energy(p) - model(xl) - kinetic_energy(pl)
        x = reference.metropolis_select(log_r, x, xl, u)[0]
    torch.testing.assert_close(out, x, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- RNG
@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("path", ["reference", "fused", "chain"])
def test_generator_reproduces_and_leaves_global_rng_alone(cls, path, require_path):
    require_path(cls, path)
    model = gaussian() if path != "fused" else NoSpecGaussian(torch.zeros(2), torch.eye(2))
    s = make(cls, model=model, backend="reference" if path == "reference" else "fused")
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = s.sample(dim=2, n_samples=4, n_steps=5, generator=_same_gen(9))
    assert torch.equal(torch.get_rng_state(), before)
    b = s.sample(dim=2, n_samples=4, n_steps=5, generator=_same_gen(9))
    c = s.sample(dim=2, n_samples=4, n_steps=5, generator=_same_gen(10))
    assert s.last_path == path
    assert torch.equal(a, b) and not torch.equal(a, c)
    # generator=None: the global RNG drives the call, so manual_seed reproduces it.
    torch.manual_seed(5)
    d = s.sample(dim=2, n_samples=4, n_steps=5)
    assert not torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(5)
    assert torch.equal(d, s.sample(dim=2, n_samples=4, n_steps=5))


def test_reference_langevin_matches_an_eager_loop_with_the_same_generator():
    """0.8.9's RNG order: initial randn (x None), then one randn per step after the gradient."""
    model = gaussian()
    s = LangevinDynamics(model, step_size=0.05, noise_scale=0.8, backend="reference")
    out = s.sample(dim=2, n_samples=5, n_steps=4, generator=_same_gen(3))
    g = _same_gen(3)
    x = torch.randn(5, 2, generator=g)
    for _ in range(4):
        grad = model.gradient(x)
        x = x - 0.05 * grad + 0.8 * (2 * 0.05) ** 0.5 * torch.randn(5, 2, generator=g)
    torch.testing.assert_close(out, x)


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("path", ["fused", "chain"])
def test_kernel_paths_do_not_depend_on_thread_count(cls, path, require_path):
    require_path(cls, path)
    model = gaussian(4) if path == "chain" else NoSpecGaussian(torch.zeros(4), torch.eye(4))
    s = make(cls, model=model, backend="fused")
    threads = torch.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(s.sample(dim=4, n_samples=3000, n_steps=4, generator=_same_gen(4)))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0], results[1])


# --------------------------------------------------------------------------- schedulers
def test_reset_schedulers_restarts_or_continues_the_schedule():
    sched = LinearScheduler(0.1, 0.01, 10)
    s = LangevinDynamics(gaussian(), step_size=sched, backend="reference")
    a = s.sample(dim=2, n_samples=3, n_steps=4, generator=_same_gen())
    assert sched.step_count == 4
    b = s.sample(dim=2, n_samples=3, n_steps=4, generator=_same_gen())
    assert torch.equal(a, b) and sched.step_count == 4
    s.sample(dim=2, n_samples=3, n_steps=4, reset_schedulers=False)
    assert sched.step_count == 8


@pytest.mark.parametrize("path", ["reference", "chain"])
def test_schedules_advance_alike_on_every_path(path, require_path):
    require_path(LangevinDynamics, path)
    sched = LinearScheduler(0.1, 0.01, 10)
    s = LangevinDynamics(gaussian(), step_size=sched,
                         backend="reference" if path == "reference" else "fused")
    s.sample(dim=2, n_samples=3, n_steps=6)
    assert s.last_path == path and sched.step_count == 6
    assert sched.get_value() == pytest.approx(0.1 + 6 * (0.01 - 0.1) / 10)


def test_custom_sampler_contract_of_seed_000():
    class SimpleLangevin(BaseSampler):
        def __init__(self, energy_function, step_size=0.01, noise_scale=1.0,
                      dtype=torch.float32, device=None):
            super().__init__(energy_function=energy_function, dtype=dtype, device=device)
            self.register_scheduler("step_size", ConstantScheduler(step_size))
            self.register_scheduler("noise_scale", ConstantScheduler(noise_scale))

        @torch.no_grad()
        def sample(self, x=None, dim=10, n_steps=100, n_samples=1, thin=1,
                   return_trajectory=False, return_diagnostics=False):
            self.reset_schedulers()
            x = torch.randn(n_samples, dim, dtype=self.dtype, device=self.device) if x is None else x.to(self.device)
            for _ in range(n_steps):
                self.step_schedulers()
                eta = self.get_scheduled_value("step_size")
                sigma = self.get_scheduled_value("noise_scale")
                x = x - eta * self.energy_function.gradient(x) + (2 * eta) ** 0.5 * sigma * torch.randn_like(x)
            return x

    s = SimpleLangevin(energy_function=GaussianEnergy(torch.zeros(2), torch.eye(2)))
    assert s.dtype == torch.float32 and s.device == torch.device("cpu")
    assert s.to("cpu") is s
    assert s.sample(dim=2, n_samples=5, n_steps=3).shape == (5, 2)
    with pytest.raises(KeyError, match="No scheduler registered for parameter 'nope'"):
        s.get_scheduled_value("nope")


# --------------------------------------------------------------------------- model kwargs
@pytest.mark.parametrize("cls", SAMPLERS)
def test_y_is_model_kwargs_shorthand(cls):
    s = make(cls, model=ConditionalGaussian(), backend="reference")
    y = torch.full((4, 2), 3.0)
    a = s.sample(x=torch.zeros(4, 2), n_steps=3, y=y, generator=_same_gen())
    b = s.sample(x=torch.zeros(4, 2), n_steps=3, model_kwargs={"y": y}, generator=_same_gen())
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="y given both"):
        s.sample(x=torch.zeros(4, 2), n_steps=1, y=y, model_kwargs={"y": y})


def test_model_kwargs_to_an_x_only_model_raise_type_error():
    s = LangevinDynamics(gaussian(), step_size=0.01)
    with pytest.raises(TypeError):
        s.sample(x=torch.zeros(2, 2), n_steps=1, model_kwargs={"y": torch.zeros(2)})


# --------------------------------------------------------------------------- gradient counts
@pytest.mark.parametrize("path", ["reference", "fused"])
def test_hmc_spends_L_gradient_evaluations_per_trajectory_plus_one(path, require_path):
    """L gradient evaluations per MCMC step (the end point's carries over) plus one at the start
    of the call: 1 + n_steps * L in all (0.8.9 spends 2L per step)."""
    require_path(HamiltonianMonteCarlo, path)
    model = CountingGaussian()
    s = HamiltonianMonteCarlo(model, step_size=0.1, n_leapfrog_steps=5, backend=path)
    s.sample(dim=3, n_samples=4, n_steps=7)
    assert s.last_path == path
    assert model.n_gradient == 1 + 7 * 5


@pytest.mark.parametrize("path", ["reference", "fused"])
def test_autograd_models_get_energy_and_gradient_from_one_pass(path, require_path):
    require_path(HamiltonianMonteCarlo, path)
    model = AutogradGaussian()
    HamiltonianMonteCarlo(model, step_size=0.1, n_leapfrog_steps=5, backend=path).sample(
        dim=3, n_samples=4, n_steps=7
    )
    # One forward per energy-and-gradient evaluation, plus the sampler's one-time check of the
    # energy's shape on a new (model, event shape, dtype, device).
    assert model.n_forward == 1 + 7 * 5 + 1
    model.n_forward = 0
    mala = MALA(model, step_size=0.1, backend=path)
    mala.sample(dim=3, n_samples=4, n_steps=7)
    assert model.n_forward == 1 + 7 + 1
    model.n_forward = 0
    mala.sample(dim=3, n_samples=4, n_steps=7)
    assert model.n_forward == 1 + 7  # checked once per sampler and key


def test_mala_spends_one_gradient_per_step():
    model = CountingGaussian()
    MALA(model, step_size=0.1, backend="reference").sample(dim=3, n_samples=4, n_steps=7)
    assert model.n_gradient == 1 + 7


def test_hmc_diagnostics_count_gradients_no_extra():
    model = CountingGaussian()
    s = HamiltonianMonteCarlo(model, step_size=0.1, n_leapfrog_steps=2, backend="reference")
    s.sample(dim=2, n_samples=4, n_steps=5, return_diagnostics=True)
    assert model.n_gradient == 1 + 5 * 2


# --------------------------------------------------------------------------- HMC mass
@pytest.mark.parametrize("mass", [2.0, 3, torch.tensor([1.0, 4.0])])
def test_hmc_accepts_scalar_int_and_diagonal_mass(mass):
    s = HamiltonianMonteCarlo(gaussian(), step_size=0.2, n_leapfrog_steps=3, mass=mass)
    out, diag = s.sample(dim=2, n_samples=8, n_steps=5, return_diagnostics=True)
    assert out.shape == (8, 2) and float(diag["acceptance_rate"].mean()) > 0.5
    if isinstance(mass, torch.Tensor):
        assert s.to(torch.float64).mass.dtype == torch.float64


def test_leapfrog_takes_n_gradient_evaluations():
    calls = []

    def grad(x):
        calls.append(1)
        return x

    x, p = torch.randn(3, 2), torch.randn(3, 2)
    leapfrog(x, p, x, 0.1, 6, grad)
    assert len(calls) == 6


# --------------------------------------------------------------------------- dtype/device
def test_sampler_dtype_is_honoured_and_warns_for_a_model_of_another_dtype():
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

    class Net(BaseModel):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x).squeeze(-1)

    with pytest.warns(UserWarning, match="evaluated in torch.float32"):
        s = LangevinDynamics(Net(), step_size=0.01, dtype=torch.float64)
    assert s.dtype == torch.float64
    out = s.sample(dim=2, n_samples=3, n_steps=3)
    assert out.dtype == torch.float64
    m = MALA(gaussian(), step_size=0.1, dtype=torch.float64)
    assert m.sample(dim=2, n_samples=3, n_steps=3).dtype == torch.float64


def test_half_dtype_runs_in_float32_under_autocast_and_returns_half():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = LangevinDynamics(gaussian(), step_size=0.01, dtype=torch.float16)
    assert s.dtype == torch.float16 and s.state_dtype() == torch.float32
    assert s.autocast_available and s.amp_dtype == torch.float16
    assert s.sample(dim=2, n_samples=3, n_steps=2).dtype == torch.float16


def test_device_arguments_on_cpu():
    s = LangevinDynamics(gaussian(), step_size=0.01, device="cpu")
    assert s.device == torch.device("cpu")
    out = s.sample(dim=2, n_samples=2, n_steps=2, device=torch.device("cpu"))
    assert out.device.type == "cpu"


# --------------------------------------------------------------------------- old call forms
def test_sample_chain_and_n_chains_old_forms_seed_004():
    s = LangevinDynamics(energy_function=GaussianEnergy(torch.zeros(2), torch.eye(2)),
                         step_size=0.01)
    assert s.sample_chain(dim=2, n_steps=10, n_samples=100).shape == (100, 2)
    x0 = torch.zeros(5, 2)
    assert s.sample_chain(initial_samples=x0, n_steps=3, dim=2).shape == (5, 2)
    assert s.sample(dim=2, n_chains=6, n_steps=2).shape == (6, 2)


def test_seed_000_and_002_sampler_forms():
    class MLPEnergy(BaseEnergyFunction):
        def __init__(self):
            super().__init__()
            self.network = nn.Sequential(nn.Linear(2, 16), nn.SELU(), nn.Linear(16, 1))

        def forward(self, x):
            return self.network(x).squeeze(-1)

    device = torch.device("cpu")
    s = LangevinDynamics(energy_function=MLPEnergy(), step_size=0.1, noise_scale=0.01,
                         device=device)
    assert s.sample(x=torch.randn(100, 2, device=device), n_steps=20,
                    return_trajectory=False).shape == (100, 2)
    assert s.sample(x=torch.randn(10, 2), n_steps=20, return_trajectory=True).shape == (10, 20, 2)
    hmc = HamiltonianMonteCarlo(energy_function=DoubleWellEnergy(), step_size=0.1,
                                n_leapfrog_steps=10, device=device)
    assert hmc.sample(x=torch.randn(100, 2), n_steps=5, return_trajectory=False).shape == (100, 2)
    model = GaussianModel(torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.5], [0.5, 2.0]])).to(device)
    hmc = HamiltonianMonteCarlo(model=model, step_size=0.1, n_leapfrog_steps=10)
    samples, diagnostics = hmc.sample(x=torch.randn(1000, 2), n_steps=25, return_diagnostics=True)
    rate = diagnostics["acceptance_rate"].mean()
    assert 0.6 < float(rate) <= 1.0
    f"{rate:.2f}"  # the seed formats the 0-d tensor


def test_progress_bar_runs(capsys, monkeypatch):
    monkeypatch.setenv("TORCHEBM_PROGRESS", "1")
    s = LangevinDynamics(gaussian(), step_size=0.01, progress=True)
    assert s.sample(dim=2, n_samples=2, n_steps=5).shape == (2, 2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("path", ["fused", "chain"])
@pytest.mark.parametrize("start", ["drawn", "given"])
def test_kernel_paths_never_synchronise_with_the_host(cls, path, start):
    """With the state on the device (drawn there, or a given x), no call synchronises: the seed
    is drawn on the CPU generator, schedules go up through pinned memory, and a GPU x is not
    read back for a finiteness check. CUDA's sync debug mode turns any sync into an error."""
    skip_unless_ops(*(cls.algorithm.step_ops if path == "fused" else (cls.algorithm.chain_op,)),
                    device=torch.device("cuda"))
    model = gaussian() if path == "chain" else NoSpecGaussian(torch.zeros(2), torch.eye(2))
    s = make(cls, model=model, backend="fused", device="cuda")
    s.sample(dim=2, n_samples=64, n_steps=3)  # warm-up (lazy CUDA initialisation)
    x = torch.randn(64, 2, device="cuda") if start == "given" else None
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = s.sample(x=x, dim=2, n_samples=64, n_steps=20, return_trajectory=True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert s.last_path == path and out.shape == (64, 20, 2) and out.is_cuda


@pytest.mark.parametrize("cls", SAMPLERS)
def test_chain_path_still_raises_the_models_error_after_an_accepted_call(cls):
    """The chain path evaluates the model once per (model, event shape, dtype, device) to get the
    model's own error for a state it rejects; a remembered acceptance must not hide a new shape
    or a new model."""
    s = make(cls, model=HimmelblauModel())
    assert s.sample(x=torch.zeros(4, 2), n_steps=2).shape == (4, 2) and s.last_path == "chain"
    with pytest.raises(ValueError, match="HimmelblauModel is defined for dimension 2, got states of dimension 3"):
        s.sample(x=torch.zeros(4, 3), n_steps=2)
    s.model = gaussian(dim=2)
    s.sample(x=torch.zeros(4, 2), n_steps=2)
    s.model = gaussian(dim=3)
    with pytest.raises(ValueError, match="GaussianModel is defined for dimension 3, got states of dimension 2"):
        s.sample(x=torch.zeros(4, 2), n_steps=2)


@pytest.mark.parametrize("cls", SAMPLERS)
def test_a_sampler_pickles_after_a_chain_call(cls):
    s = make(cls, model=gaussian())
    s.sample(x=torch.zeros(4, 2), n_steps=2)
    assert s.last_path == "chain"
    clone = pickle.loads(pickle.dumps(s))
    assert clone.sample(x=torch.zeros(4, 2), n_steps=2).shape == (4, 2)


def test_a_langevin_sampler_pickles_without_its_cuda_graph_cache():
    """Captured graphs (process-bound device state) are left out of a pickle; the copy starts
    with an empty cache."""
    s = LangevinDynamics(gaussian(), step_size=0.01)
    s._cuda_graphs["key"] = (s.model, lambda x: x)  # stands in for a capture: not picklable
    clone = pickle.loads(pickle.dumps(s))
    assert len(clone._cuda_graphs) == 0 and len(s._cuda_graphs) == 1
    assert clone.sample(x=torch.zeros(4, 2), n_steps=2).shape == (4, 2)
