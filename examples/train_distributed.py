"""Persistent contrastive divergence on the 8-Gaussian ring, data-parallel under ``torchrun``.

Each of the ``W`` ranks (processes) holds a copy of the energy ``E_theta`` (2 -> 128 -> 128 -> 1,
SiLU), wrapped in ``DistributedDataParallel`` (default) or sharded with FSDP2's ``fully_shard``
(``--fsdp``), and its own replay buffer of ``--buffer`` chains. One training step on a rank draws
``--batch`` data points and ``--batch`` chains from its buffer, moves the chains ``--k-steps``
Langevin steps under the current model, and backpropagates

    L_r = mean E(x_data) - mean E(x_chains) + alpha (mean E(x_data)^2 + mean E(x_chains)^2);

the backward pass averages the gradients over the ranks (DDP's all-reduce, FSDP2's
reduce-scatter), so every rank takes the same optimiser step as one process on the ``W``
batches together. The sampler evaluates the unwrapped module, so the chain steps trigger no
gradient synchronisation; under FSDP2 ``unsharded`` keeps the parameters gathered for the chain.

Every random draw of a rank comes from generators seeded with ``rank_seed(seed, rank)``, and the
samplers fold the rank into their Philox key, so one ``--seed`` gives each rank its own data and
chains, reproducibly. ``--checkpoint-dir`` saves the model, the optimiser, and each rank's
buffer and generator states every ``--checkpoint-every`` steps (DDP: plain ``state_dict``
files; FSDP2: ``torch.distributed.checkpoint``); ``--resume DIR`` continues from one, giving the
same parameters as a run that was never interrupted (same world size).

    torchrun --standalone --nproc-per-node 2 examples/train_distributed.py
    torchrun --standalone --nproc-per-node 2 examples/train_distributed.py --fsdp --steps 100
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 \\
        examples/train_distributed.py          # two machines, eight GPUs each

It uses gloo on the CPU and NCCL when CUDA is available (``--device`` overrides), and prints the
throughput of each rank and the total.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from torchebm.core import MLP, EnergyModel
from torchebm.datasets import eight_gaussians
from torchebm.losses import PersistentContrastiveDivergence
from torchebm.samplers import LangevinDynamics
from torchebm.utils import load_checkpoint, save_checkpoint
from torchebm.utils.distributed import (
    all_gather_cat,
    exit_without_finalizing,
    get_rank,
    get_world_size,
    rank_generator,
    unsharded,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps (total, counting resumed ones)")
    parser.add_argument("--batch", type=int, default=256, help="data points and chains per rank per step")
    parser.add_argument("--k-steps", type=int, default=10, help="Langevin steps per training step")
    parser.add_argument("--buffer", type=int, default=4096, help="replay-buffer chains per rank")
    parser.add_argument("--hidden", type=int, default=128, help="width of the two hidden layers")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fsdp", action="store_true", help="shard the model with FSDP2 instead of DDP")
    parser.add_argument("--mix-every", type=int, default=0,
                        help="re-deal the replay buffers across ranks every N steps (0: never)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per rank (CPU)")
    parser.add_argument("--checkpoint-dir", type=Path, default=None)
    parser.add_argument("--checkpoint-every", type=int, default=0)
    parser.add_argument("--resume", type=Path, default=None, help="a checkpoint folder to continue from")
    parser.add_argument("--dump", type=Path, default=None,
                        help="write each rank's final parameters and buffer to DUMP.rank<r>.pt")
    return parser.parse_args(argv)


def setup(args: argparse.Namespace) -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment."""
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if use_cuda:
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        torch.set_num_threads(args.threads)
        device = torch.device("cpu")
    dist.init_process_group("nccl" if use_cuda else "gloo")
    return device


def build(args: argparse.Namespace, device: torch.device):
    """The model (wrapped), the sampler, the loss and the optimiser of one rank."""
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    model = EnergyModel(MLP(2, [args.hidden, args.hidden])).to(device)
    if args.fsdp:
        from torch.distributed.fsdp import fully_shard

        for layer in model.network.layers:
            if isinstance(layer, torch.nn.Linear):
                fully_shard(layer)
        fully_shard(model)
        trained = model
    else:
        trained = DistributedDataParallel(model)
    # The sampler evaluates the module itself: its chain steps take gradients in x only, and
    # must not enter DDP's forward (which would prepare a gradient all-reduce for every step).
    sampler = LangevinDynamics(model, step_size=0.01, noise_scale=1.0)
    loss_fn = PersistentContrastiveDivergence(
        model=trained,
        sampler=sampler,
        k_steps=args.k_steps,
        buffer_size=args.buffer,
        new_sample_ratio=0.05,
        energy_reg_weight=1e-4,
        buffer_init="uniform",
        buffer_init_scale=3.0,
    )
    optimizer = torch.optim.Adam(trained.parameters(), lr=args.lr, betas=(0.0, 0.999))
    return model, trained, sampler, loss_fn, optimizer


def rank_state(loss_fn, generators: dict, step: int) -> dict:
    """What differs between ranks: the replay buffer, the generators, the step."""
    return {
        "step": step,
        "replay_buffer": loss_fn.replay_buffer,
        "buffer_ptr": loss_fn.buffer_ptr,
        "generators": {name: g.get_state() for name, g in generators.items()},
        "torch_rng": torch.get_rng_state(),
    }


