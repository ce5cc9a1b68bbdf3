"""Tempered whole-chain ops: ``beta``, the Gaussian base and the AIS log weights of
langevin_chain, mala_chain and hmc_chain (csrc/cpu/chain_common.h: Tempering).

Transition t targets ``E_t = beta[t+1] E + (1 - beta[t+1]) E0`` and ``log_weight`` gains
``sum_t (beta[t+1] - beta[t]) (E0(x_t) - E(x_t))``; the per-step loops below build that from
the per-step ops and ``reference.tempered_energy_grad``.
"""

from __future__ import annotations

import pytest
import torch

from torchebm.core import GaussianModel
from torchebm.kernels import ops, reference
from torchebm.samplers import HamiltonianMonteCarlo

F64 = torch.float64
SEED = 19
PARAMS = {"double_well": [1.5, 1.0], "harmonic": [2.0], "gaussian": []}
SCALED = {"double_well": 0, "harmonic": 0}  # the param the energy is linear in


@pytest.fixture(autouse=True)
def chain_ops(require_path):
    require_path(HamiltonianMonteCarlo, "chain")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _model(name, d, dtype):
    if name != "gaussian":
        return PARAMS[name], None, None
    a = torch.randn(d, d, generator=_gen(3), dtype=F64)
    prec = a @ a.T / d + torch.eye(d, dtype=F64)
    return [], (0.3 * torch.randn(d, generator=_gen(4), dtype=F64)).to(dtype), prec.to(dtype)


def _base(d, dtype):
    a = torch.randn(d, d, generator=_gen(5), dtype=F64)
    prec = a @ a.T / d + 0.5 * torch.eye(d, dtype=F64)
    return torch.randn(d, generator=_gen(6), dtype=F64).to(dtype) * 0.2, (0.5 * (prec + prec.T)).to(dtype)


def _path(n):
    """A path with repeated positions (transitions at one target, whose increments are 0)."""
    steps = torch.tensor([0.0, 0.1, 0.1, 0.35, 0.35, 0.35, 0.6, 0.9, 1.0, 1.0][: n + 1], dtype=F64)
    assert steps.shape[0] == n + 1
    return steps


def _coefficients(kind, n):
    if kind == "hmc":
        return torch.linspace(0.15, 0.1, n, dtype=F64), None
    a = torch.linspace(0.02, 0.01, n, dtype=F64)
    return a, torch.sqrt(2 * a)


def _chain(kind, name, x0, first, second, beta, base, log_weight, **kw):
    params, mean, prec = _model(name, x0.shape[1], x0.dtype)
    base_mean, base_prec = base if base is not None else (None, None)
    args = dict(seed=SEED, beta=beta, base_mean=base_mean, base_precision=base_prec,
                log_weight=log_weight, **kw)
    if kind == "langevin":
        return ops.langevin_chain(name, x0, first, second, params, mean, prec, **args)
    if kind == "mala":
        return ops.mala_chain(name, x0, first, second, params, mean, prec, **args)
    return ops.hmc_chain(name, x0, first, 3, None, params, mean, prec, **args)


def _loop(kind, name, x0, first, second, beta, base):
    """The per-step loop of a tempered chain: (x, log_weight, energies of the targets)."""
    params, mean, prec = _model(name, x0.shape[1], x0.dtype)
    base_mean, base_prec = base if base is not None else (None, None)

    def target(x, t):  # transition t's target at x: (E_t, grad E_t, E, E0)
        return reference.tempered_energy_grad(name, x, float(beta[t + 1]), params, mean, prec,
                                              base_mean, base_prec)

    x = x0.clone()
    log_w = torch.zeros(x.shape[0], dtype=F64)
    means = []
    for t in range(first.shape[0]):
        e, g, raw, raw0 = target(x, t)
        log_w += float(beta[t + 1] - beta[t]) * (raw0.double() - raw.double())
        h = float(first[t])
        if kind == "langevin":
            x = ops.langevin_update(x, g, None, h, float(second[t]), seed=SEED, step=t)
            means.append(target(x, t)[0].double().mean())
        elif kind == "mala":
            y = ops.langevin_update(x, g, None, h, float(second[t]), seed=SEED, step=t)
            ey, gy, _, _ = target(y, t)
            x, _, e, _ = ops.mala_select(x, y, g, gy, e, ey, h, float(second[t]), None, SEED, t)
            means.append(e.double().mean())
        else:
            p = ops.philox_normal(x.shape, SEED, t, x.dtype)
            h0 = e + 0.5 * (p * p).sum(-1)
            xn, p = ops.leapfrog_kick_drift(x, p, g, h / 2, h, None)
            for step in range(1, 4):
                en, gn, _, _ = target(xn, t)
                if step < 3:
                    xn, p = ops.leapfrog_kick_drift(xn, p, gn, h, h, None)
            _, p = ops.leapfrog_kick_drift(xn, p, gn, h / 2, 0.0, None)
            x, acc = ops.metropolis_select(h0 - (en + 0.5 * (p * p).sum(-1)), x, xn, None, SEED, t)
            means.append(torch.where(acc, en, e).double().mean())
    return x, log_w, torch.stack(means)


