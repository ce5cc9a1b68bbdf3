"""Issue 16, op layer: a call either raises a clear error or returns the right result.

Mixed devices (a meta tensor among real ones reaches the fake kernel), inputs that require
grad, scalars that are valid in float64 but not in the kernels' float32, caller-supplied
uniforms, outputs too large for the machine, and the oracle's 1-D MALA ratio.
"""

from __future__ import annotations

import pytest
import torch

from torchebm.core import GaussianModel, HarmonicModel
from torchebm.core.argument_checks import N_LEAPFROG_MAX, count
from torchebm.kernels import ops, reference
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics

pytestmark = pytest.mark.skipif(not ops._LOADED, reason="compiled kernels not built")

B, D = 4, 3


def _t(*shape, device="cpu", dtype=torch.float32, fill=1.0):
    return torch.full(shape, fill, dtype=dtype, device=device)


def _sched(n=3, device="cpu", fill=0.1):
    return torch.full((n,), fill, dtype=torch.float64, device=device)


# ---- item 1: every tensor on one device, the fake kernels included ---------------------------

# (op name, call with the named argument on `dev` and every other tensor on the CPU)
MIXED = {
    "langevin_update.grad": lambda dev: ops.langevin_update(_t(B, D), _t(B, D, device=dev), None, 0.1, 0.1),
    "langevin_update.noise": lambda dev: ops.langevin_update(_t(B, D), _t(B, D), _t(B, D, device=dev), 0.1, 0.1),
    "langevin_update.x": lambda dev: ops.langevin_update(_t(B, D, device=dev), _t(B, D), None, 0.1, 0.1),
    "leapfrog_kick_drift.grad": lambda dev: ops.leapfrog_kick_drift(_t(B, D), _t(B, D), _t(B, D, device=dev), 0.1, 0.1),
    "leapfrog_kick_drift.inv_mass": lambda dev: ops.leapfrog_kick_drift(_t(B, D), _t(B, D), _t(B, D), 0.1, 0.1, _t(D, device=dev)),
    "metropolis_select.x_proposed": lambda dev: ops.metropolis_select(_t(B), _t(B, D), _t(B, D, device=dev)),
    "metropolis_select.uniform": lambda dev: ops.metropolis_select(_t(B), _t(B, D), _t(B, D), _t(B, fill=0.5, device=dev)),
    "mala_select.energy_y": lambda dev: ops.mala_select(_t(B, D), _t(B, D), _t(B, D), _t(B, D), _t(B), _t(B, device=dev), 0.1, 0.1),
    "analytic_energy_grad.mean": lambda dev: ops.analytic_energy_grad("gaussian", _t(B, D), [], _t(D, device=dev), torch.eye(D)),
    "langevin_chain.a": lambda dev: ops.langevin_chain("harmonic", _t(B, D), _sched(device=dev), _sched(), [1.0]),
    "mala_chain.b": lambda dev: ops.mala_chain("harmonic", _t(B, D), _sched(), _sched(device=dev), [1.0]),
    "hmc_chain.inv_mass": lambda dev: ops.hmc_chain("harmonic", _t(B, D), _sched(), 2, _t(D, device=dev), [1.0]),
    "hmc_chain.x0": lambda dev: ops.hmc_chain("harmonic", _t(B, D, device=dev), _sched(), 2, _t(D), [1.0]),
}


@pytest.mark.parametrize("case", sorted(MIXED))
def test_a_meta_tensor_among_cpu_tensors_raises_naming_the_argument(case):
    # Before: torch routed the call to the fake kernel, which returned uninitialised CPU tensors.
    name = case.split(".")[1]
    with pytest.raises(RuntimeError, match=rf"{case.split('.')[0]}: .*{name}.* is on (meta|cpu)"):
        MIXED[case]("meta")


def test_an_all_meta_call_still_propagates_shapes():
    x = _t(B, D, device="meta")
    out = ops.langevin_update(x, x, None, 0.1, 0.1)
    assert out.device.type == "meta" and out.shape == (B, D)
    xs, traj, _, _ = ops.hmc_chain("harmonic", x, _sched(5), 2, None, [1.0], record_trajectory=True)
    assert xs.device.type == "meta" and traj.shape == (B, 5, D)


