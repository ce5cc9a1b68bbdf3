r"""``torch.distributed`` helpers: rank queries, collectives, per-rank RNG, FSDP2 sampling.

Everything here works unchanged in a single process: without an initialised process group the
queries answer rank 0 of a world of 1, the collectives return their input, :func:`unsharded` does
nothing, and :func:`rank_seed` leaves a seed as it is. No default ``sample()`` or loss path
issues a collective; the collectives run only where a caller asks for them (gathering samples,
mixing replay buffers).

**RNG per rank.** The built-in samplers draw one 64-bit Philox key per ``sample()`` call from
the torch generator (``generator=`` or the global one) and then fold the rank into it:

.. math::
    k_r = (s + r\,\varphi) \bmod 2^{63}, \qquad \varphi = \mathtt{0x9E3779B97F4A7C15},

with :math:`s` the drawn seed and :math:`r` the rank in the default process group. Rank 0 keeps
the seed, so one process and rank 0 of any world size draw the same numbers; :math:`\varphi` is
odd, so distinct ranks get distinct keys from the same seed. The Philox counter of each number is
(element index, step), so a rank's chains depend on the seed, its rank and its own chain
count, not on the world size, the thread count or how the work is split into chunks. (The
pure-PyTorch path, which has no Philox key, draws in a world of 2 or more from a generator
seeded with :math:`k_r`.)
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator, NoReturn, Optional

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "all_gather_cat",
    "broadcast_object",
    "broadcast_tensor",
    "exit_without_finalizing",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "rank_generator",
    "rank_seed",
    "unsharded",
]

RANK_STRIDE = 0x9E3779B97F4A7C15
"""The odd constant :math:`\\varphi` (the 64-bit golden ratio) that :func:`rank_seed` adds once
per rank."""

_SEED_MODULUS = 2**63


def is_distributed() -> bool:
    """Whether ``torch.distributed`` is available and its default process group initialised."""
    return dist.is_available() and dist.is_initialized()


def get_rank(group: Optional["dist.ProcessGroup"] = None) -> int:
    """This process's rank in ``group`` (default group when None); 0 when not distributed."""
    return dist.get_rank(group) if is_distributed() else 0


def get_world_size(group: Optional["dist.ProcessGroup"] = None) -> int:
    """The number of processes in ``group`` (default group when None); 1 when not distributed."""
    return dist.get_world_size(group) if is_distributed() else 1


def rank_seed(seed: int, rank: Optional[int] = None) -> int:
    r"""The seed of rank ``rank`` for the shared seed ``seed``:
    :math:`(s + r\varphi) \bmod 2^{63}` (see the module docstring).

    Args:
        seed: any integer.
        rank: the rank to fold in; None: this process's rank in the default group.

    Returns:
        an int in ``[0, 2**63)``; ``seed mod 2**63`` for rank 0.

    Raises:
        ValueError: a negative ``rank``.
    """
    rank = get_rank() if rank is None else int(rank)
    if rank < 0:
        raise ValueError(f"rank_seed: rank must be >= 0, got {rank}")
    return (int(seed) + rank * RANK_STRIDE) % _SEED_MODULUS


def rank_generator(seed: int, device: Any = "cpu", rank: Optional[int] = None) -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`rank_seed` ``(seed, rank)``.

    What the samplers fold in covers their MCMC noise; the draws made with a generator outside
    the Philox kernels (a replay buffer's initial states, its row indices and restarts, random
    initial states, the pure-PyTorch reference path) differ per rank when the generator does:
    pass ``generator=rank_generator(seed)`` to the loss or the sampler.
    """
    return torch.Generator(device=device).manual_seed(rank_seed(seed, rank))


def _on_backend_device(t: torch.Tensor, group: Optional["dist.ProcessGroup"]) -> torch.Tensor:
    """``t`` on a device the group's backend can communicate (NCCL: the current CUDA device)."""
    if "nccl" in str(dist.get_backend(group)) and not t.is_cuda:
        return t.cuda()
    return t


