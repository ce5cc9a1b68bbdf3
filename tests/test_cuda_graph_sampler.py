"""``LangevinDynamics(..., cuda_graph=True)``: the ``"cuda_graph"`` path (docs/kernels.md,
"Dispatch").

Without a GPU: an explicit request that cannot be honoured raises, and argument conflicts
(a varying schedule, trajectories, conditioning, ``backend="reference"``) are reported before the
hardware is looked at, so they read the same on every machine. The path's plumbing (seed,
coefficients, capture cache, schedules, ``ContrastiveDivergence``) is checked on the CPU too, with
a stand-in for :func:`~torchebm.kernels.cuda_graph.capture_langevin` that runs its documented
contract (the per-step fused loop) on the CPU kernels. With a GPU and the graph-safe ops (``cuda``
marker, skipped otherwise): the real replays equal the per-step fused path for the same seed,
draw fresh noise per call, see in-place parameter updates, cache their captures, and sample a
Gaussian with the ULA stationary variance within Monte Carlo standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchebm.core import (
    BaseModel,
    ConstantScheduler,
    EnergyModel,
    ExponentialDecayScheduler,
    LinearScheduler,
    MLP,
)
from torchebm import kernels
from torchebm.kernels import dispatch, ops
from torchebm.kernels.cuda_graph import graph_safe_available
from torchebm.kernels.dispatch import NoKernelError
from torchebm.losses import ContrastiveDivergence
from torchebm.samplers import LangevinDynamics
from torchebm.samplers import langevin_cuda_graph, mcmc_sampler
from torchebm.samplers.langevin_cuda_graph import steps_per_graph


def mlp(d: int = 2, seed: int = 0) -> EnergyModel:
    torch.manual_seed(seed)
    return EnergyModel(MLP(d, [16, 16]))


class ConditionalQuadratic(BaseModel):
    def forward(self, x, y=None):
        return 0.5 * ((x - y) ** 2).sum(dim=-1)


# ---------------------------------------------------------------- the API and its errors (CPU)


def test_constructor_and_sample_take_a_keyword_only_flag_defaulting_to_off():
    import inspect

    init = inspect.signature(LangevinDynamics.__init__).parameters["cuda_graph"]
    sample = inspect.signature(LangevinDynamics.sample).parameters["cuda_graph"]
    assert init.kind is inspect.Parameter.KEYWORD_ONLY and init.default is False
    assert sample.kind is inspect.Parameter.KEYWORD_ONLY and sample.default is None
    assert LangevinDynamics(mlp()).cuda_graph is False
    assert "cuda_graph" in dispatch.PATHS


@pytest.mark.parametrize("value", [1, "yes", None])
def test_a_non_bool_flag_is_a_type_error_naming_it(value):
    with pytest.raises(TypeError, match=r"cuda_graph must be a bool, got"):
        LangevinDynamics(mlp(), cuda_graph=value)
    if value is not None:  # None is sample()'s "use the constructor's value"
        with pytest.raises(TypeError, match=r"cuda_graph must be a bool, got"):
            LangevinDynamics(mlp()).sample(dim=2, n_steps=1, cuda_graph=value)


def test_a_cpu_state_raises_and_does_not_fall_back():
    # Without CUDA every state is a CPU state; with it, a CPU sampler's is.
    s = LangevinDynamics(mlp(), step_size=0.01, device="cpu")
    expected = (
        r"cuda_graph=True cannot be honoured: the chain state is on cpu, not a CUDA device "
        rf"\(torch.cuda.is_available\(\) is {torch.cuda.is_available()}\); pass cuda_graph=False"
    )
    with pytest.raises(NoKernelError, match=expected):
        s.sample(dim=2, n_samples=8, n_steps=5, cuda_graph=True)
    assert s.last_path is None  # nothing ran
    assert issubclass(NoKernelError, RuntimeError)


def test_the_constructor_flag_is_the_default_and_sample_overrides_it():
    s = LangevinDynamics(mlp(), step_size=0.01, cuda_graph=True)
    with pytest.raises(NoKernelError, match="cuda_graph=True"):
        s.sample(x=torch.zeros(4, 2), n_steps=3)
    out = s.sample(x=torch.zeros(4, 2), n_steps=3, cuda_graph=False)
    assert out.shape == (4, 2) and s.last_path in ("chain", "fused", "reference")


def test_contrastive_divergence_forwards_the_samplers_request():
    model = mlp()
    sampler = LangevinDynamics(model, step_size=0.01, cuda_graph=True, device="cpu")
    loss_fn = ContrastiveDivergence(model=model, sampler=sampler, k_steps=3)
    with pytest.raises(NoKernelError, match="cuda_graph=True"):
        loss_fn(torch.zeros(8, 2))


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("step_size", dict(step_size=ExponentialDecayScheduler(0.1, 0.9))),
        ("noise_scale", dict(step_size=0.01, noise_scale=LinearScheduler(1.0, 0.5, 10))),
        ("noise_std", dict(step_size=0.01, noise_std=LinearScheduler(0.1, 0.0, 10))),
    ],
)
def test_a_varying_schedule_is_a_value_error_naming_cuda_graph_and_the_scheduler(name, kwargs):
    s = LangevinDynamics(mlp(), **kwargs)
    with pytest.raises(ValueError) as info:
        s.sample(x=torch.zeros(4, 2), n_steps=5, cuda_graph=True)
    message = str(info.value)
    assert "cuda_graph=True" in message and f"the {name} scheduler" in message
    assert type(s.schedulers[name]).__name__ in message


def test_only_the_schedules_that_set_the_coefficients_must_be_constant():
    # With noise_std given, noise_scale does not enter b: its schedule may vary.
    s = LangevinDynamics(mlp(), step_size=0.01, noise_scale=LinearScheduler(1.0, 0.5, 10), noise_std=0.1)
    with pytest.raises(NoKernelError):  # past the argument checks: only the hardware is missing
        s.sample(x=torch.zeros(4, 2), n_steps=5, cuda_graph=True)


@pytest.mark.parametrize(
    "scheduler",
    [ConstantScheduler(0.01), ExponentialDecayScheduler(0.01, 0.5, min_value=0.01)],
)
def test_a_constant_schedule_passes_the_argument_checks(scheduler):
    s = LangevinDynamics(mlp(), step_size=scheduler)
    with pytest.raises(NoKernelError):
        s.sample(x=torch.zeros(4, 2), n_steps=5, cuda_graph=True)


def test_a_schedule_is_judged_over_this_calls_steps_only():
    # Linear over 10 steps, then constant: the first 10 steps vary, the next ones do not.
    s = LangevinDynamics(mlp(), step_size=LinearScheduler(0.02, 0.01, 10))
    with pytest.raises(ValueError, match="step_size scheduler"):
        s.sample(x=torch.zeros(4, 2), n_steps=5, cuda_graph=True)
    s.sample(x=torch.zeros(4, 2), n_steps=10)
    with pytest.raises(NoKernelError):
        s.sample(x=torch.zeros(4, 2), n_steps=5, cuda_graph=True, reset_schedulers=False)
    assert s.schedulers["step_size"].step_count == 10  # a refused call consumed nothing


@pytest.mark.parametrize("what", ["return_trajectory", "return_diagnostics"])
def test_recording_is_rejected(what):
    s = LangevinDynamics(mlp(), step_size=0.01)
    with pytest.raises(ValueError, match=rf"final state only, got {what}=True"):
        s.sample(x=torch.zeros(4, 2), n_steps=4, cuda_graph=True, **{what: True})


def test_conditioning_is_rejected():
    s = LangevinDynamics(ConditionalQuadratic(), step_size=0.01)
    with pytest.raises(ValueError, match=r"cuda_graph=True captures a gradient of x alone.*\['y'\]"):
        s.sample(x=torch.zeros(4, 2), n_steps=4, y=torch.ones(4, 2), cuda_graph=True)


def test_the_reference_backend_is_rejected():
    s = LangevinDynamics(mlp(), step_size=0.01, backend="reference")
    with pytest.raises(ValueError, match=r"cuda_graph=True .* backend='reference'"):
        s.sample(x=torch.zeros(4, 2), n_steps=4, cuda_graph=True)


def test_blocks_divide_the_steps_and_are_as_long_as_allowed():
    for n in range(1, 300):
        k = steps_per_graph(n)
        assert 1 <= k <= 32 and n % k == 0
        assert not any(n % j == 0 for j in range(k + 1, min(n, 32) + 1))
    assert (steps_per_graph(7), steps_per_graph(100), steps_per_graph(37)) == (7, 25, 1)


# ---------------------------------------------------------------- the plumbing, with a stand-in graph (CPU)


class StandInGraph:
    """``capture_langevin``'s contract on the CPU kernels: ``run(x0, seed=s, n_steps=n)`` is
    ``x = langevin_update(x, gradient(x), None, a, b, clamp_min, clamp_max, grad_clip, s, t)``
    for ``t = 0 .. n-1``. Counts captures, records its arguments."""

    captures = 0

    def __init__(self, gradient, x, *, a, b, steps_per_graph, clamp_min, clamp_max, grad_clip):
        type(self).captures += 1
        self.gradient, self.shape = gradient, tuple(x.shape)
        self.args = (a, b, clamp_min, clamp_max, grad_clip)
        self.steps_per_graph = steps_per_graph

    def run(self, x0, *, seed, n_steps):
        assert tuple(x0.shape) == self.shape and n_steps % self.steps_per_graph == 0
        a, b, lo, hi, clip = self.args
        x = x0
        for t in range(n_steps):
            x = ops.langevin_update(x, self.gradient(x), None, a, b, lo, hi, clip, seed, t)
        return x


@pytest.fixture
def stand_in(monkeypatch):
    if not kernels.available():
        pytest.skip("compiled CPU kernels not built")
    monkeypatch.setattr(langevin_cuda_graph, "_graph_blocker", lambda x: None)
    monkeypatch.setattr(langevin_cuda_graph, "capture_langevin", StandInGraph)
    # The stand-in replays the per-step fused loop: compare with that path, not the MLP chain op.
    monkeypatch.setattr(mcmc_sampler.mlp, "recognise_mlp", lambda model, x: (None, "mlp: off"))
    monkeypatch.setattr(StandInGraph, "captures", 0)
    return StandInGraph


@pytest.mark.parametrize("n_steps", [1, 7, 40, 37])
@pytest.mark.parametrize("options", [{}, dict(clamp=(-1.5, 1.5), grad_clip=0.02), dict(noise_std=0.05)])
def test_the_path_runs_the_fused_loop_with_the_samplers_seed_and_coefficients(stand_in, n_steps, options):
    s = LangevinDynamics(mlp(), step_size=0.05, backend="fused", **options)
    x0 = torch.randn(32, 2, generator=gen(1))
    fused = s.sample(x=x0, n_steps=n_steps, generator=gen(5))
    assert s.last_path == "fused"
    graph = s.sample(x=x0, n_steps=n_steps, generator=gen(5), cuda_graph=True)
    assert s.last_path == "cuda_graph"
    assert torch.equal(graph, fused)
    ((_, captured),) = s._cuda_graphs.values()
    assert captured.steps_per_graph == steps_per_graph(n_steps)


def test_captures_are_reused_per_key_and_the_cache_is_bounded(stand_in):
    model = mlp()
    s = LangevinDynamics(model, step_size=0.05)
    x0 = torch.randn(32, 2, generator=gen(1))
    a = s.sample(x=x0, n_steps=10, cuda_graph=True)
    b = s.sample(x=x0, n_steps=10, cuda_graph=True)
    assert stand_in.captures == 1 and not torch.equal(a, b)  # one capture, fresh seeds
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.5)  # in place: the same storages, the same capture
    s.sample(x=x0, n_steps=10, cuda_graph=True)
    assert stand_in.captures == 1
    s.register_scheduler("step_size", ConstantScheduler(0.02))  # another a
    s.sample(x=x0, n_steps=10, cuda_graph=True)
    s.sample(x=x0, n_steps=12, cuda_graph=True)  # another block length
    model.train(False)  # another training mode
    s.sample(x=x0, n_steps=12, cuda_graph=True)
    assert stand_in.captures == 4 and len(s._cuda_graphs) == 4
    s.sample(x=torch.zeros(8, 2), n_steps=12, cuda_graph=True)  # another shape: LRU dropped
    assert stand_in.captures == 5 and len(s._cuda_graphs) == 4
    s.model = mlp(seed=3)  # another model
    s.sample(x=x0, n_steps=12, cuda_graph=True)
    assert stand_in.captures == 6


def test_the_schedulers_advance_as_on_the_step_loop(stand_in):
    s = LangevinDynamics(mlp(), step_size=ConstantScheduler(0.05))
    s.sample(x=torch.zeros(4, 2), n_steps=6, cuda_graph=True, reset_schedulers=False)
    s.sample(x=torch.zeros(4, 2), n_steps=6, cuda_graph=True, reset_schedulers=False)
    assert s.schedulers["step_size"].step_count == 12


def test_contrastive_divergence_samples_through_the_path(stand_in):
    def negatives(cuda_graph: bool) -> torch.Tensor:
        model = mlp(seed=4)
        sampler = LangevinDynamics(model, step_size=0.05, backend="fused", cuda_graph=cuda_graph)
        loss_fn = ContrastiveDivergence(model=model, sampler=sampler, k_steps=12)
        _, neg = loss_fn(torch.randn(16, 2, generator=gen(2)), generator=gen(11))
        assert sampler.last_path == ("cuda_graph" if cuda_graph else "fused")
        return neg

    assert torch.equal(negatives(True), negatives(False))


# ---------------------------------------------------------------- on a GPU

requires_graph = pytest.mark.skipif(
    not graph_safe_available(), reason="needs a CUDA GPU and the graph-safe CUDA ops"
)
CUDA = torch.device("cuda")


def cuda_sampler(model, **kwargs) -> LangevinDynamics:
    kwargs.setdefault("step_size", 0.01)
    return LangevinDynamics(model, device=CUDA, backend="fused", **kwargs)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def start(b: int = 256, d: int = 6, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, d, generator=gen(seed)).to(CUDA)


@pytest.mark.cuda
@requires_graph
@pytest.mark.parametrize("n_steps", [1, 7, 40, 37])  # blocks of 1, 7, 20 and 1 steps
@pytest.mark.parametrize("options", [{}, dict(clamp=(-1.5, 1.5), grad_clip=0.02), dict(noise_std=0.05)])
def test_graph_equals_the_per_step_fused_path_for_the_same_seed(n_steps, options):
    s = cuda_sampler(mlp(6).to(CUDA), **options)
    x0 = start()
    fused = s.sample(x=x0, n_steps=n_steps, generator=gen(5))
    assert s.last_path == "fused"
    graph = s.sample(x=x0, n_steps=n_steps, generator=gen(5), cuda_graph=True)
    assert s.last_path == "cuda_graph"
    torch.testing.assert_close(graph, fused, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@requires_graph
def test_calls_draw_fresh_noise_and_a_seed_reproduces_a_call():
    s = cuda_sampler(mlp(6).to(CUDA))
    x0 = start()
    a = s.sample(x=x0, n_steps=10, cuda_graph=True)
    b = s.sample(x=x0, n_steps=10, cuda_graph=True)
    assert not torch.equal(a, b)
    c = s.sample(x=x0, n_steps=10, cuda_graph=True, generator=gen(9))
    d = s.sample(x=x0, n_steps=10, cuda_graph=True, generator=gen(9))
    assert torch.equal(c, d)
    assert len(s._cuda_graphs) == 1  # one capture served all four calls


@pytest.mark.cuda
@requires_graph
def test_captures_are_cached_per_key_and_bounded():
    s = cuda_sampler(mlp(6).to(CUDA))
    s.sample(x=start(), n_steps=10, cuda_graph=True)
    (graph,) = [g for _, g in s._cuda_graphs.values()]
    s.sample(x=start(seed=2), n_steps=10, cuda_graph=True)
    assert [g for _, g in s._cuda_graphs.values()] == [graph]
    s.register_scheduler("step_size", ConstantScheduler(0.02))
    s.sample(x=start(), n_steps=10, cuda_graph=True)  # another a: another capture
    assert len(s._cuda_graphs) == 2
    for b in (8, 16, 32, 64):  # other shapes: the least recently used are dropped
        s.sample(x=start(b=b), n_steps=10, cuda_graph=True)
    assert len(s._cuda_graphs) == 4


@pytest.mark.cuda
@requires_graph
def test_in_place_parameter_updates_are_seen_by_the_replays():
    model = mlp(6).to(CUDA)
    s = cuda_sampler(model)
    x0 = start()
    s.sample(x=x0, n_steps=10, cuda_graph=True)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.5)
    graph = s.sample(x=x0, n_steps=10, cuda_graph=True, generator=gen(3))
    fused = s.sample(x=x0, n_steps=10, generator=gen(3))
    torch.testing.assert_close(graph, fused, rtol=1e-5, atol=1e-5)
    assert len(s._cuda_graphs) == 1


@pytest.mark.cuda
@requires_graph
def test_contrastive_divergence_through_a_graph_sampler_matches_the_fused_one():
    def negatives(cuda_graph: bool) -> torch.Tensor:
        model = mlp(6, seed=4).to(CUDA)
        sampler = cuda_sampler(model, cuda_graph=cuda_graph)
        loss_fn = ContrastiveDivergence(model=model, sampler=sampler, k_steps=12)
        _, neg = loss_fn(start(b=64), generator=gen(11))
        assert sampler.last_path == ("cuda_graph" if cuda_graph else "fused")
        return neg

    torch.testing.assert_close(negatives(True), negatives(False), rtol=1e-5, atol=1e-5)


class LearnedQuadratic(BaseModel):
    """``E(x) = |x|^2 / (2 s^2)`` through a parameter: a model without a ``kernel_spec()``."""

    def __init__(self, s2: float):
        super().__init__()
        self.log_s2 = nn.Parameter(torch.tensor(math.log(s2)))

    def forward(self, x):
        return 0.5 * x.square().sum(-1) * torch.exp(-self.log_s2)


@pytest.mark.cuda
@requires_graph
def test_graph_chains_have_the_ula_stationary_moments():
    # ULA on N(0, s2 I) with step eta: x' = (1 - eta/s2) x + sqrt(2 eta) xi has the stationary
    # variance s2 / (1 - eta / (2 s2)); from x0 = 0 after n steps the gap is (1 - eta/s2)^(2n).
    s2, eta, n = 2.0, 0.2, 200
    B, d = 1 << 14, 4
    s = cuda_sampler(LearnedQuadratic(s2).to(CUDA), step_size=eta)
    x = s.sample(x=torch.zeros(B, d, device=CUDA), n_steps=n, cuda_graph=True, generator=gen(21))
    assert s.last_path == "cuda_graph"
    target = s2 / (1 - eta / (2 * s2))
    v = x.double().flatten().cpu()
    N = v.numel()
    mean_se, var_se = math.sqrt(target / N), target * math.sqrt(2 / N)
    assert abs(float(v.mean())) <= 5 * mean_se, (float(v.mean()), mean_se)
    assert abs(float(v.var()) - target) <= 5 * var_se, (float(v.var()), target, var_se)