def test_check_same_device_names_list_elements():
    with pytest.raises(RuntimeError, match=r"my_op: weights\[1\] is on meta but x is on cpu"):
        ops.check_same_device("my_op", {"x": _t(2), "weights": [_t(2), _t(2, device="meta")]})
    ops.check_same_device("my_op", {"x": _t(2, device="meta"), "a": _t(2)}, host_ok=("a",))


# ---- item 2: gradients are computed or refused, never dropped --------------------------------


def _f64(*shape, lo=-1.0, hi=1.0):
    g = torch.Generator().manual_seed(sum(shape) + len(shape))
    return (lo + (hi - lo) * torch.rand(shape, generator=g, dtype=torch.float64)).requires_grad_()


@pytest.mark.parametrize("clamp,clip", [((None, None), None), ((-0.7, 0.8), 0.6)])
def test_langevin_update_gradients_pass_gradcheck(clamp, clip):
    x, g, n = _f64(B, D), _f64(B, D, lo=-2, hi=2), _f64(B, D)
    fn = lambda x, g, n: ops.langevin_update(x, g, n, 0.3, 0.7, clamp[0], clamp[1], clip)
    assert torch.autograd.gradcheck(fn, (x, g, n))
    # In-kernel noise: gradients of x and grad only.
    assert torch.autograd.gradcheck(lambda x, g: ops.langevin_update(x, g, None, 0.3, 0.7, seed=5, step=2), (x, g))


@pytest.mark.parametrize("mass", [None, "scalar", "diagonal"])
def test_leapfrog_kick_drift_gradients_pass_gradcheck(mass):
    x, p, g = _f64(B, 2, D), _f64(B, 2, D), _f64(B, 2, D)
    m = {None: None, "scalar": _f64(lo=0.5, hi=2.0), "diagonal": _f64(D, lo=0.5, hi=2.0)}[mass]
    args = (x, p, g) + ((m,) if m is not None else ())
    fn = lambda x, p, g, m=None: ops.leapfrog_kick_drift(x, p, g, 0.3, 0.7, m)
    assert torch.autograd.gradcheck(fn, args)


def test_langevin_update_backward_fills_x_grad():
    # Before: backward() ran and left x.grad None.
    x = torch.ones(B, D, requires_grad=True)
    ops.langevin_update(x, torch.ones(B, D), torch.ones(B, D), 0.1, 0.1).sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.ones(B, D))


REFUSED = {
    "metropolis_select": lambda r: ops.metropolis_select(_t(B).requires_grad_(r), _t(B, D), _t(B, D)),
    "mala_select": lambda r: ops.mala_select(_t(B, D), _t(B, D).requires_grad_(r), _t(B, D), _t(B, D), _t(B), _t(B), 0.1, 0.1),
    "analytic_energy_grad": lambda r: ops.analytic_energy_grad("harmonic", _t(B, D).requires_grad_(r), [1.0]),
    "langevin_chain": lambda r: ops.langevin_chain("harmonic", _t(B, D).requires_grad_(r), _sched(), _sched(), [1.0]),
    "mala_chain": lambda r: ops.mala_chain("harmonic", _t(B, D), _sched().requires_grad_(r), _sched(), [1.0]),
    "hmc_chain": lambda r: ops.hmc_chain("harmonic", _t(B, D), _sched(), 2, _t(D).requires_grad_(r), [1.0]),
    "_rng_math": lambda r: torch.ops.torchebm._rng_math("log", _t(B).requires_grad_(r)),
}


@pytest.mark.parametrize("op", sorted(REFUSED))
def test_non_differentiable_ops_refuse_inputs_that_require_grad(op):
    with pytest.raises(RuntimeError, match=rf"{op}: the op is not differentiable, but its argument \w+ requires grad"):
        REFUSED[op](True)
    REFUSED[op](False)
    with torch.no_grad():
        REFUSED[op](True)  # nothing is recorded, so nothing is dropped


