"""Contrastive divergence: the seeds' two calling conventions, TorchEBM 0.8.9's constructor and
behaviour, and where we deliberately differ from it (non-finite losses surface, schedules are
not restarted per call).

The seed examples are read from the seed documents at run time (``tests/seed_examples.py``),
with only the names their pages leave undefined (an optimiser, a data batch) supplied here.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from torchebm.core import (
    BaseContrastiveDivergence,
    BaseLoss,
    BaseModel,
    EnergyModel,
    LinearScheduler,
    MLP,
)
from torchebm.core.base_loss import TorchEBMDeprecationWarning
from torchebm.core import base_module
from torchebm.losses import ContrastiveDivergence, PersistentContrastiveDivergence
from torchebm.samplers import LangevinDynamics

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed_examples  # noqa: E402


def mlp_model(seed: int = 0, hidden: int = 16) -> EnergyModel:
    torch.manual_seed(seed)
    return EnergyModel(MLP(2, [hidden, hidden]))


def make_cd(model=None, *, step_size=0.05, sampler_kwargs=None, **kwargs):
    model = model if model is not None else mlp_model()
    sampler = LangevinDynamics(model, step_size=step_size, **(sampler_kwargs or {}))
    kwargs.setdefault("k_steps", 5)
    return ContrastiveDivergence(model=model, sampler=sampler, **kwargs)


def data(n: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


class QuadraticModel(BaseModel):
    """``E(x) = w * |x|^2 / 2`` with a learnable scalar ``w``."""

    def __init__(self, w: float = 1.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(float(w)))

    def forward(self, x):
        return 0.5 * self.w * x.square().sum(dim=1)


class ConditionalModel(BaseModel):
    """``E(x, y) = |x - mu_y|^2 / 2`` with a learnable mean per class; records the ``y`` seen."""

    def __init__(self, n_classes: int = 3, uses_y: bool = True):
        super().__init__()
        self.means = nn.Parameter(torch.randn(n_classes, 2))
        self.uses_y = uses_y
        self.seen_y = []

    def forward(self, x, y=None):
        self.seen_y.append(y)
        mu = self.means[y] if self.uses_y else self.means[0]
        return 0.5 * (x - mu).square().sum(dim=1)


# --------------------------------------------------------------------------------------
# The seeds' examples
# --------------------------------------------------------------------------------------


def _seed_example(seed: str, index: int) -> str:
    examples = seed_examples.extract_all().get(seed)
    if not examples:
        pytest.skip("seed documents not found (set TORCHEBM_SEEDS_DIR)")
    return examples[index - 1].source


@pytest.mark.parametrize("seed", ["000", "001"])
def test_seed_samplers_guide_cd_example_trains(seed, one_thread):
    """Seed 000 (old API) / 001 (new API), "Integration with Loss Functions": persistent CD
    called as ``loss, negative_samples = loss_fn(data_batch)``, after the page's first example
    (which defines the energy and the Langevin sampler). The page never defines ``optimizer``
    or ``data_batch``: they are supplied."""
    namespace: dict = {"__name__": f"seed{seed}"}
    torch.manual_seed(0)
    exec(compile(_seed_example(seed, 1), f"seed{seed}_example1", "exec"), namespace)
    model = namespace.get("energy_fn", namespace.get("model"))
    namespace["optimizer"] = torch.optim.Adam(model.parameters(), lr=1e-3)
    namespace["data_batch"] = data(64)
    before = [p.detach().clone() for p in model.parameters()]
    exec(compile(_seed_example(seed, 5), f"seed{seed}_example5", "exec"), namespace)
    loss, negatives = namespace["loss"], namespace["negative_samples"]
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert negatives.shape == (64, 2) and not negatives.requires_grad
    assert namespace["loss_fn"].replay_buffer.shape == (1024, 2)
    assert any(not torch.equal(b, p) for b, p in zip(before, model.parameters()))


def test_seed004_usage_flow_trains_with_model_passed_per_call(one_thread):
    """Seed 004, "Typical Usage Flow": ``ContrastiveDivergence(sampler=sampler, k=10)`` and a
    loop of ``loss = loss_fn(model, data_samples)``; ``loss.backward()``. The page's imports
    and ``data_samples`` are supplied. The per-call model becomes the sampler's target."""
    preamble = (
        "import torch\n"
        "from torchebm.core import GaussianEnergy, EnergyModel, MLP\n"
        "from torchebm.samplers import LangevinDynamics\n"
        "from torchebm.losses import ContrastiveDivergence\n"
    )
    torch.manual_seed(0)
    namespace: dict = {"__name__": "seed004", "data_samples": 0.5 * data(128) + 1.0}
    exec(compile(preamble + _seed_example("004", 15), "seed004_example15", "exec"), namespace)
    loss, model, loss_fn = namespace["loss"], namespace["model"], namespace["loss_fn"]
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and torch.isfinite(loss)
    assert loss_fn.model is model and loss_fn.sampler.model is model
    assert loss_fn.k_steps == 10


