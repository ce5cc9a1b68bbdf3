"""The fixed host cost of a ``sample()`` call (issue 15): what a repeated call does, and that
what it keeps (samplers/schedule_cache.py) never changes a result.

A repeated call with the same settings must not build its schedules again: the recorded aten
ops of such a call are the seed draw, the finiteness check of a CPU ``x`` and the chain op,
nothing else. Every kept schedule must give the numbers a freshly built one gives, follow its
scheduler's state, and be checked as before (a bad value raises at every call).
"""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from torchebm import kernels
from torchebm.core import MLP, ConstantScheduler, DoubleWellModel, EnergyModel, LinearScheduler
from torchebm.kernels import ops
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics, MetropolisAdjustedLangevin
from torchebm.samplers import schedule_cache
from torchebm.samplers.mcmc_sampler import _check_finite

pytestmark = pytest.mark.skipif(not kernels.available(), reason="compiled kernels not built")

SAMPLERS = {
    "langevin": (LangevinDynamics, "langevin_chain", ("a", "b")),
    "mala": (MetropolisAdjustedLangevin, "mala_chain", ("a", "b")),
    "hmc": (HamiltonianMonteCarlo, "hmc_chain", ("step_size",)),
}


class _AtenOps(TorchDispatchMode):
    """The ops (``namespace::name``) that run inside the ``with`` block, and the devices of
    the tensors read back on the host."""

    def __init__(self):
        super().__init__()
        self.names: list[str] = []
        self.host_reads: list[torch.device] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket._qualified_op_name
        self.names.append(name)
        if name == "aten::_local_scalar_dense":
            self.host_reads.append(args[0].device)
        return func(*args, **(kwargs or {}))


def _sampler(kind: str, step_size=0.01, **kwargs):
    cls = SAMPLERS[kind][0]
    if kind == "hmc":
        kwargs.setdefault("n_leapfrog_steps", 3)
    return cls(DoubleWellModel(), step_size=step_size, **kwargs)


def _spy(monkeypatch, op: str) -> list[dict]:
    """Record the keyword arguments of every call of ``ops.<op>`` made by the samplers."""
    calls, real = [], getattr(ops, op)

    def spied(**kwargs):
        calls.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(ops, op, spied)
    return calls


@pytest.mark.parametrize("kind", SAMPLERS)
@pytest.mark.parametrize("scheduled", [False, True], ids=["constant", "linear"])
def test_a_repeated_call_runs_only_the_seed_the_check_and_the_chain_op(kind, scheduled):
    step = LinearScheduler(0.02, 0.01, 10) if scheduled else 0.01
    sampler = _sampler(kind, step)
    x = torch.randn(16, 2)
    sampler.sample(x, n_steps=3)
    with _AtenOps() as given:
        sampler.sample(x, n_steps=3)
    with _AtenOps() as drawn:
        sampler.sample(dim=2, n_samples=16, n_steps=3)
    op = f"torchebm::{SAMPLERS[kind][1]}"
    assert sampler.last_route.op == SAMPLERS[kind][1]
    # x given: detach() of x, its finiteness check (one sum, read back), the Philox seed
    # (randint, read back) and the op. No schedule is built, cast or uploaded.
    assert Counter(given.names) == Counter(
        ["aten::detach", "aten::sum", "aten::_local_scalar_dense", "aten::randint",
         "aten::_local_scalar_dense", op]
    ), given.names
    # No x: the starting draw, the seed and the op.
    assert Counter(drawn.names) == Counter(
        ["aten::randn", "aten::randint", "aten::_local_scalar_dense", op]
    ), drawn.names
    assert set(given.host_reads) == {torch.device("cpu")}


