r""":math:`\hat R`: do several chains agree with each other and with themselves?

Draws come as ``[chain, draw, *event]``; every event element gets its own value, computed in
float64 on the draws' device, all elements at once.

**:math:`\hat R` of a set of chains.** For :math:`m` chains of :math:`n` draws with means
:math:`\bar y_c` and unbiased variances :math:`s_c^2`:

.. math::
    W = \frac1m\sum_c s_c^2, \qquad B = n\,\mathrm{var}_c(\bar y_c)\ (\text{unbiased}), \qquad
    \hat R = \sqrt{\frac{B/W + n - 1}{n}}.

**Methods** of :func:`rhat`, as ``arviz.rhat`` (Vehtari, Gelman, Simpson, Carpenter and
Bürkner 2021) defines them; :math:`s = \mathrm{split}(y)` halves every chain and :math:`z(\cdot)`
is rank normalisation (:mod:`torchebm.diagnostics.draws`):

============  ===============================================================================
``rank``      :math:`\max\big(\hat R(z(s)),\ \hat R(z(|s - \mathrm{median}(s)|))\big)`, the
              bulk and the tail (folded) rank-normalised split-:math:`\hat R` (the default)
``split``     :math:`\hat R(s)`
``folded``    :math:`\hat R(z(|s - \mathrm{median}(s)|))`
``z_scale``   :math:`\hat R(z(s))`
``identity``  :math:`\hat R(y)`, the classic Gelman-Rubin value
============  ===============================================================================

Values near 1 (below about 1.01) indicate agreement.

**Nested :math:`\hat R`** (:func:`nested_rhat`; Margossian, Hoffman, Sountsov, Riou-Durand,
Vehtari and Gelman 2024), for many short chains grouped into :math:`K` superchains of
:math:`M` chains each (chains of one superchain start from the same point). With
:math:`\bar y_{mk}` the mean of chain :math:`m` of superchain :math:`k`, :math:`s^2_{mk}` its
unbiased variance (0 when :math:`n = 1`), and :math:`\bar y_k` the superchain means:

.. math::
    \hat B_\nu = \mathrm{var}_k(\bar y_k), \qquad
    \hat W_\nu = \frac1K \sum_k \Big(\mathrm{var}_m(\bar y_{mk}) + \frac1M\sum_m s^2_{mk}\Big),
    \qquad \widehat{\mathfrak{n}R} = \sqrt{1 + \hat B_\nu / \hat W_\nu},

all variances unbiased, and :math:`\mathrm{var}_m(\bar y_{mk}) = 0` when :math:`M = 1`. No
split and no rank normalisation. The paper suggests a threshold of about
:math:`1 + 0.01`-:math:`0.05` depending on :math:`M` (see there).

A row with a NaN draw gets NaN.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch

from torchebm.diagnostics.draws import Draws, as_draws, median, split_chains, with_nan_rows, z_scale

RHAT_METHODS = ("rank", "split", "folded", "z_scale", "identity")


def rhat_of_chains(y: torch.Tensor) -> torch.Tensor:
    r""":math:`\hat R` of the chains ``y`` ``[E, m, n]`` as given (no split) -> ``[E]``."""
    n = y.shape[-1]
    within = y.var(dim=2, unbiased=True).mean(dim=1)
    between = n * y.mean(dim=2).var(dim=1, unbiased=True)
    return ((between / within + n - 1.0) / n).sqrt()


def _folded(split: torch.Tensor) -> torch.Tensor:
    return z_scale((split - median(split)[:, None, None]).abs())


def rhat(draws: Draws, method: str = "rank") -> torch.Tensor:
    r""":math:`\hat R` of each event element of ``draws``, as ``arviz.rhat`` computes it.

    Args:
        draws: ``[n_chains, n_draws, *event]`` with at least 2 chains of at least 4 draws.
        method: one of :data:`RHAT_METHODS` (formulas in the module docstring).

    Returns:
        float64 tensor of shape ``event`` on the draws' device.

    Raises:
        ValueError: an unknown method, or fewer than 2 chains or 4 draws (ArviZ answers NaN
            there; an error says why).
    """
    if method not in RHAT_METHODS:
        raise ValueError(f"method must be one of {RHAT_METHODS}, got {method!r}")
    y, event = as_draws(draws, min_chains=2, what=f"rhat(method={method!r})")
    if method == "identity":
        result = rhat_of_chains(y)
    else:
        split = split_chains(y)
        if method == "split":
            result = rhat_of_chains(split)
        elif method == "z_scale":
            result = rhat_of_chains(z_scale(split))
        elif method == "folded":
            result = rhat_of_chains(_folded(split))
        else:
            result = torch.maximum(rhat_of_chains(z_scale(split)), rhat_of_chains(_folded(split)))
    return with_nan_rows(result, y).reshape(event)


def nested_rhat(
    draws: Draws, superchain_ids: Union[torch.Tensor, Sequence[int]]
) -> torch.Tensor:
    r"""Nested :math:`\hat R` of each event element of ``draws`` (formula in the module
    docstring).

    Args:
        draws: ``[n_chains, n_draws, *event]``; ``n_draws`` may be 1 when every superchain has
            at least 2 chains.
        superchain_ids: ``[n_chains]`` labels (any integers), chain ``c`` belongs to superchain
            ``superchain_ids[c]``; at least 2 superchains, all of the same size.

    Returns:
        float64 tensor of shape ``event`` on the draws' device.

    Raises:
        ValueError: ids of the wrong length, fewer than 2 superchains, superchains of unequal
            size, or one draw per chain with one chain per superchain (no within variance).
    """
    y, event = as_draws(draws, min_draws=1, what="nested_rhat")
    e, m, n = y.shape
    ids = torch.as_tensor(superchain_ids).reshape(-1).to(y.device)
    if ids.numel() != m:
        raise ValueError(
            f"superchain_ids must hold one label per chain ({m}), got {ids.numel()} labels"
        )
    labels, inverse, counts = torch.unique(ids, return_inverse=True, return_counts=True)
    k = labels.numel()
    if k < 2:
        raise ValueError(f"nested_rhat needs at least 2 superchains, got superchain_ids with {k}")
    if bool((counts != counts[0]).any()):
        raise ValueError(
            "superchains must all hold the same number of chains, got sizes "
            f"{dict(zip(labels.tolist(), counts.tolist()))}"
        )
    per = int(counts[0])
    if per == 1 and n == 1:
        raise ValueError(
            "nested_rhat needs more than 1 draw per chain or more than 1 chain per superchain"
        )
    order = torch.sort(inverse, stable=True).indices
    grouped = y[:, order].reshape(e, k, per, n)
    chain_mean = grouped.mean(dim=3)  # [E, K, M]
    chain_var = grouped.var(dim=3, unbiased=True) if n > 1 else torch.zeros_like(chain_mean)
    between_chains = (
        chain_mean.var(dim=2, unbiased=True) if per > 1 else torch.zeros_like(chain_mean[..., 0])
    )
    within = (between_chains + chain_var.mean(dim=2)).mean(dim=1)  # [E]
    between = chain_mean.mean(dim=2).var(dim=1, unbiased=True)
    return with_nan_rows((1.0 + between / within).sqrt(), y).reshape(event)


__all__ = ["RHAT_METHODS", "nested_rhat", "rhat", "rhat_of_chains"]
