"""Schedulers (values against the closed-form schedules, old keyword names, ``values()``,
state round trips, argument checks) and the ``Schedulable`` mixin."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchebm.core import (
    BaseScheduler,
    ConstantScheduler,
    CosineScheduler,
    ExponentialDecayScheduler,
    HarmonicModel,
    LinearScheduler,
    MultiStepScheduler,
    Schedulable,
    WarmupScheduler,
)


def trace(scheduler: BaseScheduler, n: int) -> list[float]:
    """``[v(0), ..., v(n-1)]`` by stepping (the way a sampler sees it)."""
    out = [scheduler.get_value()]
    out += [scheduler.step() for _ in range(n - 1)]
    return out


def snapshot(scheduler: BaseScheduler) -> dict:
    """State with nested schedulers (a warm-up's main) expanded, for comparison by value."""
    return {
        k: snapshot(v) if isinstance(v, BaseScheduler) else v
        for k, v in scheduler.state_dict().items()
    }


def close(a, b):
    assert len(a) == len(b) and all(
        math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-15) for x, y in zip(a, b)
    ), (a, b)


# --- values against section 3's formulas ------------------------------------------------------


def test_constant_scheduler_never_changes():
    close(trace(ConstantScheduler(0.3), 5), [0.3] * 5)


def test_exponential_decay_is_start_times_rate_power_t_floored_at_min_value():
    s = ExponentialDecayScheduler(start_value=2.0, decay_rate=0.5, min_value=0.2)
    close(trace(s, 6), [max(0.2, 2.0 * 0.5**t) for t in range(6)])


def test_linear_scheduler_ramps_then_holds_end_value():
    s = LinearScheduler(start_value=1.0, end_value=0.0, n_steps=4)
    assert s.step_size == -0.25
    close(trace(s, 7), [1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0])


def test_cosine_scheduler_follows_half_cosine_then_holds_end_value():
    s = CosineScheduler(start_value=3e-2, end_value=5e-3, n_steps=10)
    expected = [
        5e-3 + (3e-2 - 5e-3) * 0.5 * (1 + math.cos(math.pi * t / 10)) if t < 10 else 5e-3
        for t in range(14)
    ]
    close(trace(s, 14), expected)


