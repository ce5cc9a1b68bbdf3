"""Every op traces under torch.compile(fullgraph=True) through its registered fake kernel, and
the compiled function returns what eager returns; torch.library.opcheck validates the
registrations (schema, fake kernel, dispatch)."""

from __future__ import annotations

import pytest
import torch

from torchebm import kernels
from torchebm.kernels import ops

pytestmark = pytest.mark.skipif(not kernels.available(), reason="compiled kernels not built")


def _per_step(x, g, p, inv_mass, e):
    noise = ops.philox_normal(x.shape, 7, 3, x.dtype)
    u = ops.philox_uniform(x.shape[:1], 7, 3, x.dtype)
    y = ops.langevin_update(x, g, noise, 0.01, 0.1, -2.0, 2.0, 1.0, 7, 3)
    y2 = ops.langevin_update(x, g, None, 0.01, 0.1, None, None, None, 7, 3)
    xn, pn = ops.leapfrog_kick_drift(x, p, g, 0.05, 0.1, inv_mass)
    xs, acc = ops.metropolis_select(e - e.flip(0), x, xn, u, 7, 3)
    xm, gm, em, accm = ops.mala_select(x, y, g, p, e, e.flip(0), 0.01, 0.1, None, 7, 3)
    ea, ga = ops.analytic_energy_grad("double_well", x, [2.0, 1.0])
    return y + y2 + xs + xm + gm + ga + pn, acc.sum() + accm.sum() + em.sum() + ea.sum()


def _chains(x, a, b, mean, prec):
    x1, traj, em = ops.langevin_chain("gaussian", x, a, b, [], mean, prec, None, None, None, 5, 2, True, True)
    x2, _, _, acc2 = ops.mala_chain("double_well", x, a, b, [2.0, 1.0], None, None, 5, 1, False, False)
    x3, _, em3, acc3 = ops.hmc_chain("harmonic", x, a * 10, 3, None, [1.0], None, None, 5, 1, False, True)
    return x1 + x2 + x3, traj.sum(1), em + em3 + acc2 + acc3


def _inputs(dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    x, gr, p = (torch.randn(64, 4, generator=g, dtype=dtype) for _ in range(3))
    inv_mass = torch.rand(4, generator=g, dtype=dtype) + 0.5
    e = torch.randn(64, generator=g, dtype=dtype)
    a = torch.full((6,), 1e-2, dtype=torch.float64)
    return (x, gr, p, inv_mass, e), (x, a, torch.sqrt(2 * a), torch.zeros(4, dtype=dtype), torch.eye(4, dtype=dtype))


def _assert_same(got, want, exact=True):
    # Inductor may reorder the float sums around the ops (not the ops themselves).
    tol = dict(rtol=0, atol=0) if exact else dict(rtol=1e-5, atol=1e-5)
    for u, v in zip(got, want):
        torch.testing.assert_close(u, v, **tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ops_compile_with_fullgraph_aot_eager(dtype):
    torch._dynamo.reset()
    step_args, chain_args = _inputs(dtype)
    _assert_same(torch.compile(_per_step, fullgraph=True, backend="aot_eager")(*step_args), _per_step(*step_args))
    _assert_same(torch.compile(_chains, fullgraph=True, backend="aot_eager")(*chain_args), _chains(*chain_args))


def test_per_step_ops_compile_with_the_default_backend():
    torch._dynamo.reset()
    step_args, _ = _inputs()
    _assert_same(torch.compile(_per_step, fullgraph=True)(*step_args), _per_step(*step_args), exact=False)


def test_fake_kernels_give_the_eager_shapes_and_dtypes():
    from torch._subclasses.fake_tensor import FakeTensorMode

    step_args, chain_args = _inputs(torch.float64)
    want_step, want_chain = _per_step(*step_args), _chains(*chain_args)
    with FakeTensorMode() as mode:
        fake_step = [mode.from_tensor(t) for t in step_args]
        fake_chain = [mode.from_tensor(t) for t in chain_args]
        got_step, got_chain = _per_step(*fake_step), _chains(*fake_chain)
    for u, v in zip((*got_step, *got_chain), (*want_step, *want_chain)):
        assert u.shape == v.shape and u.dtype == v.dtype


@pytest.mark.parametrize(
    "op,args",
    [
        ("langevin_update", lambda x, g, p, m, e: (x, g, None, 0.1, 0.2, -1.0, 1.0, 0.5, 1, 2)),
        ("langevin_update", lambda x, g, p, m, e: (x, g, p, 0.1, 0.2, None, None, None, 1, 2)),
        ("leapfrog_kick_drift", lambda x, g, p, m, e: (x, p, g, 0.1, 0.2, m)),
        ("metropolis_select", lambda x, g, p, m, e: (e, x, p, None, 1, 2)),
        ("mala_select", lambda x, g, p, m, e: (x, p, g, g, e, e, 0.1, 0.2, None, 1, 2)),
        ("analytic_energy_grad", lambda x, g, p, m, e: ("ackley", x, [20.0, 0.2, 6.28], None, None)),
    ],
)
def test_opcheck(op, args):
    step_args, _ = _inputs()
    torch.library.opcheck(getattr(torch.ops.torchebm, op).default, args(*step_args))
