"""Long whole-chain runs return to Python between blocks of steps (``MCMCSampler._run_chain``):
Ctrl-C (a KeyboardInterrupt) stops them within about a block's time, and the blocks give bit
for bit the result of one op call (the chain ops' ``first_step`` offsets the Philox counter)."""

import os
import signal
import threading
import time

import pytest
import torch
from torch import nn

from torchebm.core import BaseModel, DoubleWellModel, GaussianModel
from torchebm.kernels import mlp, ops
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics, MetropolisAdjustedLangevin
from torchebm.samplers import mcmc_sampler

SAMPLERS = [LangevinDynamics, MetropolisAdjustedLangevin, HamiltonianMonteCarlo]
F32, F64 = torch.float32, torch.float64
# The CUDA cases run the same checks on a GPU (where the blocks also synchronise the stream).
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")],
    ),
]


class NetEnergy(BaseModel):
    """An MLP energy the samplers run on the mlp_*_chain ops."""

    def __init__(self, dim=2, width=16, dtype=F64):
        super().__init__(dtype=dtype)
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(dim, width), nn.SiLU(), nn.Linear(width, 1)).to(dtype)

    def forward(self, x):
        return self.net(x).squeeze(-1)


def make(cls, model, dtype, **kw):
    kw.setdefault("step_size", 0.01)
    if cls is HamiltonianMonteCarlo:
        kw.setdefault("n_leapfrog_steps", 3)
    return cls(model, dtype=dtype, **kw)


def count_op_calls(monkeypatch, cls, kind):
    """Wraps the sampler's chain op (``kind``: "analytic" or "mlp"); returns the call list."""
    module = mlp if kind == "mlp" else ops
    name = cls.algorithm.mlp_chain_op if kind == "mlp" else cls.algorithm.chain_op
    real = getattr(module, name)
    calls = []

    def counted(*args, **kwargs):
        calls.append(kwargs.get("first_step", 0))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


# ---- the block plan ---------------------------------------------------------------------------


def kept_steps(n_steps, thin, lengths):
    """The steps whose states the blocks of _chain_block record, in order."""
    kept, start, i = [], 0, 0
    while start < n_steps:
        stop, block_thin, record = mcmc_sampler._chain_block(start, lengths[i % len(lengths)], n_steps, thin, True)
        assert start < stop <= n_steps
        if record:
            kept += [t for t in range(start, stop) if (t - start + 1) % block_thin == 0]
        start, i = stop, i + 1
    return kept