def test_a_repeated_call_on_a_known_mlp_does_not_run_the_network():
    # EnergyModel(MLP): code recognise_mlp knows, so a repeated call skips the probe of
    # forward() (kernels/forward_fingerprint.py): no linear layer runs outside the chain op.
    sampler = LangevinDynamics(EnergyModel(MLP(2, [16, 16])), step_size=0.01)
    x = torch.randn(16, 2)
    sampler.sample(x, n_steps=3)
    with _AtenOps() as given:
        sampler.sample(x, n_steps=3)
    assert sampler.last_route.op == "mlp_langevin_chain"
    # detach() of x and of the 3 weights and 3 biases handed to the op, the finiteness
    # check, the seed and the op.
    assert Counter(given.names) == Counter(
        ["aten::detach"] * 7 + ["aten::sum", "aten::_local_scalar_dense", "aten::randint",
                                "aten::_local_scalar_dense", "torchebm::mlp_langevin_chain"]
    ), given.names


@pytest.mark.parametrize("kind", SAMPLERS)
def test_a_constant_schedule_reaches_the_op_as_one_kept_value(kind, monkeypatch):
    _, op, names = SAMPLERS[kind]
    calls = _spy(monkeypatch, op)
    sampler = _sampler(kind, 0.01)
    x = torch.randn(8, 2)
    for _ in range(2):
        sampler.sample(x, n_steps=5)
    first, second = calls
    for name in names:
        schedule = second[name]
        assert schedule.shape == (5,) and schedule.stride() == (0,) and schedule.dtype == torch.float64
        assert schedule is first[name]  # kept, not built again
    expected = {"a": 0.01, "b": (2 * 0.01) ** 0.5, "step_size": 0.01}
    for name in names:
        assert second[name].tolist() == [expected[name]] * 5


def _fresh_result(kind, scheduler, steps_taken, x, n_steps, seed, **kwargs):
    """The chains of a sampler that never ran, its step-size scheduler a copy of ``scheduler``
    after ``steps_taken`` steps."""
    scheduler = copy.deepcopy(scheduler)
    scheduler.reset()
    scheduler.advance(steps_taken)
    sampler = _sampler(kind, scheduler, **kwargs)
    generator = torch.Generator().manual_seed(seed)
    return sampler.sample(x, n_steps=n_steps, reset_schedulers=False, generator=generator)


@pytest.mark.parametrize("kind", SAMPLERS)
@pytest.mark.parametrize(
    "scheduler",
    [ConstantScheduler(0.01), LinearScheduler(0.03, 0.005, 7)],
    ids=["constant", "linear"],
)
def test_kept_schedules_follow_the_scheduler_across_calls(kind, scheduler):
    # Continuing schedules (reset_schedulers=False): each call's chains equal those of a new
    # sampler whose scheduler was moved to the same step, bit for bit.
    x = torch.randn(6, 2, dtype=torch.float64)
    sampler = _sampler(kind, copy.deepcopy(scheduler))
    for call in range(3):
        generator = torch.Generator().manual_seed(call)
        got = sampler.sample(x, n_steps=4, reset_schedulers=False, generator=generator)
        want = _fresh_result(kind, scheduler, 4 * call, x, 4, call)
        assert torch.equal(got, want), call
    # Restarted schedules (the default): every call gives the first call's chains.
    firsts = [
        sampler.sample(x, n_steps=4, generator=torch.Generator().manual_seed(9)) for _ in range(3)
    ]
    assert all(torch.equal(f, firsts[0]) for f in firsts)
    assert torch.equal(firsts[0], _fresh_result(kind, scheduler, 0, x, 4, 9))


@pytest.mark.parametrize("noise", ["noise_scale", "noise_std"])
def test_langevin_kept_coefficients_follow_both_schedulers(noise):
    x = torch.randn(6, 2, dtype=torch.float64)
    kwargs = {noise: LinearScheduler(0.9, 0.3, 5)}
    sampler = LangevinDynamics(DoubleWellModel(), step_size=0.01, **kwargs)
    for call in range(3):
        got = sampler.sample(x, n_steps=3, reset_schedulers=False,
                             generator=torch.Generator().manual_seed(call))
        fresh_noise = LinearScheduler(0.9, 0.3, 5)
        fresh_noise.advance(3 * call)
        fresh = LangevinDynamics(DoubleWellModel(), step_size=0.01, **{noise: fresh_noise})
        want = fresh.sample(x, n_steps=3, reset_schedulers=False,
                            generator=torch.Generator().manual_seed(call))
        assert torch.equal(got, want), call


