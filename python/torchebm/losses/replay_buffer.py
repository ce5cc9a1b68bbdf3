"""The replay buffer of persistent contrastive divergence, as tensor operations.

A replay buffer is a tensor ``B`` of ``N`` stored chain states, ``[N, *event_shape]``, and a
write pointer ``p`` (a long scalar tensor), both living on the data's device (under
``torch.distributed``, one buffer per rank; :func:`mix_across_ranks` exchanges chains between
them on request). One training step uses it in two moves (Tieleman 2008; Du & Mordatch 2019; Grathwohl et al. 2020):

1. **draw** ``n`` start points: rows ``B[i_1..i_n]`` at distinct random indices (see
   :func:`draw_indices`); then each row independently, with probability ``rho`` (the
   reinitialisation probability), is replaced by a fresh draw from the initial distribution
   ``p_0``, so chains that have drifted into spurious modes are restarted and the buffer keeps
   exploring::

       s_j = m_j * z_j + (1 - m_j) * B[i_j],   m_j ~ Bernoulli(rho),   z_j ~ p_0;

2. **write** the ``n`` states the sampler returns, first in first out::

       B[(p + j) mod N] <- x_j   (j = 0..n-1),   p <- (p + n) mod N.

Both moves are a fixed sequence of tensor kernels: nothing reads a tensor value back to the
host and no Python branch depends on one, so a CUDA training step never synchronises here.
The owner of the tensors (``BaseContrastiveDivergence``) registers them as the module buffers
``replay_buffer`` and ``buffer_ptr``, so ``state_dict``, ``load_state_dict`` and ``.to()`` carry
them.

``p_0`` is ``"normal"`` (``N(0, s^2 I)``), ``"uniform"`` (``U[-s, s]`` per coordinate), or a
callable ``init(n, generator) -> Tensor[n, *event_shape]`` for anything else (e.g.
``lambda n, g: torch.rand(n, 3, 32, 32, generator=g)`` for images in ``[0, 1]``).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import torch

from torchebm.utils.distributed import all_gather_cat, broadcast_tensor, get_rank, get_world_size

BufferInit = Union[str, Callable[[int, Optional[torch.Generator]], torch.Tensor]]

__all__ = [
    "BufferInit",
    "check_buffer_init",
    "draw_indices",
    "fifo_write",
    "fresh_states",
    "mix_across_ranks",
    "reinitialise",
]

_INIT_NAMES = ("normal", "uniform")


def check_buffer_init(init: BufferInit) -> BufferInit:
    """Return ``init`` if it is ``"normal"``, ``"uniform"`` or a callable, else raise ``ValueError``."""
    if callable(init) or init in _INIT_NAMES:
        return init
    raise ValueError(
        f"buffer_init must be 'normal', 'uniform' or a callable (n, generator) -> Tensor, "
        f"got {init!r}"
    )


def fresh_states(
    init: BufferInit,
    n: int,
    event_shape: Sequence[int],
    *,
    scale: float,
    generator: Optional[torch.Generator],
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """``n`` draws from the initial distribution ``p_0``, as Tensor[n, *event_shape].

    ``"normal"``: ``scale * N(0, I)``; ``"uniform"``: ``U[-scale, scale]``; a callable is called
    as ``init(n, generator)`` and its result is moved to ``device``/``dtype`` and shape-checked.
    """
    shape = (n, *event_shape)
    if init == "normal":
        return scale * torch.randn(shape, generator=generator, device=device, dtype=dtype)
    if init == "uniform":
        u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
        return scale * (2 * u - 1)
    out = init(n, generator)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"buffer_init callable must return a tensor of shape {shape} for n={n}, got {got}"
        )
    return out.to(device=device, dtype=dtype)


def draw_indices(
    capacity: int, n: int, *, generator: Optional[torch.Generator], device: torch.device
) -> torch.Tensor:
    """``n`` random row indices into a buffer of ``capacity`` rows, LongTensor[n].

    For ``n <= capacity`` the indices are distinct and each row is drawn with probability
    ``n / capacity``: the rows are cut into ``n`` strata of ``q = capacity // n`` consecutive
    indices, one index is drawn uniformly in each, and all are rotated by one uniform offset
    ``o``: ``i_j = (o + j q + u_j) mod capacity``, ``u_j ~ U{0..q-1}``. (Distinct indices keep
    one stored chain from being continued twice in a step; the rotation makes the rows past
    ``n q`` reachable.) For ``n > capacity`` rows are drawn with replacement.
    """
    if n > capacity:
        return torch.randint(capacity, (n,), generator=generator, device=device)
    stride = capacity // n
    offset = torch.randint(capacity, (1,), generator=generator, device=device)
    within = torch.randint(stride, (n,), generator=generator, device=device)
    return (offset + torch.arange(n, device=device) * stride + within) % capacity


def reinitialise(
    start: torch.Tensor, fresh: torch.Tensor, prob: float, generator: Optional[torch.Generator]
) -> torch.Tensor:
    """Replace each row of ``start`` [n, ...] by the same row of ``fresh`` with probability
    ``prob``, independently: ``m_j ~ Bernoulli(prob)``, ``s_j = fresh_j if m_j else start_j``."""
    n = start.shape[0]
    mask = torch.rand(n, generator=generator, device=start.device) < prob
    return torch.where(mask.view(n, *([1] * (start.dim() - 1))), fresh, start)


def fifo_write(storage: torch.Tensor, ptr: torch.Tensor, samples: torch.Tensor) -> None:
    """Write ``samples`` [n, ...] into ``storage`` [N, ...] at the pointer, in place.

    ``storage[(ptr + j) mod N] = samples[j]`` and ``ptr <- (ptr + n) mod N``. When ``n >= N``
    only the last ``N`` samples fit: they fill the buffer in order and the pointer goes to 0.
    """
    capacity, n = storage.shape[0], samples.shape[0]
    samples = samples.detach().to(storage.dtype)
    if n >= capacity:
        storage.copy_(samples[n - capacity:])
        ptr.zero_()
        return
    positions = (ptr + torch.arange(n, device=storage.device)) % capacity
    storage.index_copy_(0, positions, samples)
    ptr.copy_((ptr + n) % capacity)


def mix_across_ranks(
    storage: torch.Tensor,
    generator: Optional[torch.Generator] = None,
    group: Optional["torch.distributed.ProcessGroup"] = None,
) -> None:
    """Deal the chains of every rank's buffer out again at random, in place (a collective).

    With ``W`` ranks each holding ``storage`` ``[N, *event]``, the ``W N`` pooled rows
    ``P = cat(storage_0, ..., storage_{W-1})`` are permuted by one permutation ``pi`` of
    ``{0..WN-1}``, drawn on rank 0 with ``torch.randperm`` from ``generator`` (a CPU generator,
    read on rank 0 only; the global RNG when None) and broadcast, and rank ``r`` keeps rows
    ``P[pi[rN : (r+1)N]]``: no chain is lost or duplicated. Every rank must call it together
    with the same ``N``. The write pointer is not touched. Does nothing in a single process.
    """
    world = get_world_size(group)
    if world == 1:
        return
    pooled = all_gather_cat(storage, group=group)
    if get_rank(group) == 0:
        perm = torch.randperm(pooled.shape[0], generator=generator)
    else:
        perm = torch.empty(pooled.shape[0], dtype=torch.long)
    src = 0 if group is None else torch.distributed.get_global_rank(group, 0)
    perm = broadcast_tensor(perm, src=src, group=group).to(storage.device)
    n = storage.shape[0]
    start = get_rank(group) * n
    storage.copy_(pooled[perm[start:start + n]])
