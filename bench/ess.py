"""Multi-chain effective sample size of a scalar summary, in plain torch.

The benchmark's fallback estimator, used while (or where) ``torchebm.diagnostics`` offers none,
and the cross-check of the diagnostics module's estimate when it does. It needs only torch, so
it gives the same answer whichever venv computes it.

Method (Geyer's initial monotone sequence on the multi-chain autocorrelation):

    draws y[c, t], c < m chains, t < n draws (after burn-in)
    acov_c(k)  = 1/n * sum_t (y[c,t] - ybar_c)(y[c,t+k] - ybar_c)        (FFT, biased)
    W          = mean_c  n/(n-1) * acov_c(0)                            (within-chain variance)
    var_plus   = (n-1)/n * W + var_c(ybar_c)                            (pooled variance)
    rho(k)     = 1 - (W - mean_c acov_c(k)) / var_plus
    P(j)       = rho(2j) + rho(2j+1), summed while positive, made non-increasing
    tau        = -1 + 2 * sum_j P(j);     ESS = m * n / tau
"""

from __future__ import annotations

import math

import torch


def _autocovariance(y: torch.Tensor) -> torch.Tensor:
    """Biased autocovariance of each row of ``y`` [m, n] at lags 0..n-1, via FFT."""
    n = y.shape[-1]
    centred = y - y.mean(dim=-1, keepdim=True)
    size = 1 << (2 * n - 1).bit_length()  # zero padding: circular -> linear correlation
    spectrum = torch.fft.rfft(centred, n=size)
    acov = torch.fft.irfft(spectrum * spectrum.conj(), n=size)[..., :n]
    return acov / n


def multichain_ess(draws: torch.Tensor) -> float:
    """ESS of the mean of ``draws`` [m chains, n draws] (a scalar summary per draw)."""
    if draws.dim() != 2:
        raise ValueError(f"draws: expected shape [chains, draws], got {tuple(draws.shape)}")
    y = draws.detach().to(torch.float64).cpu()
    m, n = y.shape
    if n < 4:
        raise ValueError(f"draws: need at least 4 draws per chain, got {n}")
    acov = _autocovariance(y)
    within = (acov[:, 0] * n / (n - 1)).mean()
    between = y.mean(dim=1).var(unbiased=True) if m > 1 else torch.zeros((), dtype=y.dtype)
    var_plus = within * (n - 1) / n + between
    if not torch.isfinite(var_plus) or var_plus <= 0:
        return float("nan")
    rho = 1.0 - (within - acov.mean(dim=0)) / var_plus
    rho[0] = 1.0

    # Geyer: pair sums, truncated at the first non-positive pair, forced non-increasing.
    tau_sum = 0.0
    previous = math.inf
    for j in range(n // 2):
        pair = float(rho[2 * j] + rho[2 * j + 1])
        if pair <= 0.0:
            break
        pair = min(pair, previous)
        tau_sum += pair
        previous = pair
    tau = -1.0 + 2.0 * tau_sum
    # Antithetic chains can give tau < 1; cap as Stan does so ESS <= m n log10(m n).
    tau = max(tau, 1.0 / math.log10(max(m * n, 10)))
    return m * n / tau