# --------------------------------------------------------------------------------------
# Calling conventions
# --------------------------------------------------------------------------------------


def test_call_with_data_returns_scalar_loss_and_detached_negatives():
    cd = make_cd()
    x = data()
    loss, negatives = cd(x)
    assert loss.shape == () and loss.requires_grad
    assert negatives.shape == x.shape and negatives.dtype == x.dtype
    assert not negatives.requires_grad and negatives.grad_fn is None
    loss.backward()
    assert all(p.grad is not None for p in cd.model.parameters())


def test_call_with_model_and_data_returns_loss_only_and_rebinds_sampler():
    first, second = mlp_model(0), mlp_model(1)
    sampler = LangevinDynamics(first, step_size=0.05)
    cd = ContrastiveDivergence(sampler=sampler, k=3)
    assert cd.model is first
    loss = cd(second, data())
    assert isinstance(loss, torch.Tensor) and loss.shape == ()
    assert cd.model is second and sampler.model is second
    loss.backward()
    assert all(p.grad is not None for p in second.parameters())
    assert all(p.grad is None for p in first.parameters())


def test_call_rejects_extra_positional_and_unknown_keyword_arguments():
    cd = make_cd()
    with pytest.raises(TypeError, match="extra positional"):
        cd(data(), data())
    with pytest.raises(TypeError, match="exactly one data tensor"):
        cd(cd.model, data(), data())
    with pytest.raises(TypeError, match="'temperature'"):
        cd(data(), temperature=2.0)


def test_per_call_overrides_still_work_with_a_deprecation_warning():
    cd = make_cd(energy_reg_weight=0.0)
    base_module._warned_keys.discard("cd-forward-energy_reg_weight")
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    plain, negatives = cd(data(), generator=g())
    with pytest.warns(TorchEBMDeprecationWarning, match="energy_reg_weight"):
        regularised, _ = cd(data(), generator=g(), energy_reg_weight=0.5)
    # Same generator -> same negatives; the override adds 0.5 (mean E+^2 + mean E-^2).
    e_pos, e_neg = cd.model(data()), cd.model(_)
    expected = plain + 0.5 * (e_pos.square().mean() + e_neg.square().mean())
    assert torch.allclose(regularised, expected, atol=1e-5)


# --------------------------------------------------------------------------------------
# Constructor: TorchEBM 0.8.9 defaults, old names, errors
# --------------------------------------------------------------------------------------


