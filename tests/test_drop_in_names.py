"""The TorchEBM 0.8.9 names that 0.8.9 code imports (issue 11): integrators, dataset classes,
checkpoint and EMA helpers, ``__version__``, and an ImportError for the names left out."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import math
import tomllib
from pathlib import Path

import pytest
import torch
from torch import nn

import torchebm
from torchebm import _out_of_scope
from torchebm.core import GaussianModel
from torchebm.datasets import (
    CheckerboardDataset,
    CircleDataset,
    EightGaussiansDataset,
    GaussianMixtureDataset,
    GridDataset,
    PinwheelDataset,
    SwissRollDataset,
    TwoMoonsDataset,
    toy2d,
)
from torchebm.integrators import EulerMaruyamaIntegrator, LeapfrogIntegrator
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics, MetropolisAdjustedLangevin
from torchebm.utils import EMA, load_checkpoint, requires_grad, save_checkpoint, update_ema

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- integrators
def kick_drift_kick(x, p, force, eps, n, mass=1.0):
    """The leapfrog written out: half kick, drift, half kick, ``n`` times."""
    for _ in range(n):
        p = p + 0.5 * eps * force(x)
        x = x + eps * p / mass
        p = p + 0.5 * eps * force(x)
    return x, p


@pytest.mark.parametrize("mass", [None, 2.0, torch.tensor([0.5, 4.0])])
def test_leapfrog_integrate_is_the_leapfrog(mass):
    force = lambda x: -torch.tanh(x) - x  # noqa: E731
    x0, p0 = torch.randn(5, 2, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    out = LeapfrogIntegrator().integrate({"x": x0, "p": p0}, 0.1, 7, mass, drift=lambda x, t: force(x))
    want_x, want_p = kick_drift_kick(x0, p0, force, 0.1, 7, 1.0 if mass is None else mass)
    torch.testing.assert_close(out["x"], want_x, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out["p"], want_p, rtol=1e-12, atol=1e-12)
    one = LeapfrogIntegrator().step({"x": x0, "p": p0}, 0.1, mass, drift=lambda x, t: force(x))
    want_x, want_p = kick_drift_kick(x0, p0, force, 0.1, 1, 1.0 if mass is None else mass)
    torch.testing.assert_close(one["x"], want_x, rtol=1e-12, atol=1e-12)


def test_leapfrog_costs_n_plus_one_force_evaluations_and_checks_its_arguments():
    calls = []
    drift = lambda x, t: calls.append(1) or -x  # noqa: E731
    LeapfrogIntegrator().integrate({"x": torch.ones(2, 2), "p": torch.zeros(2, 2)}, 0.1, 6, drift=drift)
    assert len(calls) == 7
    state = {"x": torch.ones(2, 2), "p": torch.zeros(2, 2)}
    with pytest.raises(ValueError, match=r"n_steps must be positive \(an int\), got 0"):
        LeapfrogIntegrator().integrate(state, 0.1, 0, drift=drift)
    with pytest.raises(ValueError, match="drift must be provided explicitly"):
        LeapfrogIntegrator().integrate(state, 0.1, 2)
    with pytest.raises(ValueError, match="mass must be positive"):
        LeapfrogIntegrator().integrate(state, 0.1, 2, -1.0, drift=drift)


def test_leapfrog_safe_mode_clamps_forces_and_removes_nan():
    state = {"x": torch.zeros(1, 2), "p": torch.zeros(1, 2)}
    out = LeapfrogIntegrator().integrate(state, 1.0, 1, drift=lambda x, t: torch.full_like(x, 1e9), safe=True)
    # force clamped to 1e6: p = 1e6, x = 0.5e6 after one step
    torch.testing.assert_close(out["x"], torch.full((1, 2), 0.5e6))
    nan = LeapfrogIntegrator().integrate(state, 1.0, 1, drift=lambda x, t: x * float("nan"), safe=True)
    assert torch.equal(nan["x"], torch.zeros(1, 2)) and torch.equal(nan["p"], torch.zeros(1, 2))


def test_euler_maruyama_step_is_the_formula():
    x, noise = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    f = lambda x, t: -2.0 * x + t[:, None]  # noqa: E731
    t = torch.full((4,), 0.3, dtype=torch.float64)
    out = EulerMaruyamaIntegrator().step({"x": x}, 0.05, drift=f, diffusion=0.7, noise=noise, t=t)["x"]
    torch.testing.assert_close(out, x + 0.05 * f(x, t) + math.sqrt(2 * 0.7 * 0.05) * noise, rtol=1e-12, atol=1e-12)
    scale = EulerMaruyamaIntegrator().step({"x": x}, 0.05, drift=f, noise_scale=0.5, noise=noise, t=t)["x"]
    torch.testing.assert_close(scale, x + 0.05 * f(x, t) + math.sqrt(2 * 0.25 * 0.05) * noise, rtol=1e-12, atol=1e-12)
    euler = EulerMaruyamaIntegrator().step({"x": x}, 0.05, drift=f)["x"]
    torch.testing.assert_close(euler, x + 0.05 * f(x, torch.zeros(4, dtype=torch.float64)), rtol=1e-12, atol=1e-12)


def test_euler_maruyama_integrate():
    x = torch.ones(3, 2, dtype=torch.float64)
    # Euler on dx = -x dt: (1 - h)^n exactly.
    out = EulerMaruyamaIntegrator().integrate({"x": x}, 0.1, 5, drift=lambda x, t: -x)["x"]
    torch.testing.assert_close(out, x * 0.9 ** 5, rtol=1e-12, atol=1e-12)
    # A time grid: the drift sees each step's start time.
    seen = []
    grid = torch.tensor([0.0, 0.1, 0.3, 0.6], dtype=torch.float64)
    EulerMaruyamaIntegrator().integrate({"x": x}, None, None, drift=lambda x, t: seen.append(float(t[0])) or 0 * x, t=grid)
    assert seen == pytest.approx([0.0, 0.1, 0.3])
    a = EulerMaruyamaIntegrator().integrate({"x": x}, 0.1, 4, drift=lambda x, t: -x, noise_scale=1.0,
                                            generator=torch.Generator().manual_seed(0))["x"]
    b = EulerMaruyamaIntegrator().integrate({"x": x}, 0.1, 4, drift=lambda x, t: -x, noise_scale=1.0,
                                            generator=torch.Generator().manual_seed(0))["x"]
    assert torch.equal(a, b) and not torch.equal(a, x * 0.9 ** 4)
    with pytest.raises(ValueError, match="t must be a 1D tensor with length >= 2"):
        EulerMaruyamaIntegrator().integrate({"x": x}, 0.1, 4, drift=lambda x, t: -x, t=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="adaptive stepping is not available"):
        EulerMaruyamaIntegrator().integrate({"x": x}, 0.1, 4, drift=lambda x, t: -x, adaptive=True)


@pytest.mark.parametrize("cls, integrator", [
    (LangevinDynamics, EulerMaruyamaIntegrator), (MetropolisAdjustedLangevin, EulerMaruyamaIntegrator),
    (HamiltonianMonteCarlo, LeapfrogIntegrator),
])
def test_samplers_take_integrator_objects(cls, integrator):
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    obj = integrator()
    with_obj = cls(model, step_size=0.1, integrator=obj)
    assert with_obj.integrator is obj
    plain = cls(model, step_size=0.1)
    a = with_obj.sample(dim=2, n_samples=4, n_steps=3, generator=torch.Generator().manual_seed(2))
    b = plain.sample(dim=2, n_samples=4, n_steps=3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)
    assert with_obj.state_dict().keys() == plain.state_dict().keys()


def test_samplers_refuse_the_wrong_integrator_or_a_subclass():
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    with pytest.raises(TypeError, match=r"integrator must be None or 'euler_maruyama'.*LeapfrogIntegrator"):
        LangevinDynamics(model, integrator=LeapfrogIntegrator())

    class Custom(LeapfrogIntegrator):
        pass

    with pytest.raises(TypeError, match="a subclass of it would not be run"):
        HamiltonianMonteCarlo(model, integrator=Custom())


@pytest.mark.parametrize("cls, integrator", [
    (LangevinDynamics, EulerMaruyamaIntegrator), (MetropolisAdjustedLangevin, EulerMaruyamaIntegrator),
    (HamiltonianMonteCarlo, LeapfrogIntegrator),
])
def test_an_integrator_built_for_another_dtype_or_device_is_refused(cls, integrator):
    """As in TorchEBM 0.8.9, an integrator object must match the sampler's device/dtype; one
    left unset on either side matches anything (the state's dtype and device are used)."""
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    with pytest.raises(ValueError, match=r"device/dtype.*dtype torch.float64 against the sampler's torch.float32"):
        cls(model, step_size=0.1, dtype=torch.float32, integrator=integrator(dtype=torch.float64))
    with pytest.raises(ValueError, match=r"device/dtype.*device meta against the sampler's cpu"):
        cls(model, step_size=0.1, device="cpu", integrator=integrator(device="meta"))
    cls(model, step_size=0.1, dtype=torch.float64, integrator=integrator())
    cls(model, step_size=0.1, integrator=integrator(dtype=torch.float64, device="cpu"))
    cls(model, step_size=0.1, dtype=torch.float64, device="cpu", integrator=integrator(dtype=torch.float64, device="cpu"))


# ----------------------------------------------------------------------------- datasets
DATASETS = [GaussianMixtureDataset, EightGaussiansDataset, TwoMoonsDataset, SwissRollDataset, CircleDataset,
            CheckerboardDataset, PinwheelDataset]


@pytest.mark.parametrize("cls", DATASETS)
def test_dataset_classes(cls):
    state = torch.get_rng_state()
    d = cls(n_samples=300, seed=4, dtype=torch.float64)
    assert torch.equal(torch.get_rng_state(), state)  # a seeded draw leaves the global RNG alone
    assert len(d) == 300 and d.get_data().shape == (300, 2) and d.data.dtype == torch.float64
    assert torch.equal(d[7], d.data[7]) and torch.isfinite(d.data).all()
    assert torch.equal(cls(n_samples=300, seed=4, dtype=torch.float64).data, d.data)
    old = d.data
    d.regenerate(seed=5)
    assert d.seed == 5 and not torch.equal(d.data, old)
    batch = next(iter(torch.utils.data.DataLoader(d, batch_size=32)))
    assert batch.shape == (32, 2)
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        cls(n_samples=0)


def test_dataset_geometry_follows_the_arguments():
    ring = GaussianMixtureDataset(n_samples=4000, n_components=5, std=0.0, radius=3.0, seed=0).data
    torch.testing.assert_close(ring.norm(dim=1), torch.full((4000,), 3.0))
    angles = torch.atan2(ring[:, 1], ring[:, 0]) % (2 * math.pi) / (2 * math.pi / 5)
    torch.testing.assert_close(angles, angles.round(), atol=1e-4, rtol=0)
    eight = EightGaussiansDataset(n_samples=100, std=0.0, scale=2.5, seed=0).data
    torch.testing.assert_close(eight.norm(dim=1), torch.full((100,), 2.5))
    circle = CircleDataset(n_samples=100, noise=0.0, radius=0.7, seed=0).data
    torch.testing.assert_close(circle.norm(dim=1), torch.full((100,), 0.7))
    board = CheckerboardDataset(n_samples=500, range_limit=2.0, seed=0).data
    assert board.abs().max() <= 2.0
    roll = SwissRollDataset(n_samples=500, noise=0.0, seed=0).data
    assert roll.norm(dim=1).max() <= 2.0 + 1e-6  # outer radius 2
    grid = GridDataset(n_samples_per_dim=4, range_limit=1.5, noise=0.0)
    assert len(grid) == 16 and grid.data.abs().max() == 1.5


def test_pinwheel_defaults_map_onto_the_generator_defaults():
    # PinwheelDataset's docstring: at 0.8.9's default arguments the mapped values are the
    # generator's defaults.
    defaults = {k: p.default for k, p in inspect.signature(toy2d.pinwheel).parameters.items()}
    ds = {k: p.default for k, p in inspect.signature(PinwheelDataset.__init__).parameters.items()}
    assert ds["n_classes"] == defaults["n_arms"]
    assert ds["angular_scale"] == defaults["tangential_std"]
    assert ds["spiral_scale"] / 20 == defaults["rate"]
    assert ds["radial_scale"] * 0.75 == defaults["scale"]


# ----------------------------------------------------------------------------- utils
def test_ema_update_copy_and_state_dict():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    ema = EMA(model, decay=0.9)
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    start = [p.detach().clone() for p in ema.module.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.fill_(2.0)
    ema.update(model)
    for avg, s, p in zip(ema.module.parameters(), start, model.parameters()):
        torch.testing.assert_close(avg, 0.9 * s + 0.1 * p)
    assert torch.equal(ema.module[1].running_mean, model[1].running_mean) and ema.step == 1
    sd = ema.state_dict()
    assert "module.0.weight" in sd and sd["_extra_state"] == {"step": 1}
    fresh = EMA(model, decay=0.9)
    fresh.load_state_dict(sd)
    assert fresh.step == 1
    live = [p.detach().clone() for p in model.parameters()]
    with ema.average_parameters(model):
        torch.testing.assert_close(model[0].weight, ema.module[0].weight)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), live))
    warm = EMA(model, decay=0.999, decay_schedule="warmup")
    assert warm.current_decay() == pytest.approx(1 / 10)
    with pytest.raises(ValueError, match=r"decay must be in \[0, 1\)"):
        EMA(model, decay=1.0)