def test_multistep_scheduler_multiplies_by_gamma_at_each_milestone():
    s = MultiStepScheduler(start_value=1.0, milestones=[2, 5], gamma=0.1)
    close(trace(s, 7), [1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_warmup_ramps_linearly_to_main_start_then_follows_main_schedule():
    main = LinearScheduler(start_value=0.05, end_value=0.03, n_steps=100)
    s = WarmupScheduler(main_scheduler=main, warmup_steps=10, warmup_init_factor=0.01)
    assert s.start_value == pytest.approx(0.0005) and s.target_value == 0.05
    values = trace(s, 16)
    close(values[:11], [0.0005 + (t / 10) * (0.05 - 0.0005) for t in range(11)])
    close(values[11:], [0.05 + (0.03 - 0.05) / 100 * k for k in range(1, 6)])
    assert main.step_count == 5  # stepped in lockstep after the warm-up


def test_warmup_constructor_and_reset_restart_the_main_scheduler():
    main = ExponentialDecayScheduler(start_value=1.0, decay_rate=0.5)
    for _ in range(3):
        main.step()
    s = WarmupScheduler(main, warmup_steps=2)
    assert main.step_count == 0 and main.current_value == 1.0
    trace(s, 6)
    s.reset()
    assert (s.step_count, main.step_count) == (0, 0)
    assert s.get_value() == pytest.approx(0.01)


def test_warmup_of_zero_steps_hands_over_after_the_first_step():
    s = WarmupScheduler(ExponentialDecayScheduler(start_value=1.0, decay_rate=0.5), warmup_steps=0)
    close(trace(s, 3), [0.01, 0.5, 0.25])


# --- step / get_value / reset -----------------------------------------------------------------


def test_step_returns_the_new_value_and_get_value_has_no_side_effects():
    s = LinearScheduler(1.0, 0.0, 10)
    assert s.get_value() == 1.0 and s.get_value() == 1.0 and s.step_count == 0
    assert s.step() == pytest.approx(0.9) and s.current_value == pytest.approx(0.9)
    assert s.step_count == 1


def test_reset_returns_to_start():
    s = CosineScheduler(1.0, 0.0, 10)
    trace(s, 5)
    s.reset()
    assert (s.step_count, s.current_value) == (0, 1.0)


def test_custom_scheduler_only_needs_compute_value():
    class Halving(BaseScheduler):
        def _compute_value(self):
            return self.start_value / 2**self.step_count

    close(trace(Halving(8.0), 4), [8.0, 4.0, 2.0, 1.0])
    with pytest.raises(TypeError):
        BaseScheduler(1.0)


# --- values(n): the schedule a whole-chain kernel receives ------------------------------------


ALL_SCHEDULERS = [
    lambda: ConstantScheduler(0.1),
    lambda: ExponentialDecayScheduler(0.1, 0.9, min_value=0.01),
    lambda: LinearScheduler(0.1, 0.01, 7),
    lambda: CosineScheduler(0.3, 0.01, 7),
    lambda: MultiStepScheduler(1.0, [2, 4, 9], gamma=0.5),
    lambda: WarmupScheduler(CosineScheduler(0.3, 0.01, 5), warmup_steps=3),
]


@pytest.mark.parametrize("make", ALL_SCHEDULERS)
@pytest.mark.parametrize("already_taken", [0, 4])
def test_values_lists_what_the_next_steps_use_without_stepping(make, already_taken):
    s = make()
    for _ in range(already_taken):
        s.step()
    before = snapshot(s)
    planned = s.values(12)
    assert snapshot(s) == before  # not mutated
    assert all(type(v) is float for v in planned)
    close(planned, trace(s, 12))
    as_tensor = make()
    for _ in range(already_taken):
        as_tensor.step()
    t = as_tensor.values_tensor(12)
    assert t.dtype == torch.float64 and t.device.type == "cpu" and t.shape == (12,)
    assert t.tolist() == planned


@pytest.mark.parametrize("make", ALL_SCHEDULERS)
@pytest.mark.parametrize("already_taken", [0, 4])
@pytest.mark.parametrize("n", [0, 1, 13])
def test_advance_leaves_the_state_of_n_steps(make, already_taken, n):
    stepped, advanced = make(), make()
    for s in (stepped, advanced):
        for _ in range(already_taken):
            s.step()
    for _ in range(n):
        stepped.step()
    advanced.advance(n)
    assert snapshot(advanced) == snapshot(stepped)
    close(advanced.values(5), stepped.values(5))


def test_advance_rejects_a_negative_count():
    with pytest.raises(ValueError, match="n_steps"):
        ConstantScheduler(1.0).advance(-1)


@pytest.mark.parametrize("make", ALL_SCHEDULERS)
def test_values_of_zero_steps_is_empty(make):
    assert make().values(0) == []


def test_values_leaves_the_warmup_main_scheduler_untouched():
    main = LinearScheduler(1.0, 0.0, 4)
    s = WarmupScheduler(main, warmup_steps=1)
    s.values(10)
    assert (main.step_count, main.current_value) == (0, 1.0)


def test_values_rejects_a_negative_count():
    with pytest.raises(ValueError, match="n_steps must be >= 0, got -1"):
        ConstantScheduler(1.0).values(-1)


@settings(max_examples=30, deadline=None)
@given(
    start=st.floats(1e-4, 10.0),
    rate=st.floats(0.5, 1.0),
    taken=st.integers(0, 20),
    n=st.integers(0, 30),
)
def test_values_agrees_with_stepping_for_any_decay(start, rate, taken, n):
    s = ExponentialDecayScheduler(start_value=start, decay_rate=rate, min_value=1e-3)
    for _ in range(taken):
        s.step()
    planned = s.values(n)
    close(planned, trace(s, n) if n else [])


# --- old keyword names ------------------------------------------------------------------------


def test_seed_spellings_initial_final_total_build_the_same_schedules():
    old = LinearScheduler(initial_value=0.05, final_value=0.03, total_steps=100)
    new = LinearScheduler(start_value=0.05, end_value=0.03, n_steps=100)
    assert old.state_dict() == new.state_dict()
    assert (old.initial_value, old.final_value, old.total_steps) == (0.05, 0.03, 100)
    old_cos = CosineScheduler(initial_value=0.3, final_value=0.01, total_steps=50)
    close(old_cos.values(60), CosineScheduler(0.3, 0.01, 50).values(60))
    decay = ExponentialDecayScheduler(initial_value=0.1, decay_rate=0.99, min_value=0.001)
    assert decay.start_value == 0.1
    assert ConstantScheduler(initial_value=0.2).get_value() == 0.2
    assert MultiStepScheduler(initial_value=1.0, milestones=[3]).start_value == 1.0


def test_positional_arguments_follow_the_current_order():
    s = LinearScheduler(0.05, 0.03, 100)
    assert (s.start_value, s.end_value, s.n_steps) == (0.05, 0.03, 100)


def test_passing_a_parameter_under_both_names_is_an_error():
    with pytest.raises(TypeError, match="both 'n_steps' and its old name 'total_steps'"):
        LinearScheduler(0.1, 0.0, n_steps=10, total_steps=10)


def test_missing_required_parameter_is_named():
    with pytest.raises(TypeError, match="missing required argument 'end_value'"):
        CosineScheduler(start_value=1.0, n_steps=10)
    with pytest.raises(TypeError, match="missing required argument 'decay_rate'"):
        ExponentialDecayScheduler(start_value=1.0)


# --- argument checks: each names the argument and the value -----------------------------------

BAD_ARGUMENTS = [
    (lambda: ConstantScheduler(torch.tensor(0.1)), TypeError, "start_value", "tensor(0.1000)"),
    (lambda: ConstantScheduler("0.1"), TypeError, "start_value", "'0.1'"),
    (
        lambda: ExponentialDecayScheduler(1.0, decay_rate=0.0),
        ValueError,
        "decay_rate must be in (0, 1]",
        "0.0",
    ),
    (
        lambda: ExponentialDecayScheduler(1.0, decay_rate=1.5),
        ValueError,
        "decay_rate must be in (0, 1]",
        "1.5",
    ),
    (lambda: ExponentialDecayScheduler(1.0, 0.9, min_value=-0.1), ValueError, "min_value", "-0.1"),
    (lambda: LinearScheduler(1.0, 0.0, 0), ValueError, "n_steps must be positive (>= 1)", "0"),
    (lambda: LinearScheduler(1.0, 0.0, 2.5), TypeError, "n_steps must be an int", "2.5"),
    (lambda: LinearScheduler(1.0, float("nan"), 10), ValueError, "end_value must be finite", "nan"),
    (lambda: CosineScheduler(1.0, 0.0, total_steps=-3), ValueError, "n_steps must be positive (>= 1)", "-3"),
    (lambda: MultiStepScheduler(1.0, [0, 5]), ValueError, "milestones[0] must be positive (>= 1)", "0"),
    (
        lambda: MultiStepScheduler(1.0, [5, 5]),
        ValueError,
        "milestones must be strictly increasing",
        "[5, 5]",
    ),
    (lambda: MultiStepScheduler(1.0, [2], gamma="x"), TypeError, "gamma", "'x'"),
    (lambda: WarmupScheduler(0.1, warmup_steps=5), TypeError, "main_scheduler", "float"),
    (
        lambda: WarmupScheduler(ConstantScheduler(1.0), warmup_steps=-1),
        ValueError,
        "warmup_steps",
        "-1",
    ),
    (
        lambda: WarmupScheduler(ConstantScheduler(1.0), 5, warmup_init_factor=None),
        TypeError,
        "warmup_init_factor",
        "None",
    ),
]


@pytest.mark.parametrize(
    "build,error,argument,value",
    BAD_ARGUMENTS,
    ids=[f"{i}-{a[2]}" for i, a in enumerate(BAD_ARGUMENTS)],
)
def test_bad_scheduler_argument_error_names_argument_and_value(build, error, argument, value):
    with pytest.raises(error) as info:
        build()
    message = str(info.value)
    assert argument in message and value in message, message


def test_integral_float_step_counts_are_accepted():
    assert LinearScheduler(1.0, 0.0, 1e3).n_steps == 1000


# --- state_dict -------------------------------------------------------------------------------


@pytest.mark.parametrize("make", ALL_SCHEDULERS)
def test_state_dict_round_trip_resumes_the_schedule(make):
    source = make()
    for _ in range(3):
        source.step()
    target = make()
    target.load_state_dict(source.state_dict())
    close(trace(target, 8), trace(source, 8))


@pytest.mark.parametrize("make", ALL_SCHEDULERS)
def test_scheduler_rebuilds_from_its_state_keys(make):
    source = make()
    state = source.state_dict()
    params = inspect.signature(type(source).__init__).parameters
    rebuilt = type(source)(**{name: state[name] for name in params if name in state})
    close(rebuilt.values(10), source.values(10))


def test_loaded_warmup_does_not_share_its_main_scheduler():
    source = WarmupScheduler(LinearScheduler(1.0, 0.0, 10), warmup_steps=1)
    target = WarmupScheduler(LinearScheduler(1.0, 0.0, 10), warmup_steps=1)
    target.load_state_dict(source.state_dict())
    assert target.main_scheduler is not source.main_scheduler
    trace(target, 5)
    assert source.main_scheduler.step_count == 0


def test_repr_shows_constructor_parameters():
    assert (
        repr(LinearScheduler(0.05, 0.03, 100))
        == "LinearScheduler(start_value=0.05, end_value=0.03, n_steps=100)"
    )


# --- Schedulable ------------------------------------------------------------------------------


class Stepper(Schedulable):
    def __init__(self, child=None):
        super().__init__()
        self.child = child


def test_register_and_read_a_scheduled_value():
    module = Stepper()
    module.register_scheduler("step_size", LinearScheduler(1.0, 0.0, 2))
    assert module.get_scheduled_value("step_size") == 1.0
    module.step_schedulers()
    assert module.get_scheduled_value("step_size") == 0.5
    assert set(module.get_schedulers()) == {"step_size"}


def test_register_scheduler_replaces_and_rejects_non_schedulers():
    module = Stepper()
    module.register_scheduler("eta", ConstantScheduler(1.0))
    module.register_scheduler("eta", ConstantScheduler(2.0))
    assert module.get_scheduled_value("eta") == 2.0
    with pytest.raises(TypeError, match="'eta' must be a BaseScheduler, got float"):
        module.register_scheduler("eta", 0.1)


def test_unknown_scheduled_parameter_raises_key_error():
    with pytest.raises(KeyError, match="No scheduler registered for parameter 'noise_scale'"):
        Stepper().get_scheduled_value("noise_scale")


def test_step_and_reset_recurse_over_the_module_subtree():
    inner, outer = Stepper(), None
    inner.register_scheduler("a", LinearScheduler(1.0, 0.0, 4))
    outer = Stepper(child=inner)
    outer.register_scheduler("b", ExponentialDecayScheduler(1.0, 0.5))
    assert outer.step_schedulers() is None
    outer.step_schedulers()
    assert inner.get_scheduled_value("a") == 0.5 and outer.get_scheduled_value("b") == 0.25
    outer.reset_schedulers()
    assert inner.get_scheduled_value("a") == 1.0 and outer.get_scheduled_value("b") == 1.0


def test_a_scheduler_shared_by_two_modules_steps_once_per_call():
    shared = LinearScheduler(1.0, 0.0, 10)
    inner = Stepper()
    inner.register_scheduler("eta", shared)
    outer = Stepper(child=inner)
    outer.register_scheduler("eta", shared)
    outer.step_schedulers()
    assert shared.step_count == 1


def test_register_param_wraps_numbers_and_keeps_schedulers():
    module = Stepper()
    module._register_param("step_size", 0.01, positive=True)
    assert isinstance(module.schedulers["step_size"], ConstantScheduler)
    assert module.get_scheduled_value("step_size") == 0.01
    scheduled_zero = ConstantScheduler(0.0)
    module._register_param("noise_scale", scheduled_zero, positive=True)
    assert module.schedulers["noise_scale"] is scheduled_zero


@pytest.mark.parametrize(
    "value,error,fragment",
    [
        (0.0, ValueError, "step_size must be positive, got 0.0"),
        (-1, ValueError, "step_size must be positive, got -1"),
        (float("nan"), ValueError, "step_size must be finite, got nan"),
        ("0.1", TypeError, "step_size must be a float or a BaseScheduler, got '0.1'"),
    ],
)
def test_register_param_rejects_bad_values_by_name(value, error, fragment):
    with pytest.raises(error) as info:
        Stepper()._register_param("step_size", value, positive=True)
    assert fragment in str(info.value)


def test_schedulable_is_a_torchebm_module_with_device_and_dtype():
    module = Stepper(child=HarmonicModel())
    assert module.device == torch.device("cpu") and module.dtype == torch.get_default_dtype()