def _defaults(fn) -> dict:
    return {
        name: p.default
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_constructor_defaults_and_positional_order_match_torchebm_0_8_9():
    cd = _defaults(ContrastiveDivergence.__init__)
    assert {k: cd[k] for k in (
        "k_steps", "persistent", "buffer_size", "init_steps", "new_sample_ratio",
        "energy_reg_weight", "add_noise_to_real", "noise_scale", "dtype",
    )} == {
        "k_steps": 10, "persistent": False, "buffer_size": 10000, "init_steps": 100,
        "new_sample_ratio": 0.05, "energy_reg_weight": 0.001, "add_noise_to_real": False,
        "noise_scale": 1e-4, "dtype": torch.float32,
    }
    positional = [
        name for name, p in inspect.signature(ContrastiveDivergence.__init__).parameters.items()
        if p.kind is p.POSITIONAL_OR_KEYWORD
    ]
    assert positional == [
        "self", "model", "sampler", "k_steps", "persistent", "buffer_size", "init_steps",
        "new_sample_ratio", "energy_reg_weight", "add_noise_to_real", "noise_scale", "dtype",
        "device",
    ]
    base = _defaults(BaseContrastiveDivergence.__init__)
    assert {k: base[k] for k in ("k_steps", "persistent", "buffer_size", "new_sample_ratio", "init_steps")} == {
        "k_steps": 1, "persistent": False, "buffer_size": 100, "new_sample_ratio": 0.0, "init_steps": 0,
    }
    assert _defaults(BaseLoss.__init__) == {
        "dtype": torch.float32, "device": None, "cfg_dropout": 0.0, "null_condition": None,
        "check_conditioning": True,
    }


def test_class_hierarchy_and_module_structure():
    cd = make_cd()
    names = [c.__name__ for c in type(cd).__mro__]
    assert names[:6] == [
        "ContrastiveDivergence", "BaseContrastiveDivergence", "BaseLoss", "Schedulable",
        "TorchEBMModule", "Module",
    ]
    assert cd.sampler in list(cd.modules()) and cd.model in list(cd.modules())
    assert {id(p) for p in cd.parameters()} == {id(p) for p in cd.model.parameters()}
    assert repr(cd) == f"ContrastiveDivergence(model={cd.model!r}, sampler={cd.sampler!r})"
    assert cd.buffer_initialized is False and cd.replay_buffer is None
    assert cd.buffer_ptr.dtype == torch.long and cd.buffer_ptr.shape == ()


def test_old_keyword_names_are_accepted_and_conflicts_rejected():
    model = mlp_model()
    sampler = LangevinDynamics(model, step_size=0.05)
    cd = ContrastiveDivergence(energy_function=model, sampler=sampler, k=4)
    assert cd.model is model and cd.k_steps == 4
    with pytest.raises(TypeError, match="energy_function"):
        ContrastiveDivergence(model=model, energy_function=model, sampler=sampler)
    with pytest.raises(TypeError, match="k_steps= or its old name k="):
        ContrastiveDivergence(model=model, sampler=sampler, k_steps=3, k=4)


def test_leftover_keyword_arguments_raise_type_error_naming_them():
    model = mlp_model()
    sampler = LangevinDynamics(model, step_size=0.05)
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) 'bogus'.*Supported parameters:.*energy_reg_weight"):
        ContrastiveDivergence(model, sampler, bogus=1)
    with pytest.raises(TypeError, match="'foo'"):
        BaseContrastiveDivergence.__init__(object.__new__(ContrastiveDivergence), model, sampler, foo=2)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_cfg_dropout_outside_unit_interval_is_rejected(value):
    with pytest.raises(ValueError, match=rf"cfg_dropout must be in \[0, 1\], got {value}"):
        make_cd(cfg_dropout=value, null_condition=0)


def test_cfg_dropout_needs_a_null_condition():
    with pytest.raises(ValueError, match="needs a null_condition"):
        make_cd(cfg_dropout=0.1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k_steps": -1}, "k_steps must be >= 0"),
        ({"persistent": True, "buffer_size": 0}, r"buffer_size must be positive \(>= 1\)"),
        ({"new_sample_ratio": 1.5}, r"new_sample_ratio must be in \[0, 1\]"),
        ({"init_steps": -5}, "init_steps must be >= 0"),
        ({"energy_reg_weight": -1.0}, "energy_reg_weight must be non-negative"),
        ({"buffer_init": "laplace"}, "buffer_init must be 'normal', 'uniform' or a callable"),
    ],
)
def test_invalid_settings_are_rejected_with_the_argument_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_cd(**kwargs)