def test_update_ema_and_requires_grad():
    model, avg = nn.Linear(2, 2), nn.Linear(2, 2)
    before = avg.weight.detach().clone()
    update_ema(avg, model, decay=0.75)
    torch.testing.assert_close(avg.weight, 0.75 * before + 0.25 * model.weight.detach())
    requires_grad(model, False)
    assert not any(p.requires_grad for p in model.parameters())


def test_checkpoint_round_trip(tmp_path):
    model = nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(4, 2)).sum().backward()
    opt.step()
    ema = EMA(model, decay=0.5)
    path = save_checkpoint(model, opt, 12, str(tmp_path / "ckpt"), ema_model=ema, args={"lr": 0.1})
    assert path.endswith("0000012.pt")
    model2, ema2 = nn.Linear(2, 2), EMA(nn.Linear(2, 2), decay=0.5)
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.1)
    ckpt = load_checkpoint(path, model2, ema_model=ema2, optimizer=opt2)
    assert ckpt["step"] == 12 and ckpt["args"] == {"lr": 0.1}
    assert torch.equal(model2.weight, model.weight) and torch.equal(ema2.module.weight, ema.module.weight)
    assert opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


# ----------------------------------------------------------------------------- version, left out
def test_version_is_the_package_version():
    with open(ROOT / "pyproject.toml", "rb") as f:
        declared = tomllib.load(f)["project"]["version"]
    assert torchebm.__version__ == importlib.metadata.version("torchebm-fused") == declared


