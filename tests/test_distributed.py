"""Sampling and EBM training on ``torch.distributed``: gloo, 2 processes on the CPU.

Each multi-process test launches ``torchrun --standalone`` (a free port of its own) with this file
as the script of every rank (``python -m torch.distributed.run ... tests/test_distributed.py
<scenario> <folder>``; see ``_worker_main``). The ranks write what they computed to
``<folder>/rank<r>.pt`` and the test, in the pytest process, compares it with what one process
computes. Every launch has a timeout, after which its process group is killed and the test fails
with the output so far.

The pytest process emulates a rank by reporting that rank from
``torchebm.utils.distributed.get_rank`` (and a world of 2 where the pure-PyTorch path asks): the
per-rank streams are a function of (seed, rank) only, so one process can run every rank's share.
It samples with two intra-op threads where the ranks used one (the kernels' own tests cover
thread counts on large batches).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import torchebm.diagnostics as diagnostics
from torchebm.core import MLP, EnergyModel, GaussianModel
from torchebm.losses import ContrastiveDivergence, PersistentContrastiveDivergence
from torchebm.samplers import MALA, LangevinDynamics
from torchebm.utils import distributed as tdist

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "train_distributed.py"
WORLD = 2
LAUNCH_TIMEOUT = 300  # s; a launch takes about 20 s on an idle 2-core machine
SEED = 1234
CHAINS_PER_RANK = 16
N_DRAWS = 40
BATCH_PER_RANK = 8


# ----------------------------------------------------------------------------- what ranks compute


def sample_chains(seed: int) -> dict:
    """This rank's chains from ``torch.manual_seed(seed)``: MALA on a 2-D Gaussian through the
    whole-chain kernel (trajectory ``[C, N_DRAWS, 2]`` and per-step acceptance ``[N_DRAWS]``),
    and 5 Langevin steps on the pure-PyTorch path (``[C, 2]``)."""
    model = GaussianModel(torch.zeros(2), torch.tensor([[1.0, 0.5], [0.5, 2.0]]))
    torch.manual_seed(seed)
    mala = MALA(model, step_size=0.4)
    trajectory, diag = mala.sample(
        dim=2, n_samples=CHAINS_PER_RANK, n_steps=N_DRAWS, return_trajectory=True, return_diagnostics=True
    )
    reference = LangevinDynamics(model, step_size=0.1, backend="reference")
    start = torch.zeros(CHAINS_PER_RANK, 2)
    return {
        "trajectory": trajectory,
        "acceptance": diag["acceptance_rate"],
        "path": mala.last_path,
        "reference": reference.sample(x=start, n_steps=5),
    }


def pooled_diagnostics(trajectories: torch.Tensor, acceptance: torch.Tensor) -> dict:
    """ESS and R-hat of the pooled draws ``[W C, N, 2]`` (ArviZ's definitions, in
    :mod:`torchebm.diagnostics`) and the acceptance rate over all chains per step (the mean of the
    ranks' rates ``[W, N]``: every rank runs the same number of chains)."""
    return {
        "ess": diagnostics.ess(trajectories),
        "rhat": diagnostics.rhat(trajectories),
        "acceptance": acceptance.mean(dim=0),
    }


def small_energy() -> EnergyModel:
    """The same 2 -> 16 -> 16 -> 1 MLP energy in every process (seeded)."""
    torch.manual_seed(0)
    return EnergyModel(MLP(2, [16, 16]))


def fixed_batches() -> tuple[torch.Tensor, torch.Tensor]:
    """Data and negatives for all ranks, ``[W B, 2]`` each; rank ``r`` takes rows ``rB..rB+B``."""
    g = torch.Generator().manual_seed(99)
    return torch.randn(WORLD * BATCH_PER_RANK, 2, generator=g), torch.randn(WORLD * BATCH_PER_RANK, 2, generator=g)


def cd_loss(model: torch.nn.Module, sampler_model: torch.nn.Module) -> ContrastiveDivergence:
    return ContrastiveDivergence(
        model=model, sampler=LangevinDynamics(sampler_model, step_size=0.01), energy_reg_weight=0.1
    )


def assert_ranks_match_whole_batch(ranks: list[dict], kind: str) -> None:
    """The ranks' ``{kind}_loss`` average to the loss of one process on the whole batch, and
    every rank's ``{kind}_grads`` equal that process's gradients (equal batches: the whole
    batch's loss is the mean of the ranks' losses, and DDP/FSDP average the ranks' gradients)."""
    model = small_energy()
    x_all, neg_all = fixed_batches()
    loss = cd_loss(model, model).compute_loss(x_all, neg_all)
    loss.backward()
    mean_loss = torch.stack([saved[f"{kind}_loss"] for saved in ranks]).mean()
    torch.testing.assert_close(mean_loss, loss.detach())
    for saved in ranks:
        for got, want in zip(saved[f"{kind}_grads"], (p.grad for p in model.parameters())):
            torch.testing.assert_close(got, want)


# ----------------------------------------------------------------------------- rank scenarios


def _scenario_ddp(out: Path) -> None:
    import torch.distributed as dist
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    from torch.nn.parallel import DistributedDataParallel

    rank = tdist.get_rank()
    result: dict = {"world": tdist.get_world_size(), "is_distributed": tdist.is_distributed()}

    # Collectives.
    result["gathered"] = tdist.all_gather_cat(torch.full((2, 3), float(rank)))
    result["object"] = tdist.broadcast_object({"from": rank})
    result["tensor"] = tdist.broadcast_tensor(torch.full((3,), rank + 5.0))

    # The same seed on every rank, twice.
    result["chains"] = [sample_chains(SEED), sample_chains(SEED)]
    mine = result["chains"][0]
    result["pooled"] = pooled_diagnostics(
        tdist.all_gather_cat(mine["trajectory"]), tdist.all_gather_cat(mine["acceptance"].unsqueeze(0))
    )

    # DDP: sampling sends nothing; the loss's backward all-reduces; loss and gradient with fixed
    # negatives.
    model = small_energy()
    ddp = DistributedDataParallel(model)
    reductions = []

    def counting_hook(state, bucket):
        reductions.append(bucket.index())
        return allreduce_hook(state, bucket)

    ddp.register_comm_hook(None, counting_hook)
    loss_fn = cd_loss(ddp, model)
    x_all, neg_all = fixed_batches()
    rows = slice(rank * BATCH_PER_RANK, (rank + 1) * BATCH_PER_RANK)
    loss_fn.sampler.sample(x=x_all[rows], n_steps=5)
    result["reductions_while_sampling"] = len(reductions)
    result["grads_after_sampling"] = [p.grad for p in model.parameters()]
    loss = loss_fn.compute_loss(x_all[rows], neg_all[rows])
    loss.backward()
    result["reductions_in_backward"] = len(reductions)
    result["ddp_loss"] = loss.detach()
    result["ddp_grads"] = [p.grad.clone() for p in model.parameters()]

    # PCD training steps, then one mixing of the buffers.
    model = small_energy()
    ddp = DistributedDataParallel(model)
    pcd = PersistentContrastiveDivergence(
        model=ddp, sampler=LangevinDynamics(model, step_size=0.01), k_steps=5, buffer_size=64
    )
    optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-2)
    data = tdist.rank_generator(SEED)
    chains = tdist.rank_generator(SEED + 1)
    for _ in range(3):
        loss, _ = pcd(torch.randn(BATCH_PER_RANK, 2, generator=data), generator=chains)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    result["pcd_path"] = pcd.sampler.last_path
    result["params"] = [p.detach().clone() for p in model.parameters()]
    result["buffer_before_mixing"] = pcd.replay_buffer.clone()
    pcd.mix_buffer_across_ranks(generator=torch.Generator().manual_seed(5))
    result["buffer_after_mixing"] = pcd.replay_buffer.clone()
    dist.barrier()
    torch.save(result, out / f"rank{rank}.pt")