# ---- item 5: scalars checked in the dtype the kernels compute in -----------------------------


def test_mala_chain_b_that_rounds_to_zero_in_float32_raises():
    # Before: b = 1e-300 passed "> 0" in float64 and became 0 in the float32 kernel.
    with pytest.raises(RuntimeError, match=r"mala_chain: b\[0\] must be finite and > 0 in float32"):
        ops.mala_chain("harmonic", _t(B, D), _sched(2), _sched(2, fill=1e-300), [1.0])
    with pytest.raises(RuntimeError, match=r"mala_chain: b\[1\] = 1e-30 gives 2 b\[1\]\^2 = 0"):
        ops.mala_chain("harmonic", _t(B, D), _sched(2), torch.tensor([0.1, 1e-30], dtype=torch.float64), [1.0])
    ops.mala_chain("harmonic", _t(B, D, dtype=torch.float64), _sched(2), _sched(2, fill=1e-30), [1.0])


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda dt: ops.langevin_update(_t(B, D, dtype=dt), _t(B, D, dtype=dt), None, 1e300, 0.1), "a must be finite in float32"),
        (lambda dt: ops.leapfrog_kick_drift(_t(B, D, dtype=dt), _t(B, D, dtype=dt), _t(B, D, dtype=dt), 0.1, 1e39), "drift must be finite in float32"),
        (lambda dt: ops.mala_select(*[_t(B, D, dtype=dt)] * 4, _t(B, dtype=dt), _t(B, dtype=dt), 0.1, 1e-30), "b = 1e-30 gives 2 b\\^2 = 0 in float32"),
        (lambda dt: ops.langevin_update(_t(B, D, dtype=dt), _t(B, D, dtype=dt), None, 0.1, 0.1, 1e300, None), "clamp_min = 1e\\+300 is not representable in float32"),
        (lambda dt: ops.langevin_chain("harmonic", _t(B, D, dtype=dt), _sched(), _sched(), [1.0], None, None, None, -1e300), "clamp_max = -1e\\+300 is not representable in float32"),
        (lambda dt: ops.langevin_update(_t(B, D, dtype=dt), _t(B, D, dtype=dt), None, 0.1, 0.1, None, None, 1e-300), "grad_clip must be finite and > 0 in float32"),
        (lambda dt: ops.hmc_chain("harmonic", _t(B, D, dtype=dt), _sched(), 2, _t(D, dtype=torch.float64, fill=1e-50), [1.0]), "inv_mass must be finite and > 0 in float32"),
        (lambda dt: ops.analytic_energy_grad("harmonic", _t(B, D, dtype=dt), [1e300]), "params\\[0\\] of 'harmonic' must be finite in float32"),
    ],
)
def test_values_fine_in_float64_but_not_in_float32_raise_for_float32_states(call, match):
    with pytest.raises(RuntimeError, match=match):
        call(torch.float32)
    call(torch.float64)  # representable there


def _mlp_net(dt, act=0, act_params=(0.0, 0.0, 0.0), out_scale=1.0):
    """A one-layer network [D] -> 1 in dtype dt, as the MLP chain ops take it."""
    return dict(weights=[_t(1, D, dtype=dt)], biases=[_t(1, dtype=dt)], activations=[act],
                act_params=list(act_params), out_scale=out_scale, out_offset=0.0)


