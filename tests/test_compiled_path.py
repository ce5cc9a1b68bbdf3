"""The compiled paths for neural energies that no whole-chain kernel runs:

* ``backend="compiled"``: each step through ``torch.compile`` (draws by the Philox ops at
  ``(seed, t)``, then forward, gradient, update and accept step in one graph), giving the fused
  path's chains to rounding; a model that cannot be compiled falls back to the fused path with
  one warning naming the reason;
* a ``torch.compile(model)`` handed to a sampler: its compiled forward (and the backward compiled
  with it) serves the energy and its gradient, counted by dynamo.

The compile-logic tests use the ``aot_eager`` backend (the same graph, without inductor's code
generation, which takes 10-20 s per graph on 2 cores); one slow test runs inductor.
"""

import pickle
import warnings

import pytest
import torch
from torch import nn
from torch._dynamo.testing import CompileCounter

from torchebm.core import BaseModel, LinearScheduler
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics, MetropolisAdjustedLangevin
from torchebm.samplers import compiled_step

F64 = torch.float64
SAMPLERS = [LangevinDynamics, MetropolisAdjustedLangevin, HamiltonianMonteCarlo]


class ConvEnergy(BaseModel):
    """A small conv energy on 1x6x6 images (not an MLP: no whole-chain kernel)."""

    def __init__(self, dtype=F64):
        super().__init__(dtype=dtype)
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.SiLU(), nn.Flatten(), nn.Linear(4 * 36, 1)
        ).to(dtype)

    def forward(self, x):
        return self.net(x).squeeze(-1)


class ConditionalConv(ConvEnergy):
    def forward(self, x, y=None):
        return self.net(x).squeeze(-1) + (0.0 if y is None else (x.flatten(1) * y).sum(-1))


@pytest.fixture
def aot_eager(monkeypatch):
    monkeypatch.setattr(compiled_step, "COMPILE_BACKEND", "aot_eager")


def make(cls, model, **kw):
    kw.setdefault("step_size", LinearScheduler(0.02, 0.005, 6))
    if cls is HamiltonianMonteCarlo:
        kw.setdefault("n_leapfrog_steps", 3)
    return cls(model, dtype=model.dtype, **kw)


def x0(n=8, dtype=F64):
    return torch.randn(n, 1, 6, 6, generator=torch.Generator().manual_seed(1), dtype=dtype)


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("options", [{}, {"return_diagnostics": True, "thin": 2}])
def test_compiled_steps_give_the_fused_chains(cls, options, aot_eager, require_path):
    require_path(cls, "fused", F64)
    model = ConvEnergy()
    outs = {}
    for backend in ("compiled", "fused"):
        s = make(cls, model, backend=backend)
        outs[backend] = s.sample(x=x0(), n_steps=8, generator=torch.Generator().manual_seed(2), **options)
        assert s.last_path == backend
    compiled, fused = outs["compiled"], outs["fused"]
    if options:
        (compiled, cd), (fused, fd) = compiled, fused
        for key in ("mean", "var", "energy"):
            torch.testing.assert_close(cd[key], fd[key], rtol=1e-9, atol=1e-12)
        if cls is not LangevinDynamics:
            assert torch.equal(cd["acceptance_rate"], fd["acceptance_rate"])
    torch.testing.assert_close(compiled, fused, rtol=1e-9, atol=1e-12)


def test_compiled_steps_are_cached_and_a_schedule_does_not_recompile_each_step(aot_eager, require_path, monkeypatch):
    require_path(LangevinDynamics, "fused", F64)
    counter = CompileCounter()
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, **{**kw, "backend": counter}))
    s = make(LangevinDynamics, ConvEnergy(), backend="compiled")
    for seed in range(3):
        s.sample(x=x0(), n_steps=10, generator=torch.Generator().manual_seed(seed))
    # One graph for the first step size, one with the step size symbolic: not one per step.
    assert 1 <= counter.frame_count <= 2, counter.frame_count
    assert len(s._compiled_steps.entries) == 1


