"""The Philox4x32-10 streams of the compiled kernels: known-answer vectors, bit-exact agreement
with the pure-PyTorch reference, accuracy of the uniform -> normal maths, and the statistics of
the draws (normality, independence), thread-count independence and argument errors.

Statistical thresholds are multiples of the statistic's standard error under the null
hypothesis (no seed tuning); a failure prints the statistic, its standard error and the bound.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from torchebm import kernels
from torchebm.kernels import ops, reference

pytestmark = pytest.mark.skipif(not kernels.available(), reason="compiled kernels not built")

DTYPES = [torch.float32, torch.float64]
Z_BOUND = 5.0  # |statistic| / standard error above which a statistical test fails

# Known-answer vectors of Philox4x32-10 published with Random123 (Salmon et al., SC'11, kat_vectors):
# (counter words, key words) -> output words.
PHILOX_KAT = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


def _check(name: str, stat: float, se: float, bound: float = Z_BOUND) -> None:
    z = stat / se
    assert abs(z) < bound, f"{name}: statistic {stat:.3g}, standard error {se:.3g}, |z| = {abs(z):.2f} >= {bound}"


@pytest.mark.parametrize("counter,key,expected", PHILOX_KAT)
def test_philox_matches_random123_known_answers(counter, key, expected):
    rows = torch.tensor([list(counter) + list(key)], dtype=torch.int64)
    got_kernel = torch.ops.torchebm._rng_math("philox", rows)[0].tolist()
    got_reference = reference.philox4x32_10(torch.tensor([counter]), key)[0].tolist()
    assert got_kernel == list(expected), [hex(v) for v in got_kernel]
    assert got_reference == list(expected), [hex(v) for v in got_reference]


def test_kernel_philox_equals_reference_on_random_counters():
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 2**32, (2000, 6), generator=g, dtype=torch.int64)
    rows[:1000, 4:] = rows[0, 4:]  # one key for the first half: a single vectorised reference call
    got = torch.ops.torchebm._rng_math("philox", rows)
    assert torch.equal(got[:1000], reference.philox4x32_10(rows[:1000, :4], tuple(rows[0, 4:].tolist())))
    for r in range(1000, 1050):  # rows with keys of their own
        want = reference.philox4x32_10(rows[r, :4][None], tuple(rows[r, 4:].tolist()))[0]
        assert torch.equal(got[r], want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,step", [(0, 0), (12345, 7), (-1, 2**32 - 1), (2**62 + 3, 99)])
def test_uniforms_equal_reference_bit_for_bit(dtype, seed, step):
    got = ops.philox_uniform([3, 1001], seed, step, dtype)
    want = reference.philox_uniform([3, 1001], seed, step, dtype)
    assert got.dtype == dtype and got.shape == (3, 1001)
    assert torch.equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("seed,step", [(0, 0), (987654321, 3), (-5, 2**31)])
def test_normals_match_reference_to_a_few_ulp(dtype, seed, step):
    n = 20011  # not a multiple of any block size
    got = ops.philox_normal([n], seed, step, dtype).double()
    want = reference.philox_normal([n], seed, step, dtype, as_float64=True)
    eps = torch.finfo(dtype).eps
    # The float64 reference from identical uniforms; the float32 kernel's error is a few ulp of
    # r = sqrt(-2 log u1) (|z| <= r <= 5.8).
    err = (got - want).abs().max().item()
    assert err < 8 * eps * 6.0, f"max |kernel - reference| = {err:.3g} (eps {eps:.3g})"


def test_uniform_words_map_into_the_open_interval():
    # The extreme words map to 2^-24 and 1 - 2^-24 (float32), 2^-53 and 1 - 2^-53 (float64).
    words = torch.tensor([[0, 0, 0xFFFFFFFF, 0xFFFFFFFF]], dtype=torch.int64)
    u32 = reference.uniform_from_words(words, torch.float32).to(torch.float32)
    u64 = reference.uniform_from_words(words, torch.float64)
    assert u32[0].item() == 2.0**-24 and u32[2].item() == 1 - 2.0**-24
    assert u64[0].item() == 2.0**-53 and u64[1].item() == 1 - 2.0**-53
    for dtype in DTYPES:
        u = ops.philox_uniform([1 << 20], 3, 1, dtype)
        assert u.min().item() > 0.0 and u.max().item() < 1.0


def test_log_and_sincos_polynomials_are_within_2_ulp_of_libm():
    # log: positive normal floats over many binades; sincos_2pi: t in (0, 1) and beyond.
    g = torch.Generator().manual_seed(1)
    for dtype, ulps in ((torch.float32, 2.0), (torch.float64, 2.5)):
        info = torch.finfo(dtype)
        e = torch.randint(-120, 120, (200000,), generator=g).double()
        m = 1.0 + torch.rand(200000, generator=g, dtype=torch.float64)
        x = (m * torch.pow(2.0, e)).to(dtype)
        x = torch.cat([x, torch.linspace(0.5, 2.0, 100001, dtype=dtype)])
        got = torch.ops.torchebm._rng_math("log", x)
        want = np.log(x.double().numpy())
        if dtype == torch.float64:
            want = np.log(x.numpy().astype(np.longdouble))
        ulp = np.spacing(np.abs(want).astype(np.float32 if dtype == torch.float32 else np.float64))
        err = np.abs(got.numpy().astype(np.longdouble) - want) / ulp
        assert err.max() <= ulps, f"log {dtype}: {err.max():.2f} ulp"
        t = torch.cat(
            [torch.rand(200000, generator=g, dtype=torch.float64), torch.linspace(-40, 40, 100001, dtype=torch.float64)]
        ).to(dtype)
        tl = t.numpy().astype(np.longdouble)
        # 2 pi in long double (64-bit significand): ample for |t| <= 40 at double precision.
        two_pi = np.longdouble(2) * np.longdouble("3.14159265358979323846264338327950288")
        for fn, ref in (("sin2pi", np.sin), ("cos2pi", np.cos)):
            got = torch.ops.torchebm._rng_math(fn, t).numpy().astype(np.longdouble)
            want = ref(two_pi * tl)
            # Error in units of eps (absolute for |result| < 1, i.e. ulps of 1 near the zeros).
            err = np.abs(got - want) / np.maximum(np.abs(want), 0.5) / info.eps
            assert err.max() <= ulps, f"{fn} {dtype}: {err.max():.2f} eps"


@pytest.mark.parametrize("dtype", DTYPES)
def test_normals_are_standard_normal(dtype):
    from scipy import stats

    n = 1 << 20
    z = ops.philox_normal([n], 2024, 5, dtype).double().numpy()
    ks = stats.kstest(z, "norm")
    assert ks.pvalue > 1e-4, f"KS statistic {ks.statistic:.3g}, p = {ks.pvalue:.3g}"
    _check("mean", z.mean(), 1 / math.sqrt(n))
    _check("variance - 1", z.var() - 1.0, math.sqrt(2.0 / n))
    _check("skewness", stats.skew(z), math.sqrt(6.0 / n))
    _check("excess kurtosis", stats.kurtosis(z), math.sqrt(24.0 / n))


@pytest.mark.parametrize("dtype", DTYPES)
def test_uniforms_are_uniform(dtype):
    from scipy import stats

    n = 1 << 20
    u = ops.philox_uniform([n], 77, 0, dtype).double().numpy()
    ks = stats.kstest(u, "uniform")
    assert ks.pvalue > 1e-4, f"KS statistic {ks.statistic:.3g}, p = {ks.pvalue:.3g}"
    _check("mean - 1/2", u.mean() - 0.5, math.sqrt(1 / 12 / n))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).mean() / math.sqrt((a * a).mean() * (b * b).mean()))


@pytest.mark.parametrize("dtype", DTYPES)
def test_no_correlation_between_adjacent_elements_steps_seeds_and_streams(dtype):
    n = 1 << 19
    se = 1 / math.sqrt(n)
    z0 = ops.philox_normal([n], 11, 0, dtype).double().numpy()
    z1 = ops.philox_normal([n], 11, 1, dtype).double().numpy()
    z_other_seed = ops.philox_normal([n], 12, 0, dtype).double().numpy()
    u0 = ops.philox_uniform([n], 11, 0, dtype).double().numpy()
    # Adjacent elements: within a Box-Muller pair (0,1), across pairs (1,2), across groups (3,4).
    for lag in (1, 2, 3, 4, 5):
        _check(f"corr(z[i], z[i+{lag}])", _corr(z0[:-lag], z0[lag:]), se)
    for off in range(4):  # every position within a Philox group vs its neighbour
        a, b = z0[off::4][:-1], z0[off + 1 :: 4][: len(z0[off::4]) - 1] if off < 3 else z0[4::4]
        m = min(len(a), len(b))
        _check(f"corr within group at {off}", _corr(a[:m], b[:m]), math.sqrt(4.0 / n))
    _check("corr(step t, step t+1)", _corr(z0, z1), se)
    _check("corr(seed, seed+1)", _corr(z0, z_other_seed), se)
    _check("corr(normal stream, uniform stream)", _corr(z0, u0), se)
    # Squared values: Box-Muller's pair shares r, so test that z0^2 and z1^2 are uncorrelated too.
    _check("corr(z[2i]^2, z[2i+1]^2)", _corr(z0[0::2] ** 2, z0[1::2] ** 2), math.sqrt(2.0 / n) * 1.5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_draws_do_not_depend_on_thread_count(dtype):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = ops.philox_normal([3, 70001], 5, 9, dtype)
        ua = ops.philox_uniform([70001], 5, 9, dtype)
        torch.set_num_threads(2)
        b = ops.philox_normal([3, 70001], 5, 9, dtype)
        ub = ops.philox_uniform([70001], 5, 9, dtype)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(a, b) and torch.equal(ua, ub)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(0, 3000),
    start=st.integers(0, 3000),
    seed=st.integers(-(2**63), 2**63 - 1),
    step=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(DTYPES),
)
def test_any_slice_of_a_stream_is_the_same_stream(n, start, seed, step, dtype):
    # Element i of the stream depends only on (seed, step, i): a longer draw extends a shorter one.
    long = ops.philox_normal([start + n], seed, step, dtype)
    short = ops.philox_normal([n], seed, step, dtype)
    assert torch.equal(long[:n], short)
    assert torch.equal(ops.philox_uniform([start + n], seed, step, dtype)[:n], ops.philox_uniform([n], seed, step, dtype))


def test_seed_is_taken_modulo_2_to_the_64():
    assert torch.equal(ops.philox_normal([100], 2**64 - 1, 0), ops.philox_normal([100], -1, 0))


def test_shape_dtype_and_default_dtype():
    assert ops.philox_normal([2, 3, 4], 0, 0).dtype == torch.get_default_dtype()
    assert ops.philox_normal([0], 0, 0).shape == (0,)
    assert ops.philox_normal([], 0, 0).shape == ()
    z = ops.philox_normal([2, 3, 4], 0, 0, torch.float64)
    assert z.shape == (2, 3, 4) and z.is_contiguous()
    assert torch.equal(z.reshape(-1), ops.philox_normal([24], 0, 0, torch.float64))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: ops.philox_normal([-1], 0, 0), "size must have non-negative"),
        (lambda: ops.philox_normal([4], 0, -1), "step must be in"),
        (lambda: ops.philox_normal([4], 0, 2**32), "step must be in"),
        (lambda: ops.philox_uniform([4], 0, 0, torch.int32), "dtype must be float32 or float64"),
        (lambda: ops.philox_normal([4], 0, 0, torch.float16), "dtype must be float32 or float64"),
        (lambda: torch.ops.torchebm._rng_math("exp", torch.ones(3)), "fn must be"),
    ],
)
def test_bad_arguments_raise_runtime_error(call, match):
    with pytest.raises(RuntimeError, match=match):
        call()
