r"""Split-:math:`\hat R`: do several chains agree with each other and with themselves?

Draws come as ``[m chains, n draws, *event]``. Each chain is split into its first and second
half (the middle draw of an odd ``n`` is dropped), giving :math:`2m` chains of
:math:`n' = \lfloor n/2 \rfloor` draws. For these, with chain means :math:`\bar y_c` and
unbiased within-chain variances :math:`s_c^2`:

.. math::
    W = \frac{1}{2m} \sum_c s_c^2, \qquad
    \frac{B}{n'} = \mathrm{var}_c(\bar y_c), \qquad
    \hat R = \sqrt{\frac{\tfrac{n'-1}{n'} W + B/n'}{W}}.

``rank_normalized=True`` (the default) is the rank-normalised split-:math:`\hat R` of Vehtari,
Gelman, Simpson, Carpenter and Bürkner (2021): the formula above applied to the normal scores
:math:`z = \Phi^{-1}\big((r - 3/8) / (S + 1/4)\big)` of the pooled ranks :math:`r` of the
draws (:math:`S` draws in all) gives the bulk :math:`\hat R`; applied to the normal scores of
the folded draws :math:`|y - \mathrm{median}(y)|` it gives the tail :math:`\hat R`; the result
is the larger of the two. It is robust to heavy tails and detects chains that differ in scale
only. ``rank_normalized=False`` is the classic split-:math:`\hat R` on the raw draws.
Values near 1 (below about 1.01) indicate agreement.
"""

from __future__ import annotations

import torch

from torchebm.diagnostics.effective_sample_size import as_draws


def _split(y: torch.Tensor) -> torch.Tensor:
    """``[E, m, n]`` -> ``[E, 2m, n // 2]`` (first and second halves)."""
    half = y.shape[2] // 2
    return torch.cat([y[..., :half], y[..., y.shape[2] - half :]], dim=1)


def _rhat(y: torch.Tensor) -> torch.Tensor:
    """Classic R-hat of ``[E, m, n]`` chains (already split)."""
    n = y.shape[2]
    within = y.var(dim=2, unbiased=True).mean(dim=1)
    between = y.mean(dim=2).var(dim=1, unbiased=True)
    var_plus = within * (n - 1) / n + between
    return (var_plus / within).sqrt()


def _normal_scores(y: torch.Tensor) -> torch.Tensor:
    """Rank-based normal scores of all draws pooled per event element, ``[E, m, n]``."""
    e, m, n = y.shape
    flat = y.reshape(e, m * n)
    ranks = torch.empty_like(flat)
    order = flat.argsort(dim=1)
    ranks.scatter_(1, order, torch.arange(1, m * n + 1, dtype=flat.dtype).expand(e, -1).contiguous())
    size = m * n
    return torch.special.ndtri((ranks - 0.375) / (size + 0.25)).reshape(e, m, n)


def split_rhat(samples: torch.Tensor, rank_normalized: bool = True) -> torch.Tensor:
    r"""Split-:math:`\hat R` of each event element of ``samples`` ``[m, n, *event]``.

    Args:
        samples: draws, ``[n_chains, n_draws, *event]`` with ``n_draws >= 4``.
        rank_normalized: rank-normalised bulk/tail maximum (default) or classic split-R-hat;
            see the module docstring.

    Returns:
        float64 tensor of shape ``event``.
    """
    y, event = as_draws(samples, 4)
    split = _split(y)
    if not rank_normalized:
        return _rhat(split).reshape(event)
    bulk = _rhat(_normal_scores(split))
    folded = (split - split.reshape(split.shape[0], -1).median(dim=1).values[:, None, None]).abs()
    tail = _rhat(_normal_scores(folded))
    return torch.maximum(bulk, tail).reshape(event)


__all__ = ["split_rhat"]