@pytest.mark.parametrize("module, name", [(m, n) for m, names in _out_of_scope.NAMES.items() for n in names])
def test_left_out_names_raise_an_import_error_that_says_so(module, name):
    with pytest.raises(ImportError, match="is not part of this package"):
        if module == "torchebm":
            importlib.import_module(f"torchebm.{name}")
        else:
            exec(f"from {module} import {name}", {})


def test_other_missing_names_are_still_attribute_errors():
    with pytest.raises(AttributeError):
        torchebm.samplers.NoSuchSampler  # noqa: B018
    assert not hasattr(torchebm.losses, "no_such_loss")


def test_samplers_hold_an_integrator_object_by_default():
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    assert type(LangevinDynamics(model).integrator) is EulerMaruyamaIntegrator
    assert type(MetropolisAdjustedLangevin(model, integrator="euler_maruyama").integrator) is EulerMaruyamaIntegrator
    assert type(HamiltonianMonteCarlo(model, integrator="leapfrog").integrator) is LeapfrogIntegrator


def test_a_0_8_9_style_dataset_subclass_works_and_the_base_is_abstract():
    from torchebm.datasets import BaseSyntheticDataset

    class Line(BaseSyntheticDataset):  # 0.8.9's protocol: implement _generate_data(self)
        def _generate_data(self):
            t = torch.rand(self.n_samples, generator=self.generator)
            return torch.stack([t, 2 * t], dim=1)

    d = Line(n_samples=20, seed=3, dtype=torch.float64)
    assert d.data.shape == (20, 2) and d.data.dtype == torch.float64
    torch.testing.assert_close(d.data[:, 1], 2 * d.data[:, 0])
    with pytest.raises(TypeError):
        BaseSyntheticDataset(n_samples=10)