def _mlp(op, dt, net=None, **kwargs):
    from torchebm.kernels import mlp

    return getattr(mlp, op)(_t(B, D, dtype=dt), **(net or _mlp_net(dt)), **kwargs)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda dt: _mlp("mlp_mala_chain", dt, a=_sched(2), b=_sched(2, fill=1e-30)), r"mlp_mala_chain: b\[0\] = 1e-30 gives 2 b\[0\]\^2 = 0 in float32"),
        (lambda dt: _mlp("mlp_mala_chain", dt, a=_sched(2), b=_sched(2, fill=1e-50)), r"mlp_mala_chain: b\[0\] must be finite and > 0 in float32"),
        (lambda dt: _mlp("mlp_langevin_chain", dt, a=_sched(2, fill=1e300), b=_sched(2)), r"mlp_langevin_chain: a\[0\] must be finite in float32"),
        (lambda dt: _mlp("mlp_hmc_chain", dt, step_size=_sched(2, fill=1e-50), n_leapfrog=1), r"mlp_hmc_chain: step_size\[0\] must be finite and > 0 in float32"),
        (lambda dt: _mlp("mlp_hmc_chain", dt, step_size=_sched(2), n_leapfrog=1, inv_mass=_t(D, dtype=torch.float64, fill=1e-50)), r"mlp_hmc_chain: inv_mass must be finite and > 0 in float32"),
        (lambda dt: _mlp("mlp_langevin_chain", dt, a=_sched(2), b=_sched(2), clamp_min=1e300), r"mlp_langevin_chain: clamp_min = 1e\+300 is not representable in float32"),
        (lambda dt: _mlp("mlp_langevin_chain", dt, a=_sched(2), b=_sched(2), grad_clip=1e-300), r"mlp_langevin_chain: grad_clip must be finite and > 0 in float32"),
        (lambda dt: _mlp("mlp_mala_chain", dt, _mlp_net(dt, out_scale=1e300), a=_sched(2), b=_sched(2)), r"mlp_mala_chain: out_scale must be finite in float32"),
        (lambda dt: _mlp("mlp_hmc_chain", dt, _mlp_net(dt, act=9, act_params=(1e-300, 20.0, 0.0)), step_size=_sched(2), n_leapfrog=1), r"mlp_hmc_chain: softplus beta \(act_params\[0\]\) must be finite and > 0 in float32"),
        (lambda dt: _mlp("mlp_langevin_chain", dt, _mlp_net(dt, act=2, act_params=(1e39, 0.0, 0.0)), a=_sched(2), b=_sched(2)), r"mlp_langevin_chain: act_params\[0\] must be finite in float32"),
    ],
)
def test_mlp_chain_values_are_checked_in_the_dtype_the_kernels_compute_in(call, match):
    # Before: checked in float64 (b = 1e-30 passed and the float32 MALA ratio divided by 0;
    # step_size = 1e-50 and inv_mass = 1e-50 became 0; out_scale = 1e300 became inf).
    with pytest.raises(RuntimeError, match=match):
        call(torch.float32)
    call(torch.float64)  # representable there


@pytest.mark.parametrize("mass", [1e-50, 1e50, torch.tensor([1.0, 1e-50, 1.0], dtype=torch.float64)])
@pytest.mark.parametrize("backend", ["auto", "reference"])
def test_hmc_mass_outside_float32_raises_naming_mass(mass, backend):
    # Before: 1e-50 accepted nothing; 1e50 failed with a message about inv_mass.
    sampler = HamiltonianMonteCarlo(HarmonicModel(), step_size=0.1, n_leapfrog_steps=2, mass=mass, backend=backend)
    with pytest.raises(ValueError, match=r"HamiltonianMonteCarlo: mass and 1/mass must be positive and finite in float32"):
        sampler.sample(dim=3, n_steps=2, n_samples=2)


# ---- item 6: the oracle's MALA ratio of [B] states is per chain ------------------------------


def test_reference_mala_ratio_of_1d_states_is_per_chain():
    # Before: sum(()) reduced the chains too: every chain got the batch's total.
    x, y = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([2.0, 0.0, 3.5])
    gx, gy, e = torch.tensor([1.0, -1.0, 0.5]), torch.tensor([0.5, 2.0, 0.0]), torch.zeros(3)
    flat = reference.mala_log_accept_ratio(x, y, gx, gy, e, e, 0.1, 0.5)
    column = reference.mala_log_accept_ratio(x[:, None], y[:, None], gx[:, None], gy[:, None], e, e, 0.1, 0.5)
    assert torch.allclose(flat, column) and len(set(flat.tolist())) == 3