def test_a_sampler_is_required():
    with pytest.raises(TypeError, match="sampler is required"):
        ContrastiveDivergence(model=mlp_model())


def test_a_sampler_targeting_another_model_is_warned_about():
    sampler = LangevinDynamics(mlp_model(0), step_size=0.05)
    with pytest.warns(UserWarning, match="negatives come from sampler.model"):
        ContrastiveDivergence(model=mlp_model(1), sampler=sampler)


def test_persistent_class_is_always_persistent():
    model = mlp_model()
    sampler = LangevinDynamics(model, step_size=0.05)
    assert PersistentContrastiveDivergence(model, sampler).persistent
    with pytest.warns(UserWarning, match="always persistent"):
        pcd = PersistentContrastiveDivergence(model, sampler, persistent=False)
    assert pcd.persistent
    with pytest.warns(UserWarning, match="always persistent"):
        pcd = PersistentContrastiveDivergence(model, sampler, 5, False, 64)
    assert pcd.persistent and pcd.k_steps == 5 and pcd.buffer_size == 64


# --------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------


def test_loss_is_the_cd_formula_with_energy_regularisation():
    model = QuadraticModel(w=2.0)
    cd = make_cd(model, energy_reg_weight=0.1)
    x, neg = data(16, seed=1), data(16, seed=2)
    e_pos, e_neg = x.square().sum(1), neg.square().sum(1)  # w |x|^2 / 2 with w = 2
    expected = e_pos.mean() - e_neg.mean() + 0.1 * (e_pos.square().mean() + e_neg.square().mean())
    loss = cd.compute_loss(x, neg)
    assert torch.allclose(loss, expected, rtol=1e-6)
    # d loss / d w with E = w s: mean(s+) - mean(s-) + 0.1 * 2 w (mean(s+^2) + mean(s-^2))
    loss.backward()
    s_pos, s_neg = e_pos / 2, e_neg / 2
    grad = s_pos.mean() - s_neg.mean() + 0.1 * 2 * 2.0 * (s_pos.square().mean() + s_neg.square().mean())
    assert torch.allclose(model.w.grad, grad, rtol=1e-5)


def test_no_gradient_flows_into_the_negatives():
    model = QuadraticModel()
    cd = make_cd(model, energy_reg_weight=0.0)
    neg = data(8, seed=2).requires_grad_(True)
    loss = cd.compute_loss(data(8), neg)
    loss.backward()
    assert neg.grad is None


def test_noise_on_real_data_uses_the_generator():
    cd = make_cd(QuadraticModel(), add_noise_to_real=True, noise_scale=0.5, energy_reg_weight=0.0)
    x, neg = data(64), data(64, seed=2)
    a = cd.compute_loss(x, neg, generator=torch.Generator().manual_seed(0))
    b = cd.compute_loss(x, neg, generator=torch.Generator().manual_seed(0))
    c = cd.compute_loss(x, neg, add_noise_to_real=False)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_energy_of_wrong_shape_is_reported():
    class Column(BaseModel):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(2, 1)

        def forward(self, x):
            return self.lin(x)  # [B, 1], not [B]

    model = Column()
    cd = ContrastiveDivergence(model=model, sampler=LangevinDynamics(model, step_size=0.05), k_steps=0)
    with pytest.raises(ValueError, match=r"returned energies of shape \(8, 1\) for a batch of 8; expected \(8,\)"):
        cd.compute_loss(data(8), data(8))


def test_non_finite_loss_raises_instead_of_being_replaced():
    model = QuadraticModel(w=float("nan"))
    cd = make_cd(model)
    with pytest.raises(FloatingPointError, match="the loss is nan"):
        cd(data())
    cd_unchecked = make_cd(model, check_finite=False)
    loss, _ = cd_unchecked(data())
    assert torch.isnan(loss)  # propagated, never replaced by a constant