def _changes():
    def constant_start(s):
        s.schedulers["step_size"].start_value = 0.02  # current value still 0.01: not constant

    def linear_end(s):
        s.schedulers["step_size"].end_value = 0.001

    def replaced(s):
        s.schedulers["step_size"] = ConstantScheduler(0.03)

    return [("constant_start", ConstantScheduler(0.01), constant_start),
            ("linear_end", LinearScheduler(0.02, 0.01, 2), linear_end),
            ("replaced", ConstantScheduler(0.01), replaced)]


@pytest.mark.parametrize("kind", SAMPLERS)
@pytest.mark.parametrize("change", _changes(), ids=lambda c: c[0])
def test_a_scheduler_changed_in_place_is_never_served_from_the_cache(kind, change):
    _, scheduler, mutate = change
    x = torch.randn(6, 2, dtype=torch.float64)
    sampler = _sampler(kind, scheduler)
    sampler.sample(x, n_steps=4, reset_schedulers=False)
    mutate(sampler)
    state = copy.deepcopy(sampler.schedulers["step_size"])
    got = sampler.sample(x, n_steps=4, reset_schedulers=False,
                         generator=torch.Generator().manual_seed(3))
    fresh = _sampler(kind, state)
    want = fresh.sample(x, n_steps=4, reset_schedulers=False,
                        generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, want)


def test_a_kept_schedule_written_by_a_caller_is_built_again():
    sampler = _sampler("hmc", LinearScheduler(0.02, 0.01, 4))
    values = sampler.scheduled_values("step_size", 6)
    values.mul_(0)  # a caller writes the tensor it was handed
    again = sampler.scheduled_values("step_size", 6)
    assert again.tolist() == LinearScheduler(0.02, 0.01, 4).values(6)


@pytest.mark.parametrize("kind", SAMPLERS)
def test_a_bad_scheduled_value_raises_at_every_call_naming_it(kind):
    sampler = _sampler(kind, ConstantScheduler(-0.1))
    for _ in range(2):
        with pytest.raises(ValueError, match=r"step_size must be finite and > 0, .* gives -0.1 at step 0"):
            sampler.sample(dim=2, n_samples=4, n_steps=3)
    sampler = _sampler(kind, LinearScheduler(0.02, -0.02, 4))
    for _ in range(2):
        with pytest.raises(ValueError, match=r"step_size must be finite and > 0, .* gives 0.0 at step 2"):
            sampler.sample(dim=2, n_samples=4, n_steps=3)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_op_checks_a_kept_value_in_each_state_dtype(dtype):
    # 1e-50 is a positive float64 and 0 in float32: hmc_chain refuses it for float32 states,
    # also after a float64 call accepted the same kept schedule.
    sampler = _sampler("hmc", 1e-50)
    sampler.sample(torch.randn(4, 2, dtype=torch.float64), n_steps=2)
    x = torch.randn(4, 2, dtype=dtype)
    if dtype == torch.float64:
        sampler.sample(x, n_steps=2)
    else:
        for _ in range(2):
            with pytest.raises(RuntimeError, match=r"step_size\[0\] must be finite and > 0 in float32"):
                sampler.sample(x, n_steps=2)


def test_long_non_constant_schedules_are_not_kept():
    n = schedule_cache.MAX_KEPT_STEPS + 1
    linear = _sampler("langevin", LinearScheduler(0.02, 0.01, 10))
    assert linear.scheduled_values("step_size", n) is not linear.scheduled_values("step_size", n)
    assert linear.scheduled_values("step_size", n - 1) is linear.scheduled_values("step_size", n - 1)
    constant = _sampler("langevin", 0.01)
    assert constant.scheduled_values("step_size", n) is constant.scheduled_values("step_size", n)