@pytest.mark.parametrize("thin", [1, 2, 3, 7])
@pytest.mark.parametrize("lengths", [[1], [2], [5, 1, 9], [3, 8, 2, 100]])
def test_the_blocks_record_exactly_the_kept_steps_of_one_call(thin, lengths):
    for n_steps in range(0, 30):
        assert kept_steps(n_steps, thin, lengths) == list(range(thin - 1, n_steps // thin * thin, thin))


# ---- blocked == one call, bit for bit ---------------------------------------------------------


def run_chain(cls, model, dtype, n_steps, thin, *, blocked, monkeypatch, device="cpu"):
    """ChainResult of _run_chain with every output recorded; blocked: blocks of 1 to 56 steps."""
    model = model.to(device)
    with monkeypatch.context() as m:
        kind = "mlp" if isinstance(model, NetEnergy) else "analytic"
        calls = count_op_calls(m, cls, kind)
        if blocked:
            # First block of ~3 steps, then blocks 8 times longer (the time target is never met).
            x_numel = 8 * 2 + sum(t.numel() for t in model.parameters())
            m.setattr(mcmc_sampler, "_FIRST_BLOCK_WORK", 3 * x_numel * (3 if cls is HamiltonianMonteCarlo else 1))
            m.setattr(cls, "chain_block_seconds", 1e9)
        sampler = make(cls, model, dtype)
        x = torch.randn(8, 2, generator=torch.Generator().manual_seed(4), dtype=dtype).to(device)
        chain_model, why = mcmc_sampler.chain_model(model, x, cls.algorithm)
        assert chain_model is not None, why
        assert chain_model.kind == kind
        result = sampler._run_chain(x.clone(), chain_model, n_steps, thin, True, True, seed=11)
    return result, calls


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("model", ["double_well", "gaussian", "mlp"])
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("thin", [1, 3])
@pytest.mark.parametrize("device", DEVICES)
def test_a_blocked_chain_equals_one_call_bit_for_bit(cls, model, dtype, thin, device, require_path, monkeypatch):
    require_path(cls, "chain", dtype)
    model = {
        "double_well": lambda: DoubleWellModel(barrier_height=2.0),
        "gaussian": lambda: GaussianModel(torch.tensor([0.5, -1.0]), torch.tensor([[1.0, 0.3], [0.3, 2.0]])),
        "mlp": lambda: NetEnergy(dtype=dtype),
    }[model]()
    n_steps = 50
    one, one_calls = run_chain(cls, model, dtype, n_steps, thin, blocked=False, monkeypatch=monkeypatch, device=device)
    blocks, block_calls = run_chain(cls, model, dtype, n_steps, thin, blocked=True, monkeypatch=monkeypatch, device=device)
    assert one_calls == [0]
    assert len(block_calls) >= 3 and block_calls[0] == 0 and block_calls == sorted(block_calls)
    assert one.trajectory.shape == (8, n_steps // thin, 2)
    for name in ("x", "trajectory", "energy", "acceptance_rate"):
        a, b = getattr(one, name), getattr(blocks, name)
        if cls is LangevinDynamics and name == "acceptance_rate":
            assert a is None and b is None
            continue
        assert a.dtype == b.dtype and a.shape == b.shape, name
        assert torch.isfinite(a).all(), name
        assert torch.equal(a, b), name


@pytest.mark.parametrize("thin", [1, 4])
def test_a_blocked_sample_call_equals_one_call(thin, monkeypatch):
    """The public sample(): trajectory and diagnostics of blocks of one step (no time target)."""
    cls = MetropolisAdjustedLangevin

    def run():
        s = make(cls, DoubleWellModel(), F64)
        return s.sample(x=torch.zeros(6, 2, dtype=F64), n_steps=23, thin=thin, return_trajectory=True,
                        return_diagnostics=True, generator=torch.Generator().manual_seed(3)), s

    (traj, diag), s = run()
    assert s.last_path == "chain"
    calls = count_op_calls(monkeypatch, cls, "analytic")
    monkeypatch.setattr(mcmc_sampler, "_FIRST_BLOCK_WORK", 1)
    monkeypatch.setattr(cls, "chain_block_seconds", 0.0)
    (traj_b, diag_b), _ = run()
    assert len(calls) >= 23  # blocks of at most one step
    assert torch.equal(traj, traj_b)
    for key in diag:
        assert torch.equal(diag[key], diag_b[key]), key


# ---- the ops' first_step ----------------------------------------------------------------------


def analytic_op_args(cls, n):
    a = torch.full((n,), 0.01, dtype=F64)
    if cls is HamiltonianMonteCarlo:
        return {"step_size": a, "n_leapfrog": 2}
    return {"a": a, "b": torch.full((n,), 0.1, dtype=F64)}


@pytest.mark.parametrize("cls", SAMPLERS)
def test_first_step_continues_the_noise_of_one_call(cls, require_path):
    require_path(cls, "chain", F64)
    op = getattr(ops, cls.algorithm.chain_op)
    x0 = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=F64)
    n, k = 9, 4
    whole = op("double_well", x0, params=[1.0, 1.0], seed=7, record_energy=True, **analytic_op_args(cls, n))
    head = op("double_well", x0, params=[1.0, 1.0], seed=7, record_energy=True, **analytic_op_args(cls, k))
    tail = op("double_well", head[0], params=[1.0, 1.0], seed=7, record_energy=True, first_step=k,
              **analytic_op_args(cls, n - k))
    assert torch.equal(whole[0], tail[0])
    assert torch.equal(whole[2], torch.cat([head[2], tail[2]]))
    # Without the offset the tail would redraw the head's noise: a different chain.
    again = op("double_well", head[0], params=[1.0, 1.0], seed=7, **analytic_op_args(cls, n - k))
    assert not torch.equal(whole[0], again[0])


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("device", ["cpu", "meta"])
@pytest.mark.parametrize("first_step, n", [(-1, 3), (2**32 - 2, 3), (2**32, 1)])
def test_a_bad_first_step_raises_naming_it(cls, device, first_step, n):
    """The kernels and the fake kernels (meta tensors) alike."""
    op = getattr(ops, cls.algorithm.chain_op)
    x0 = torch.zeros(2, 2, dtype=F64, device=device)
    with pytest.raises(RuntimeError, match=rf"{cls.algorithm.chain_op}: first_step"):
        op("double_well", x0, params=[1.0, 1.0], first_step=first_step, **analytic_op_args(cls, n))


@pytest.mark.parametrize("cls", SAMPLERS)
def test_the_mlp_ops_check_first_step(cls):
    name = cls.algorithm.mlp_chain_op
    op = getattr(mlp, name)
    x0 = torch.zeros(2, 2, dtype=F64)
    chain_model, why = mcmc_sampler.chain_model(NetEnergy(), x0, cls.algorithm)
    assert chain_model is not None and chain_model.kind == "mlp", why
    for first_step in (-1, 2**32 - 2):
        with pytest.raises(RuntimeError, match=rf"{name}: first_step"):
            op(x0=x0, first_step=first_step, **chain_model.op_args(), **analytic_op_args(cls, 3))


# ---- Ctrl-C -----------------------------------------------------------------------------------


def interrupted_after(sampler, seconds, **sample_args):
    """Sends this process SIGINT ``seconds`` into ``sampler.sample(**sample_args)``; returns the
    wall time from the signal to the KeyboardInterrupt."""
    sent = []

    def send():
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(seconds, send)
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            sampler.sample(**sample_args)
        caught = time.perf_counter()
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)
    assert sent, "the chain ended before the signal"
    return caught - sent[0]


@pytest.mark.parametrize("cls, model", [(c, "analytic") for c in SAMPLERS] + [(LangevinDynamics, "mlp")])
@pytest.mark.parametrize("device", DEVICES)
def test_ctrl_c_stops_a_long_chain_within_two_seconds(cls, model, device, require_path):
    """A chain of an hour or more in one op call (10^6 steps of 4096 chains of 64 dimensions,
    or of 8 with an MLP energy; on a GPU 2^20 chains) stops within 2 s of SIGINT. Blocks aim at
    chain_block_seconds = 0.25 s; the bound is generous because the test machine is shared and
    loaded. On a GPU the stream is idle afterwards: no queued block outlives the interrupt."""
    require_path(cls, "chain", F32)
    dim = 64 if model == "analytic" else 8
    energy = DoubleWellModel() if model == "analytic" else NetEnergy(dim=dim, width=32, dtype=F32)
    sampler = make(cls, energy.to(device), F32, step_size=1e-4)
    x = torch.randn(4096 if device == "cpu" else 2**20, dim, device=device)
    sampler.sample(x[:4], n_steps=1)  # the model is checked before the timer starts
    latency = interrupted_after(sampler, 0.5, x=x, n_steps=10**6)
    assert sampler.last_path == "chain"
    assert latency < 2.0
    if device == "cuda":
        began = time.perf_counter()
        torch.cuda.synchronize()
        assert time.perf_counter() - began < 2.0