def test_infinite_energies_raise():
    cd = make_cd(QuadraticModel())
    neg = data(8)
    neg[0, 0] = float("inf")
    with pytest.raises(FloatingPointError, match="not finite|is inf|is nan"):
        cd.compute_loss(data(8), neg)


# --------------------------------------------------------------------------------------
# Randomness
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("persistent", [False, True])
def test_same_generator_seed_gives_identical_loss_and_negatives(persistent):
    def run(seed):
        cd = make_cd(mlp_model(), persistent=persistent, buffer_size=64, init_steps=3,
                     add_noise_to_real=True)
        out = [cd(data(), generator=torch.Generator().manual_seed(seed)) for _ in range(2)]
        return [o[0].detach() for o in out], [o[1] for o in out]

    (la, na), (lb, nb), (lc, nc) = run(7), run(7), run(8)
    assert all(torch.equal(a, b) for a, b in zip(la + na, lb + nb))
    assert not torch.equal(na[1], nc[1])


def test_explicit_generator_leaves_the_global_rng_untouched():
    cd = make_cd(persistent=True, buffer_size=64, init_steps=2, add_noise_to_real=True)
    state = torch.get_rng_state()
    cd(data(), generator=torch.Generator().manual_seed(0))
    assert torch.equal(state, torch.get_rng_state())


def test_without_generator_the_global_rng_reproduces_a_run():
    def run():
        torch.manual_seed(11)
        cd = make_cd(mlp_model(), persistent=True, buffer_size=64, init_steps=2)
        return cd(data())[1]

    assert torch.equal(run(), run())


# --------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------


def test_sampler_schedules_continue_across_loss_calls():
    """0.8.9 restarts the sampler's schedules at every call; a schedule over the training run
    must instead advance by k_steps per call."""
    model = mlp_model()
    step = LinearScheduler(start_value=0.05, end_value=0.01, n_steps=100)
    sampler = LangevinDynamics(model, step_size=step)
    cd = ContrastiveDivergence(model=model, sampler=sampler, k_steps=5)
    for _ in range(3):
        cd(data())
    assert step.step_count == 15
    assert step.get_value() == pytest.approx(0.05 - 15 * 0.04 / 100)


def test_buffer_warm_up_does_not_consume_the_schedules():
    model = mlp_model()
    step = LinearScheduler(start_value=0.05, end_value=0.01, n_steps=100)
    sampler = LangevinDynamics(model, step_size=step)
    cd = ContrastiveDivergence(model=model, sampler=sampler, k_steps=5, persistent=True,
                               buffer_size=64, init_steps=20)
    cd(data())
    assert step.step_count == 5  # the 20 warm-up steps were rolled back


# --------------------------------------------------------------------------------------
# Sampler options pass through; custom samplers
# --------------------------------------------------------------------------------------


def test_clamp_grad_clip_and_decoupled_noise_are_sampler_options_that_reach_the_negatives():
    """Box clamping, gradient clipping and IGEBM-style noise (step size and noise standard
    deviation set apart) are LangevinDynamics options (clamp=, grad_clip=, noise_std=); the
    loss passes them through by calling the sampler."""
    cd = make_cd(step_size=0.5, sampler_kwargs={"clamp": (-1.0, 1.0), "grad_clip": 0.1},
                 persistent=True, buffer_size=64, init_steps=0)
    loss, negatives = cd(3.0 * data(32))
    assert negatives.min() >= -1.0 and negatives.max() <= 1.0
    assert torch.isfinite(loss)
    # With no noise and |clip(grad)| <= 0.1, one step of size 0.5 moves each coordinate <= 0.05.
    still = make_cd(step_size=0.5, sampler_kwargs={"grad_clip": 0.1, "noise_std": 0.0}, k_steps=1)
    x = data(32)
    _, moved = still(x)
    assert (moved - x).abs().max() <= 0.05 + 1e-6