@pytest.mark.parametrize("kind", SAMPLERS)
def test_a_sampler_keeps_the_schedules_of_its_last_max_entries_chain_lengths(kind):
    sampler = _sampler(kind, LinearScheduler(0.02, 0.01, 10))
    x = torch.randn(4, 2)
    lengths = range(1, 3 * schedule_cache.MAX_ENTRIES)
    name = SAMPLERS[kind][2][0]
    built = {n: sampler._chain_arguments(x, n)[name] for n in lengths}
    recent = lengths[-schedule_cache.MAX_ENTRIES:]
    assert all(sampler._chain_arguments(x, n)[name] is built[n] for n in recent)
    assert sampler._chain_arguments(x, lengths[-schedule_cache.MAX_ENTRIES - 1])[name] is not built[
        lengths[-schedule_cache.MAX_ENTRIES - 1]
    ]


def test_device_copies_serve_only_the_op_argument_dtype_and_device_that_accepted_them():
    # The bookkeeping of the GPU copies, run with CPU "devices": a copy is handed out only for
    # the (op, argument, state dtype, device) that accepted the kept host tensor, and only
    # while that tensor is unchanged.
    cache = schedule_cache.ScheduleCache()
    constant = cache.get(("c",), 5, lambda: schedule_cache.constant_steps(0.25, 5))
    varying = cache.get(("v",), 5, lambda: torch.linspace(0.1, 0.5, 5, dtype=torch.float64))
    loose = torch.full((5,), 0.25, dtype=torch.float64)  # not a kept tensor
    x = torch.zeros(3, 2)
    for t in (constant, varying, loose):
        assert cache.on_device("langevin_chain", "a", t, x) is t  # nothing accepted yet
    cache.accepted("langevin_chain", {"a": constant, "b": varying, "c": loose}, x)
    for t in (constant, varying):  # accepted once: not yet known to be reused
        assert cache.on_device("langevin_chain", "a" if t is constant else "b", t, x) is t
    cache.accepted("langevin_chain", {"a": constant, "b": varying, "c": loose}, x)
    copy_a = cache.on_device("langevin_chain", "a", constant, x)
    assert copy_a is not constant and copy_a.stride() == (0,) and copy_a.tolist() == [0.25] * 5
    copy_b = cache.on_device("langevin_chain", "b", varying, x)
    assert copy_b is not varying and copy_b.tolist() == varying.tolist()
    assert cache.on_device("langevin_chain", "c", loose, x) is loose
    assert cache.on_device("mala_chain", "a", constant, x) is constant
    assert cache.on_device("langevin_chain", "b", constant, x) is constant
    assert cache.on_device("langevin_chain", "a", constant, x.double()) is constant
    varying.mul_(2)  # written in place: its copy is stale
    assert cache.on_device("langevin_chain", "b", varying, x) is varying


def test_copies_pickles_and_checkpoints_do_not_carry_the_cache():
    sampler = _sampler("langevin", LinearScheduler(0.02, 0.01, 10))
    keys = set(sampler.state_dict())
    sampler.sample(torch.randn(4, 2), n_steps=3)
    assert "_schedule_cache" in sampler.__dict__
    assert set(sampler.state_dict()) == keys
    assert "_schedule_cache" not in copy.deepcopy(sampler).__dict__
    assert "_schedule_cache" not in sampler.__getstate__()