KINDS = ["langevin", "mala", "hmc"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["double_well", "gaussian"])
@pytest.mark.parametrize("with_base", [True, False])
def test_log_weights_equal_the_per_step_loop(kind, name, with_base):
    """States, energy means and AIS log weights equal the per-step loop over the reference's
    tempered target to rounding (the kernel may contract b g + (1 - b) g0 into fused
    multiply-adds; the decisions then agree except on ties at rounding level)."""
    b, d, n = 200, 3, 9
    x0 = torch.randn(b, d, generator=_gen(7), dtype=F64)
    first, second = _coefficients(kind, n)
    beta, base = _path(n), (_base(d, F64) if with_base else None)
    log_w = torch.full((b,), 0.25, dtype=F64)  # the op adds to it
    x, _, energy, *_ = _chain(kind, name, x0, first, second, beta, base, log_w, record_energy=True)
    x_loop, log_w_loop, means = _loop(kind, name, x0, first, second, beta, base)
    close = (x - x_loop).abs().amax(-1) <= 1e-10 * (1 + x_loop.abs().amax(-1))
    assert close.double().mean() >= 0.99
    torch.testing.assert_close(log_w - 0.25, log_w_loop, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(energy, means, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["double_well", "harmonic", "gaussian"])
def test_per_chain_beta_equals_the_model_with_scaled_parameters(kind, name):
    """Parallel tempering's use: a per-chain beta constant over the steps (a stride-0 view) runs
    each chain on beta E, which for these models is the model with its linear parameter (the
    gaussian: the precision) times beta; equal to rounding (beta (k x) against (beta k) x)."""
    b, d, n = 240, 3, 8
    temps = torch.tensor([1.0, 0.5, 0.2], dtype=F64)
    x0 = torch.randn(b, d, generator=_gen(8), dtype=F64)
    first, second = _coefficients(kind, n)
    per_chain = temps.repeat_interleave(b // 3)
    x, traj, energy, *acc = _chain(kind, name, x0, first, second, per_chain.expand(n + 1, b), None,
                                   None, record_trajectory=True)
    params, mean, prec = _model(name, d, F64)
    for k, beta in enumerate(temps.tolist()):
        rows = slice(k * (b // 3), (k + 1) * (b // 3))
        scaled = list(params)
        if name in SCALED:
            scaled[SCALED[name]] *= beta
        p_scaled = None if prec is None else prec * beta
        one = ops.langevin_chain if kind == "langevin" else ops.mala_chain
        kw = dict(seed=SEED, record_trajectory=True)
        # The chains' noise is indexed over the whole batch: run the whole batch, keep the rows.
        if kind == "hmc":
            want = ops.hmc_chain(name, x0, first, 3, None, scaled, mean, p_scaled, **kw)
        else:
            want = one(name, x0, first, second, scaled, mean, p_scaled, **kw)
        close = (x[rows] - want[0][rows]).abs().amax(-1) <= 1e-10 * (1 + x[rows].abs().amax(-1))
        assert close.double().mean() >= 0.99, (kind, name, beta)
    # beta = 1 everywhere and no base: the untempered op outright, bit for bit.
    ones = _chain(kind, name, x0, first, second, torch.ones(n + 1, dtype=F64), None, None)
    plain = _chain(kind, name, x0, first, second, None, None, None)
    assert torch.equal(ones[0], plain[0])


@pytest.mark.parametrize("kind", KINDS)
def test_a_tempered_chain_in_blocks_equals_one_call(kind):
    """Blocks [0, 4) and [4, 9) with beta[0:5] and beta[4:10] and one log_weight: bit for bit
    one call (the block boundary re-evaluates the state at the next target, as one call does
    when the target moves; at an unmoved target the carried values equal a fresh evaluation)."""
    b, d, n = 150, 3, 9
    x0 = torch.randn(b, d, generator=_gen(9), dtype=F64)
    first, second = _coefficients(kind, n)
    beta, base = _path(n), _base(d, F64)
    one_w = torch.zeros(b, dtype=F64)
    one = _chain(kind, "double_well", x0, first, second, beta, base, one_w, record_energy=True)
    w = torch.zeros(b, dtype=F64)
    cut = 4
    head = _chain(kind, "double_well", x0, first[:cut], None if second is None else second[:cut],
                  beta[: cut + 1], base, w, record_energy=True)
    tail = _chain(kind, "double_well", head[0], first[cut:], None if second is None else second[cut:],
                  beta[cut:], base, w, record_energy=True, first_step=cut)
    assert torch.equal(tail[0], one[0])
    assert torch.equal(w, one_w)
    assert torch.equal(torch.cat([head[2], tail[2]]), one[2])


def test_base_energy_is_the_gaussian_models():
    """E0 is GaussianModel's energy with the base's mean and inverse covariance: one Langevin
    step that does not move (a = b = 0) on beta = [0, 1] adds E0(x0) - E(x0)."""
    b, d = 64, 3
    x0 = torch.randn(b, d, generator=_gen(10), dtype=F64)
    base_mean, base_prec = _base(d, F64)
    base = GaussianModel(base_mean, torch.linalg.inv(base_prec), dtype=F64)
    log_w = torch.zeros(b, dtype=F64)
    zero = torch.zeros(1, dtype=F64)
    ops.langevin_chain("double_well", x0, zero, zero, [1.5, 1.0], beta=torch.tensor([0.0, 1.0], dtype=F64),
                       base_mean=base_mean, base_precision=base_prec, log_weight=log_w)
    energy = reference.analytic_energy_grad("double_well", x0, [1.5, 1.0])[0]
    torch.testing.assert_close(log_w, base(x0) - energy, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(dtype):
    """Outputs keep x's dtype and the untempered shapes; log_weight stays float64 (accumulated
    in float64 in the kernel) and is the only tensor changed in place."""
    b, d, n = 10, 2, 4
    x0 = torch.randn(b, d, generator=_gen(11), dtype=F64).to(dtype)
    a = torch.full((n,), 0.01, dtype=F64)
    beta = torch.linspace(0, 1, n + 1, dtype=F64)
    mean, prec = torch.zeros(d, dtype=dtype), torch.eye(d, dtype=dtype)
    log_w = torch.zeros(b, dtype=F64)
    x, traj, energy, acc = ops.mala_chain("double_well", x0, a, torch.sqrt(2 * a), [1.0, 1.0], seed=1,
                                          record_trajectory=True, record_energy=True, beta=beta,
                                          base_mean=mean, base_precision=prec, log_weight=log_w)
    assert (x.dtype, traj.shape, energy.shape, acc.shape) == (dtype, (b, n, d), (n,), (n,))
    assert log_w.dtype == F64 and bool(log_w.ne(0).all())


def test_bad_tempering_arguments_name_them():
    x0 = torch.randn(4, 3, dtype=F64)
    a = torch.full((5,), 0.01, dtype=F64)
    beta = torch.linspace(0, 1, 6, dtype=F64)
    mean, prec = torch.zeros(3, dtype=F64), torch.eye(3, dtype=F64)

    def run(**kw):
        return ops.langevin_chain("double_well", x0, a, a, [1.0, 1.0], **kw)

    with pytest.raises(RuntimeError, match=r"beta must have n_steps \+ 1 = 6 entries"):
        run(beta=beta[:5])
    with pytest.raises(RuntimeError, match=r"beta\[2\] must be finite"):
        run(beta=torch.tensor([0.0, 0.1, float("nan"), 0.3, 0.4, 1.0], dtype=F64))
    with pytest.raises(RuntimeError, match=r"beta must be a per-step tensor .*\(B = 4 chains\)"):
        run(beta=torch.zeros(6, 3, dtype=F64))
    with pytest.raises(RuntimeError, match="log_weight temper a chain: they need beta"):
        run(log_weight=torch.zeros(4, dtype=F64))
    with pytest.raises(RuntimeError, match="give both base_mean and base_precision"):
        run(beta=beta, base_mean=mean)
    with pytest.raises(RuntimeError, match=r"base_mean must have shape \[3\], got \[2\]"):
        run(beta=beta, base_mean=mean[:2], base_precision=prec)
    with pytest.raises(RuntimeError, match=r"base_precision must have shape \[3, 3\]"):
        run(beta=beta, base_mean=mean, base_precision=prec[:2])
    with pytest.raises(RuntimeError, match="log_weight must be a float64 tensor"):
        run(beta=beta, log_weight=torch.zeros(4))
    with pytest.raises(RuntimeError, match=r"log_weight must have shape \[4\]"):
        run(beta=beta, log_weight=torch.zeros(3, dtype=F64))
    with pytest.raises(RuntimeError, match="log_weight is updated in place and must be contiguous"):
        run(beta=beta, log_weight=torch.zeros(8, dtype=F64)[::2])


@pytest.mark.parametrize("kind", KINDS)
def test_opcheck(kind):
    """torch.library.opcheck of each tempered op (schema with the mutated log_weight, fake
    kernel, dispatch)."""
    x0 = torch.randn(6, 3, dtype=F64, generator=_gen(12))
    a = torch.full((5,), 0.01, dtype=F64)
    tempering = {"beta": torch.linspace(0, 1, 6, dtype=F64), "base_mean": torch.zeros(3, dtype=F64),
                 "base_precision": torch.eye(3, dtype=F64), "log_weight": torch.zeros(6, dtype=F64)}
    if kind == "langevin":
        op, args = torch.ops.torchebm.langevin_chain, ("double_well", x0, a, torch.sqrt(2 * a), [1.0, 1.0],
                                                       None, None, None, None, None, 3, 1, True, True, 0)
    elif kind == "mala":
        op, args = torch.ops.torchebm.mala_chain, ("double_well", x0, a, torch.sqrt(2 * a), [1.0, 1.0],
                                                   None, None, 3, 1, True, True, 0)
    else:
        op, args = torch.ops.torchebm.hmc_chain, ("double_well", x0, 10 * a, 2, None, [1.0, 1.0], None,
                                                  None, 3, 1, True, True, 0)
    torch.library.opcheck(op, args, tempering)


def test_tempered_op_under_torch_compile():
    """The in-place log_weight survives torch.compile (functionalised): the compiled call gives
    the eager states and weights bit for bit."""
    x0 = torch.randn(6, 3, dtype=F64, generator=_gen(13))
    a = torch.full((5,), 0.01, dtype=F64)
    beta = torch.linspace(0, 1, 6, dtype=F64)

    def run(x, log_w):
        return ops.langevin_chain("double_well", x, a, torch.sqrt(2 * a), [1.0, 1.0], seed=3,
                                  beta=beta, log_weight=log_w)[0]

    eager_w, compiled_w = torch.zeros(6, dtype=F64), torch.zeros(6, dtype=F64)
    eager = run(x0, eager_w)
    compiled = torch.compile(run, fullgraph=True)(x0, compiled_w)
    assert torch.equal(eager, compiled) and torch.equal(eager_w, compiled_w)
    assert bool(eager_w.ne(0).all())


def test_fake_kernels():
    meta = torch.empty(4, 3, device="meta")
    a = torch.full((5,), 0.01, dtype=F64)
    out = ops.hmc_chain("double_well", meta, a, 2, None, [1.0, 1.0],
                        beta=torch.linspace(0, 1, 6, dtype=F64),
                        log_weight=torch.empty(4, dtype=F64, device="meta"))
    assert out[0].shape == (4, 3)
    with pytest.raises(RuntimeError, match=r"beta must have n_steps \+ 1 = 6 entries"):
        ops.mala_chain("double_well", meta, a, a, [1.0, 1.0], beta=torch.zeros(5, dtype=F64))
    with pytest.raises(RuntimeError, match="log_weight must be a float64 tensor"):
        ops.langevin_chain("double_well", meta, a, a, [1.0, 1.0], beta=torch.zeros(6, dtype=F64),
                           log_weight=torch.empty(4, device="meta"))