def checkpoint(folder: Path, step: int, args, model, trained, loss_fn, optimizer, generators) -> None:
    """``folder/step_<step>``: the model and optimiser (DDP: rank 0's
    :func:`torchebm.utils.save_checkpoint` file; FSDP2: every rank's shards through
    ``torch.distributed.checkpoint``), each rank's own state in ``rank<r>.pt``, then a
    ``complete`` marker written by rank 0 once every rank has finished."""
    target = folder / f"step_{step}"
    rank = get_rank()
    if rank == 0:
        target.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    if args.fsdp:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict

        model_state, optim_state = get_state_dict(model, optimizer)
        dcp.save({"model": model_state, "optim": optim_state}, checkpoint_id=target / "sharded")
    elif rank == 0:
        save_checkpoint(trained, optimizer, step, str(target))  # the module's state, unwrapped
    torch.save(rank_state(loss_fn, generators, step), target / f"rank{rank}.pt")
    dist.barrier()
    if rank == 0:
        (target / "complete").touch()


def resume(target: Path, args, device, model, trained, loss_fn, optimizer, generators) -> int:
    """Restore what :func:`checkpoint` wrote; returns the step to continue from."""
    if not (target / "complete").exists():
        raise FileNotFoundError(f"--resume {target}: not a complete checkpoint (no 'complete' marker)")
    rank = get_rank()
    mine = torch.load(target / f"rank{rank}.pt", map_location="cpu", weights_only=True)
    if args.fsdp:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optim": optim_state}
        dcp.load(state, checkpoint_id=target / "sharded")
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    else:
        load_checkpoint(str(target / f"{mine['step']:07d}.pt"), trained, optimizer=optimizer, device=device)
    loss_fn.load_state_dict(
        {"replay_buffer": mine["replay_buffer"], "buffer_ptr": mine["buffer_ptr"]}, strict=False
    )
    for name, g in generators.items():
        g.set_state(mine["generators"][name])
    torch.set_rng_state(mine["torch_rng"])
    return int(mine["step"])


def full_parameters(model) -> dict:
    """Every parameter as a whole tensor on the CPU (gathered from the shards under FSDP2)."""
    out = {}
    for name, p in model.named_parameters():
        p = p.detach()
        if hasattr(p, "full_tensor"):
            p = p.full_tensor()
        out[name] = p.cpu()
    return out


def main(argv=None) -> None:
    args = parse_args(argv)
    device = setup(args)
    rank, world = get_rank(), get_world_size()
    model, trained, sampler, loss_fn, optimizer = build(args, device)
    # Data and chain generators: one seed, a different stream on every rank.
    # The mixer draws the shared permutation of --mix-every (read on rank 0 only).
    generators = {
        "data": rank_generator(args.seed, "cpu"),
        "chains": rank_generator(args.seed + 1, device),
        "mixer": torch.Generator().manual_seed(args.seed + 2),
    }
    start = 0
    if args.resume is not None:
        start = resume(args.resume, args, device, model, trained, loss_fn, optimizer, generators)

    elapsed, timed_steps = 0.0, 0
    for step in range(start, args.steps):
        x = eight_gaussians(args.batch, generator=generators["data"]).to(device)
        begin = time.perf_counter()
        # Under FSDP2 the chain's k forward passes share one all-gather of the parameters.
        with unsharded(model):
            loss, _ = loss_fn(x, generator=generators["chains"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if args.mix_every and (step + 1) % args.mix_every == 0:
            loss_fn.mix_buffer_across_ranks(generator=generators["mixer"])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step > start:  # the first step pays for set-up (buffer creation, kernel choice)
            elapsed += time.perf_counter() - begin
            timed_steps += 1
        if args.checkpoint_dir is not None and args.checkpoint_every and (step + 1) % args.checkpoint_every == 0:
            checkpoint(args.checkpoint_dir, step + 1, args, model, trained, loss_fn, optimizer, generators)

    # Throughput: chain steps (chains x Langevin steps) per second, per rank and in total.
    rate = torch.tensor([timed_steps / elapsed if elapsed else 0.0,
                         timed_steps * args.batch * args.k_steps / elapsed if elapsed else 0.0],
                        dtype=torch.float64)
    rates = all_gather_cat(rate.unsqueeze(0).to(device)).cpu()
    if rank == 0:
        mode = "FSDP2" if args.fsdp else "DDP"
        print(f"{mode} on {world} rank(s), backend {dist.get_backend()}, device {device.type}, "
              f"batch {args.batch}/rank, k={args.k_steps}, {timed_steps} timed steps")
        for r, (steps_s, chain_s) in enumerate(rates.tolist()):
            print(f"rank {r}: {steps_s:8.2f} steps/s  {chain_s:12.0f} chain steps/s")
        print(f"total: {float(rates[:, 1].sum()):12.0f} chain steps/s  "
              f"({float(rates[:, 0].min()):.2f} synchronous steps/s)")
    if args.dump is not None:
        torch.save({"params": full_parameters(model), "replay_buffer": loss_fn.replay_buffer.cpu()},
                   f"{args.dump}.rank{rank}.pt")
    dist.barrier()  # every rank done with every collective before any tears down
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
    exit_without_finalizing()  # under DDP, gloo's threads outlive the group: see its docstring
