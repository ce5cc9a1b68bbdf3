"""The CUDA kernels: parity with the pure-PyTorch references and with the CPU kernels for every
op, the same Philox stream on both back ends, whole chains equal to their per-step loops,
exactness of the chains within Monte Carlo standard errors, CUDA-graph replays, float16 and
bfloat16 states, and no host synchronisation.

Every test needs a GPU and a CUDA build (``cuda`` marker) and skips cleanly otherwise. Two other
modes check what can be checked without a GPU (``TORCHEBM_CUDA_TESTS_ON``):

* ``cpu``: the device-independent tests run on the CPU kernels (checks the tests themselves);
* ``emulated``: the CUDA kernel sources, compiled for the host by
  ``scripts/cuda_emulation/emulate.py`` (each CUDA thread a host thread), registered as
  ``torch.ops.torchebm_cuda_emu`` from the library ``TORCHEBM_CUDA_EMU_LIB``: checks the
  kernels' indexing, reductions and contracts against the CPU kernels. Not a substitute for
  the GPU run (no real memory model, warps or timings).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from torchebm import kernels
from torchebm.kernels import reference

MODE = os.environ.get("TORCHEBM_CUDA_TESTS_ON", "cuda")
if MODE not in ("cuda", "cpu", "emulated"):
    raise ValueError(f"TORCHEBM_CUDA_TESTS_ON must be cuda, cpu or emulated, got {MODE!r}")
DEV = torch.device("cuda" if MODE == "cuda" else "cpu")
ON_GPU = MODE == "cuda"

if MODE == "cuda":
    _RUNNABLE = kernels.cuda_available()
    _WHY = "needs a CUDA GPU and a torchebm build with the CUDA kernels"
elif MODE == "cpu":
    _RUNNABLE = kernels.available()
    _WHY = "compiled kernels not built"
else:
    torch.ops.load_library(os.environ["TORCHEBM_CUDA_EMU_LIB"])
    _RUNNABLE = kernels.available()
    _WHY = "compiled CPU kernels not built"

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not _RUNNABLE, reason=_WHY)]
# Device-vs-CPU comparisons (trivial when the device is the CPU) and GPU-only features.
parity = pytest.mark.skipif(MODE == "cpu", reason="compares the CUDA kernels with the CPU ones")
gpu_only = pytest.mark.skipif(MODE != "cuda", reason="needs a GPU")

OPS = (torch.ops.torchebm_cuda_emu if MODE == "emulated" else torch.ops.torchebm) if _RUNNABLE else None
CPU_OPS = torch.ops.torchebm  # the CPU kernels (the dispatcher routes CPU tensors to them)
F32, F64, F16, BF16 = torch.float32, torch.float64, torch.float16, torch.bfloat16
STATE_DTYPES = [F32, F64] if MODE == "cpu" else [F32, F64, F16, BF16]
LOW = (F16, BF16)
SEED = 0x9234_5678_9ABC_DEF0 - (1 << 64)  # a seed >= 2^63 (every key bit in play), as int64


def tol(dtype):
    """Tolerance of one fused update against a reference computed in float32/float64."""
    if dtype == F16:
        return dict(rtol=2e-3, atol=4e-3)
    if dtype == BF16:
        return dict(rtol=1.6e-2, atol=3e-2)
    return dict(rtol=8 * torch.finfo(dtype).eps, atol=16 * torch.finfo(dtype).eps)


def randn(*shape, dtype=F32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=F64).to(dtype).to(DEV)


def assert_within(stat: float, target: float, se: float, name: str, k: float = 5.0) -> None:
    """|stat - target| <= k standard errors, with the numbers in the failure message."""
    assert abs(stat - target) <= k * se, (
        f"{name}: statistic {stat:.6g}, target {target:.6g}, standard error {se:.3g}, "
        f"threshold {k} SE = {k * se:.3g}, off by {abs(stat - target) / se:.2f} SE"
    )


# ---- random numbers ---------------------------------------------------------------------------


@parity
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", [1, 7, 4099, (1 << 20) + 3])
def test_philox_uniform_is_the_cpu_stream_bit_for_bit(dtype, n):
    u_gpu = OPS.philox_uniform([n], SEED, 17, dtype, DEV)
    u_cpu = CPU_OPS.philox_uniform([n], SEED, 17, dtype, torch.device("cpu"))
    assert torch.equal(u_gpu.cpu(), u_cpu)
    assert float(u_gpu.min()) > 0 and float(u_gpu.max()) < 1


@parity
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", [3, 4099, (1 << 20) + 1])
def test_philox_normal_matches_the_cpu_to_rounding(dtype, n):
    z_gpu = OPS.philox_normal([n], SEED, 3, dtype, DEV).cpu()
    z_cpu = CPU_OPS.philox_normal([n], SEED, 3, dtype, torch.device("cpu"))
    # Same polynomials on both; fused multiply-adds differ by an ulp or two.
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(z_gpu, z_cpu, rtol=16 * eps, atol=16 * eps)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_philox_normal_matches_the_python_reference(dtype):
    z = OPS.philox_normal([3, 1001], 42, 5, dtype, DEV).cpu()
    ref = reference.philox_normal([3, 1001], 42, 5, dtype)
    torch.testing.assert_close(z, ref, rtol=1e-5 if dtype == F32 else 1e-12, atol=1e-5 if dtype == F32 else 1e-12)
    u = OPS.philox_uniform([1001], 42, 5, dtype, DEV).cpu()
    assert torch.equal(u, reference.philox_uniform([1001], 42, 5, dtype))


@parity
@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_draws_are_rounded_float32_draws(dtype):
    for op in (OPS.philox_normal, OPS.philox_uniform):
        low = op([5, 333], SEED, 9, dtype, DEV)
        f32 = op([5, 333], SEED, 9, F32, DEV)
        assert low.dtype == dtype and torch.equal(low, f32.to(dtype))


def test_philox_values_do_not_depend_on_the_size_drawn():
    big = OPS.philox_normal([1 << 18], SEED, 1, F32, DEV)
    small = OPS.philox_normal([1001], SEED, 1, F32, DEV)
    assert torch.equal(big[:1001], small)


def test_philox_normals_have_standard_moments():
    n = 1 << 22
    z = OPS.philox_normal([n], 7, 0, F64, DEV)
    mean, var = float(z.mean()), float(z.var())
    m4 = float((z**4).mean())
    assert_within(mean, 0.0, math.sqrt(1 / n), "mean")
    assert_within(var, 1.0, math.sqrt(2 / n), "variance")
    assert_within(m4, 3.0, math.sqrt(96 / n), "fourth moment")  # Var(z^4) = 105 - 9


# ---- Langevin update --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", STATE_DTYPES)
@pytest.mark.parametrize("clamp", [(None, None), (-1.0, 1.0), (0.0, None)])
@pytest.mark.parametrize("grad_clip", [None, 0.5])
def test_langevin_update_matches_reference_with_given_noise(dtype, clamp, grad_clip):
    x, g, xi = (randn(33, 7, dtype=dtype, seed=s) for s in range(3))
    out = OPS.langevin_update(x, g, xi, 0.1, 0.3, clamp[0], clamp[1], grad_clip, 0, 0)
    ref = reference.langevin_update(x.double(), g.double(), xi.double(), 0.1, 0.3, *clamp, grad_clip)
    assert out.dtype == dtype and out.shape == x.shape
    torch.testing.assert_close(out.double(), ref.to(dtype).double(), **tol(dtype))


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", [1, 6, 4097, 300_001])
def test_langevin_update_in_kernel_noise_is_philox_normal(dtype, n):
    x, g = randn(n, dtype=dtype, seed=1), randn(n, dtype=dtype, seed=2)
    drawn = OPS.langevin_update(x, g, None, 0.01, 0.2, None, None, None, SEED, 11)
    xi = OPS.philox_normal([n], SEED, 11, dtype, DEV)
    given = OPS.langevin_update(x, g, xi, 0.01, 0.2, None, None, None, SEED, 11)
    assert torch.equal(drawn, given)


@pytest.mark.parametrize("dtype", [] if MODE == "cpu" else LOW)
def test_langevin_update_low_precision_in_kernel_noise(dtype):
    x, g = randn(64, 9, dtype=dtype, seed=1), randn(64, 9, dtype=dtype, seed=2)
    out = OPS.langevin_update(x, g, None, 0.05, 0.5, None, None, None, 3, 4)
    xi = OPS.philox_normal([64, 9], 3, 4, F32, DEV)
    ref = reference.langevin_update(x.float(), g.float(), xi, 0.05, 0.5)
    torch.testing.assert_close(out.float(), ref.to(dtype).float(), **tol(dtype))


def test_langevin_update_takes_strided_and_misaligned_inputs():
    base = randn(65, 9)
    x = base[1:, 1:]  # non-contiguous, storage offset breaks 16-byte alignment
    g = randn(8, 64).t()
    xi = randn(64, 8)
    out = OPS.langevin_update(x, g, xi, 0.2, 0.1, -0.5, 0.5, None, 0, 0)
    ref = reference.langevin_update(x, g, xi, 0.2, 0.1, -0.5, 0.5)
    torch.testing.assert_close(out, ref, **tol(F32))
    flat = randn(4 * 1000 + 1)[1:]  # misaligned 1-D view
    gflat = torch.zeros_like(flat)
    out = OPS.langevin_update(flat, gflat, None, 0.0, 1.0, None, None, None, 5, 6)
    xi = OPS.philox_normal([4000], 5, 6, F32, DEV)
    torch.testing.assert_close(out, flat + xi, **tol(F32))


def test_langevin_update_propagates_nan_through_clamp():
    x = torch.tensor([[float("nan"), 2.0, -2.0, 0.5]], device=DEV)
    out = OPS.langevin_update(x, torch.zeros_like(x), torch.zeros_like(x), 0.1, 0.0, -1.0, 1.0, None, 0, 0)
    assert torch.isnan(out[0, 0]) and out[0, 1:].tolist() == [1.0, -1.0, 0.5]


@parity
@pytest.mark.parametrize("dtype", [F32, F64])
def test_langevin_update_cuda_matches_cpu(dtype):
    x, g = randn(1000, 13, dtype=dtype, seed=3), randn(1000, 13, dtype=dtype, seed=4)
    args = (0.01, 0.14, -3.0, 3.0, 1.0, SEED, 123)
    gpu = OPS.langevin_update(x, g, None, *args).cpu()
    cpu = CPU_OPS.langevin_update(x.cpu(), g.cpu(), None, *args)
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(gpu, cpu, rtol=32 * eps, atol=32 * eps)


@parity
@pytest.mark.parametrize("dtype", STATE_DTYPES)
def test_graphsafe_update_reads_seed_and_step_on_the_device(dtype):
    x, g = randn(100, 5, dtype=dtype, seed=5), randn(100, 5, dtype=dtype, seed=6)
    state = torch.tensor([SEED, 40], dtype=torch.int64, device=DEV)
    y = x.clone()
    OPS.langevin_update_graphsafe_(y, g, 0.1, 0.2, -2.0, 2.0, 0.7, state, 2)
    expected = OPS.langevin_update(x, g, None, 0.1, 0.2, -2.0, 2.0, 0.7, SEED, 42)
    assert torch.equal(y, expected)
    OPS.philox_state_advance_(state, 5)
    assert state.tolist() == [SEED, 45]


# ---- leapfrog, Metropolis, MALA ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", STATE_DTYPES)
@pytest.mark.parametrize("mass", ["unit", "scalar", "diagonal"])
def test_leapfrog_matches_reference(dtype, mass):
    x, p, g = (randn(31, 6, dtype=dtype, seed=s) for s in range(3))
    m = {"unit": None, "scalar": torch.tensor(0.7, dtype=dtype, device=DEV),
         "diagonal": (torch.rand(6, generator=torch.Generator().manual_seed(9)) + 0.5).to(dtype).to(DEV)}[mass]
    xo, po = OPS.leapfrog_kick_drift(x, p, g, 0.05, 0.1, m)
    xr, pr = reference.leapfrog_kick_drift(x.double(), p.double(), g.double(), 0.05, 0.1,
                                           None if m is None else m.double())
    torch.testing.assert_close(xo.double(), xr.to(dtype).double(), **tol(dtype))
    torch.testing.assert_close(po.double(), pr.to(dtype).double(), **tol(dtype))


@pytest.mark.parametrize("dtype", STATE_DTYPES)
@pytest.mark.parametrize("shape", [(5,), (37, 3), (1000, 2, 3)])
def test_metropolis_select_matches_reference(dtype, shape):
    B = shape[0]
    x, y = randn(*shape, dtype=dtype, seed=1), randn(*shape, dtype=dtype, seed=2)
    lr = randn(B, dtype=dtype, seed=3)
    lr[0] = float("nan")
    u = OPS.philox_uniform([B], SEED, 8, F64 if dtype == F64 else F32, DEV).to(dtype)
    xo, acc = OPS.metropolis_select(lr, x, y, u, 0, 0)
    xr, accr = reference.metropolis_select(lr.double(), x, y, u.double())
    assert torch.equal(acc, accr) and not bool(acc[0])
    assert torch.equal(xo, xr)
    if dtype in (F32, F64):  # in-kernel uniforms: stream 1 at [B] in the state's dtype
        xo2, acc2 = OPS.metropolis_select(lr, x, y, None, SEED, 8)
        assert torch.equal(acc2, acc) and torch.equal(xo2, xo)


@pytest.mark.parametrize("dtype", STATE_DTYPES)
@pytest.mark.parametrize("shape", [(64, 2), (64, 40), (8, 3, 32, 32)])
def test_mala_select_matches_reference(dtype, shape):
    B = shape[0]
    x, gx, gy = (randn(*shape, dtype=dtype, seed=s) for s in range(3))
    y = (x.double() + 0.05 * randn(*shape, dtype=F64, seed=4)).to(dtype)
    ex, ey = randn(B, dtype=dtype, seed=5), randn(B, dtype=dtype, seed=6)
    a, b = 0.01, math.sqrt(0.02)
    u = OPS.philox_uniform([B], SEED, 2, F64 if dtype == F64 else F32, DEV).to(dtype)
    xo, go, eo, acc = OPS.mala_select(x, y, gx, gy, ex, ey, a, b, u, 0, 0)
    ref = reference.mala_select(x.double(), y.double(), gx.double(), gy.double(), ex.double(),
                                ey.double(), a, b, u.double())
    # Acceptance can only differ where log u sits within rounding of the log ratio.
    log_r = reference.mala_log_accept_ratio(x.double(), y.double(), gx.double(), gy.double(),
                                            ex.double(), ey.double(), a, b)
    margin = (torch.log(u.double()) - log_r).abs()
    close = margin < {F16: 1e-2, BF16: 1e-2, F32: 1e-3, F64: 1e-9}[dtype] * (1 + log_r.abs())
    assert torch.equal(acc | close, ref[3] | close)
    keep = ~close
    assert torch.equal(xo[keep], torch.where(acc.view(-1, *[1] * (x.dim() - 1)), y, x)[keep])
    assert torch.equal(go[keep], torch.where(acc.view(-1, *[1] * (x.dim() - 1)), gy, gx)[keep])
    assert torch.equal(eo, torch.where(acc, ey, ex))
    if dtype in (F32, F64):
        drawn = OPS.mala_select(x, y, gx, gy, ex, ey, a, b, None, SEED, 2)
        assert torch.equal(drawn[3], acc)


@parity
def test_selects_match_the_cpu():
    x, y = randn(500, 4, dtype=F64, seed=1), randn(500, 4, dtype=F64, seed=2)
    gx, gy = randn(500, 4, dtype=F64, seed=3), randn(500, 4, dtype=F64, seed=4)
    ex, ey = randn(500, dtype=F64, seed=5), randn(500, dtype=F64, seed=6)
    gpu = OPS.mala_select(x, y, gx, gy, ex, ey, 0.1, 0.5, None, SEED, 77)
    cpu = CPU_OPS.mala_select(*(t.cpu() for t in (x, y, gx, gy, ex, ey)), 0.1, 0.5, None, SEED, 77)
    for a, b in zip(gpu, cpu):
        assert torch.equal(a.cpu(), b)
    gpu = OPS.metropolis_select(ex - ey, x, y, None, SEED, 78)
    cpu = CPU_OPS.metropolis_select((ex - ey).cpu(), x.cpu(), y.cpu(), None, SEED, 78)
    assert torch.equal(gpu[0].cpu(), cpu[0]) and torch.equal(gpu[1].cpu(), cpu[1])


# ---- per-chain step sizes (docs/adaptation.md, "Kernels") --------------------------------------


def per_chain_values(B, lo, hi, dtype, seed):
    """[B] values in [lo, hi) in ``dtype`` on the device (the chains' own step sizes)."""
    g = torch.Generator().manual_seed(seed)
    return (lo + (hi - lo) * torch.rand(B, generator=g, dtype=F64)).to(dtype).to(DEV)


def per_chain_step_ops(x, g, p, ex, ey, y, a, b, seed=SEED, step=5):
    """The three per-step ops with coefficients ``a``, ``b`` (floats or [B] tensors)."""
    def split(v):
        return (1.0, v) if isinstance(v, torch.Tensor) else (v, None)
    (af, ac), (bf, bc) = split(a), split(b)
    return (OPS.langevin_update(x, g, None, af, bf, -2.0, 2.0, 1.5, seed, step, ac, bc),
            *OPS.leapfrog_kick_drift(x, p, g, af, bf, None, ac, bc),
            *OPS.mala_select(x, y, g, p, ex, ey, af, bf, None, seed, step, ac, bc))


def per_chain_inputs(shape, dtype):
    B = shape[0]
    x, g, p = (randn(*shape, dtype=dtype, seed=s) for s in range(3))
    y = (x.double() + 0.05 * randn(*shape, dtype=F64, seed=4)).to(dtype)
    ex, ey = randn(B, dtype=dtype, seed=5), randn(B, dtype=dtype, seed=6)
    return x, g, p, ex, ey, y


@pytest.mark.parametrize("dtype", STATE_DTYPES)
@pytest.mark.parametrize("shape", [(37, 5), (9, 3, 4), (6,), (12, 40)])
def test_per_chain_step_ops_equal_floats_bit_for_bit(dtype, shape):
    """Per-chain coefficients [B]: equal entries give the float run bit for bit, and chain i with
    entries (a_i, b_i) equals, in its rows, the float run of (a_i, b_i) (rows of several
    elements, several rows per chain, one element per chain, a team of lanes per MALA row)."""
    B = shape[0]
    inputs = per_chain_inputs(shape, dtype)
    a = per_chain_values(B, 1e-3, 1e-1, dtype, 7)
    b = per_chain_values(B, 0.05, 0.5, dtype, 8)
    # The float form of a value the state's dtype holds exactly (the kernels then compute with
    # the same value either way).
    a0, b0 = float(a[0]), float(b[0])
    same = per_chain_step_ops(*inputs, a[:1].expand(B), b[:1].expand(B))
    for got, want in zip(same, per_chain_step_ops(*inputs, a0, b0)):
        assert torch.equal(got, want)
    mixed = per_chain_step_ops(*inputs, a, b0)  # one per-chain coefficient, one float
    both = per_chain_step_ops(*inputs, a, b)
    for i in (0, B // 2, B - 1):
        for got, want in zip(mixed, per_chain_step_ops(*inputs, float(a[i]), b0)):
            assert torch.equal(got[i], want[i]), i
        for got, want in zip(both, per_chain_step_ops(*inputs, float(a[i]), float(b[i]))):
            assert torch.equal(got[i], want[i]), i


@parity
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("shape", [(500, 4), (9, 3, 4)])
def test_per_chain_step_ops_match_the_cpu(dtype, shape):
    B = shape[0]
    inputs = per_chain_inputs(shape, dtype)
    a = per_chain_values(B, 1e-3, 1e-1, dtype, 7)
    b = per_chain_values(B, 0.05, 0.5, dtype, 8)
    gpu = per_chain_step_ops(*inputs, a, b)
    x, g, p, ex, ey, y = (t.cpu() for t in inputs)
    ac, bc = a.cpu(), b.cpu()
    cpu = (CPU_OPS.langevin_update(x, g, None, 1.0, 1.0, -2.0, 2.0, 1.5, SEED, 5, ac, bc),
           *CPU_OPS.leapfrog_kick_drift(x, p, g, 1.0, 1.0, None, ac, bc),
           *CPU_OPS.mala_select(x, y, g, p, ex, ey, 1.0, 1.0, None, SEED, 5, ac, bc))
    eps = torch.finfo(dtype).eps
    for got, want in zip(gpu[:3], cpu[:3]):  # normals and multiply-adds: to rounding
        torch.testing.assert_close(got.cpu(), want, rtol=32 * eps, atol=32 * eps)
    for got, want in zip(gpu[3:], cpu[3:]):  # MALA rows of d <= 16: the CPU's sums, bit for bit
        assert torch.equal(got.cpu(), want)


def test_per_chain_coefficients_are_checked():
    x, g, p = randn(8, 3, seed=1), randn(8, 3, seed=2), randn(8, 3, seed=3)
    with pytest.raises(RuntimeError, match=r"kick must be a float or a per-chain tensor of shape \[8\]"):
        OPS.leapfrog_kick_drift(x, p, g, 1.0, 0.1, None, torch.ones(7, device=DEV), None)
    with pytest.raises(RuntimeError, match="per-chain b must have the dtype of x"):
        OPS.langevin_update(x, g, None, 0.1, 1.0, None, None, None, 0, 0, None,
                            torch.ones(8, dtype=F64, device=DEV))


@gpu_only
def test_per_chain_coefficients_must_be_on_the_device_of_x():
    x, g = randn(8, 3, seed=1), randn(8, 3, seed=2)
    with pytest.raises(RuntimeError, match="a is on cpu but x is on cuda"):
        OPS.langevin_update(x, g, None, 1.0, 0.1, None, None, None, 0, 0, torch.ones(8), None)
    with pytest.raises(RuntimeError, match="b is on cpu but x is on cuda"):
        OPS.mala_select(x, x, g, g, x[:, 0], x[:, 0], 0.1, 1.0, None, 0, 0, None, torch.ones(8))


# ---- analytic models and whole chains ----------------------------------------------------------

PREC = torch.tensor([[2.0, -0.6, 0.1, 0.0, 0.2], [-0.6, 1.5, 0.3, 0.0, 0.0], [0.1, 0.3, 1.0, 0.2, 0.0],
                     [0.0, 0.0, 0.2, 0.8, 0.1], [0.2, 0.0, 0.0, 0.1, 1.2]], dtype=F64)
MODELS = {
    "gaussian": (),
    "double_well": (2.0, 1.0),
    "harmonic": (1.5,),
    "rosenbrock": (1.0, 10.0),
    "ackley": (20.0, 0.2, 2 * math.pi),
    "rastrigin": (10.0,),
    "himmelblau": (),
    "booth": (),
    "styblinski_tang": (),
    "banana": (0.4, 1.5),
}
ONLY_2D = ("himmelblau", "booth")


def model_args(name, d, dtype):
    if name != "gaussian":
        return MODELS[name], None, None
    mean = torch.linspace(-0.5, 0.5, d, dtype=F64).to(dtype).to(DEV)
    return (), mean, PREC[:d, :d].to(dtype).to(DEV)


def model_cases():
    return [(n, d) for n in MODELS for d in (2, 5) if not (d == 5 and n in ONLY_2D)]


@pytest.mark.parametrize("name,d", model_cases())
@pytest.mark.parametrize("dtype", [F32, F64])
def test_analytic_energy_grad_matches_reference(name, d, dtype):
    x = randn(257, d, dtype=dtype, seed=1) * 0.8
    params, mean, prec = model_args(name, d, dtype)
    e, g = OPS.analytic_energy_grad(name, x, list(params), mean, prec)
    er, gr = reference.analytic_energy_grad(name, x.double(), params,
                                            None if mean is None else mean.double(),
                                            None if prec is None else prec.double())
    t = dict(rtol=1e-5, atol=1e-4) if dtype == F32 else dict(rtol=1e-11, atol=1e-10)
    torch.testing.assert_close(e.double(), er, **t)
    torch.testing.assert_close(g.double(), gr, **t)


def langevin_loop(name, x, a, b, params, mean, prec, clamp, clip, seed, thin):
    traj, energies = [], []
    for t in range(a.numel()):
        _, g = OPS.analytic_energy_grad(name, x, list(params), mean, prec)
        x = OPS.langevin_update(x, g, None, float(a[t]), float(b[t]), clamp[0], clamp[1], clip, seed, t)
        energies.append(OPS.analytic_energy_grad(name, x, list(params), mean, prec)[0].double().mean())
        if (t + 1) % thin == 0:
            traj.append(x)
    return x, torch.stack(traj, 1), torch.stack(energies)


@pytest.mark.parametrize("name,d", model_cases())
def test_langevin_chain_equals_its_per_step_loop(name, d):
    B, n = 300, 24
    x0 = randn(B, d, dtype=F64, seed=2) * 0.5 + 0.3
    params, mean, prec = model_args(name, d, F64)
    a = torch.linspace(1e-3, 2e-3, n, dtype=F64)  # a decaying schedule, on the host
    b = torch.sqrt(2 * a) * 0.5
    clamp, clip = (-4.0, 4.0), 50.0
    x, traj, em = OPS.langevin_chain(name, x0, a, b, list(params), mean, prec, *clamp, clip, SEED, 3, True, True)
    xl, tl, el = langevin_loop(name, x0, a, b, params, mean, prec, clamp, clip, SEED, 3)
    torch.testing.assert_close(x, xl, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(traj, tl, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(em.double().cpu(), el.cpu(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name,d", [("double_well", 2), ("rosenbrock", 2), ("gaussian", 5), ("styblinski_tang", 3)])
def test_mala_chain_equals_its_per_step_loop(name, d):
    B, n = 256, 20
    x = randn(B, d, dtype=F64, seed=3) * 0.5
    params, mean, prec = model_args(name, d, F64)
    a = torch.full((n,), 5e-3, dtype=F64)
    b = torch.sqrt(2 * a)
    xc, _, em, acc = OPS.mala_chain(name, x, a, b, list(params), mean, prec, SEED, 1, False, True)
    e, g = OPS.analytic_energy_grad(name, x, list(params), mean, prec)
    rates, means = [], []
    for t in range(n):
        y = OPS.langevin_update(x, g, None, float(a[t]), float(b[t]), None, None, None, SEED, t)
        ey, gy = OPS.analytic_energy_grad(name, y, list(params), mean, prec)
        x, g, e, took = OPS.mala_select(x, y, g, gy, e, ey, float(a[t]), float(b[t]), None, SEED, t)
        rates.append(took.double().mean())
        means.append(e.double().mean())
    torch.testing.assert_close(xc, x, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(acc.double(), torch.stack(rates), rtol=0, atol=1e-12)
    torch.testing.assert_close(em.double(), torch.stack(means), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name,d", [("double_well", 2), ("harmonic", 4), ("gaussian", 5)])
@pytest.mark.parametrize("mass", [None, "diagonal"])
def test_hmc_chain_equals_its_per_step_loop(name, d, mass):
    B, n, L = 128, 12, 5
    x = randn(B, d, dtype=F64, seed=4)
    params, mean, prec = model_args(name, d, F64)
    eps = torch.full((n,), 0.05, dtype=F64)
    m = None if mass is None else torch.linspace(0.5, 1.5, d, dtype=F64).to(DEV)
    xc, _, _, acc = OPS.hmc_chain(name, x, eps, L, m, list(params), mean, prec, SEED, 1, False, False)
    e, g = OPS.analytic_energy_grad(name, x, list(params), mean, prec)
    rates = []
    for t in range(n):
        h = float(eps[t])
        p = OPS.philox_normal([B, d], SEED, t, F64, DEV)
        if m is not None:
            p = p / torch.sqrt(m)
        kin = lambda q: 0.5 * ((q * q) if m is None else (m * q * q)).sum(-1)  # noqa: E731
        h0 = e + kin(p)
        xn, p = OPS.leapfrog_kick_drift(x, p, g, h / 2, h, m)
        for step in range(1, L + 1):
            en, gn = OPS.analytic_energy_grad(name, xn, list(params), mean, prec)
            if step < L:
                xn, p = OPS.leapfrog_kick_drift(xn, p, gn, h, h, m)
        p = p - h / 2 * gn
        x_new, took = OPS.metropolis_select(h0 - (en + kin(p)), x, xn, None, SEED, t)
        sel = took.view(-1, 1)
        x, g, e = x_new, torch.where(sel, gn, g), torch.where(took, en, e)
        rates.append(took.double().mean())
    torch.testing.assert_close(xc, x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(acc.double(), torch.stack(rates), rtol=0, atol=1e-12)


@parity
@pytest.mark.parametrize("name,d", [("double_well", 2), ("double_well", 7), ("gaussian", 5), ("ackley", 2), ("himmelblau", 2)])
@pytest.mark.parametrize("sampler", ["langevin", "mala", "hmc"])
def test_chains_match_the_cpu(name, d, sampler):
    B, n = 200, 30
    x0 = randn(B, d, dtype=F64, seed=6) * 0.5
    params, mean, prec = model_args(name, d, F64)
    sched = torch.full((n,), 1e-3, dtype=F64)

    def call(ops, dev):
        mv = None if mean is None else mean.to(dev)
        pv = None if prec is None else prec.to(dev)
        if sampler == "langevin":
            return ops.langevin_chain(name, x0.to(dev), sched, torch.sqrt(2 * sched), list(params), mv, pv,
                                      None, None, None, SEED, 2, True, True)
        if sampler == "mala":
            return ops.mala_chain(name, x0.to(dev), sched, torch.sqrt(2 * sched), list(params), mv, pv,
                                  SEED, 2, True, True)
        return ops.hmc_chain(name, x0.to(dev), sched * 10, 4, None, list(params), mv, pv, SEED, 2, True, True)

    for got, want in zip(call(OPS, DEV), call(CPU_OPS, torch.device("cpu"))):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-9, atol=1e-9)


@parity
@pytest.mark.parametrize("name,d", [("double_well", 2), ("double_well", 7), ("gaussian", 5)])
def test_hmc_leapfrog_steps_match_the_cpu(name, d):
    """hmc_chain's per-transition leapfrog counts (on the host and on the device) run what the
    CPU kernel runs; equal counts equal the n_leapfrog form bit for bit."""
    B, n = 200, 12
    x0 = randn(B, d, dtype=F64, seed=6) * 0.5
    params, mean, prec = model_args(name, d, F64)
    eps = torch.full((n,), 1e-2, dtype=F64)
    steps = torch.tensor([1, 5, 2, 9, 3, 1, 4, 4, 7, 2, 1, 6])

    def call(ops, dev, leapfrog_steps, n_leapfrog=1):
        mv = None if mean is None else mean.to(dev)
        pv = None if prec is None else prec.to(dev)
        return ops.hmc_chain(name, x0.to(dev), eps, n_leapfrog, None, list(params), mv, pv, SEED, 2,
                             True, True, 0, leapfrog_steps)

    want = call(CPU_OPS, torch.device("cpu"), steps)
    for where in (steps, steps.to(DEV)):
        for got, ref in zip(call(OPS, DEV, where), want):
            torch.testing.assert_close(got.cpu(), ref, rtol=1e-9, atol=1e-9)
    same = call(OPS, DEV, torch.full((n,), 4))
    assert all(torch.equal(u, v) for u, v in zip(same, call(OPS, DEV, None, 4)))
    with pytest.raises(RuntimeError, match=r"leapfrog_steps\[1\] must be in \[1, 2\^31 - 1\]"):
        call(OPS, DEV, torch.tensor([1, 0] + [1] * (n - 2)))


@parity
@pytest.mark.parametrize("name,d", [("double_well", 2), ("double_well", 7), ("gaussian", 5), ("himmelblau", 2)])
@pytest.mark.parametrize("sampler", ["langevin", "mala", "hmc"])
@pytest.mark.parametrize("base", [True, False])
def test_tempered_chains_match_the_cpu(name, d, sampler, base):
    """Tempering (beta, Gaussian base, AIS log weights; tests/test_tempered_chain.py on the CPU)
    runs what the CPU kernels run: a shared path with repeated positions (on the host and on the
    device) and a per-chain beta constant over the steps (a stride-0 view)."""
    B, n = 200, 12
    x0 = randn(B, d, dtype=F64, seed=6) * 0.5
    params, mean, prec = model_args(name, d, F64)
    sched = torch.full((n,), 1e-3, dtype=F64)
    g = torch.Generator().manual_seed(12)
    a = torch.randn(d, d, generator=g, dtype=F64)
    base_mean = 0.1 * torch.randn(d, generator=g, dtype=F64) if base else None
    base_prec = a @ a.T / d + 0.5 * torch.eye(d, dtype=F64) if base else None
    path = torch.tensor([0.0, 0.1, 0.1, 0.3, 0.3, 0.5, 0.6, 0.6, 0.7, 0.8, 0.9, 1.0, 1.0], dtype=F64)
    per_chain = torch.linspace(0.2, 1.0, B, dtype=F64).expand(n + 1, B)

    def call(ops, dev, beta):
        mv = None if mean is None else mean.to(dev)
        pv = None if prec is None else prec.to(dev)
        bm = None if base_mean is None else base_mean.to(dev)
        bp = None if base_prec is None else base_prec.to(dev)
        log_w = torch.zeros(B, dtype=F64, device=dev)
        tail = (0, beta, bm, bp, log_w)
        if sampler == "langevin":
            out = ops.langevin_chain(name, x0.to(dev), sched, torch.sqrt(2 * sched), list(params), mv,
                                     pv, None, None, None, SEED, 2, True, True, *tail)
        elif sampler == "mala":
            out = ops.mala_chain(name, x0.to(dev), sched, torch.sqrt(2 * sched), list(params), mv, pv,
                                 SEED, 2, True, True, *tail)
        else:
            out = ops.hmc_chain(name, x0.to(dev), sched * 10, 4, None, list(params), mv, pv, SEED, 2,
                                True, True, 0, None, *tail[1:])
        return (*out, log_w)

    for beta in (path, path.to(DEV), per_chain):
        want = call(CPU_OPS, torch.device("cpu"), beta.cpu())
        for got, ref in zip(call(OPS, DEV, beta), want):
            torch.testing.assert_close(got.cpu(), ref, rtol=1e-9, atol=1e-9)
    assert bool(want[-1].eq(0).all())  # per-chain beta constant over the steps: no increments


def per_chain_chain(ops, sampler, name, x0, first, second, dev=DEV):
    """One chain op with schedules ``first`` (a / step_size) and ``second`` (b; unused by HMC)."""
    params, mean, prec = model_args(name, x0.shape[1], F64)
    mv = None if mean is None else mean.to(x0.dtype).to(dev)
    pv = None if prec is None else prec.to(x0.dtype).to(dev)
    x0 = x0.to(dev)
    if sampler == "langevin":
        return ops.langevin_chain(name, x0, first, second, list(params), mv, pv, -3.0, 3.0, 20.0,
                                  SEED, 2, True, True)
    if sampler == "mala":
        return ops.mala_chain(name, x0, first, second, list(params), mv, pv, SEED, 2, True, True)
    return ops.hmc_chain(name, x0, first, 3, None, list(params), mv, pv, SEED, 2, True, True)


def per_chain_schedules(B, n, sampler):
    """Two [n_steps] schedules and the [n_steps, B] one giving chains i % 3 == 1 the second."""
    scale = 20.0 if sampler == "hmc" else 1.0  # HMC: step sizes about 0.02 to 0.06
    s1 = torch.linspace(1e-3, 2e-3, n, dtype=F64) * scale
    s2 = torch.linspace(3e-3, 1e-3, n, dtype=F64) * scale
    pick = torch.arange(B) % 3 == 1
    return s1, s2, torch.where(pick[None, :], s2[:, None], s1[:, None]), pick


@pytest.mark.parametrize("name,d", [("double_well", 7), ("double_well", 2), ("gaussian", 5)])
@pytest.mark.parametrize("sampler", ["langevin", "mala", "hmc"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_per_chain_schedules_equal_their_columns(name, d, sampler, dtype):
    """A schedule [n_steps, B] gives chain i its column: its rows equal, bit for bit, those of the
    [n_steps] run of that column; equal columns equal the [n_steps] schedule outright; a stride-0
    [n_steps, B] view equals its copy (Langevin on the double well: the per-element kernel, whose
    Philox groups straddle chains for d = 7; the others: one thread per chain)."""
    B, n = 64, 12
    x0 = (randn(B, d, dtype=F64, seed=6) * 0.5).to(dtype)
    s1, s2, cols, pick = per_chain_schedules(B, n, sampler)
    root = (lambda s: torch.sqrt(2 * s))
    run = per_chain_chain(OPS, sampler, name, x0, cols, root(cols))
    runs = [per_chain_chain(OPS, sampler, name, x0, s, root(s)) for s in (s1, s2)]
    for k in (0, 1):  # the final states and trajectories, chain by chain
        want = torch.where(pick.to(DEV).view(-1, *[1] * (run[k].dim() - 1)), runs[1][k], runs[0][k])
        assert torch.equal(run[k], want)
    equal = per_chain_chain(OPS, sampler, name, x0, s1[:, None].expand(n, B).contiguous(),
                            root(s1)[:, None].expand(n, B).contiguous())
    for got, want in zip(equal, runs[0]):
        assert torch.equal(got, want)
    values = per_chain_values(B, 1e-3, 3e-3, F64, 9).cpu() * (20.0 if sampler == "hmc" else 1.0)
    view = per_chain_chain(OPS, sampler, name, x0, values.expand(n, B), root(values).expand(n, B))
    copy = per_chain_chain(OPS, sampler, name, x0, values.expand(n, B).contiguous(),
                           root(values).expand(n, B).contiguous())
    for got, want in zip(view, copy):
        assert torch.equal(got, want)


@parity
@pytest.mark.parametrize("name,d", [("double_well", 2), ("double_well", 7), ("gaussian", 5), ("himmelblau", 2)])
@pytest.mark.parametrize("sampler", ["langevin", "mala", "hmc"])
def test_per_chain_schedules_match_the_cpu(name, d, sampler):
    B, n = 200, 30
    x0 = randn(B, d, dtype=F64, seed=6) * 0.5
    _, _, cols, _ = per_chain_schedules(B, n, sampler)
    values = per_chain_values(B, 1e-3, 3e-3, F64, 9).cpu() * (20.0 if sampler == "hmc" else 1.0)
    for first in (cols, values.expand(n, B), cols.to(DEV)):  # host, stride-0 view, on the device
        second = torch.sqrt(2 * first)
        gpu = per_chain_chain(OPS, sampler, name, x0, first, second)
        cpu = per_chain_chain(CPU_OPS, sampler, name, x0.cpu(), first.cpu(), second.cpu(),
                              torch.device("cpu"))
        for got, want in zip(gpu, cpu):
            torch.testing.assert_close(got.cpu(), want, rtol=1e-9, atol=1e-9)


# ---- the dense Gaussian's group kernels (csrc/cuda/gaussian_chain.cuh) ----------------------------
# 8 <= d <= 128 runs G = 8, 16 or 32 lanes per chain; 7 and 129 are the row kernels next to the
# thresholds. B = 37 is no multiple of a block's chains, so the last block has groups past the
# batch (they compute on chain 0's values and must write nothing).
GROUP_DIMS = (2, 7, 8, 9, 16, 17, 32, 33, 100, 128, 129)
GROUP_B = 37


def group_tol(dtype):
    """Elements equal to the CPU kernels to rounding: float64 to 1e-12 relative; float32 with the
    tolerance of the per-step ops' CUDA-vs-CPU comparisons (32 eps; the gradient's sum has the
    CPU's order, so only nvcc's fused multiply-adds differ)."""
    if dtype == F64:
        return dict(rtol=1e-12, atol=1e-12)
    eps = torch.finfo(dtype).eps
    return dict(rtol=32 * eps, atol=32 * eps)


def dense_gaussian(d, dtype, seed=0):
    """A correlated Gaussian in d dimensions: mean in [-0.5, 0.5], precision A A^T / d + I / 2."""
    g = torch.Generator().manual_seed(100 + d + seed)
    a = torch.randn(d, d, generator=g, dtype=F64)
    mean = torch.linspace(-0.5, 0.5, d, dtype=F64) + 0.1 * seed
    return mean.to(dtype), (a @ a.T / d + 0.5 * torch.eye(d, dtype=F64)).to(dtype)


def dense_chain(ops, sampler, x0, sched, dev, *, thin=2, first_step=3, beta=None, base=None,
                log_weight=None, leapfrog_steps=None, inv_mass=None):
    """One Gaussian chain op on ``dev`` with schedule ``sched`` (a, with b = sqrt(2 a); HMC: step
    sizes) and every output recorded."""
    d, dtype = x0.shape[1], x0.dtype
    mean, prec = (t.to(dev) for t in dense_gaussian(d, dtype))
    bm, bp = (None, None) if base is None else (t.to(dev) for t in base)
    tail = (first_step, beta, bm, bp, log_weight)
    x0 = x0.to(dev)
    if sampler == "langevin":
        return ops.langevin_chain("gaussian", x0, sched, torch.sqrt(2 * sched), [], mean, prec,
                                  -6.0, 6.0, 40.0, SEED, thin, True, True, *tail)
    if sampler == "mala":
        return ops.mala_chain("gaussian", x0, sched, torch.sqrt(2 * sched), [], mean, prec, SEED,
                              thin, True, True, *tail)
    m = None if inv_mass is None else inv_mass.to(dev)
    return ops.hmc_chain("gaussian", x0, sched, 3, m, [], mean, prec, SEED, thin, True, True,
                         first_step, leapfrog_steps, *tail[1:])


def dense_schedule(sampler, n, B):
    """Per-chain schedules [n_steps, B] (every chain its own values, varying over the steps)."""
    g = torch.Generator().manual_seed(7)
    scale = 0.02 if sampler == "hmc" else 2e-3
    return scale * (0.5 + torch.rand(n, B, generator=g, dtype=F64))


def assert_all_close(got, want, dtype):
    for k, (u, v) in enumerate(zip(got, want)):
        torch.testing.assert_close(u.cpu(), v, **group_tol(dtype), msg=lambda m: f"output {k}: {m}")


@parity
@pytest.mark.parametrize("d", GROUP_DIMS)
@pytest.mark.parametrize("sampler", ["langevin", "mala", "hmc"])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_dense_gaussian_chains_match_the_cpu(d, sampler, dtype):
    """Final states, trajectories (thin 2), energy means and acceptance rates equal the CPU
    kernels' with per-chain schedules, first_step 3 and, for HMC, a diagonal mass and
    per-transition leapfrog counts."""
    n = 6
    x0 = (randn(GROUP_B, d, dtype=F64, seed=d) * 0.7).to(dtype).cpu()
    sched = dense_schedule(sampler, n, GROUP_B)
    hmc = {}
    if sampler == "hmc":
        hmc = dict(leapfrog_steps=torch.tensor([2, 1, 4, 3, 1, 2]),
                   inv_mass=torch.linspace(0.6, 1.4, d, dtype=F64).to(dtype))
    want = dense_chain(CPU_OPS, sampler, x0, sched, torch.device("cpu"), **hmc)
    got = dense_chain(OPS, sampler, x0, sched, DEV, **hmc)
    assert_all_close(got, want, dtype)
    if sampler != "langevin":
        assert float(want[3].mean()) > 0.3  # acceptances are in play, not all rejections


@parity
@pytest.mark.parametrize("d", [8, 33, 100])
@pytest.mark.parametrize("sampler", ["langevin", "mala", "hmc"])
@pytest.mark.parametrize("base", [True, False])
def test_tempered_dense_gaussian_chains_match_the_cpu(d, sampler, base):
    """Tempering on the group kernels, with the AIS log weights: a shared path with repeated
    positions, a per-chain beta constant over the steps (stride 0: no chain retargets after
    step 0), and a per-chain path where odd chains move at every step while even chains hold
    still at some steps (blocks where some chains are evaluated again and others not)."""
    n, B = 6, GROUP_B
    x0 = randn(B, d, dtype=F64, seed=d) * 0.7
    sched = dense_schedule(sampler, n, B)
    base_model = dense_gaussian(d, F64, seed=1) if base else None
    path = torch.tensor([0.0, 0.2, 0.2, 0.5, 0.7, 0.7, 1.0], dtype=F64)
    odd = torch.linspace(0.1, 1.0, n + 1, dtype=F64)[:, None].expand(n + 1, B)
    mixed = torch.where(torch.arange(B)[None, :] % 2 == 1, odd, path[:, None])
    for beta in (path, torch.linspace(0.3, 1.0, B, dtype=F64).expand(n + 1, B), mixed.contiguous()):
        runs = []
        for ops, dev in ((CPU_OPS, torch.device("cpu")), (OPS, DEV)):
            log_w = torch.zeros(B, dtype=F64, device=dev)
            out = dense_chain(ops, sampler, x0.cpu(), sched, dev, beta=beta.to(dev)
                              if beta.stride(0) != 0 else beta, base=base_model, log_weight=log_w)
            runs.append((*out, log_w))
        assert_all_close(runs[1], runs[0], F64)


@pytest.mark.parametrize("d", [9, 33])
@pytest.mark.parametrize("sampler", ["langevin", "mala", "hmc"])
def test_dense_gaussian_chain_blocks_equal_one_call(d, sampler):
    """Two calls of 3 steps (the second from first_step 3) equal one call of 6, bit for bit."""
    x0 = randn(GROUP_B, d, dtype=F64, seed=2) * 0.7
    sched = dense_schedule(sampler, 6, GROUP_B).to(DEV)
    one = dense_chain(OPS, sampler, x0, sched, DEV, thin=1, first_step=0)
    first = dense_chain(OPS, sampler, x0, sched[:3], DEV, thin=1, first_step=0)
    second = dense_chain(OPS, sampler, first[0], sched[3:], DEV, thin=1, first_step=3)
    assert torch.equal(one[0], second[0])
    assert torch.equal(one[1], torch.cat([first[1], second[1]], 1))
    assert torch.equal(one[2], torch.cat([first[2], second[2]]))


@gpu_only
@pytest.mark.parametrize("kind", ["mala", "hmc"])
def test_per_chain_adapted_samplers_run_the_cuda_kernels(kind):
    """After a per-chain warm-up on the GPU, sample() runs the analytic model's CUDA chain op
    (schedules [n_steps, B]) and, for a model without a kernel spec, the CUDA per-step ops with
    per-chain step sizes [B] (no detour through torch arithmetic)."""
    from torchebm.core import GaussianModel
    from torchebm.samplers import HamiltonianMonteCarlo, MetropolisAdjustedLangevin

    class NoSpecGaussian(GaussianModel):  # no kernel spec: the per-step loop
        def gradient(self, x, model_kwargs=None):
            return super().gradient(x, model_kwargs)

    cls, kw = ((MetropolisAdjustedLangevin, {}) if kind == "mala"
               else (HamiltonianMonteCarlo, {"n_leapfrog_steps": 3}))
    mean, cov = torch.tensor([0.5, -1.0]), torch.tensor([[1.0, 0.3], [0.3, 0.5]])
    chain = cls(GaussianModel(mean, cov).to(DEV), step_size=0.05, **kw)
    x = chain.warmup(x=randn(64, 2, seed=3), n_steps=30, per_chain=True)
    assert chain.adaptation.step_size.shape == (64,)
    out = chain.sample(x=x, n_steps=20)
    assert chain.last_path == "chain" and out.is_cuda and bool(torch.isfinite(out).all())
    fused = cls(NoSpecGaussian(mean, cov).to(DEV), step_size=0.05, **kw)
    fused.load_state_dict(chain.state_dict())
    out = fused.sample(x=x, n_steps=20)
    assert fused.last_path == "fused" and out.is_cuda and bool(torch.isfinite(out).all())


def test_chain_outputs_are_deterministic():
    x0 = randn(5000, 8, dtype=F32, seed=1)
    a = torch.full((50,), 1e-2, dtype=F64)
    one = OPS.mala_chain("double_well", x0, a, torch.sqrt(2 * a), [2.0, 1.0], None, None, 5, 5, True, True)
    two = OPS.mala_chain("double_well", x0, a, torch.sqrt(2 * a), [2.0, 1.0], None, None, 5, 5, True, True)
    for p, q in zip(one, two):
        assert torch.equal(p, q)


@parity
@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_chains_run_in_float32(dtype):
    x0 = randn(64, 3, dtype=dtype, seed=2)
    a = torch.full((10,), 1e-2, dtype=F64)
    out = OPS.langevin_chain("double_well", x0, a, torch.sqrt(2 * a), [2.0, 1.0], None, None,
                             None, None, None, 9, 1, True, True)
    ref = OPS.langevin_chain("double_well", x0.float(), a, torch.sqrt(2 * a), [2.0, 1.0], None, None,
                             None, None, None, 9, 1, True, True)
    for got, want in zip(out, ref):
        assert got.dtype == dtype and torch.equal(got, want.to(dtype))
    e, g = OPS.analytic_energy_grad("harmonic", x0, [1.0], None, None)
    assert e.dtype == dtype and torch.equal(g, x0)


# ---- statistics: the chains sample what they should ----------------------------------------------


def test_langevin_chain_has_the_exact_ula_stationary_variance():
    # E = k/2 x^2 (sigma^2 = 1/k); ULA with step eta and noise sqrt(2 eta) has stationary variance
    # sigma^2 / (1 - eta k / 2) exactly; independent chains and coordinates make iid samples.
    B, d, n, eta, k = 1 << 16, 4, 400, 0.1, 1.0
    a = torch.full((n,), eta, dtype=F64)
    x, _, _ = OPS.langevin_chain("harmonic", torch.zeros(B, d, device=DEV), a, torch.sqrt(2 * a), [k],
                                 None, None, None, None, None, 11, 1, False, False)
    s = x.double().flatten()
    N, target = s.numel(), (1 / k) / (1 - eta * k / 2)
    assert_within(float(s.mean()), 0.0, math.sqrt(target / N), "mean")
    assert_within(float(s.var()), target, target * math.sqrt(2 / N), "variance")


def _gaussian_moment_checks(x, mean, cov, what):
    x = x.double().cpu()
    N = x.shape[0]
    for i in range(x.shape[1]):
        assert_within(float(x[:, i].mean()), float(mean[i]), math.sqrt(float(cov[i, i]) / N), f"{what} mean[{i}]")
    xc = x - x.mean(0)
    for i in range(x.shape[1]):
        for j in range(i, x.shape[1]):
            prod = xc[:, i] * xc[:, j]
            assert_within(float(prod.mean()), float(cov[i, j]), float(prod.std()) / math.sqrt(N), f"{what} cov[{i},{j}]")


def test_mala_chain_is_exact_on_a_correlated_gaussian():
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]], dtype=F64)
    prec, mean = torch.linalg.inv(cov), torch.tensor([1.0, -2.0], dtype=F64)
    B, n, eta = 1 << 15, 400, 0.1
    a = torch.full((n,), eta, dtype=F64)
    x, _, _, acc = OPS.mala_chain("gaussian", randn(B, 2, dtype=F64, seed=3), a, torch.sqrt(2 * a), [],
                                  mean.to(DEV), prec.to(DEV), 21, 1, False, False)
    assert float(acc[-50:].mean()) > 0.3
    _gaussian_moment_checks(x, mean, cov, "MALA")


def test_hmc_chain_is_exact_on_a_gaussian_with_diagonal_mass():
    cov = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 0.5]], dtype=F64)
    prec, mean = torch.linalg.inv(cov), torch.tensor([0.5, 0.0, -1.0], dtype=F64)
    B, n = 1 << 15, 200
    x, _, _, acc = OPS.hmc_chain("gaussian", randn(B, 3, dtype=F64, seed=4), torch.full((n,), 0.3, dtype=F64),
                                 6, torch.tensor([1.5, 1.0, 0.6], dtype=F64, device=DEV), [],
                                 mean.to(DEV), prec.to(DEV), 22, 1, False, False)
    assert float(acc[-50:].mean()) > 0.5
    _gaussian_moment_checks(x, mean, cov, "HMC")


@pytest.mark.parametrize("sampler", ["mala", "hmc"])
def test_chain_is_exact_on_a_1d_double_well(sampler):
    # E = h (x^2 - 1)^2: compare E[x^2] and E[x^4] with quadrature of exp(-E).
    h = 1.0
    grid = np.linspace(-4, 4, 200_001)
    w = np.exp(-h * (grid**2 - 1) ** 2)
    integrate = getattr(np, "trapezoid", None) or np.trapz
    m2, m4, m8 = (float(integrate(grid**k * w, grid) / integrate(w, grid)) for k in (2, 4, 8))
    # Start in the wells, half in each (the target's split, by symmetry): the test is about the
    # stationary law, not about escaping the steep tails, where MALA's big drift steps reject.
    B = 1 << 16
    g = torch.Generator().manual_seed(5)
    side = torch.where(torch.rand(B, 1, generator=g) < 0.5, -1.0, 1.0).double()
    x0 = (side * (1 + 0.3 * torch.randn(B, 1, generator=g, dtype=F64))).to(DEV)
    if sampler == "mala":
        a = torch.full((1000,), 0.05, dtype=F64)
        x, _, _, _ = OPS.mala_chain("double_well", x0, a, torch.sqrt(2 * a), [h, 1.0], None, None, 31, 1, False, False)
    else:
        x, _, _, _ = OPS.hmc_chain("double_well", x0, torch.full((400,), 0.2, dtype=F64), 8, None, [h, 1.0],
                                   None, None, 32, 1, False, False)
    s = x.double().flatten().cpu()
    assert_within(float((s**2).mean()), m2, math.sqrt((m4 - m2**2) / B), f"{sampler} E[x^2]")
    assert_within(float((s**4).mean()), m4, math.sqrt((m8 - m4**2) / B), f"{sampler} E[x^4]")


# ---- CUDA graphs ------------------------------------------------------------------------------------


class _MLPEnergy(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(d, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
        for p in self.net.parameters():
            torch.nn.init.normal_(p, std=0.3, generator=g)

    def forward(self, x):
        return self.net(x).squeeze(-1) + 0.5 * (x * x).sum(-1)


def _autograd_gradient(model):
    def gradient(x):
        with torch.enable_grad():
            xv = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(model(xv).sum(), xv)
        return g
    return gradient


@gpu_only
@pytest.mark.parametrize("n_steps", [0, 5, 13])
def test_captured_langevin_graph_equals_the_eager_loop(n_steps):
    from torchebm.kernels.cuda_graph import capture_langevin

    model = _MLPEnergy(6).to(DEV)
    grad = _autograd_gradient(model)
    x0 = randn(256, 6)
    graph = capture_langevin(grad, x0, a=0.01, b=0.1, steps_per_graph=5, clamp_min=-3.0, clamp_max=3.0)
    got = graph.run(x0, seed=SEED, n_steps=n_steps)
    x = x0
    for t in range(n_steps):
        x = OPS.langevin_update(x, grad(x), None, 0.01, 0.1, -3.0, 3.0, None, SEED, t)
    torch.testing.assert_close(got, x, rtol=1e-5, atol=1e-5)


@gpu_only
def test_graph_replays_draw_fresh_noise():
    from torchebm.kernels.cuda_graph import capture_langevin

    x0 = torch.zeros(64, 4, device=DEV)
    graph = capture_langevin(torch.zeros_like, x0, a=0.0, b=1.0, steps_per_graph=4)
    two_blocks = graph.run(x0, seed=3, n_steps=8)  # sum of 8 normals of steps 0..7
    expected = sum(OPS.philox_normal([64, 4], 3, t, F32, DEV) for t in range(8))
    torch.testing.assert_close(two_blocks, expected, rtol=1e-5, atol=1e-5)
    assert not torch.equal(graph.run(x0, seed=4, n_steps=8), two_blocks)


@gpu_only
def test_graph_langevin_has_the_exact_ula_stationary_variance():
    from torchebm.kernels.cuda_graph import capture_langevin

    class Quadratic(torch.nn.Module):
        def forward(self, x):
            return 0.5 * (x * x).sum(-1)

    B, d, eta = 1 << 15, 4, 0.1
    x0 = torch.zeros(B, d, device=DEV)
    graph = capture_langevin(_autograd_gradient(Quadratic()), x0, a=eta, b=math.sqrt(2 * eta), steps_per_graph=20)
    s = graph.run(x0, seed=77, n_steps=400).double().flatten()
    N, target = s.numel(), 1 / (1 - eta / 2)
    assert_within(float(s.mean()), 0.0, math.sqrt(target / N), "graph mean")
    assert_within(float(s.var()), target, target * math.sqrt(2 / N), "graph variance")


# ---- no host synchronisation ------------------------------------------------------------------------


@gpu_only
def test_ops_do_not_synchronise_with_the_host():
    x, g, p = randn(128, 4, seed=1), randn(128, 4, seed=2), randn(128, 4, seed=3)
    e = randn(128, seed=4)
    a = torch.full((20,), 1e-2, dtype=F64, device=DEV)
    state = torch.tensor([1, 0], dtype=torch.int64, device=DEV)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        OPS.philox_normal([128, 4], 1, 2, F32, DEV)
        OPS.philox_uniform([128], 1, 2, F32, DEV)
        OPS.langevin_update(x, g, None, 0.1, 0.2, -1.0, 1.0, 0.5, 1, 2)
        OPS.langevin_update_graphsafe_(x.clone(), g, 0.1, 0.2, None, None, None, state, 0)
        OPS.philox_state_advance_(state, 1)
        OPS.leapfrog_kick_drift(x, p, g, 0.1, 0.2, None)
        OPS.metropolis_select(e, x, p, None, 1, 2)
        OPS.mala_select(x, p, g, g, e, e, 0.1, 0.2, None, 1, 2)
        OPS.analytic_energy_grad("double_well", x, [2.0, 1.0], None, None)
        OPS.langevin_chain("double_well", x, a, a, [2.0, 1.0], None, None, None, None, None, 1, 2, True, True)
        OPS.langevin_chain("rosenbrock", x, a, a, [1.0, 10.0], None, None, None, None, None, 1, 2, True, True)
        OPS.mala_chain("double_well", x, a, a, [2.0, 1.0], None, None, 1, 2, True, True)
        OPS.hmc_chain("double_well", x, a, 3, None, [2.0, 1.0], None, None, 1, 2, True, True)
        # per-chain step sizes on the device: [B] coefficients, [n_steps, B] schedules
        c = torch.full((128,), 1e-2, device=DEV)
        OPS.langevin_update(x, g, None, 1.0, 1.0, None, None, None, 1, 2, c, c)
        OPS.leapfrog_kick_drift(x, p, g, 1.0, 1.0, None, c, c)
        OPS.mala_select(x, p, g, g, e, e, 1.0, 1.0, None, 1, 2, c, c)
        cols = c.double().expand(20, 128)
        OPS.langevin_chain("double_well", x, cols, cols, [2.0, 1.0], None, None, None, None, None, 1, 2, True, True)
        OPS.mala_chain("double_well", x, cols.contiguous(), cols, [2.0, 1.0], None, None, 1, 2, True, True)
        OPS.hmc_chain("double_well", x, cols, 3, None, [2.0, 1.0], None, None, 1, 2, True, True)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


# ---- dsm_perturb (denoising score matching; docs/score_matching.md) ----------------------------


@pytest.mark.parametrize("dtype", STATE_DTYPES)
def test_dsm_perturb_matches_reference_with_given_noise(dtype):
    x, xi = randn(33, 7, dtype=dtype, seed=0), randn(33, 7, dtype=dtype, seed=1)
    x_tilde, target = OPS.dsm_perturb(x, xi, 0.3, 0, 0)
    ref = reference.dsm_perturb(x.double(), xi.double(), 0.3)
    assert x_tilde.dtype == dtype and target.shape == x.shape
    torch.testing.assert_close(x_tilde.double(), ref[0].to(dtype).double(), **tol(dtype))
    torch.testing.assert_close(target.double(), ref[1].to(dtype).double(), **tol(dtype))


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("n", [1, 6, 4097, 300_001])
def test_dsm_perturb_in_kernel_noise_is_philox_normal(dtype, n):
    x = randn(n, dtype=dtype, seed=1)
    drawn = OPS.dsm_perturb(x, None, 0.7, SEED, 11)
    given = OPS.dsm_perturb(x, OPS.philox_normal([n], SEED, 11, dtype, DEV), 0.7, SEED, 11)
    assert torch.equal(drawn[0], given[0]) and torch.equal(drawn[1], given[1])


@pytest.mark.parametrize("dtype", [] if MODE == "cpu" else LOW)
def test_dsm_perturb_low_precision_in_kernel_noise(dtype):
    x = randn(64, 9, dtype=dtype, seed=1)
    x_tilde, target = OPS.dsm_perturb(x, None, 0.5, 3, 4)
    ref = reference.dsm_perturb(x.float(), OPS.philox_normal([64, 9], 3, 4, F32, DEV), 0.5)
    torch.testing.assert_close(x_tilde.float(), ref[0].to(dtype).float(), **tol(dtype))
    torch.testing.assert_close(target.float(), ref[1].to(dtype).float(), **tol(dtype))


def test_dsm_perturb_takes_strided_and_misaligned_inputs():
    x = randn(65, 9)[1:, 1:]  # non-contiguous, storage offset breaks 16-byte alignment
    xi = randn(9, 64).t()[:, 1:]
    ref = reference.dsm_perturb(x, xi, 0.2)
    for got, want in zip(OPS.dsm_perturb(x, xi, 0.2, 0, 0), ref):
        torch.testing.assert_close(got, want, **tol(F32))


@parity
@pytest.mark.parametrize("dtype", [F32, F64])
def test_dsm_perturb_cuda_matches_cpu(dtype):
    x = randn(1000, 13, dtype=dtype, seed=3)
    gpu = OPS.dsm_perturb(x, None, 0.05, SEED, 123)
    cpu = CPU_OPS.dsm_perturb(x.cpu(), None, 0.05, SEED, 123)
    # the same Philox normals up to an ulp or two (philox_normal's own parity), then one
    # multiply-add / divide
    for g, c in zip(gpu, cpu):
        torch.testing.assert_close(g.cpu(), c, **tol(dtype))


# ---- replica_swap (parallel tempering) --------------------------------------------------------


@pytest.mark.parametrize("dtype", STATE_DTYPES)
@pytest.mark.parametrize("shape", [(2, 7, 1), (5, 300, 3), (8, 64, 2, 5)])
def test_replica_swap_matches_reference(dtype, shape):
    k_temps, b = shape[:2]
    x = randn(*shape, dtype=dtype, seed=1)
    energy = (3 * randn(k_temps, b, dtype=F64, seed=2)).to(dtype)
    energy[0, 0] = float("nan")  # rejects
    betas = [0.5**k for k in range(k_temps)]
    u = OPS.philox_uniform([k_temps - 1, b], SEED, 6, F64 if dtype == F64 else F32, DEV).to(dtype)
    for parity in (0, 1):
        got = OPS.replica_swap(x, energy, betas, parity, u, 0, 0)
        want = reference.replica_swap(x, energy, betas, parity, u)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=0, atol=0, equal_nan=True)
        assert not bool(got[2][0, 0]) and bool(got[2].any()) == (parity < k_temps - 1)
        if dtype in (F32, F64):  # in-kernel uniforms: stream 1 at [K-1, B]
            drawn = OPS.replica_swap(x, energy, betas, parity, None, SEED, 6)
            for g, d in zip(got, drawn):
                torch.testing.assert_close(g, d, rtol=0, atol=0, equal_nan=True)


@parity
@pytest.mark.parametrize("dtype", [F32, F64])
def test_replica_swap_cuda_matches_cpu(dtype):
    x, energy = randn(6, 1000, 4, dtype=dtype, seed=3), randn(6, 1000, dtype=dtype, seed=4)
    betas = [1.0, 0.7, 0.5, 0.3, 0.2, 0.1]
    for parity in (0, 1):
        gpu = OPS.replica_swap(x, energy, betas, parity, None, SEED, 12)
        cpu = CPU_OPS.replica_swap(x.cpu(), energy.cpu(), betas, parity, None, SEED, 12)
        for g, c in zip(gpu, cpu):
            assert torch.equal(g.cpu(), c)
