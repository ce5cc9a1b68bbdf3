"""Fuzzing every op: each call raises a Python exception (RuntimeError, ValueError or TypeError)
or returns what the oracle (kernels/reference.py, with the op's own draws passed in) returns.

Arguments are drawn over dtypes (float32/64, float16, int64), ranks, empty and zero-size
dimensions, layouts (contiguous, transposed, strided slices, stride 0 from expand), devices
(cpu, with a meta tensor mixed in), NaN/inf values, and extreme scalars and counts (0, negative,
1e-300, 1e300, 2^32, ...). The outcomes are counted and printed at the end of the module.
The whole-chain ops (langevin_chain, mala_chain, hmc_chain and the MLP ones) are also run on
arguments they accept and compared with reference step loops over reference.py's functions
(mlp.py's reference loops for the MLP ops), multi-step chains, trajectories and means included.

CI runs ``TORCHEBM_FUZZ_EXAMPLES`` (default 40) examples per op; a contributor runs more with
e.g. ``TORCHEBM_FUZZ_EXAMPLES=2000 pytest -s tests/test_fuzz_ops.py``.
"""

from __future__ import annotations

import collections
import math
import os
from fractions import Fraction

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from torchebm.kernels import ops, reference  # noqa: E402
from torchebm.kernels.analytic_registry import ANALYTIC_KERNELS  # noqa: E402

pytestmark = pytest.mark.skipif(not ops._LOADED, reason="compiled kernels not built")

EXAMPLES = int(os.environ.get("TORCHEBM_FUZZ_EXAMPLES", "40"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
ALLOWED = (RuntimeError, ValueError, TypeError)  # NotImplementedError is a RuntimeError
OUTCOMES: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)


@pytest.fixture(scope="module", autouse=True)
def _report_outcomes(request):
    yield
    capture = request.config.pluginmanager.getplugin("capturemanager")
    total = sum(sum(c.values()) for c in OUTCOMES.values())
    lines = [f"fuzz: {total} calls, {EXAMPLES} examples per op"]
    for op in sorted(OUTCOMES):
        lines.append(f"  {op}: " + ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES[op].items())))
    if capture is None:
        print("\n".join(lines))
    else:
        with capture.global_and_fixture_disabled():
            print("\n" + "\n".join(lines))


def _outcome(op: str, call, check):
    """Runs ``call``; an allowed exception is counted, any other fails; a result goes to
    ``check`` (which asserts it equals the oracle, and may return the outcome's name)."""
    try:
        out = call()
    except ALLOWED as exc:
        OUTCOMES[op][f"raised {type(exc).__name__}"] += 1
        return
    outs = out if isinstance(out, (tuple, list)) else [out]
    if any(isinstance(t, torch.Tensor) and t.device.type == "meta" for t in outs):
        # Only an all-meta call reaches here (a meta tensor among real ones raises): shapes only.
        OUTCOMES[op]["returned meta (an all-meta call)"] += 1
        return
    OUTCOMES[op][check(out) or "returned, equal to the oracle"] += 1


# ---- strategies --------------------------------------------------------------------------------

DTYPES = st.sampled_from([torch.float32] * 4 + [torch.float64] * 4 + [torch.float16, torch.int64])
SCALARS = st.one_of(
    st.floats(-3.0, 3.0, allow_nan=False),
    st.sampled_from([0.0, -1.0, 1e-300, -1e-300, 1e-30, 1e300, -1e300, 1e39, math.inf, -math.inf, math.nan]),
)
OPTIONAL_SCALARS = st.one_of(st.none(), SCALARS)
STEPS = st.sampled_from([0, 1, 7, 2**32 - 1, 2**32, -1])
SEEDS = st.sampled_from([0, 1, 12345, -1, 2**64 + 3])
VALUE_KIND = st.sampled_from(["normal"] * 6 + ["nan", "inf", "big"])
LAYOUTS = st.sampled_from(["contiguous"] * 3 + ["transposed", "strided", "expanded"])