def test_new_conditioning_tensors_are_inputs_not_baked_in(aot_eager, require_path):
    require_path(LangevinDynamics, "fused", F64)
    model = ConditionalConv()
    compiled = make(LangevinDynamics, model, backend="compiled")
    fused = make(LangevinDynamics, model, backend="fused")
    for k in range(2):
        y = torch.full((8, 36), 0.1 * (k + 1), dtype=F64)
        a = compiled.sample(x=x0(), n_steps=4, y=y, generator=torch.Generator().manual_seed(5))
        b = fused.sample(x=x0(), n_steps=4, y=y, generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_a_model_that_cannot_be_compiled_falls_back_with_one_warning(aot_eager, require_path):
    require_path(LangevinDynamics, "fused", F64)

    class HostSync(ConvEnergy):
        def forward(self, x):
            energy = super().forward(x)
            if energy.sum().item() > 1e9:  # data-dependent Python control flow
                energy = energy * 2
            return energy

    s = make(LangevinDynamics, HostSync(), backend="compiled")
    with pytest.warns(UserWarning, match="backend='compiled' falls back to the fused path: torch.compile could not"):
        out = s.sample(x=x0(), n_steps=3, generator=torch.Generator().manual_seed(2))
    assert s.last_path == "fused" and s.last_route.skipped[-1].startswith("compiled: ")
    want = make(LangevinDynamics, HostSync(), backend="fused").sample(
        x=x0(), n_steps=3, generator=torch.Generator().manual_seed(2)
    )
    torch.testing.assert_close(out, want, rtol=0, atol=0)


def test_mixed_dtypes_are_refused_before_compiling(aot_eager, require_path):
    require_path(LangevinDynamics, "fused")
    # No dtype=: the float32 x below gives float32 chains against the float64 model.
    s = LangevinDynamics(ConvEnergy(dtype=F64), step_size=0.01, backend="compiled")
    with pytest.warns(UserWarning, match="parameters are \\['torch.float64'\\] but the state is torch.float32"):
        s.sample(x=x0(dtype=torch.float32), n_steps=2)
    assert s.last_path == "fused"


def test_a_sampler_with_compiled_steps_pickles(aot_eager, require_path):
    require_path(LangevinDynamics, "fused", F64)
    s = make(LangevinDynamics, ConvEnergy(), backend="compiled")
    s.sample(x=x0(), n_steps=2)
    copy = pickle.loads(pickle.dumps(s))
    assert "_compiled_steps" not in copy.__dict__
    copy.sample(x=x0(), n_steps=2)
    assert copy.last_path == "compiled"


@pytest.mark.parametrize("cls", SAMPLERS)
def test_a_torch_compiled_model_is_run_compiled(cls, require_path):
    require_path(cls, "fused", F64)
    counter = CompileCounter()
    model = ConvEnergy()
    s = make(cls, torch.compile(model, backend=counter), backend="fused")
    out = s.sample(x=x0(), n_steps=3, generator=torch.Generator().manual_seed(3))
    assert counter.frame_count >= 1 and counter.op_count > 0
    eager = make(cls, model, backend="fused").sample(x=x0(), n_steps=3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out, eager, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_inductor_compiled_steps_match_the_fused_path():
    model = ConvEnergy(dtype=torch.float32)
    runs = {}
    for backend in ("compiled", "fused"):
        s = make(MetropolisAdjustedLangevin, model, backend=backend, step_size=0.01)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            runs[backend] = s.sample(x=x0(dtype=torch.float32), n_steps=10, generator=torch.Generator().manual_seed(6))
        assert not [w for w in caught if "falls back" in str(w.message)]
        assert s.last_path == backend
    torch.testing.assert_close(runs["compiled"], runs["fused"], rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("cls", SAMPLERS)
def test_compiled_steps_on_cuda_match_the_fused_path(cls):
    """Inductor with CUDA graphs (mode="reduce-overhead") on a GPU: the fused path's chains."""
    model = ConvEnergy(dtype=torch.float32).cuda()
    runs = {}
    for backend in ("compiled", "fused"):
        s = make(cls, model, backend=backend, step_size=0.01)
        x = x0(dtype=torch.float32).cuda()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            first = s.sample(x=x, n_steps=6, generator=torch.Generator().manual_seed(6))
            runs[backend] = s.sample(x=x, n_steps=6, generator=torch.Generator().manual_seed(6))
        assert not [w for w in caught if "falls back" in str(w.message)]
        assert s.last_path == backend
        torch.testing.assert_close(first, runs[backend], rtol=0, atol=0)  # replays repeat
    torch.testing.assert_close(runs["compiled"], runs["fused"], rtol=1e-4, atol=1e-4)