def test_scheduler_state_is_known_only_for_built_in_schedulers():
    class Custom(ConstantScheduler):
        pass

    assert schedule_cache.scheduler_state(Custom(0.1)) is None
    assert schedule_cache.scheduler_state(ConstantScheduler(0.1)) == ("constant", (0.1).hex())
    moved = ConstantScheduler(0.1)
    moved.advance(5)  # a constant's step count does not change its values
    assert schedule_cache.scheduler_state(moved) == schedule_cache.scheduler_state(ConstantScheduler(0.1))
    # 0.0 and -0.0 compare equal but are different values.
    assert schedule_cache.scheduler_state(ConstantScheduler(0.0)) != schedule_cache.scheduler_state(
        ConstantScheduler(-0.0)
    )
    linear = LinearScheduler(0.02, 0.01, 10)
    before = schedule_cache.scheduler_state(linear)
    linear.step()
    assert schedule_cache.scheduler_state(linear) != before


def test_the_finiteness_check_of_x_by_one_sum():
    # A sum that overflows is not a non-finite x: the element-wise test decides.
    big = torch.full((4, 2), 3e38)
    _check_finite("S", big)
    bad = torch.zeros(4, 2)
    bad[2, 1] = float("nan")
    bad[3, 0] = float("inf")
    with pytest.raises(ValueError, match=r"x must be finite, got 1 NaN and 1 infinite values \(first at index \(2, 1\)"):
        _check_finite("S", bad)
    # +inf and -inf sum to NaN; inf alone to inf: both are found.
    for values in ([float("inf"), -float("inf")], [float("inf"), 1.0]):
        with pytest.raises(ValueError, match="x must be finite"):
            _check_finite("S", torch.tensor([values]))


# ---- on a GPU ------------------------------------------------------------------------------------

def gpu(test):
    """A GPU test: marked ``cuda`` (``scripts/gpu_check.sh`` runs those) and skipped without
    a GPU."""
    skip = pytest.mark.skipif(not kernels.cuda_available(), reason="needs a CUDA GPU and the CUDA kernels")
    return pytest.mark.cuda(skip(test))


@gpu
@pytest.mark.parametrize("kind", SAMPLERS)
@pytest.mark.parametrize("scheduled", [False, True], ids=["constant", "linear"])
def test_a_repeated_cuda_call_neither_uploads_nor_synchronises(kind, scheduled, monkeypatch):
    _, op, names = SAMPLERS[kind]
    step = LinearScheduler(0.02, 0.01, 10) if scheduled else 0.01
    sampler = _sampler(kind, step, device="cuda")
    x = torch.randn(16, 2, device="cuda")
    calls = _spy(monkeypatch, op)
    for _ in range(2):  # the op checks the host schedules and accepts them twice: in use
        sampler.sample(x, n_steps=3)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with _AtenOps() as recorded:
            out = sampler.sample(x, n_steps=3)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for name in names:
        assert calls[0][name].is_cpu and calls[1][name].is_cpu
        assert calls[2][name].device == x.device  # the copy made once, not an upload
        assert calls[2][name].tolist() == calls[0][name].tolist()
    assert all(d.type == "cpu" for d in recorded.host_reads)  # the seed only
    generator = torch.Generator().manual_seed(0)
    fresh = _sampler(kind, copy.deepcopy(step), device="cuda")
    want = fresh.sample(x, n_steps=3, generator=generator)
    got = sampler.sample(x, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(got, want) and out.shape == x.shape


@gpu
def test_a_cuda_device_copy_serves_only_the_dtype_the_op_accepted():
    sampler = _sampler("hmc", 1e-50, device="cuda")
    for _ in range(3):  # the third call runs with the float64 device copy
        sampler.sample(torch.randn(4, 2, dtype=torch.float64, device="cuda"), n_steps=2)
    for _ in range(2):
        with pytest.raises(RuntimeError, match=r"step_size\[0\] must be finite and > 0 in float32"):
            sampler.sample(torch.randn(4, 2, device="cuda"), n_steps=2)


def test_the_limits_docs_performance_states():
    # docs/performance.md, "The fixed cost of a sample() call": "Schedules longer than 65,536
    # steps that are not constant are not kept"; "its 8 most recently used ... combinations".
    assert schedule_cache.MAX_KEPT_STEPS == 65_536
    assert schedule_cache.MAX_ENTRIES == 8