@st.composite
def tensors(draw, shape, dtype, *, device=None, kind=None, positive=False):
    """A tensor of ``shape`` with the given dtype, in a drawn layout and (rarely) on meta."""
    kind = kind or draw(VALUE_KIND)
    layout = draw(LAYOUTS)
    device = device or draw(st.sampled_from(["cpu"] * 12 + ["meta"]))
    seed = draw(st.integers(0, 2**31 - 1))
    shape = tuple(shape)
    g = torch.Generator().manual_seed(seed)
    # Values first (contiguous), then the layout as a view of them.
    if layout == "transposed" and len(shape) == 2:
        base_shape, view = shape[::-1], lambda t: t.transpose(0, 1)
    elif layout == "strided" and len(shape) >= 1:
        base_shape, view = (shape[0] * 2, *shape[1:]), lambda t: t[::2]
    elif layout == "expanded" and len(shape) >= 1 and shape[0] > 0:
        base_shape, view = (1, *shape[1:]), lambda t: t.expand(shape)
    else:
        base_shape, view = shape, lambda t: t
    t = torch.randn(base_shape, generator=g, dtype=torch.float64)
    if positive:
        t = t.abs() + 0.1
    if kind in ("nan", "inf") and t.numel() > 0:
        t.view(-1)[draw(st.integers(0, t.numel() - 1))] = math.nan if kind == "nan" else math.inf
    elif kind == "big":
        t = t * 1e3
    t = view(t)
    t = t.to(dtype)
    return t.to(device) if device == "meta" else t


@st.composite
def states(draw):
    """``(dtype, shape)`` of a state ``[B, *event]``, including empty and 0-d shapes."""
    dtype = draw(DTYPES)
    rank = draw(st.sampled_from([0, 1, 2, 2, 2, 3]))
    shape = [draw(st.integers(0, 5)) for _ in range(rank)]
    if rank >= 1 and draw(st.booleans()):
        shape[0] = max(shape[0], 1)
    return dtype, shape


def _close(a, b, dtype, scale=1.0):
    """Equal to rounding (the kernels may contract multiply-adds): NaN where NaN, the same
    infinities, and finite values within a few ulp of the terms' magnitude."""
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, b.shape, a.dtype, b.dtype)
    a64, b64 = a.to(torch.float64), b.to(torch.float64)
    assert torch.equal(torch.isnan(a64), torch.isnan(b64))
    fin = torch.isfinite(a64) & torch.isfinite(b64)
    assert torch.equal(a64[~fin & ~torch.isnan(a64)], b64[~fin & ~torch.isnan(b64)])
    eps = torch.finfo(dtype).eps if dtype.is_floating_point else 0.0
    tol = 8 * eps * (scale + b64[fin].abs())
    assert bool((a64[fin] - b64[fin]).abs().le(tol).all()), (a64, b64)


def _close_to_either(a, unfused, fused, dtype, scale):
    """Each element of ``a`` close (``_close``) to the unfused oracle or to the contracted one:
    the compiler may contract any multiply-add, differently per vectorised version."""
    for i in range(a.numel()):
        ai = a.reshape(-1)[i : i + 1]
        try:
            _close(ai, unfused.reshape(-1)[i : i + 1], dtype, scale)
        except AssertionError:
            _close(ai, fused.reshape(-1)[i : i + 1], dtype, scale)


def _mul_add(a: float, b: float, c: float) -> float:
    """``a * b + c`` rounded once, as a fused multiply-add returns it: a finite product does not
    overflow on its own, so ``inf + 1e300 * -1e300`` is ``inf`` (unfused it is NaN)."""
    if any(math.isnan(v) for v in (a, b, c)) or (math.isinf(a) or math.isinf(b)) and (a == 0 or b == 0):
        return math.nan
    if math.isinf(a) or math.isinf(b):
        return math.copysign(math.inf, a) * math.copysign(1.0, b) + c  # IEEE: inf + c
    if math.isinf(c):
        return c
    exact = Fraction(a) * Fraction(b) + Fraction(c)
    try:
        return float(exact)
    except OverflowError:
        return math.copysign(math.inf, exact)


def _kick_drift_contracted(x, p, grad, kick, drift, inv_mass):
    """The leapfrog kick and drift as the kernels' formulas read when both multiply-adds are
    contracted: ``p' = fma(-kick, g, p)``, ``x' = fma(drift, p' * m, x)`` (updates.h), per
    element in float64, then rounded to the state's dtype."""
    m = torch.ones(()) if inv_mass is None else inv_mass
    shape = torch.broadcast_shapes(x.shape, p.shape, grad.shape, m.shape)
    xs, ps, gs, ms = (t.double().broadcast_to(shape).reshape(-1).tolist() for t in (x, p, grad, m))
    k, d = float(torch.tensor(kick, dtype=x.dtype)), float(torch.tensor(drift, dtype=x.dtype))
    to = lambda v: float(torch.tensor(v, dtype=torch.float64).to(x.dtype))  # noqa: E731
    p_new = [to(_mul_add(-k, g, pi)) for pi, g in zip(ps, gs)]
    x_new = [to(_mul_add(d, to(pn * mi), xi)) for xi, pn, mi in zip(xs, p_new, ms)]
    as_state = lambda v: torch.tensor(v, dtype=torch.float64).reshape(shape).to(x.dtype)  # noqa: E731
    return as_state(x_new), as_state(p_new)