class PlainSampler(nn.Module):
    """A user's own sampler whose ``sample`` knows none of our keywords (as seed 000's
    SimpleLangevin): plain gradient descent."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def sample(self, x=None, dim=2, n_steps=10, n_samples=1):
        for _ in range(n_steps):
            x = x - 0.1 * self.model.gradient(x)
        return x


def test_a_sampler_without_our_keywords_still_works():
    model = QuadraticModel()
    cd = ContrastiveDivergence(model=model, sampler=PlainSampler(model), k_steps=3)
    loss, negatives = cd(data(8))
    assert torch.allclose(negatives, data(8) * 0.9**3)
    with pytest.raises(TypeError, match="does not accept generator="):
        cd(data(8), generator=torch.Generator())


# --------------------------------------------------------------------------------------
# Conditioning
# --------------------------------------------------------------------------------------


def test_condition_reaches_the_model_and_the_sampler():
    model = ConditionalModel()
    cd = make_cd(model, k_steps=2, check_conditioning=False)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss, _ = cd(data(8), y=y)
    assert torch.isfinite(loss)
    # The sampler's one-time check of the energy's shape, 2 sampler steps, and the energies of
    # data and negatives, all with this batch's y.
    assert len(model.seen_y) == 5 and all(torch.equal(seen, y) for seen in model.seen_y)
    with pytest.raises(ValueError, match="not both"):
        cd(data(8), y=y, model_kwargs={"y": y})


def test_a_model_that_ignores_the_condition_is_caught_once():
    model = ConditionalModel(uses_y=False)
    y = torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="does not depend on y"):
        make_cd(model)(data(4), y=y)
    loss, _ = make_cd(model, check_conditioning=False)(data(4), y=y)
    assert torch.isfinite(loss)


def test_cfg_dropout_replaces_conditions_with_the_null_condition():
    model = ConditionalModel(n_classes=4)
    cd = make_cd(model, k_steps=1, cfg_dropout=0.5, null_condition=3, check_conditioning=False)
    y = torch.zeros(4000, dtype=torch.long)
    cd(torch.randn(4000, 2), y=y, generator=torch.Generator().manual_seed(0))
    used = model.seen_y[-1]
    assert set(used.unique().tolist()) == {0, 3}
    frac = (used == 3).double().mean().item()
    se = (0.25 / 4000) ** 0.5
    assert abs(frac - 0.5) < 5 * se, f"dropped fraction {frac:.4f}, expected 0.5 +- {se:.4f}"


# --------------------------------------------------------------------------------------
# Precision
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("persistent", [False, True])
def test_bfloat16_autocast_network_with_float32_chains(persistent):
    cd = make_cd(persistent=persistent, buffer_size=64, init_steps=2)
    x = data(32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cd.model(x).dtype == torch.bfloat16  # the network does run in bfloat16
        loss, negatives = cd(x)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert negatives.dtype == torch.float32
    if persistent:
        assert cd.replay_buffer.dtype == torch.float32
    loss.backward()
    grads = [p.grad for p in cd.model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_bfloat16_network_weights_with_float32_chains():
    model = mlp_model().to(torch.bfloat16)
    sampler = LangevinDynamics(model, step_size=0.05)  # no dtype=: chains take the data's float32
    cd = ContrastiveDivergence(model=model, sampler=sampler, k_steps=3, persistent=True,
                               buffer_size=64, init_steps=2)
    loss, negatives = cd(data(32))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert negatives.dtype == torch.float32 and cd.replay_buffer.dtype == torch.float32
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.bfloat16 for p in model.parameters())


def test_float64_data_keep_their_precision():
    model = mlp_model().double()
    sampler = LangevinDynamics(model, step_size=0.05, dtype=torch.float64)
    cd = ContrastiveDivergence(model=model, sampler=sampler, k_steps=2, persistent=True,
                               buffer_size=64, init_steps=0)
    loss, negatives = cd(data(16).double())
    assert loss.dtype == torch.float64 and negatives.dtype == torch.float64
    assert cd.replay_buffer.dtype == torch.float64