def _scenario_fsdp(out: Path) -> None:
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    rank = tdist.get_rank()
    result: dict = {}
    gathers = []
    all_gather_single = dist.all_gather_single

    def counting_all_gather(*args, **kwargs):
        gathers.append(1)
        return all_gather_single(*args, **kwargs)

    dist.all_gather_single = counting_all_gather  # what FSDP2 calls for its parameter all-gather
    model = small_energy()
    fully_shard(model)
    loss_fn = cd_loss(model, model)
    x_all, neg_all = fixed_batches()
    rows = slice(rank * BATCH_PER_RANK, (rank + 1) * BATCH_PER_RANK)
    for held in (False, True):
        before = len(gathers)
        if held:
            with tdist.unsharded(model):
                loss_fn.sampler.sample(x=x_all[rows], n_steps=6)
        else:
            loss_fn.sampler.sample(x=x_all[rows], n_steps=6)
        result[f"gathers_unsharded={held}"] = len(gathers) - before
    result["grads_after_sampling"] = [p.grad for p in model.parameters()]
    result["path"] = loss_fn.sampler.last_path
    loss = loss_fn.compute_loss(x_all[rows], neg_all[rows])
    loss.backward()
    result["fsdp_loss"] = loss.detach()
    result["fsdp_grads"] = [p.grad.full_tensor() for p in model.parameters()]
    dist.barrier()
    torch.save(result, out / f"rank{rank}.pt")