def _mag(t):
    """The largest finite magnitude of t (0 if none): the scale of a tolerance."""
    finite = t.double()[torch.isfinite(t.double())]
    return float(finite.abs().max()) if finite.numel() else 0.0


def _same(a, b):
    """Bit-equal, NaN where NaN (a selection copies values)."""
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


def _decisions_match(accepted, log_u, log_r, dtype):
    """Metropolis decisions equal the oracle's, except within a few ulp of a tie (the kernels'
    log is within 2 ulp of torch.log)."""
    ref = log_u < log_r
    tie = (log_u - log_r).abs() <= 64 * torch.finfo(dtype).eps * (1 + log_r.abs())
    assert bool(((accepted == ref) | tie).all()), (accepted, ref)


# ---- per-step ops --------------------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_langevin_update(data):
    dtype, shape = data.draw(states())
    x = data.draw(tensors(shape, dtype))
    grad = data.draw(tensors(shape, dtype))
    noise = data.draw(st.one_of(st.none(), tensors(shape, dtype)))
    a, b = data.draw(SCALARS), data.draw(SCALARS)
    lo, hi, clip = data.draw(OPTIONAL_SCALARS), data.draw(OPTIONAL_SCALARS), data.draw(OPTIONAL_SCALARS)
    seed, step = data.draw(SEEDS), data.draw(STEPS)

    def check(out):
        xi = noise if noise is not None else ops.philox_normal(x.shape, seed, step, x.dtype)
        ref = reference.langevin_update(x, grad, xi, a, b, lo, hi, clip)
        _close(out, ref, dtype, scale=1.0 + abs(a) * _mag(grad) + abs(b) * 6)

    _outcome("langevin_update", lambda: ops.langevin_update(x, grad, noise, a, b, lo, hi, clip, seed, step), check)


@FUZZ
@given(data=st.data())
def test_leapfrog_kick_drift(data):
    dtype, shape = data.draw(states())
    x, p, grad = (data.draw(tensors(shape, dtype)) for _ in range(3))
    d = shape[-1] if shape else 1
    inv_mass = data.draw(st.one_of(st.none(), tensors([], dtype, positive=True), tensors([d], dtype, positive=True),
                                   tensors([d + 1], dtype, positive=True)))
    kick, drift = data.draw(SCALARS), data.draw(SCALARS)

    def check(out):
        ref = reference.leapfrog_kick_drift(x, p, grad, kick, drift, inv_mass)
        fused = _kick_drift_contracted(x, p, grad, kick, drift, inv_mass)
        m = 1.0 if inv_mass is None else _mag(inv_mass)
        scale_p = 1.0 + _mag(p) + abs(kick) * _mag(grad)
        scale_x = 1.0 + _mag(x) + abs(drift) * m * (_mag(p) + abs(kick) * _mag(grad))
        for k, scale in ((1, scale_p), (0, scale_x)):
            _close_to_either(out[k], ref[k], fused[k], dtype, scale)

    _outcome("leapfrog_kick_drift", lambda: ops.leapfrog_kick_drift(x, p, grad, kick, drift, inv_mass), check)


def _uniforms(data, n, dtype):
    return data.draw(st.one_of(
        st.none(),
        tensors([n], dtype, kind="normal", positive=True).map(lambda t: t / (t.max() + 1) if t.numel() else t),
        tensors([n], dtype),  # mostly outside (0, 1): must raise
    ))


@FUZZ
@given(data=st.data())
def test_metropolis_select(data):
    dtype, shape = data.draw(states())
    n = shape[0] if shape else 1
    x, y = data.draw(tensors(shape, dtype)), data.draw(tensors(shape, dtype))
    log_r = data.draw(tensors([data.draw(st.sampled_from([n, n, n + 1]))], dtype))
    u = _uniforms(data, n, dtype)
    seed, step = data.draw(SEEDS), data.draw(STEPS)

    def check(out):
        uu = u if u is not None else ops.philox_uniform([n], seed, step, x.dtype)
        ref_x, _ = reference.metropolis_select(log_r, x, y, uu)
        _decisions_match(out[1], torch.log(uu.double()), log_r.double(), dtype)
        _same(reference._select_rows(out[1], y, x), out[0])
        same = out[1] == (torch.log(uu) < log_r)
        _same(out[0][same], ref_x[same])

    _outcome("metropolis_select", lambda: ops.metropolis_select(log_r, x, y, u, seed, step), check)


