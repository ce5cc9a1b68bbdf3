"""Per-step fused ops vs their pure-PyTorch references (same pre-drawn noise and uniforms):
parity at float rounding for float32/float64, contiguous and strided inputs; in-kernel draws
equal the philox_* ops; NaN/inf energies reject; thread-count independence; argument errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchebm import kernels
from torchebm.kernels import ops, reference

pytestmark = pytest.mark.skipif(not kernels.available(), reason="compiled kernels not built")

DTYPES = [torch.float32, torch.float64]


def _tol(dtype):
    # Fused multiply-adds change the last bit or two; scale by the magnitudes involved.
    return dict(rtol=4 * torch.finfo(dtype).eps, atol=8 * torch.finfo(dtype).eps)


def _make(shape, dtype, strided, seed=0):
    """A tensor of ``shape``; with ``strided`` a non-contiguous view (transposed slice)."""
    g = torch.Generator().manual_seed(seed)
    if not strided:
        return torch.randn(shape, generator=g, dtype=dtype)
    big = torch.randn((*shape[:-1], 2 * shape[-1] + 1), generator=g, dtype=dtype)
    view = big[..., 1::2]
    if view.dim() >= 2:
        view = view.transpose(0, -1).contiguous().transpose(0, -1)  # column-major layout
    assert view.shape == tuple(shape)
    return view


# ---- langevin_update -------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize(
    "clamp_min,clamp_max,grad_clip", [(None, None, None), (-1.0, 1.0, None), (None, 0.5, 0.3), (0.0, None, 2.0)]
)
def test_langevin_update_matches_reference(dtype, strided, clamp_min, clamp_max, grad_clip):
    shape = (37, 5, 3)
    x, g, n = (_make(shape, dtype, strided, s) for s in (1, 2, 3))
    got = ops.langevin_update(x, g, n, 0.05, 0.3, clamp_min, clamp_max, grad_clip)
    want = reference.langevin_update(x, g, n, 0.05, 0.3, clamp_min, clamp_max, grad_clip)
    assert got.shape == shape and got.dtype == dtype and got.is_contiguous()
    torch.testing.assert_close(got, want, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1,), (5, 3), (1000, 7), (64, 2, 2, 2), (3000, 33)])
def test_langevin_in_kernel_noise_equals_philox_normal(dtype, shape):
    x, g = _make(shape, dtype, False, 1), _make(shape, dtype, False, 2)
    got = ops.langevin_update(x, g, None, 0.1, 0.7, -2.0, 2.0, 1.5, seed=42, step=17)
    noise = ops.philox_normal(shape, 42, 17, dtype)
    want = ops.langevin_update(x, g, noise, 0.1, 0.7, -2.0, 2.0, 1.5)
    assert torch.equal(got, want)


def test_langevin_in_kernel_noise_of_a_strided_x_follows_its_logical_order():
    x = _make((300, 9), torch.float32, True, 1)
    g = torch.zeros_like(x)
    got = ops.langevin_update(x, g, None, 0.0, 1.0, seed=3, step=2)
    torch.testing.assert_close(got - x, ops.philox_normal([300, 9], 3, 2, torch.float32), rtol=0, atol=1e-6)


def test_langevin_clamp_propagates_nan_like_torch_clamp():
    x = torch.tensor([[float("nan"), 0.0, 5.0]])
    got = ops.langevin_update(x, torch.zeros_like(x), torch.zeros_like(x), 0.1, 0.1, -1.0, 1.0)
    want = reference.langevin_update(x, torch.zeros_like(x), torch.zeros_like(x), 0.1, 0.1, -1.0, 1.0)
    torch.testing.assert_close(got, want, equal_nan=True)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    dtype=st.sampled_from(DTYPES),
    a=st.floats(-1.0, 1.0),
    b=st.floats(0.0, 2.0),
    clamp=st.one_of(st.none(), st.tuples(st.floats(-3, 0), st.floats(0, 3))),
    clip=st.one_of(st.none(), st.floats(0.01, 3.0)),
    strided=st.booleans(),
)
def test_langevin_update_property(shape, dtype, a, b, clamp, clip, strided):
    x, g, n = (_make(shape, dtype, strided, s) for s in (4, 5, 6))
    lo, hi = clamp if clamp is not None else (None, None)
    got = ops.langevin_update(x, g, n, a, b, lo, hi, clip)
    want = reference.langevin_update(x, g, n, a, b, lo, hi, clip)
    torch.testing.assert_close(got, want, **_tol(dtype))


# ---- leapfrog_kick_drift ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("mass", ["none", "scalar", "diagonal"])
def test_leapfrog_kick_drift_matches_reference(dtype, strided, mass):
    shape = (129, 6)
    x, p, g = (_make(shape, dtype, strided, s) for s in (1, 2, 3))
    inv_mass = {
        "none": None,
        "scalar": torch.tensor(0.7, dtype=dtype),
        "diagonal": torch.linspace(0.5, 2.0, 6, dtype=dtype)[::1],
    }[mass]
    got_x, got_p = ops.leapfrog_kick_drift(x, p, g, 0.05, 0.1, inv_mass)
    want_x, want_p = reference.leapfrog_kick_drift(x, p, g, 0.05, 0.1, inv_mass)
    torch.testing.assert_close(got_p, want_p, **_tol(dtype))
    torch.testing.assert_close(got_x, want_x, **_tol(dtype))


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 300),
    d=st.integers(1, 20),
    dtype=st.sampled_from(DTYPES),
    kick=st.floats(-1, 1),
    drift=st.floats(-1, 1),
    mass=st.sampled_from(["none", "scalar", "diagonal"]),
)
def test_leapfrog_kick_drift_property(rows, d, dtype, kick, drift, mass):
    x, p, g = (_make((rows, d), dtype, False, s) for s in (7, 8, 9))
    inv_mass = {"none": None, "scalar": torch.tensor(1.3, dtype=dtype), "diagonal": torch.rand(d, dtype=dtype) + 0.1}[mass]
    got = ops.leapfrog_kick_drift(x, p, g, kick, drift, inv_mass)
    want = reference.leapfrog_kick_drift(x, p, g, kick, drift, inv_mass)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, **_tol(dtype))


# ---- metropolis_select -----------------------------------------------------------------------


def _unambiguous(log_ratio, uniform, dtype):
    """Rows whose decision cannot flip by float rounding (|log u - log r| beyond a few ulp)."""
    gap = (torch.log(uniform) - log_ratio).abs()
    return gap > 64 * torch.finfo(dtype).eps * (1 + log_ratio.abs())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strided", [False, True])
def test_metropolis_select_matches_reference(dtype, strided):
    B = 500
    x, y = _make((B, 4, 3), dtype, strided, 1), _make((B, 4, 3), dtype, strided, 2)
    lr = torch.randn(B, dtype=dtype)
    u = torch.rand(B, dtype=dtype).clamp_min(1e-6)
    got_x, got_acc = ops.metropolis_select(lr, x, y, u)
    want_x, want_acc = reference.metropolis_select(lr, x, y, u)
    assert got_acc.dtype == torch.bool and got_acc.shape == (B,)
    assert torch.equal(got_acc, want_acc)
    assert torch.equal(got_x, want_x)
    assert 0.2 < got_acc.double().mean() < 0.9


@pytest.mark.parametrize("dtype", DTYPES)
def test_metropolis_in_kernel_uniform_equals_philox_uniform(dtype):
    B = 1001
    x, y = _make((B, 3), dtype, False, 1), _make((B, 3), dtype, False, 2)
    lr = torch.randn(B, dtype=dtype)
    got = ops.metropolis_select(lr, x, y, None, seed=8, step=31)
    want = ops.metropolis_select(lr, x, y, ops.philox_uniform([B], 8, 31, dtype))
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@pytest.mark.parametrize("dtype", DTYPES)
def test_metropolis_rejects_nan_and_minus_inf_ratios(dtype):
    lr = torch.tensor([float("nan"), -float("inf"), float("inf"), 0.0], dtype=dtype)
    x, y = torch.zeros(4, 2, dtype=dtype), torch.ones(4, 2, dtype=dtype)
    x_out, acc = ops.metropolis_select(lr, x, y, None, seed=1, step=0)
    assert acc.tolist() == [False, False, True, True]
    assert torch.equal(x_out, torch.tensor([[0.0, 0], [0, 0], [1, 1], [1, 1]], dtype=dtype))


# ---- mala_select -----------------------------------------------------------------------------


def _mala_inputs(B, d, dtype, strided, seed=0):
    x, y, gx, gy = (_make((B, d), dtype, strided, seed + s) for s in range(4))
    y = x + 0.3 * y
    ex, ey = torch.randn(B, dtype=dtype), torch.randn(B, dtype=dtype)
    return x, y, gx, gy, ex, ey


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("strided", [False, True])
@pytest.mark.parametrize("d", [1, 2, 7, 32, 45])
def test_mala_select_matches_reference(dtype, strided, d):
    B = 400
    x, y, gx, gy, ex, ey = _mala_inputs(B, d, dtype, strided)
    u = torch.rand(B, dtype=dtype).clamp_min(1e-6)
    a, b = 0.04, 0.3
    got = ops.mala_select(x, y, gx, gy, ex, ey, a, b, u)
    want = reference.mala_select(x, y, gx, gy, ex, ey, a, b, u)
    log_r = reference.mala_log_accept_ratio(x, y, gx, gy, ex, ey, a, b)
    sure = _unambiguous(log_r, u, dtype)
    assert sure.double().mean() > 0.95
    assert torch.equal(got[3][sure], want[3][sure])
    acc = got[3]
    # Given the kernel's decisions, the selected rows are exact copies.
    assert torch.equal(got[0], torch.where(acc[:, None], y, x))
    assert torch.equal(got[1], torch.where(acc[:, None], gy, gx))
    assert torch.equal(got[2], torch.where(acc, ey, ex))


@pytest.mark.parametrize("dtype", DTYPES)
def test_mala_in_kernel_uniform_equals_philox_uniform(dtype):
    B = 777
    x, y, gx, gy, ex, ey = _mala_inputs(B, 3, dtype, False)
    got = ops.mala_select(x, y, gx, gy, ex, ey, 0.1, 0.5, None, seed=99, step=4)
    want = ops.mala_select(x, y, gx, gy, ex, ey, 0.1, 0.5, ops.philox_uniform([B], 99, 4, dtype))
    for a, b in zip(got, want):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mala_rejects_nan_and_inf_proposal_energies(dtype):
    B = 4
    x, y, gx, gy, ex, ey = _mala_inputs(B, 2, dtype, False)
    y = x.clone()
    gy = gx.clone()
    ex = torch.zeros(B, dtype=dtype)
    ey = torch.tensor([float("nan"), float("inf"), -1.0, 0.0], dtype=dtype)
    y[3, 0] = float("nan")  # a NaN proposal state rejects too
    _, _, e_out, acc = ops.mala_select(x, y, gx, gy, ex, ey, 0.1, 0.5, torch.full((B,), 0.5, dtype=dtype))
    assert acc.tolist() == [False, False, True, False]
    assert e_out.tolist() == [0.0, 0.0, -1.0, 0.0]


@settings(max_examples=25, deadline=None)
@given(
    B=st.integers(1, 200),
    d=st.integers(1, 40),
    dtype=st.sampled_from(DTYPES),
    a=st.floats(1e-4, 0.5),
    b=st.floats(1e-2, 2.0),
)
def test_mala_select_property(B, d, dtype, a, b):
    x, y, gx, gy, ex, ey = _mala_inputs(B, d, dtype, False, seed=B + d)
    u = torch.rand(B, dtype=dtype).clamp_min(1e-6)
    got = ops.mala_select(x, y, gx, gy, ex, ey, a, b, u)
    log_r = reference.mala_log_accept_ratio(x, y, gx, gy, ex, ey, a, b)
    want_acc = torch.log(u) < log_r
    sure = _unambiguous(log_r, u, dtype)
    assert torch.equal(got[3][sure], want_acc[sure])


# ---- thread-count independence ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_per_step_ops_do_not_depend_on_thread_count(dtype):
    shape = (5000, 13)
    x, g, p = (_make(shape, dtype, False, s) for s in (1, 2, 3))
    ex, ey = torch.randn(5000, dtype=dtype), torch.randn(5000, dtype=dtype)
    y = x + 0.1 * p
    inv_mass = torch.rand(13, dtype=dtype)

    def run():
        return (
            ops.langevin_update(x, g, None, 0.1, 0.2, -1, 1, 0.5, seed=3, step=5),
            *ops.leapfrog_kick_drift(x, p, g, 0.1, 0.2, inv_mass),
            *ops.metropolis_select(ex - ey, x, y, None, 3, 5),
            *ops.mala_select(x, y, g, p, ex, ey, 0.01, 0.2, None, 3, 5),
        )

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run()
        torch.set_num_threads(2)
        two = run()
    finally:
        torch.set_num_threads(before)
    for a, b in zip(one, two):
        assert torch.equal(a, b)


# ---- argument errors -------------------------------------------------------------------------

_x = torch.zeros(4, 3)
_e = torch.zeros(4)


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: ops.langevin_update(_x, torch.zeros(4, 2), None, 0.1, 0.1), r"grad must have the shape of x \[4, 3\], got \[4, 2\]"),
        (lambda: ops.langevin_update(_x, _x.double(), None, 0.1, 0.1), "grad must have the dtype of x"),
        (lambda: ops.langevin_update(_x.int(), _x.int(), None, 0.1, 0.1), "x must be float32 or float64, got Int"),
        (lambda: ops.langevin_update(_x, _x, torch.zeros(3), 0.1, 0.1), "noise must have the shape of x"),
        (lambda: ops.langevin_update(_x, _x, None, math.nan, 0.1), "a must be finite, got nan"),
        (lambda: ops.langevin_update(_x, _x, None, 0.1, math.inf), "b must be finite"),
        (lambda: ops.langevin_update(_x, _x, None, 0.1, 0.1, 1.0, -1.0), r"clamp_min \(1\) must be <= clamp_max \(-1\)"),
        (lambda: ops.langevin_update(_x, _x, None, 0.1, 0.1, grad_clip=-1.0), "grad_clip must be > 0"),
        (lambda: ops.langevin_update(_x, _x, None, 0.1, 0.1, step=-3), "step must be in"),
        (lambda: ops.leapfrog_kick_drift(_x, _x, _x, 0.1, 0.1, torch.ones(4)), r"inv_mass must be None, a 0-d tensor, or \[3\]"),
        (lambda: ops.leapfrog_kick_drift(_x, _x, _x, 0.1, 0.1, torch.ones(3).double()), "inv_mass must have the dtype of x"),
        (lambda: ops.leapfrog_kick_drift(_x, _x[:2], _x, 0.1, 0.1), "p must have the shape of x"),
        (lambda: ops.leapfrog_kick_drift(_x, _x, _x, math.nan, 0.1), "kick must be finite"),
        (lambda: ops.metropolis_select(torch.zeros(3), _x, _x), r"log_accept_ratio must be a per-chain tensor of shape \[4\], got \[3\]"),
        (lambda: ops.metropolis_select(_e.double(), _x, _x), "log_accept_ratio must have the dtype of x"),
        (lambda: ops.metropolis_select(_e, _x, _x, torch.zeros(4, 1)), "uniform must be a per-chain tensor"),
        (lambda: ops.metropolis_select(torch.tensor(0.0), torch.tensor(0.0), torch.tensor(0.0)), "leading chain dimension"),
        (lambda: ops.mala_select(_x, _x, _x, _x, _e, _e, 0.1, 0.0), "b must be finite and > 0, got 0"),
        (lambda: ops.mala_select(_x, _x, _x, _x, _e, torch.zeros(5), 0.1, 0.1), "energy_y must be a per-chain tensor"),
        (lambda: ops.mala_select(_x, _x, _x[:, :2], _x, _e, _e, 0.1, 0.1), "grad_x must have the shape of x"),
    ],
)
def test_bad_arguments_raise_runtime_error_naming_them(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()