def _scenario_fail(out: Path) -> None:
    import torch.distributed as dist

    if tdist.get_rank() == 1:
        raise ValueError("rank 1 fails on purpose")
    dist.barrier()  # rank 0 waits here for a rank that never comes


def _worker_main(scenario: str, out: Path) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        {"ddp": _scenario_ddp, "fsdp": _scenario_fsdp, "fail": _scenario_fail}[scenario](out)
    finally:
        dist.destroy_process_group()
    tdist.exit_without_finalizing()


# ----------------------------------------------------------------------------- launching


def start_torchrun(args: list, nproc: int = WORLD) -> subprocess.Popen:
    """Start ``torchrun --standalone --nproc-per-node nproc <args>``, output piped."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *map(str, args)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def kill_job(proc: subprocess.Popen) -> str:
    """SIGKILL ``torchrun`` and every process under it (its workers run in sessions of their
    own, so a process-group kill would miss them); returns the job's output."""

    def tree(pid: int) -> list:
        children = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                children += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
        return [pid] + [p for c in children for p in tree(c)]

    for pid in tree(proc.pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.communicate()[0]


def torchrun(args: list, timeout: float = LAUNCH_TIMEOUT, nproc: int = WORLD) -> tuple[int, str, float]:
    """Run ``torchrun --standalone --nproc-per-node nproc <args>``; returns (exit status, output,
    seconds). Past ``timeout`` the job is killed and the test fails."""
    begin = time.monotonic()
    proc = start_torchrun(args, nproc)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"torchrun {args} did not finish within {timeout} s; its output:\n{kill_job(proc)}")
    return proc.returncode, output, time.monotonic() - begin


