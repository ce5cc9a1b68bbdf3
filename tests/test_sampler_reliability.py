"""Silent wrong results the sampler layer now refuses (issue 16, items 3, 4 and 8): an energy of
the wrong shape from a model with its own gradient, scheduled values out of range, and two
threads sharing one sampler. Each check reads the same on every path."""

import copy
import pickle
import threading

import pytest
import torch

from torchebm.core import BaseModel, ConstantScheduler, GaussianModel, LinearScheduler
from torchebm.core.base_scheduler import BaseScheduler
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics, MetropolisAdjustedLangevin

SAMPLERS = [LangevinDynamics, MetropolisAdjustedLangevin, HamiltonianMonteCarlo]
PATHS = ["auto", "fused", "reference"]


def make(cls, model=None, **kw):
    model = model if model is not None else GaussianModel(torch.zeros(2), torch.eye(2))
    kw.setdefault("step_size", 0.1)
    return cls(model, **kw)


class SummedEnergy(BaseModel):
    """A closed-form gradient, but ``forward`` returns the batch sum (0-d), or ``[B, 1]``."""

    def __init__(self, keepdim: bool):
        super().__init__()
        self.keepdim = keepdim

    def forward(self, x):
        e = 0.5 * (x * x).sum(-1, keepdim=self.keepdim)
        return e if self.keepdim else e.sum()

    def gradient(self, x, model_kwargs=None):
        return x.clone()


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("backend", PATHS)
def test_an_energy_that_is_not_one_per_chain_is_refused(cls, keepdim, backend):
    s = make(cls, SummedEnergy(keepdim), backend=backend)
    shape = r"\(2, 1\)" if keepdim else r"\(\)"
    with pytest.raises(ValueError, match=rf"SummedEnergy.forward must return one energy per chain, shape \(2,\).* got shape {shape}"):
        s.sample(dim=2, n_samples=64, n_steps=3)


class Steps(BaseScheduler):
    """Gives ``values[t]`` at step t (then the last one)."""

    def __init__(self, values):
        self.values_list = list(values)
        super().__init__(start_value=self.values_list[0])

    def _compute_value(self):
        return self.values_list[min(self.step_count, len(self.values_list) - 1)]


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("backend", PATHS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1, 0.0])
def test_a_bad_scheduled_step_size_raises_alike_on_every_path(cls, backend, bad):
    s = make(cls, step_size=Steps([0.1, 0.1, bad]), backend=backend)
    with pytest.raises(ValueError, match=rf"step_size must be finite and > 0, but its scheduler .* gives {bad} at step 2"):
        s.sample(dim=2, n_samples=4, n_steps=5)


@pytest.mark.parametrize("backend", PATHS)
def test_a_scheduled_langevin_noise_may_reach_zero_but_not_below(backend):
    s = make(LangevinDynamics, noise_scale=LinearScheduler(1.0, 0.0, 4), backend=backend)
    s.sample(dim=2, n_samples=4, n_steps=6)  # plain gradient descent at the end: allowed
    s = make(LangevinDynamics, noise_scale=Steps([1.0, -1.0]), backend=backend)
    with pytest.raises(ValueError, match=r"noise_scale must be finite and >= 0, .* gives -1.0 at step 1"):
        s.sample(dim=2, n_samples=4, n_steps=3)


def test_mala_noise_must_stay_positive():
    s = make(MetropolisAdjustedLangevin, noise_scale=Steps([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"noise_scale must be finite and > 0, .* gives 0.0 at step 1"):
        s.sample(dim=2, n_samples=4, n_steps=3)


def test_two_threads_sharing_a_sampler_are_refused():
    entered, release = threading.Event(), threading.Event()

    class Slow(BaseModel):
        def forward(self, x):
            entered.set()
            release.wait(10)
            return 0.5 * (x * x).sum(-1)

    s = LangevinDynamics(Slow(), step_size=LinearScheduler(0.1, 0.01, 10), backend="reference")
    worker = threading.Thread(target=lambda: s.sample(dim=2, n_samples=4, n_steps=2))
    worker.start()
    assert entered.wait(10)
    try:
        with pytest.raises(RuntimeError, match="already running in another thread .* copy.deepcopy"):
            s.sample(dim=2, n_samples=4, n_steps=2)
    finally:
        release.set()
        worker.join(10)
    s.sample(dim=2, n_samples=4, n_steps=2)  # free again once the other call ended


def test_one_sampler_per_thread_runs_concurrently_and_matches_serial_runs():
    base = make(LangevinDynamics, step_size=LinearScheduler(0.1, 0.01, 20), backend="reference")
    serial = [copy.deepcopy(base).sample(dim=2, n_samples=8, n_steps=20, generator=torch.Generator().manual_seed(k)) for k in range(2)]
    out = [None, None]

    def run(k):
        out[k] = copy.deepcopy(base).sample(dim=2, n_samples=8, n_steps=20, generator=torch.Generator().manual_seed(k))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for a, b in zip(out, serial):
        assert torch.equal(a, b)


def test_a_sampler_pickles_after_sampling():
    s = make(LangevinDynamics, step_size=ConstantScheduler(0.1))
    s.sample(dim=2, n_samples=4, n_steps=2)
    copy_ = pickle.loads(pickle.dumps(s))
    assert copy_.sample(dim=2, n_samples=4, n_steps=2).shape == (4, 2)


def test_n_leapfrog_steps_is_bounded_by_what_the_kernels_loop_over():
    with pytest.raises(ValueError, match=r"n_leapfrog_steps must be <= 2147483647, got 4611686018427387904"):
        HamiltonianMonteCarlo(GaussianModel(torch.zeros(2), torch.eye(2)), n_leapfrog_steps=2**62)
