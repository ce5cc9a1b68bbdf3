r"""Effective sample size (ESS) and Monte Carlo standard error of MCMC draws.

Draws come as ``[m chains, n draws, *event]``, the layout of a sampler's trajectory
(``sample(..., return_trajectory=True)``); every event element gets its own estimate.

**Initial positive sequence** (``method="geyer"``, the default; Geyer 1992, in the multi-chain
form of Stan and Vehtari et al. 2021). With :math:`\hat\gamma_c(t)` the (biased, FFT)
autocovariance of chain :math:`c` at lag :math:`t`:

.. math::
    W = \frac1m \sum_c \tfrac{n}{n-1}\hat\gamma_c(0), \qquad
    \widehat{\mathrm{var}}^+ = \tfrac{n-1}{n} W + \mathrm{var}_c(\bar y_c), \qquad
    \hat\rho_t = 1 - \frac{W - \frac1m\sum_c \hat\gamma_c(t)}{\widehat{\mathrm{var}}^+},

    P_k = \hat\rho_{2k} + \hat\rho_{2k+1}, \qquad
    \hat\tau = -1 + 2 \sum_{k < K} \min_{j \le k} P_j, \qquad
    \mathrm{ESS} = \frac{m n}{\hat\tau},

where :math:`K` is the first pair with :math:`P_K \le 0` (the sum is truncated there, and the
running minimum makes the sequence monotone). :math:`\hat\tau` is floored at
:math:`1/\log_{10}(mn)` as in Stan, so antithetic chains get ESS at most :math:`mn\log_{10}(mn)`.

**Batch means** (``method="batch_means"``): each chain is cut into :math:`a` batches of
:math:`b = \lfloor\sqrt n\rfloor` draws (the tail that does not fill a batch is dropped);
with :math:`\bar y_{c,j}` the batch means and :math:`s^2` the pooled variance of the draws,

.. math::
    \hat\sigma^2_{\mathrm{BM}} = \frac{b}{ma - 1}\sum_{c,j} (\bar y_{c,j} - \bar y)^2,
    \qquad \mathrm{ESS} = m\,a\,b\, \frac{s^2}{\hat\sigma^2_{\mathrm{BM}}}.

The Monte Carlo standard error of the mean is :math:`\mathrm{MCSE} = s / \sqrt{\mathrm{ESS}}`.
"""

from __future__ import annotations

import math

import torch

METHODS = ("geyer", "batch_means")


def as_draws(samples: torch.Tensor, min_draws: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """``samples`` ``[m, n, *event]`` as float64 ``[E, m, n]`` on the CPU, plus the event shape."""
    if not isinstance(samples, torch.Tensor):
        samples = torch.as_tensor(samples)
    if samples.dim() < 2:
        raise ValueError(
            f"samples must have shape [n_chains, n_draws, *event], got shape {tuple(samples.shape)}"
        )
    m, n = samples.shape[:2]
    if m < 1 or n < min_draws:
        raise ValueError(
            f"samples must hold at least 1 chain of at least {min_draws} draws, got shape "
            f"{tuple(samples.shape)}"
        )
    event = tuple(samples.shape[2:])
    y = samples.detach().to(device="cpu", dtype=torch.float64).reshape(m, n, -1)
    return y.permute(2, 0, 1).contiguous(), event


def autocovariance(y: torch.Tensor) -> torch.Tensor:
    """Biased autocovariance ``(1/n) sum_t (y_t - ybar)(y_{t+k} - ybar)`` of each row of
    ``y`` ``[..., n]`` at lags ``0..n-1``, by FFT (zero-padded, so linear, not circular)."""
    n = y.shape[-1]
    centred = y - y.mean(dim=-1, keepdim=True)
    size = 1 << (2 * n - 1).bit_length()
    spectrum = torch.fft.rfft(centred, n=size)
    return torch.fft.irfft(spectrum * spectrum.conj(), n=size)[..., :n] / n


def _ess_geyer(y: torch.Tensor) -> torch.Tensor:
    e, m, n = y.shape
    acov = autocovariance(y)  # [E, m, n]
    within = (acov[..., 0] * n / (n - 1)).mean(dim=1)  # [E]
    between = y.mean(dim=2).var(dim=1, unbiased=True) if m > 1 else torch.zeros_like(within)
    var_plus = within * (n - 1) / n + between
    rho = 1.0 - (within.unsqueeze(1) - acov.mean(dim=1)) / var_plus.unsqueeze(1)  # [E, n]
    rho[:, 0] = 1.0
    n_pairs = n // 2
    pairs = rho[:, 0 : 2 * n_pairs : 2] + rho[:, 1 : 2 * n_pairs : 2]  # [E, K]
    positive = (pairs > 0).to(torch.int64).cummin(dim=1).values.bool()
    monotone = pairs.cummin(dim=1).values
    tau = -1.0 + 2.0 * torch.where(positive, monotone, torch.zeros_like(monotone)).sum(dim=1)
    tau = tau.clamp_min(1.0 / math.log10(max(m * n, 10)))
    ess = m * n / tau
    # Constant draws have no variance to estimate: report every draw as effective.
    return torch.where(var_plus > 0, ess, torch.full_like(ess, float(m * n)))


def _ess_batch_means(y: torch.Tensor) -> torch.Tensor:
    e, m, n = y.shape
    b = max(1, math.isqrt(n))
    a = n // b
    if m * a < 2:
        raise ValueError(f"batch means needs at least 2 batches, got {m} chains of {n} draws")
    batches = y[..., : a * b].reshape(e, m * a, b).mean(dim=2)  # [E, m*a]
    sigma2 = b * batches.var(dim=1, unbiased=True)
    s2 = y[..., : a * b].reshape(e, -1).var(dim=1, unbiased=True)
    ess = m * a * b * s2 / sigma2
    return torch.where(sigma2 > 0, ess, torch.full_like(ess, float(m * a * b)))


def effective_sample_size(samples: torch.Tensor, method: str = "geyer") -> torch.Tensor:
    """ESS of the mean of each event element of ``samples`` ``[m, n, *event]``.

    Args:
        samples: draws, ``[n_chains, n_draws, *event]`` (a sampler's trajectory layout).
        method: ``"geyer"`` (initial positive sequence) or ``"batch_means"``; see the module
            docstring for the formulas.

    Returns:
        float64 tensor of shape ``event`` (0-d for scalar draws ``[m, n]``).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    y, event = as_draws(samples, 4)
    ess = _ess_geyer(y) if method == "geyer" else _ess_batch_means(y)
    return ess.reshape(event)


def monte_carlo_standard_error(samples: torch.Tensor, method: str = "geyer") -> torch.Tensor:
    """Standard error of the mean of each event element: ``sd / sqrt(ESS)`` (``sd`` over all
    draws of all chains); float64, shape ``event``."""
    y, event = as_draws(samples, 4)
    sd = y.reshape(y.shape[0], -1).std(dim=1, unbiased=True).reshape(event)
    return sd / effective_sample_size(samples, method).sqrt()


__all__ = ["METHODS", "autocovariance", "effective_sample_size", "monte_carlo_standard_error"]