def run_scenario(scenario: str, folder: Path) -> list:
    """Launch ``scenario`` on ``WORLD`` ranks; returns what each rank saved."""
    code, output, _ = torchrun([Path(__file__), scenario, folder])
    assert code == 0, f"scenario {scenario} failed:\n{output}"
    return [torch.load(folder / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.fixture(scope="module")
def ddp_ranks(tmp_path_factory):
    return run_scenario("ddp", tmp_path_factory.mktemp("ddp"))


@pytest.fixture
def as_rank(monkeypatch):
    """``as_rank(r, world=WORLD)``: this process reports rank ``r`` of ``world``, to the seed
    folding."""

    def become(rank: int, world: int = WORLD) -> None:
        monkeypatch.setattr(tdist, "get_rank", lambda group=None: rank)
        monkeypatch.setattr("torchebm.core.base_sampler.get_world_size", lambda group=None: world)

    return become


# ----------------------------------------------------------------------------- one process


def test_every_helper_works_in_one_process():
    assert not tdist.is_distributed()
    assert (tdist.get_rank(), tdist.get_world_size()) == (0, 1)
    x = torch.randn(3, 2)
    assert tdist.all_gather_cat(x) is x
    assert tdist.broadcast_object({"a": 1}) == {"a": 1}
    assert tdist.broadcast_tensor(x) is x
    net = torch.nn.Linear(2, 1)
    with tdist.unsharded(net) as inside:
        assert inside is net
    assert tdist.rank_seed(SEED) == SEED
    assert torch.equal(
        torch.randn(4, generator=tdist.rank_generator(SEED)), torch.randn(4, generator=torch.Generator().manual_seed(SEED))
    )
    energy = small_energy()
    pcd = PersistentContrastiveDivergence(model=energy, sampler=LangevinDynamics(energy), buffer_size=8, init_steps=0)
    with pytest.raises(RuntimeError, match="replay buffer exists"):
        pcd.mix_buffer_across_ranks()
    pcd.initialize_buffer((2,))
    before = pcd.replay_buffer.clone()
    pcd.mix_buffer_across_ranks()
    assert torch.equal(pcd.replay_buffer, before)


def test_rank_seed_gives_distinct_keys_and_keeps_rank_zero():
    for seed in (0, 1, SEED, 2**63 - 1):
        keys = {tdist.rank_seed(seed, r) for r in range(4096)}
        assert len(keys) == 4096
        assert tdist.rank_seed(seed, 0) == seed
        assert all(0 <= k < 2**63 for k in keys)
    with pytest.raises(ValueError, match="rank must be >= 0, got -1"):
        tdist.rank_seed(SEED, -1)


def test_sampler_seed_depends_on_the_rank(as_rank):
    rank0 = sample_chains(SEED)
    as_rank(1)
    rank1 = sample_chains(SEED)
    assert rank0["path"] == rank1["path"] == "chain"
    assert not torch.equal(rank0["trajectory"], rank1["trajectory"])
    assert not torch.equal(rank0["reference"], rank1["reference"])


# ----------------------------------------------------------------------------- two processes


def test_collectives_over_two_ranks(ddp_ranks):
    for rank, saved in enumerate(ddp_ranks):
        assert saved["world"] == WORLD and saved["is_distributed"]
        assert torch.equal(saved["gathered"], torch.tensor([0.0, 1.0]).repeat_interleave(2)[:, None].expand(4, 3))
        assert saved["object"] == {"from": 0}
        assert torch.equal(saved["tensor"], torch.full((3,), 5.0))


def test_same_seed_gives_each_rank_its_own_chains_and_a_rerun_repeats_them(ddp_ranks):
    for saved in ddp_ranks:
        first, rerun = saved["chains"]
        assert first["path"] == "chain"
        for key in ("trajectory", "acceptance", "reference"):
            assert torch.equal(first[key], rerun[key]), key
    rank0, rank1 = (saved["chains"][0] for saved in ddp_ranks)
    assert not torch.equal(rank0["trajectory"], rank1["trajectory"])
    assert not torch.equal(rank0["reference"], rank1["reference"])


def test_each_rank_is_one_process_with_that_rank_stream(ddp_ranks, as_rank):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # the ranks ran one intra-op thread each
    try:
        for rank, saved in enumerate(ddp_ranks):
            as_rank(rank)
            here = sample_chains(SEED)
            for key in ("trajectory", "acceptance", "reference"):
                assert torch.equal(here[key], saved["chains"][0][key]), (rank, key)
    finally:
        torch.set_num_threads(threads)


def test_kernel_chains_of_rank_zero_are_those_of_one_process_for_any_world_size(ddp_ranks, as_rank):
    alone = sample_chains(SEED)
    assert torch.equal(alone["trajectory"], ddp_ranks[0]["chains"][0]["trajectory"])
    as_rank(1, world=3)
    assert torch.equal(sample_chains(SEED)["trajectory"], ddp_ranks[1]["chains"][0]["trajectory"])


def test_diagnostics_over_ranks_equal_one_process(ddp_ranks, as_rank):
    runs = []
    for rank in range(WORLD):
        as_rank(rank)
        runs.append(sample_chains(SEED))
    single = pooled_diagnostics(
        torch.cat([run["trajectory"] for run in runs]), torch.stack([run["acceptance"] for run in runs])
    )
    pooled = ddp_ranks[0]["pooled"]
    assert pooled["ess"].shape == (2,) and pooled["rhat"].shape == (2,)
    for key in ("ess", "rhat", "acceptance"):
        torch.testing.assert_close(pooled[key], single[key], rtol=0, atol=0)
        torch.testing.assert_close(ddp_ranks[1]["pooled"][key], single[key], rtol=0, atol=0)


def test_ddp_loss_and_gradient_equal_one_process_on_the_whole_batch(ddp_ranks):
    assert_ranks_match_whole_batch(ddp_ranks, "ddp")


def test_ddp_sampling_sends_nothing_and_backward_all_reduces(ddp_ranks):
    for saved in ddp_ranks:
        assert saved["reductions_while_sampling"] == 0
        assert all(g is None for g in saved["grads_after_sampling"])
        assert saved["reductions_in_backward"] >= 1


def test_parameters_identical_on_every_rank_after_pcd_steps(ddp_ranks):
    rank0, rank1 = ddp_ranks
    assert rank0["pcd_path"] == "chain"  # the sampler holds the module: the MLP chain kernel runs
    initial = [p.detach() for p in small_energy().parameters()]
    assert any(not torch.equal(p, q) for p, q in zip(rank0["params"], initial))
    for p, q in zip(rank0["params"], rank1["params"]):
        assert torch.equal(p, q)
    assert not torch.equal(rank0["buffer_before_mixing"], rank1["buffer_before_mixing"])


def test_buffer_mixing_redeals_every_chain_once(ddp_ranks):
    def rows(key):
        pooled = torch.cat([saved[key] for saved in ddp_ranks])
        return sorted(map(tuple, pooled.tolist()))

    assert rows("buffer_before_mixing") == rows("buffer_after_mixing")
    for saved in ddp_ranks:
        assert not torch.equal(saved["buffer_before_mixing"], saved["buffer_after_mixing"])


def test_exit_without_finalizing_flushes_and_skips_finalization():
    script = (
        "import atexit, sys\n"
        "from torchebm.utils.distributed import exit_without_finalizing\n"
        "atexit.register(lambda: print('atexit ran'))\n"
        "print('out', end='')\n"
        "print('err', end='', file=sys.stderr)\n"
        "exit_without_finalizing(3)\n"
        "print('not reached')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out", "err")


def test_a_failing_rank_ends_the_job_with_its_error(tmp_path):
    timeout = 120
    code, output, seconds = torchrun([Path(__file__), "fail", tmp_path], timeout=timeout)
    assert code != 0
    assert "rank 1 fails on purpose" in output
    assert seconds < timeout


@pytest.mark.slow
def test_fsdp2_on_gloo(tmp_path):
    ranks = run_scenario("fsdp", tmp_path)
    assert_ranks_match_whole_batch(ranks, "fsdp")
    for saved in ranks:
        # A chain of 6 steps: 6 forwards, each gathering the parameters, or one gather held.
        assert saved["gathers_unsharded=False"] == 6
        assert saved["gathers_unsharded=True"] == 1
        assert saved["path"] == "fused"  # sharded parameters: no whole-chain kernel
        assert all(g is None for g in saved["grads_after_sampling"])


# ----------------------------------------------------------------------------- the example


EXAMPLE_SIZES = ["--batch", 16, "--buffer", 64, "--k-steps", 4, "--hidden", 16, "--mix-every", 2]


def run_example(tmp_path: Path, name: str, *options, timeout: float = LAUNCH_TIMEOUT) -> tuple[list, str]:
    dump = tmp_path / name
    code, output, _ = torchrun([EXAMPLE, *EXAMPLE_SIZES, "--steps", 6, "--dump", dump, *options], timeout=timeout)
    assert code == 0, output
    return [torch.load(f"{dump}.rank{r}.pt") for r in range(WORLD)], output


def assert_same_params(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_example_resumed_after_a_kill_equals_uninterrupted(tmp_path, mode):
    options = ["--fsdp"] if mode == "fsdp" else []
    uninterrupted, output = run_example(tmp_path, "whole", *options)
    assert "total:" in output and "rank 1:" in output
    for saved in uninterrupted[1:]:
        assert_same_params(saved["params"], uninterrupted[0]["params"])

    # A run that checkpoints at step 3 and is killed (SIGKILL to every process) while it trains
    # on; the resumed run continues from step 3 to step 6.
    folder = tmp_path / "checkpoints"
    proc = start_torchrun(
        [EXAMPLE, *EXAMPLE_SIZES, "--steps", 10**6, "--checkpoint-dir", folder, "--checkpoint-every", 3, *options]
    )
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while not (folder / "step_3" / "complete").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no checkpoint at step 3:\n{kill_job(proc)}")
        time.sleep(0.2)
    kill_job(proc)
    resumed, _ = run_example(tmp_path, "resumed", "--resume", folder / "step_3", *options)
    for got, want in zip(resumed, uninterrupted):
        assert_same_params(got["params"], want["params"])
        assert torch.equal(got["replay_buffer"], want["replay_buffer"])


if __name__ == "__main__":
    _worker_main(sys.argv[1], Path(sys.argv[2]))