def test_two_moons_and_checkerboard_are_on_0_8_9s_coordinates():
    moons = TwoMoonsDataset(n_samples=2000, noise=0.0, seed=0).data
    # upper moon (cos t, sin t), lower moon (1 - cos t, 1/2 - sin t), t in [0, pi]
    assert moons[:, 0].min() >= -1 - 1e-6 and moons[:, 0].max() <= 2 + 1e-6
    assert moons[:, 1].min() >= -0.5 - 1e-6 and moons[:, 1].max() <= 1 + 1e-6
    for limit in (4.0, 3):
        board = CheckerboardDataset(n_samples=1000, range_limit=limit, seed=0).data
        assert board.abs().max() <= limit
        parity = (torch.floor(board[:, 0]) + torch.floor(board[:, 1])) % 2
        assert torch.all(parity == 1)  # the squares with floor(x) + floor(y) odd


def test_loss_bases_import_from_0_8_9s_core_path():
    from torchebm.core.base_loss import BaseContrastiveDivergence, BaseScoreMatching
    from torchebm.losses import DenoisingScoreMatching
    from torchebm.losses.base_contrastive_divergence import BaseContrastiveDivergence as cd_base

    assert BaseContrastiveDivergence is cd_base
    assert issubclass(DenoisingScoreMatching, BaseScoreMatching)