# ---- item 7: caller-supplied uniforms lie in (0, 1) ------------------------------------------


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.0, 2.0, float("nan")])
@pytest.mark.parametrize("op", ["metropolis_select", "mala_select"])
def test_uniforms_outside_the_open_unit_interval_raise(op, bad):
    u = torch.full((B,), 0.5)
    u[2] = bad
    call = {
        "metropolis_select": lambda: ops.metropolis_select(_t(B), _t(B, D), _t(B, D), u),
        "mala_select": lambda: ops.mala_select(*[_t(B, D)] * 4, _t(B), _t(B), 0.1, 0.1, u),
    }[op]
    with pytest.raises(RuntimeError, match=rf"{op}: uniform\[2\] must lie in the open interval \(0, 1\)"):
        call()


# ---- item 9 and minor items --------------------------------------------------------------------


def test_a_trajectory_larger_than_memory_raises_before_allocating():
    x0 = torch.zeros(1, 1).expand(2**24, 2**10)  # stride 0: no memory
    for call in (
        lambda: ops.langevin_chain("harmonic", x0, _sched(1024), _sched(1024), [1.0], record_trajectory=True),
        lambda: ops.hmc_chain("harmonic", x0, _sched(1024), 1, None, [1.0], record_trajectory=True),
    ):
        with pytest.raises(RuntimeError, match=r"the trajectory \[16777216, 1024, 1024\] would take 65536.0 GiB"):
            call()


def test_an_mlp_chain_trajectory_larger_than_memory_raises_before_allocating():
    from torchebm.kernels import mlp

    x0 = torch.zeros(1, 1).expand(2**24, 2**10)  # stride 0: no memory
    net = dict(weights=[torch.zeros(1, 2**10)], biases=[torch.zeros(1)], activations=[0],
               act_params=[0.0, 0.0, 0.0], out_scale=1.0, out_offset=0.0)
    for call in (
        lambda: mlp.mlp_langevin_chain(x0, **net, a=_sched(1024), b=_sched(1024), record_trajectory=True),
        lambda: mlp.mlp_mala_chain(x0, **net, a=_sched(1024), b=_sched(1024), record_trajectory=True),
        lambda: mlp.mlp_hmc_chain(x0, **net, step_size=_sched(1024), n_leapfrog=1, record_trajectory=True),
    ):
        with pytest.raises(RuntimeError, match=r"mlp_\w+_chain: the trajectory \[16777216, 1024, 1024\] would take 65536.0 GiB"):
            call()


def test_count_maximum_bounds_n_leapfrog_steps():
    assert count("HMC", "n_leapfrog_steps", N_LEAPFROG_MAX, minimum=1, maximum=N_LEAPFROG_MAX) == 2**31 - 1
    with pytest.raises(ValueError, match=r"HMC: n_leapfrog_steps must be <= 2147483647, got 4611686018427387904"):
        count("HMC", "n_leapfrog_steps", 2**62, minimum=1, maximum=N_LEAPFROG_MAX)


def test_a_sampler_on_the_meta_device_raises_instead_of_returning_meta_samples():
    sampler = LangevinDynamics(GaussianModel(torch.zeros(2), torch.eye(2)), step_size=0.1, device="meta")
    with pytest.raises(ValueError, match="the sampler is on device meta, which holds no data"):
        sampler.sample(dim=2, n_steps=2, n_samples=3)


@pytest.mark.parametrize("backend", ["auto", "fused", "reference"])
def test_a_clamp_bound_beyond_float32_raises_on_every_path(backend):
    # Before: NaN on two paths and an overflow error on the third.
    sampler = LangevinDynamics(HarmonicModel(), step_size=0.1, backend=backend, clamp=(1e300, None))
    with pytest.raises(RuntimeError, match="(not representable in float32|cannot be converted to type float without overflow)"):
        sampler.sample(x=torch.zeros(3, 2), n_steps=2)


def test_chain_shape_errors_name_x0():
    with pytest.raises(RuntimeError, match=r"langevin_chain: energy 'himmelblau' needs d == 2, got x0 of shape"):
        ops.langevin_chain("himmelblau", _t(B, 3), _sched(), _sched(), [])
