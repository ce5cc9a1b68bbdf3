r"""The operations on MCMC draws that ESS, MCSE and :math:`\hat R` share.

Draws come as ``[chain, draw, *event]`` (ArviZ's layout, and that of a sampler's trajectory
``sample(..., return_trajectory=True)``). Internally every event element is one row: ``y`` is a
float64 tensor ``[E, m, n]`` (``E`` event elements, ``m`` chains, ``n`` draws) on the draws'
device, and each function below works on all rows at once.

- :func:`split_chains`: chain halves as chains, ``[E, m, n] -> [E, 2m, n // 2]`` (the first
  ``n // 2`` and the last ``n // 2`` draws; the middle draw of an odd ``n`` is dropped).
- :func:`z_scale`: rank normalisation (Vehtari et al. 2021). With :math:`r` the average rank
  (ties share the mean of their ranks) of a draw among all :math:`S = mn` draws of its row,
  :math:`z = \Phi^{-1}\big((r - 3/8) / (S + 1/4)\big)` (Blom's fractional offset
  :math:`c = 3/8`, :math:`(r - c)/(S - 2c + 1)`).
- :func:`median`: the mean of the two middle values for an even count (not the lower one).
- :func:`quantile`: the type-7 quantile (linear interpolation between order statistics):
  with :math:`h = Sp + 1 - p` and :math:`k = \min(\max(\lfloor h\rfloor, 1), S-1)`,
  :math:`g = \min(\max(h - k, 0), 1)`, the quantile is :math:`(1-g)\,y_{(k)} + g\,y_{(k+1)}`.
- :func:`autocovariance`: the biased autocovariance
  :math:`\hat\gamma(t) = \frac1n\sum_{i<n-t}(y_i-\bar y)(y_{i+t}-\bar y)` of every chain at every
  lag, by a zero-padded (linear, not circular) FFT.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

Draws = Union[torch.Tensor, Sequence]


def as_draws(
    draws: Draws, *, min_draws: int = 4, min_chains: int = 1, what: str = "diagnostic"
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``draws`` ``[m, n, *event]`` as float64 ``[E, m, n]`` on its own device, and the event
    shape.

    Raises:
        ValueError: fewer than 2 dimensions, fewer than ``min_chains`` chains or fewer than
            ``min_draws`` draws per chain (named with the shape).
    """
    if not isinstance(draws, torch.Tensor):
        draws = torch.as_tensor(draws)
    if draws.dim() < 2:
        raise ValueError(
            f"draws must have shape [n_chains, n_draws, *event], got shape {tuple(draws.shape)}"
        )
    m, n = draws.shape[:2]
    if m < min_chains or n < min_draws:
        raise ValueError(
            f"{what} needs draws of at least {min_chains} chain(s) of at least {min_draws} draws, "
            f"got draws of shape {tuple(draws.shape)} ([n_chains, n_draws, *event])"
        )
    event = tuple(draws.shape[2:])
    y = draws.detach().to(torch.float64).reshape(m, n, -1)
    return y.permute(2, 0, 1).contiguous(), event


def split_chains(y: torch.Tensor) -> torch.Tensor:
    """``[E, m, n] -> [E, 2m, n // 2]``: the first and the last ``n // 2`` draws of each chain
    as separate chains."""
    half = y.shape[-1] // 2
    return torch.cat([y[..., :half], y[..., y.shape[-1] - half :]], dim=-2)


def average_ranks(flat: torch.Tensor) -> torch.Tensor:
    """Ranks ``1..S`` of each row of ``flat`` ``[E, S]``; tied values share the mean of their
    ranks (``scipy.stats.rankdata(method="average")``)."""
    s = flat.shape[-1]
    values, order = flat.sort(dim=-1)
    position = torch.arange(s, device=flat.device).expand_as(order)
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[..., 1:] = values[..., 1:] != values[..., :-1]
    ends = torch.ones_like(starts)
    ends[..., :-1] = starts[..., 1:]
    first = torch.where(starts, position, torch.zeros_like(position)).cummax(dim=-1).values
    last_flipped = torch.where(ends, position, torch.full_like(position, s)).flip(-1)
    last = last_flipped.cummin(dim=-1).values.flip(-1)
    mean_rank = (first + last).to(torch.float64) / 2.0 + 1.0
    return torch.empty_like(mean_rank).scatter_(-1, order, mean_rank)


def z_scale(y: torch.Tensor) -> torch.Tensor:
    """Rank-normalised draws: normal scores of the average ranks over all draws of each row
    (``[E, m, n]`` in and out); see the module docstring."""
    e, m, n = y.shape
    ranks = average_ranks(y.reshape(e, m * n))
    return torch.special.ndtri((ranks - 0.375) / (m * n + 0.25)).reshape(e, m, n)


def median(y: torch.Tensor) -> torch.Tensor:
    """Median of all draws of each row of ``y`` ``[E, ...]`` -> ``[E]``; the mean of the two
    middle values when the count is even."""
    flat = y.reshape(y.shape[0], -1)
    s = flat.shape[1]
    values = flat.sort(dim=1).values
    if s % 2:
        return values[:, s // 2]
    return (values[:, s // 2 - 1] + values[:, s // 2]) / 2.0


def quantile(y: torch.Tensor, prob: float) -> torch.Tensor:
    """Type-7 quantile at ``prob`` of all draws of each row of ``y`` ``[E, ...]`` -> ``[E]``
    (the formula is in the module docstring)."""
    flat = y.reshape(y.shape[0], -1)
    s = flat.shape[1]
    values = flat.sort(dim=1).values
    h = s * prob + 1.0 - prob
    k = min(max(int(h // 1), 1), s - 1)
    g = min(max(h - k, 0.0), 1.0)
    return (1.0 - g) * values[:, k - 1] + g * values[:, k]


def autocovariance(y: torch.Tensor) -> torch.Tensor:
    """Biased autocovariance of each row of ``y`` ``[..., n]`` at lags ``0..n-1`` (FFT,
    zero-padded to a power of two at least ``2n - 1`` long)."""
    n = y.shape[-1]
    centred = y - y.mean(dim=-1, keepdim=True)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = torch.fft.rfft(centred, n=size)
    return torch.fft.irfft(spectrum * spectrum.conj(), n=size)[..., :n] / n


def with_nan_rows(result: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``result`` ``[E]`` with NaN wherever row ``y[e]`` holds a NaN draw."""
    bad = torch.isnan(y.reshape(y.shape[0], -1)).any(dim=1)
    return torch.where(bad, torch.full_like(result, float("nan")), result)


__all__ = [
    "as_draws",
    "autocovariance",
    "average_ranks",
    "median",
    "quantile",
    "split_chains",
    "with_nan_rows",
    "z_scale",
]