def all_gather_cat(
    x: torch.Tensor, group: Optional["dist.ProcessGroup"] = None, dim: int = 0
) -> torch.Tensor:
    """Every rank's ``x`` concatenated along ``dim``, in rank order (``x`` itself when not
    distributed).

    A collective: every rank of ``group`` calls it with a tensor of the same shape and dtype
    (``[n, *rest]`` on each of ``W`` ranks gives ``[W n, *rest]`` for ``dim=0``). The result is
    detached and on ``x``'s device.
    """
    if get_world_size(group) == 1:
        return x
    local = _on_backend_device(x.detach().contiguous(), group)
    parts = [torch.empty_like(local) for _ in range(get_world_size(group))]
    dist.all_gather(parts, local, group=group)
    return torch.cat(parts, dim=dim).to(x.device)


def broadcast_object(obj: Any, src: int = 0, group: Optional["dist.ProcessGroup"] = None) -> Any:
    """Rank ``src``'s ``obj`` (any picklable object) on every rank; ``obj`` when not distributed.

    A collective; ``src`` is a global rank, as in ``torch.distributed``. The value passed on the
    other ranks is ignored.
    """
    if get_world_size(group) == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, group=group)
    return box[0]


def broadcast_tensor(
    t: torch.Tensor, src: int = 0, group: Optional["dist.ProcessGroup"] = None
) -> torch.Tensor:
    """Rank ``src``'s values of ``t`` on every rank, as a new tensor on ``t``'s device (``t``
    itself when not distributed).

    A collective without pickling: ``t`` has the same shape and dtype on every rank, and only
    ``src``'s values count.
    """
    if get_world_size(group) == 1:
        return t
    buf = _on_backend_device(t.detach().clone().contiguous(), group)
    dist.broadcast(buf, src=src, group=group)
    return buf.to(t.device)


@contextmanager
def unsharded(module: nn.Module, recurse: bool = True) -> Iterator[nn.Module]:
    """Keep an FSDP2 (``fully_shard``) module's parameters gathered inside the block.

    A chain of ``k`` steps evaluates the model and its gradient in ``x`` ``k`` times; FSDP2 by
    default all-gathers the parameters for every forward and frees them after the forward or
    after the backward pass. Inside this block the first forward gathers them and they stay
    gathered (``set_reshard_after_forward(False)`` and ``set_reshard_after_backward(False)``),
    so a chain costs one all-gather instead of ``k``, for the memory of one unsharded copy. The
    chain's backward passes take gradients in ``x`` only, so they reduce no parameter gradient.
    On exit both settings are set back to ``True`` (FSDP2's default for every module but the
    root, which gathers once more in the backward pass after that) and the parameters are
    resharded, so that an optimiser step taken next updates the shards that the next forward
    gathers again.

    For a module without ``set_reshard_after_forward`` (a plain module, a
    ``DistributedDataParallel`` wrapper, any single-process run) it does nothing. Use it around
    sampling and evaluation, not around a backward pass whose gradients the optimiser needs.

    Yields:
        ``module``.
    """
    if not hasattr(module, "set_reshard_after_forward"):
        yield module
        return
    module.set_reshard_after_forward(False, recurse=recurse)
    module.set_reshard_after_backward(False, recurse=recurse)
    try:
        yield module
    finally:
        module.set_reshard_after_forward(True, recurse=recurse)
        module.set_reshard_after_backward(True, recurse=recurse)
        for sub in module.modules() if recurse else (module,):
            if hasattr(sub, "set_reshard_after_forward"):
                sub.reshard()


def exit_without_finalizing(code: int = 0) -> NoReturn:
    """End this process with exit status ``code`` after flushing stdout and stderr, without
    the interpreter's finalization (``os._exit``): ``atexit`` handlers and object finalizers
    do not run.

    For the last line of a script run under ``torchrun`` with the gloo backend, after
    :func:`torch.distributed.destroy_process_group`. Once a ``DistributedDataParallel``
    wrapper has been built, its process group outlives ``destroy_process_group`` (torch 2.13
    keeps references to it), so the group's worker threads are never joined. A worker still
    releasing a finished collective's tensors when the interpreter finalizes asks for the GIL;
    a finalizing interpreter ends that thread instead, and the process aborts after its work
    is done ("terminate called without an active exception", exit status -6), which fails the
    whole ``torchrun`` job. Leaving without finalizing has no such race.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
