"""The CUDA MLP kernels against the CPU ones (the same contracts, results to rounding).

Needs a GPU and a CUDA build (``cuda`` marker; skipped otherwise), or runs on the CUDA sources
compiled for the host (``TORCHEBM_CUDA_TESTS_ON=emulated`` with ``TORCHEBM_CUDA_EMU_LIB``, as
``scripts/cuda_emulation/emulate.py`` sets them: pass this file to it after ``--``): every block
of CUDA threads then runs on the host, which checks the kernels' indexing, tiling and
reductions, not their speed.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

from torchebm import kernels
from torchebm.kernels import mlp as mlpk

MODE = os.environ.get("TORCHEBM_CUDA_TESTS_ON", "cuda")
if MODE == "emulated":
    torch.ops.load_library(os.environ["TORCHEBM_CUDA_EMU_LIB"])
    _RUNNABLE = kernels.available() and hasattr(torch.ops.torchebm_cuda_emu, "mlp_energy_grad")
    DEV = torch.device("cpu")
    OPS = torch.ops.torchebm_cuda_emu
else:
    _RUNNABLE = kernels.cuda_available() and torch._C._dispatch_has_kernel_for_dispatch_key(
        "torchebm::mlp_energy_grad", "CUDA"
    )
    DEV = torch.device("cuda")
    OPS = torch.ops.torchebm

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(MODE == "cpu" or not _RUNNABLE, reason="needs the CUDA MLP kernels"),
]
CPU = torch.ops.torchebm

SELU = [1.6732632423543772848170429916717, 1.0507009873554804934193349852946, 1.0]


def network(widths, acts, dtype, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    weights = [
        (torch.randn(b, a, generator=g, dtype=torch.float64) * scale / math.sqrt(a)).to(dtype)
        for a, b in zip(widths[:-1], widths[1:])
    ]
    biases = [(0.3 * torch.randn(b, generator=g, dtype=torch.float64)).to(dtype) for b in widths[1:]]
    params = {3: SELU, 9: [2.0, 5.0, 0.0], 2: [0.1, 0.0, 0.0]}
    act_params = [v for a in acts for v in params.get(a, [0.0, 0.0, 0.0])]
    return weights, biases, list(acts), act_params


def on_dev(net):
    w, b, a, p = net
    return [t.to(DEV) for t in w], [t.to(DEV) for t in b], a, p


def tol(dtype):
    return dict(rtol=1e-9, atol=1e-9) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "widths, acts, out",
    [
        ([2, 16, 16, 1], [3, 3, 0], (1.0, 0.0)),  # SELU, the benchmark's shape
        ([3, 12, 5], [9, 7], (-0.5, 2.0)),  # softplus, summed outputs through tanh
        ([5, 1], [0], (2.0, 1.0)),  # one Linear: a constant gradient
        ([4, 9, 9, 3], [0, 4, 0], (1.0, 0.0)),  # identity hidden layer, SiLU, summed outputs
        ([2, 8, 1], [5, 0], (1.0, 0.0)),  # exact GELU
        ([2, 8, 1], [6, 0], (1.0, 0.0)),  # tanh GELU
    ],
)
def test_energy_grad_matches_the_cpu_kernel(widths, acts, out, dtype):
    net = network(widths, acts, dtype, seed=len(acts))
    x = torch.randn(70, widths[0], generator=torch.Generator().manual_seed(1), dtype=dtype)  # two full tiles of 32 chains and a partial one
    e, g = OPS.mlp_energy_grad(x.to(DEV), *on_dev(net), *out)
    e_cpu, g_cpu = CPU.mlp_energy_grad(x, *net, *out)
    torch.testing.assert_close(e.cpu(), e_cpu, **tol(dtype))
    torch.testing.assert_close(g.cpu(), g_cpu, **tol(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_langevin_chain_matches_the_cpu_kernel(dtype):
    net = network([2, 16, 16, 1], [3, 3, 0], dtype, seed=1)
    x0 = torch.randn(100, 2, generator=torch.Generator().manual_seed(2), dtype=dtype)
    n = 8
    a = torch.full((n,), 0.01, dtype=torch.float64)
    b = torch.linspace(0.2, 0.1, n, dtype=torch.float64)
    args = (1.0, 0.0, a, b, -3.0, 3.0, 50.0, 12345, 3, True, True)
    got = OPS.mlp_langevin_chain(x0.to(DEV), *on_dev(net), *args)
    want = CPU.mlp_langevin_chain(x0, *net, *args)
    for u, v in zip(got, want):
        torch.testing.assert_close(u.cpu(), v, **tol(dtype))


def test_mala_and_hmc_chains_match_the_cpu_kernels():
    dtype = torch.float64
    net = network([2, 12, 1], [7, 0], dtype, seed=2, scale=6.0)  # steep: some rejections
    x0 = torch.randn(90, 2, generator=torch.Generator().manual_seed(3), dtype=dtype)
    n = 6
    a = torch.full((n,), 0.2, dtype=torch.float64)
    got = OPS.mlp_mala_chain(x0.to(DEV), *on_dev(net), 1.0, 0.0, a, torch.sqrt(2 * a), 7, 2, True, True)
    want = CPU.mlp_mala_chain(x0, *net, 1.0, 0.0, a, torch.sqrt(2 * a), 7, 2, True, True)
    assert 0.0 < float(want[3].mean()) < 1.0
    for u, v in zip(got, want):
        torch.testing.assert_close(u.cpu(), v, **tol(dtype))
    inv_mass = torch.tensor([0.5, 2.0], dtype=dtype)
    got = OPS.mlp_hmc_chain(x0.to(DEV), *on_dev(net), 1.0, 0.0, a, 3, inv_mass.to(DEV), 8, 1, True, True)
    want = CPU.mlp_hmc_chain(x0, *net, 1.0, 0.0, a, 3, inv_mass, 8, 1, True, True)
    assert 0.0 < float(want[3].mean()) < 1.0
    for u, v in zip(got, want):
        torch.testing.assert_close(u.cpu(), v, **tol(dtype))


def test_empty_batch_and_too_wide_network():
    net = network([2, 4, 1], [1, 0], torch.float32)
    x0 = torch.empty(0, 2)
    a = torch.full((3,), 0.1, dtype=torch.float64)
    x, traj, em = OPS.mlp_langevin_chain(x0.to(DEV), *on_dev(net), 1.0, 0.0, a, a, None, None, None, 0, 1, True, True)
    assert x.shape == (0, 2) and traj.shape == (0, 3, 2) and torch.equal(em.cpu(), torch.zeros(3))
    wide = network([2, 4000, 1], [1, 0], torch.float32)
    with pytest.raises(RuntimeError, match="too wide for the CUDA MLP kernels"):
        OPS.mlp_energy_grad(torch.randn(4, 2).to(DEV), *on_dev(wide), 1.0, 0.0)


def test_recognised_model_runs_on_the_gpu():
    if MODE != "cuda":
        pytest.skip("the recogniser's op wrappers call torch.ops.torchebm (a GPU)")
    model = nn.Sequential(nn.Linear(2, 32), nn.SELU(), nn.Linear(32, 1), nn.Flatten(0)).to(DEV)
    x = torch.randn(1000, 2, device=DEV)
    spec, reason = mlpk.recognise_mlp(model, x)
    assert spec is not None, reason
    e, g = mlpk.mlp_energy_grad(x, **spec.op_args())
    xr = x.clone().requires_grad_(True)
    (g_ref,) = torch.autograd.grad(model(xr).sum(), xr)
    torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", ["langevin", "mala", "hmc"])
def test_per_chain_schedules_match_the_cpu_kernels(kind, dtype):
    """Schedules [n_steps, B] (per chain; here on the device) give the CPU kernels' results to
    rounding; equal entries give the [n_steps] results bit for bit, and a stride-0 view its
    copy's."""
    net = network([2, 12, 1], [7, 0], dtype, seed=3, scale=6.0)  # steep: some rejections
    B, n = 70, 6  # two full tiles of 32 chains and a partial one
    g = torch.Generator().manual_seed(4)
    x0 = torch.randn(B, 2, generator=g, dtype=dtype)  # seeded: the same chains on every run
    a = 0.02 + 0.2 * torch.rand(n, B, generator=g, dtype=torch.float64)

    def run(ops, x, first, dev):
        if kind == "langevin":
            return ops.mlp_langevin_chain(x, *net_on(dev), 1.0, 0.0, first, torch.sqrt(2 * first),
                                          -3.0, 3.0, 50.0, 12345, 2, True, True)
        if kind == "mala":
            return ops.mlp_mala_chain(x, *net_on(dev), 1.0, 0.0, first, torch.sqrt(2 * first), 7, 2,
                                      True, True)
        inv_mass = torch.tensor([0.5, 2.0], dtype=dtype).to(dev)
        return ops.mlp_hmc_chain(x, *net_on(dev), 1.0, 0.0, first, 3, inv_mass, 8, 2, True, True)

    def net_on(dev):
        return on_dev(net) if dev == DEV else net

    got = run(OPS, x0.to(DEV), a.to(DEV), DEV)
    want = run(CPU, x0, a, torch.device("cpu"))
    if kind != "langevin":
        assert 0.0 < float(want[3].mean()) < 1.0
    for u, v in zip(got, want):
        torch.testing.assert_close(u.cpu(), v, **tol(dtype))
    a = a.to(DEV)
    one = run(OPS, x0.to(DEV), a[:, 0].contiguous(), DEV)
    equal = run(OPS, x0.to(DEV), a[:, :1].expand(n, B).contiguous(), DEV)
    assert all(torch.equal(u, v) for u, v in zip(equal, one))
    view = run(OPS, x0.to(DEV), a[0].expand(n, B), DEV)
    copy = run(OPS, x0.to(DEV), a[0].expand(n, B).contiguous(), DEV)
    assert all(torch.equal(u, v) for u, v in zip(view, copy))


def test_hmc_leapfrog_count_per_transition_matches_the_cpu_kernel():
    """mlp_hmc_chain's leapfrog_steps (transition t takes leapfrog_steps[t] leapfrog steps),
    given on the device, with per-chain step sizes: the CPU kernel's results to rounding."""
    dtype = torch.float64
    net = network([2, 12, 1], [7, 0], dtype, seed=5, scale=6.0)
    x0 = torch.randn(70, 2, generator=torch.Generator().manual_seed(5), dtype=dtype)
    eps = 0.05 + 0.2 * torch.rand(5, 70, generator=torch.Generator().manual_seed(6), dtype=dtype)
    steps = torch.tensor([1, 4, 2, 5, 3])
    got = OPS.mlp_hmc_chain(x0.to(DEV), *on_dev(net), 1.0, 0.0, eps.to(DEV), 2, None, 8, 1, True,
                            True, 0, steps.to(DEV))
    want = CPU.mlp_hmc_chain(x0, *net, 1.0, 0.0, eps, 2, None, 8, 1, True, True, 0, steps)
    assert 0.0 < float(want[3].mean()) < 1.0
    for u, v in zip(got, want):
        torch.testing.assert_close(u.cpu(), v, **tol(dtype))