@FUZZ
@given(data=st.data())
def test_mala_select(data):
    dtype, shape = data.draw(states())
    n = shape[0] if shape else 1
    x, y, gx, gy = (data.draw(tensors(shape, dtype)) for _ in range(4))
    ex, ey = data.draw(tensors([n], dtype)), data.draw(tensors([data.draw(st.sampled_from([n, n, 0]))], dtype))
    a, b = data.draw(SCALARS), data.draw(SCALARS)
    u = _uniforms(data, n, dtype)
    seed, step = data.draw(SEEDS), data.draw(STEPS)

    def check(out):
        uu = u if u is not None else ops.philox_uniform([n], seed, step, x.dtype)
        log_r = reference.mala_log_accept_ratio(x.double(), y.double(), gx.double(), gy.double(),
                                                ex.double(), ey.double(), a, b)
        # The ratio in x's dtype differs from the float64 one by rounding: a wide tie band.
        band = 1e-3 if dtype != torch.float64 else 1e-9
        ref = torch.log(uu.double()) < log_r
        tie = (torch.log(uu.double()) - log_r).abs() <= band * (1 + log_r.abs())
        assert bool(((out[3] == ref) | tie | ~torch.isfinite(log_r)).all()), (out[3], ref, log_r)
        acc = out[3]
        _same(out[0], reference._select_rows(acc, y, x))
        _same(out[1], reference._select_rows(acc, gy, gx))
        _same(out[2], torch.where(acc, ey, ex))

    _outcome("mala_select",
             lambda: ops.mala_select(x, y, gx, gy, ex, ey, a, b, u, seed, step), check)


ENERGIES = sorted(ANALYTIC_KERNELS)


def _energy_args(data, energy, d, dtype):
    kernel = ANALYTIC_KERNELS.get(energy)
    n_params = (len(kernel.params) if kernel else 0) + data.draw(st.sampled_from([0, 0, 0, 1, -1]))
    params = [data.draw(st.one_of(st.floats(0.5, 2.0), SCALARS)) for _ in range(max(n_params, 0))]
    if kernel is not None and kernel.tensors and data.draw(st.integers(0, 5)) > 0:
        mean = data.draw(tensors([d], dtype, kind="normal"))
        a = data.draw(tensors([d, d], dtype, kind="normal"))
        precision = a @ a.transpose(0, 1) + torch.eye(d, dtype=dtype) if dtype.is_floating_point and a.device.type == "cpu" else a
        return params, mean, precision
    return params, None, None


@FUZZ
@given(data=st.data())
def test_analytic_energy_grad(data):
    energy = data.draw(st.sampled_from(ENERGIES + ["no_such_model"]))
    dtype, shape = data.draw(states())
    x = data.draw(tensors(shape, dtype, kind=data.draw(st.sampled_from(["normal"] * 4 + ["nan", "inf"]))))
    d = shape[-1] if len(shape) == 2 else 2
    params, mean, precision = _energy_args(data, energy, d, dtype)

    def check(out):
        e, g = reference.analytic_energy_grad(energy, x.double(), params,
                                              None if mean is None else mean.double(),
                                              None if precision is None else precision.double())
        rtol = 1e-3 if dtype != torch.float64 else 1e-9
        for k, r in zip(out, (e, g)):
            assert k.dtype == dtype and k.shape == r.shape
            fin = torch.isfinite(r) & torch.isfinite(k.double())
            scale = float(r[fin].abs().max()) if bool(fin.any()) else 1.0
            assert torch.allclose(k.double()[fin], r[fin], rtol=rtol, atol=rtol * max(1.0, scale))

    _outcome("analytic_energy_grad", lambda: ops.analytic_energy_grad(energy, x, params, mean, precision), check)


# ---- whole chains --------------------------------------------------------------------------------


@st.composite
def chain_inputs(draw):
    energy = draw(st.sampled_from(ENERGIES + ["no_such_model"]))
    dtype = draw(DTYPES)
    shape = draw(st.sampled_from([[3, 2], [1, 2], [0, 2], [4, 3], [2, 0], [3], [2, 2, 2]]))
    x0 = draw(tensors(shape, dtype, kind=draw(st.sampled_from(["normal"] * 5 + ["nan", "big"]))))
    n_steps = draw(st.sampled_from([0, 1, 2, 3]))
    sched = lambda: draw(st.one_of(
        st.floats(0.01, 0.2).map(lambda v: torch.full((n_steps,), v, dtype=torch.float64)),
        SCALARS.map(lambda v: torch.full((n_steps,), v, dtype=torch.float64)),
        tensors([n_steps + 1], torch.float64),
        tensors([n_steps], draw(st.sampled_from([torch.float32, torch.int64]))),
    ))
    d = shape[-1] if len(shape) == 2 else 2
    params, mean, precision = _energy_args(
        _DrawAdapter(draw), energy, d, dtype if dtype in (torch.float32, torch.float64) else torch.float32)
    thin = draw(st.sampled_from([1, 1, 2, 0, -1]))
    seed = draw(SEEDS)
    rec_t, rec_e = draw(st.booleans()), draw(st.booleans())
    return energy, x0, sched, params, mean, precision, thin, seed, rec_t, rec_e, n_steps


class _DrawAdapter:
    """Lets _energy_args, written for st.data(), draw inside a composite strategy."""

    def __init__(self, draw):
        self.draw = draw


def _langevin_loop(energy, x0, a, b, params, mean, precision, lo, hi, clip, seed):
    x = x0
    for t in range(a.shape[0]):
        _, g = reference.analytic_energy_grad(energy, x, params, mean, precision)
        xi = ops.philox_normal(x.shape, seed, t, x.dtype)
        x = reference.langevin_update(x, g.to(x.dtype), xi, float(a[t]), float(b[t]), lo, hi, clip)
    return x


@FUZZ
@given(inputs=chain_inputs(), data=st.data())
def test_langevin_chain(inputs, data):
    energy, x0, sched, params, mean, precision, thin, seed, rec_t, rec_e, n_steps = inputs
    a, b = sched(), sched()
    n_steps = a.shape[0] if a.dim() == 1 else n_steps  # the chain's length is the first schedule's
    lo, hi, clip = data.draw(OPTIONAL_SCALARS), data.draw(OPTIONAL_SCALARS), data.draw(OPTIONAL_SCALARS)

    def check(out):
        x, traj, emean = out
        assert x.shape == x0.shape and x.dtype == x0.dtype
        assert traj.shape == ((x0.shape[0], n_steps // thin, x0.shape[1]) if rec_t else (0,))
        assert emean.shape == ((n_steps,) if rec_e else (0,))
        if n_steps <= 1 and x0.dtype == torch.float64:  # one step: equal to the oracle's step
            ref = _langevin_loop(energy, x0, a, b, params, mean, precision, lo, hi, clip, seed)
            _close(x, ref, x0.dtype, scale=1e3 * (1 + _mag(x0)))

    _outcome("langevin_chain", lambda: ops.langevin_chain(
        energy, x0, a, b, params, mean, precision, lo, hi, clip, seed, thin, rec_t, rec_e), check)


def _check_accepting_chain(out, x0, n_steps, thin, rec_t, rec_e, ref=None):
    """Shapes and rates in [0, 1]; with ``ref`` (a reference loop's ``(x, trajectory,
    energy_mean, acceptance_rate)``, float64 chains), the values too."""
    x, traj, emean, rate = out
    assert x.shape == x0.shape and x.dtype == x0.dtype
    assert traj.shape == ((x0.shape[0], n_steps // thin, x0.shape[1]) if rec_t else (0,))
    assert emean.shape == ((n_steps,) if rec_e else (0,))
    assert rate.shape == (n_steps,)
    if x0.shape[0] > 0:
        assert bool(((rate >= 0) & (rate <= 1)).all()), rate
    if ref is not None:
        scale = 1e3 * (1 + _mag(x0))
        _close(x, ref[0], x0.dtype, scale=scale)
        if rec_t:
            _close(traj, ref[1], x0.dtype, scale=scale)
        if rec_e and x0.shape[0] > 0:
            _close(emean, ref[2], x0.dtype, scale=1e3 * (1 + _mag(ref[2])))
        if x0.shape[0] > 0:  # the same decisions: the same counts
            assert torch.equal(rate, ref[3]), (rate, ref[3])
        return "returned, equal to the reference loop"
    return "returned, shapes and rates checked"


def _metropolis(log_r, x, y, seed, t):
    """The oracle's accept step at step t (the op's own uniforms, stream 1 indexed by chain):
    ``(accepted, tie)``, tie when some chain is within a few ulp of its threshold (where the
    kernels' log may decide the other way, _decisions_match)."""
    u = ops.philox_uniform([x.shape[0]], seed, t, x.dtype)
    _, accepted = reference.metropolis_select(log_r, x, y, u)
    log_u = torch.log(u)
    tie = (log_u - log_r).abs() <= 64 * torch.finfo(x.dtype).eps * (1 + log_r.abs())
    return accepted, bool(tie.any())


class _Recording:
    """What a reference loop records after each step, as the chain ops return it: the states
    after steps thin - 1, 2 thin - 1, ..., the mean energy and the acceptance rate per step."""

    def __init__(self, x0, thin):
        self.x0, self.thin, self.states, self.energies, self.rates = x0, thin, [], [], []

    def step(self, t, x, e, accepted):
        if (t + 1) % self.thin == 0:
            self.states.append(x)
        self.energies.append(e.mean() if x.shape[0] else e.new_zeros(()))
        self.rates.append(accepted.to(x.dtype).mean() if x.shape[0] else x.new_zeros(()))

    def result(self, x):
        b, d = self.x0.shape
        traj = torch.stack(self.states, 1) if self.states else self.x0.new_empty((b, 0, d))
        stack = lambda v: torch.stack(v).to(self.x0.dtype) if v else self.x0.new_zeros((0,))
        return x, traj, stack(self.energies), stack(self.rates)


def _mala_loop(energy, x0, a, b, params, mean, precision, seed, thin):
    """The per-step oracle of mala_chain (docs/kernels.md): ``(outputs, tie)``."""
    x, rec, tie = x0, _Recording(x0, thin), False
    ex, gx = reference.analytic_energy_grad(energy, x, params, mean, precision)
    for t in range(a.shape[0]):
        at, bt = float(a[t]), float(b[t])
        y = reference.langevin_update(x, gx, ops.philox_normal(x.shape, seed, t, x.dtype), at, bt)
        ey, gy = reference.analytic_energy_grad(energy, y, params, mean, precision)
        log_r = reference.mala_log_accept_ratio(x, y, gx, gy, ex, ey, at, bt)
        accepted, near = _metropolis(log_r, x, y, seed, t)
        tie |= near
        x, gx = reference._select_rows(accepted, y, x), reference._select_rows(accepted, gy, gx)
        ex = torch.where(accepted, ey, ex)
        rec.step(t, x, ex, accepted)
    return rec.result(x), tie


def _hmc_loop(energy, x0, step_size, n_leapfrog, inv_mass, params, mean, precision, seed, thin):
    """The per-step oracle of hmc_chain (docs/kernels.md): momentum ``xi / sqrt(m)``, leapfrog
    by reference.leapfrog_kick_drift, accept on ``H0 - H1``; ``(outputs, tie)``."""
    m = None if inv_mass is None else inv_mass.to(x0.dtype).expand(x0.shape[1])
    kinetic = lambda p: 0.5 * (p * p if m is None else m * p * p).sum(-1)
    x, rec, tie = x0, _Recording(x0, thin), False
    e, g = reference.analytic_energy_grad(energy, x, params, mean, precision)
    for t in range(step_size.shape[0]):
        h = float(step_size[t])
        p = ops.philox_normal(x.shape, seed, t, x.dtype)
        p = p if m is None else p / torch.sqrt(m)
        h0 = e + kinetic(p)
        y, p = reference.leapfrog_kick_drift(x, p, g, h / 2, h, m)
        for l in range(1, n_leapfrog + 1):
            ey, gy = reference.analytic_energy_grad(energy, y, params, mean, precision)
            if l < n_leapfrog:
                y, p = reference.leapfrog_kick_drift(y, p, gy, h, h, m)
        p = p - (h / 2) * gy
        accepted, near = _metropolis(h0 - (ey + kinetic(p)), x, y, seed, t)
        tie |= near
        x, g = reference._select_rows(accepted, y, x), reference._select_rows(accepted, gy, g)
        e = torch.where(accepted, ey, e)
        rec.step(t, x, e, accepted)
    return rec.result(x), tie


def _oracle(loop, x0, *args):
    """A float64 chain's reference loop outputs, or None: another dtype (rounding differs), a
    call the op must refuse (the loop may raise or run), or a Metropolis tie."""
    if x0.dtype != torch.float64 or x0.device.type != "cpu" or x0.dim() != 2:
        return None
    try:
        out, tie = loop(x0, *args)
    except Exception:  # the op raised for these arguments; the oracle has nothing to say
        return None
    return None if tie else out


@FUZZ
@given(inputs=chain_inputs())
def test_mala_chain(inputs):
    energy, x0, sched, params, mean, precision, thin, seed, rec_t, rec_e, n_steps = inputs
    a, b = sched(), sched()
    n_steps = a.shape[0] if a.dim() == 1 else n_steps

    def check(out):
        ref = _oracle(lambda x: _mala_loop(energy, x, a, b, params, mean, precision, seed, thin), x0)
        return _check_accepting_chain(out, x0, n_steps, thin, rec_t, rec_e, ref)

    _outcome("mala_chain", lambda: ops.mala_chain(energy, x0, a, b, params, mean, precision, seed, thin, rec_t, rec_e),
             check)


@FUZZ
@given(inputs=chain_inputs(), data=st.data())
def test_hmc_chain(inputs, data):
    energy, x0, sched, params, mean, precision, thin, seed, rec_t, rec_e, n_steps = inputs
    step_size = sched()
    n_steps = step_size.shape[0] if step_size.dim() == 1 else n_steps
    n_leapfrog = data.draw(st.sampled_from([1, 2, 0, -3, 2**31, 2**62]))
    d = x0.shape[-1] if x0.dim() == 2 else 2
    dtype = x0.dtype if x0.dtype.is_floating_point else torch.float32
    inv_mass = data.draw(st.one_of(st.none(), tensors([d], dtype, positive=True), tensors([], dtype),
                                   tensors([d], torch.float64, kind="normal").map(lambda t: t.abs() * 1e-50)))

    def check(out):
        ref = _oracle(lambda x: _hmc_loop(energy, x, step_size, n_leapfrog, inv_mass, params, mean, precision, seed,
                                          thin), x0)
        return _check_accepting_chain(out, x0, n_steps, thin, rec_t, rec_e, ref)

    _outcome("hmc_chain", lambda: ops.hmc_chain(energy, x0, step_size, n_leapfrog, inv_mass, params, mean, precision,
                                                seed, thin, rec_t, rec_e), check)


@st.composite
def valid_chains(draw, d=None):
    """Arguments every chain op accepts (float64, finite, positive schedules): each call is
    compared with its reference step loop, 0 to 4 steps of 0 to 4 chains. States of order 1
    and steps a <= 0.02: a chain that diverges amplifies the ops' rounding (a few ulp per
    step) beyond any fixed tolerance, which says nothing about the kernels."""
    b, n_steps = draw(st.integers(0, 4)), draw(st.integers(0, 4))
    d = d or draw(st.integers(1, 3))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x0 = torch.randn(b, d, generator=g, dtype=torch.float64) * draw(st.sampled_from([0.3, 0.5, 1.0]))
    a = torch.rand(n_steps, generator=g, dtype=torch.float64) * 0.02 + 1e-3
    noise = torch.rand(n_steps, generator=g, dtype=torch.float64) * 0.3 + 1e-3
    return x0, a, noise, draw(st.integers(1, 3)), draw(SEEDS), draw(st.booleans()), draw(st.booleans())


@FUZZ
@given(data=st.data())
def test_analytic_chains_equal_their_reference_loops(data):
    energy = data.draw(st.sampled_from(ENERGIES))
    kernel = ANALYTIC_KERNELS[energy]
    d = kernel.fixed_dim or data.draw(st.integers(kernel.min_dim, 3))
    x0, a, noise, thin, seed, rec_t, rec_e = data.draw(valid_chains(d))
    n_steps = a.shape[0]
    params = [data.draw(st.floats(0.5, 2.0)) for _ in kernel.params]
    mean = precision = None
    if kernel.tensors:
        m = torch.randn(d, d, generator=torch.Generator().manual_seed(len(params) + d), dtype=torch.float64)
        mean, precision = torch.randn(d, dtype=torch.float64), m @ m.T + torch.eye(d, dtype=torch.float64)
    which = data.draw(st.sampled_from(["langevin_chain", "mala_chain", "hmc_chain"]))
    if which == "langevin_chain":
        call = lambda: ops.langevin_chain(energy, x0, a, noise, params, mean, precision, None, None, None, seed, thin,
                                          rec_t, rec_e)

        def check(out):
            ref = _langevin_loop(energy, x0, a, noise, params, mean, precision, None, None, None, seed)
            _close(out[0], ref, x0.dtype, scale=1e3 * (1 + _mag(x0)))
            return "returned, equal to the reference loop"
    elif which == "mala_chain":
        call = lambda: ops.mala_chain(energy, x0, a, noise, params, mean, precision, seed, thin, rec_t, rec_e)
        check = lambda out: _check_accepting_chain(
            out, x0, n_steps, thin, rec_t, rec_e,
            _oracle(lambda x: _mala_loop(energy, x, a, noise, params, mean, precision, seed, thin), x0))
    else:
        n_leapfrog = data.draw(st.integers(1, 3))
        inv_mass = data.draw(st.sampled_from([None, torch.tensor(2.0, dtype=torch.float64),
                                              torch.linspace(0.5, 1.5, d, dtype=torch.float64)]))
        call = lambda: ops.hmc_chain(energy, x0, a, n_leapfrog, inv_mass, params, mean, precision, seed, thin,
                                     rec_t, rec_e)
        check = lambda out: _check_accepting_chain(
            out, x0, n_steps, thin, rec_t, rec_e,
            _oracle(lambda x: _hmc_loop(energy, x, a, n_leapfrog, inv_mass, params, mean, precision, seed, thin), x0))
    _outcome(f"{which} (valid arguments)", call, check)


MLP_ACTIVATIONS = ["tanh", "silu", "softplus", "elu", "identity"]


@FUZZ
@given(chain=valid_chains(), data=st.data())
def test_mlp_chains_equal_their_reference_loops(chain, data):
    """The MLP chain ops on random small networks against mlp.py's reference loops."""
    from torchebm.kernels import mlp

    x0, a, noise, thin, seed, rec_t, rec_e = chain
    widths = [x0.shape[1]] + [data.draw(st.integers(1, 5)) for _ in range(data.draw(st.integers(1, 2)))] + [1]
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1)))
    weights = [torch.randn(o, i, generator=g, dtype=torch.float64) for i, o in zip(widths, widths[1:])]
    biases = [torch.randn(o, generator=g, dtype=torch.float64) for o in widths[1:]]
    kinds = [data.draw(st.sampled_from(MLP_ACTIVATIONS)) for _ in weights[:-1]] + ["identity"]
    act_params = []
    for kind in kinds:
        act_params += {"elu": [1.0, 1.0, 1.0], "softplus": [1.0, 20.0, 0.0]}.get(kind, [0.0, 0.0, 0.0])
    net = (weights, biases, [mlp.ACTIVATIONS[k] for k in kinds], act_params, data.draw(st.sampled_from([1.0, 0.5])), 0.0)
    rec = dict(seed=seed, thin=thin, record_trajectory=rec_t, record_energy=rec_e)
    which = data.draw(st.sampled_from(["langevin", "mala", "hmc"]))
    args = dict(step_size=a, n_leapfrog=data.draw(st.integers(1, 3))) if which == "hmc" else dict(a=a, b=noise)
    op, ref = getattr(mlp, f"mlp_{which}_chain"), getattr(mlp, f"mlp_{which}_chain_reference")

    def check(out):
        expected = ref(x0, *net, **args, **rec)
        scale = 1e3 * (1 + _mag(x0))
        for got, want in zip(out, expected):
            if got.numel() and x0.shape[0]:
                _close(got, want.to(got.dtype), x0.dtype, scale=scale * (1 + _mag(want)))
        return "returned, equal to the reference loop"

    _outcome(f"mlp_{which}_chain (valid arguments)", lambda: op(x0, *net, **args, **rec), check)


# ---- random numbers and the CUDA-only ops ---------------------------------------------------------


@FUZZ
@given(size=st.lists(st.sampled_from([0, 1, 3, 5, -1]), max_size=3), seed=SEEDS, step=STEPS,
       dtype=st.sampled_from([None, torch.float32, torch.float64, torch.float16, torch.int64]),
       which=st.sampled_from(["philox_normal", "philox_uniform"]))
def test_philox_draws(size, seed, step, dtype, which):
    def check(out):
        ref_dtype = dtype or torch.get_default_dtype()
        assert out.shape == tuple(size) and out.dtype == ref_dtype
        if which == "philox_uniform":
            assert torch.equal(out, reference.philox_uniform(size, seed, step, ref_dtype))
            assert bool(((out > 0) & (out < 1)).all())
        else:
            _close(out, reference.philox_normal(size, seed, step, ref_dtype), ref_dtype, scale=8.0)

    _outcome(which, lambda: getattr(ops, which)(size, seed, step, dtype), check)


@FUZZ
@given(data=st.data())
def test_graphsafe_ops_raise_without_cuda(data):
    # CUDA-only ops: on the CPU (or a CPU/meta mix) every call raises.
    dtype, shape = data.draw(states())
    x, grad = data.draw(tensors(shape, dtype)), data.draw(tensors(shape, dtype))
    seed_state = data.draw(tensors([2], torch.int64))

    def must_raise(*args):
        def check(out):  # an all-meta call only propagates shapes
            assert all(t.device.type == "meta" for t in args), f"a CUDA-only op returned on the CPU"
        return check

    _outcome("langevin_update_graphsafe_", lambda: torch.ops.torchebm.langevin_update_graphsafe_(
        x, grad, 0.1, 0.1, None, None, None, seed_state, 0), must_raise(x, grad, seed_state))
    _outcome("philox_state_advance_", lambda: torch.ops.torchebm.philox_state_advance_(seed_state, 1),
             must_raise(seed_state))
