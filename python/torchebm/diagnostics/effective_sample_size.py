r"""Effective sample size (ESS) and Monte Carlo standard error (MCSE), as ArviZ defines them.

Draws come as ``[chain, draw, *event]``; every event element gets its own estimate, computed in
float64 on the draws' device, all elements and chains at once. The definitions are those of
Vehtari, Gelman, Simpson, Carpenter and Bürkner (2021) in ArviZ's implementation
(``arviz.ess``, ``arviz.mcse``), and the results agree with ArviZ to rounding
(``tests/test_diagnostics_arviz.py`` checks 1e-6 relative).

**The ESS of a set of chains** (:func:`geyer_ess`). For :math:`m` chains of :math:`n` draws with
biased FFT autocovariances :math:`\hat\gamma_c(t)` and chain means :math:`\bar y_c`:

.. math::
    W = \frac{n}{n-1}\,\frac1m\sum_c\hat\gamma_c(0), \qquad
    \hat v^+ = \frac{n-1}{n}W + \mathrm{var}_c(\bar y_c)\ (\text{unbiased; 0 for } m=1),
    \qquad \hat\rho_t = 1 - \frac{W - \frac1m\sum_c\hat\gamma_c(t)}{\hat v^+},\ \hat\rho_0 = 1.

With the pair sums :math:`P_k = \hat\rho_{2k} + \hat\rho_{2k+1}`, Geyer's initial positive
sequence stops at :math:`J = \min(K, \lfloor (n-3)/2 \rfloor)` where :math:`K` is the first
:math:`k` with :math:`P_k \le 0`; the initial monotone sequence replaces :math:`P_k` by
:math:`\tilde P_k = \min_{j \le k} P_j`; then

.. math::
    \hat\tau = -1 + 2\sum_{k<J}\tilde P_k + \hat\rho_{2J}\,
        [P_J \ge 0 \text{ or } \hat\rho_{2J} > 0], \qquad
    \hat\tau \leftarrow \max\big(\hat\tau, 1/\log_{10}(mn)\big), \qquad
    \mathrm{ESS} = mn / \hat\tau

(``relative=True``: :math:`1/\hat\tau`, the ESS per draw). Draws whose range is below
:math:`10^{-15}` have :math:`\mathrm{ESS} = mn` (ArviZ's rule; relative: 1).

**Methods** (:func:`ess`; "split" halves every chain, so :math:`m \to 2m`,
:math:`n \to \lfloor n/2\rfloor`; :math:`z(\cdot)` is rank normalisation, see
:mod:`torchebm.diagnostics.draws`; :math:`q_p` the type-7 quantile of all draws):

=============  ==============================================================================
``bulk``       ESS of :math:`z(\mathrm{split}(y))` (the default; also ``z_scale``)
``mean``       ESS of :math:`\mathrm{split}(y)`
``sd``         ESS of :math:`\mathrm{split}((y - \bar y)^2)`
``quantile``   ESS of :math:`\mathrm{split}(1[y \le q_p])` (``prob`` = :math:`p`)
``median``     ``quantile`` at :math:`p = 1/2`
``tail``       :math:`\min` of ``quantile`` at :math:`p` and :math:`1-p` (``prob``: :math:`p`
               or the pair; default 0.05 and 0.95)
``mad``        ESS of :math:`z(\mathrm{split}(1[d \le \mathrm{median}(d)]))`,
               :math:`d = |y - \mathrm{median}(y)|`
``local``      ESS of :math:`\mathrm{split}(1[q_a \le y \le q_b])` (``prob`` = :math:`(a, b)`)
``folded``     ESS of :math:`z(|s - \mathrm{median}(s)|)`, :math:`s = \mathrm{split}(y)`
``identity``   ESS of :math:`y` (no split)
=============  ==============================================================================

**MCSE** (:func:`mcse`), with :math:`s^2` the unbiased variance of all draws:

- ``mean``: :math:`s / \sqrt{\mathrm{ESS}_{\mathrm{mean}}}`;
- ``sd``: with :math:`u = (y - \bar y)^2`, :math:`\bar u` its mean and
  :math:`\mathrm{ESS}_u` the ``mean`` ESS of :math:`u`,
  :math:`\sqrt{(\overline{u^2} - \bar u^2) / (4\,\mathrm{ESS}_u\,\bar u)}`;
- ``quantile`` (``prob`` :math:`p`; ``median``: :math:`p = 1/2`): with
  :math:`E = \mathrm{ESS}_{\mathrm{quantile}}(p)`, :math:`a, b` the
  :math:`\Phi(-1), \Phi(1)` quantiles (0.1586553, 0.8413447) of
  :math:`\mathrm{Beta}(Ep + 1, E(1-p) + 1)`, and :math:`y_{(i)}` the sorted draws (from 0) of
  :math:`S` in all, :math:`\big(y_{(\lceil \min(bS - 1, S-1)\rceil)} -
  y_{(\lfloor \max(aS - 1, 0)\rfloor)}\big)/2`. The Beta quantiles come from SciPy
  (``scipy.special.betaincinv``; torch has no incomplete beta function).

A row with a NaN draw gets NaN.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch

from torchebm.diagnostics.draws import (
    Draws,
    as_draws,
    autocovariance,
    median,
    quantile,
    split_chains,
    with_nan_rows,
    z_scale,
)

ESS_METHODS = (
    "bulk",
    "tail",
    "mean",
    "sd",
    "median",
    "mad",
    "quantile",
    "local",
    "z_scale",
    "folded",
    "identity",
)
MCSE_METHODS = ("mean", "sd", "median", "quantile")

#: :math:`\Phi(-1)` and :math:`\Phi(1)`, the probabilities of ArviZ's quantile MCSE interval.
MCSE_QUANTILE_PROBS = (0.1586553, 0.8413447)

Prob = Union[None, float, Sequence[float]]


def geyer_ess(y: torch.Tensor, relative: bool = False) -> torch.Tensor:
    """ESS of the chains ``y`` ``[E, m, n]`` (already split, transformed) -> ``[E]``, by
    Geyer's initial positive and monotone sequences (formulas in the module docstring)."""
    e, m, n = y.shape
    acov = autocovariance(y)  # [E, m, n]
    mean_var = acov[..., 0].mean(dim=1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if m > 1:
        var_plus = var_plus + y.mean(dim=2).var(dim=1, unbiased=True)
    rho = 1.0 - (mean_var[:, None] - acov.mean(dim=1)) / var_plus[:, None]  # [E, n]
    rho[:, 0] = 1.0
    j_max = max((n - 3) // 2, 0)
    pairs = rho[:, 0 : 2 * j_max + 2 : 2] + rho[:, 1 : 2 * j_max + 2 : 2]  # P_0..P_jmax
    positive = (pairs[:, :j_max] > 0).to(torch.int64).cumprod(dim=1)
    j = positive.sum(dim=1)  # [E]: pairs kept by the positive sequence
    monotone = pairs[:, :j_max].cummin(dim=1).values
    kept = (monotone * positive).sum(dim=1)
    rho_last = rho.gather(1, (2 * j)[:, None])[:, 0]
    pair_last = pairs.gather(1, j[:, None])[:, 0]
    last = torch.where((pair_last >= 0) | (rho_last > 0), rho_last, torch.zeros_like(rho_last))
    tau = (-1.0 + 2.0 * kept + last).clamp_min(1.0 / math.log10(m * n))
    ess = (1.0 if relative else float(m * n)) / tau
    flat = y.reshape(e, -1)
    constant = (flat.amax(dim=1) - flat.amin(dim=1)) < torch.finfo(torch.float64).resolution
    ess = torch.where(constant, torch.full_like(ess, 1.0 if relative else float(m * n)), ess)
    return torch.where(torch.isnan(rho).any(dim=1) & ~constant, torch.full_like(ess, math.nan), ess)


def _probability(prob, method: str) -> float:
    if isinstance(prob, bool) or not isinstance(prob, (int, float)):
        raise ValueError(f"method={method!r} needs prob, one probability in (0, 1), got {prob!r}")
    if not 0.0 < float(prob) < 1.0:
        raise ValueError(f"prob must lie in (0, 1) for method={method!r}, got {prob!r}")
    return float(prob)


def _pair(prob, method: str) -> tuple[float, float]:
    if not isinstance(prob, (tuple, list)) or len(prob) != 2:
        raise ValueError(
            f"method={method!r} needs prob=(low, high), two probabilities in (0, 1), got {prob!r}"
        )
    return _probability(prob[0], method), _probability(prob[1], method)


def _ess_quantile(y: torch.Tensor, p: float, relative: bool) -> torch.Tensor:
    below = (y <= quantile(y, p)[:, None, None]).to(torch.float64)
    return geyer_ess(split_chains(below), relative)


def _ess_rows(y: torch.Tensor, method: str, prob: Prob, relative: bool) -> torch.Tensor:
    """ESS of each row of ``y`` ``[E, m, n]`` by ``method``; ``[E]``."""
    if method in ("bulk", "z_scale"):
        return geyer_ess(z_scale(split_chains(y)), relative)
    if method == "mean":
        return geyer_ess(split_chains(y), relative)
    if method == "sd":
        centred = y - y.reshape(y.shape[0], -1).mean(dim=1)[:, None, None]
        return geyer_ess(split_chains(centred**2), relative)
    if method == "quantile":
        return _ess_quantile(y, _probability(prob, method), relative)
    if method == "median":
        return _ess_quantile(y, 0.5, relative)
    if method == "tail":
        if prob is None:
            low, high = 0.05, 0.95
        elif isinstance(prob, (tuple, list)):
            low, high = _pair(prob, method)
        else:
            low = _probability(prob, method)
            high = 1.0 - low
        return torch.minimum(_ess_quantile(y, low, relative), _ess_quantile(y, high, relative))
    if method == "mad":
        deviation = (y - median(y)[:, None, None]).abs()
        inside = (deviation <= median(deviation)[:, None, None]).to(torch.float64)
        return geyer_ess(z_scale(split_chains(inside)), relative)
    if method == "local":
        low, high = _pair(prob, method)
        inside = (quantile(y, low)[:, None, None] <= y) & (y <= quantile(y, high)[:, None, None])
        return geyer_ess(split_chains(inside.to(torch.float64)), relative)
    if method == "folded":
        split = split_chains(y)
        return geyer_ess(z_scale((split - median(split)[:, None, None]).abs()), relative)
    return geyer_ess(y, relative)  # identity


def ess(
    draws: Draws, method: str = "bulk", prob: Prob = None, relative: bool = False
) -> torch.Tensor:
    r"""Effective sample size of each event element of ``draws``, as ``arviz.ess`` computes it.

    Args:
        draws: ``[n_chains, n_draws, *event]`` with ``n_draws >= 4`` (a sampler's trajectory
            has this layout).
        method: one of :data:`ESS_METHODS`; the definitions are in the module docstring.
        prob: ``"quantile"``: a probability :math:`p`; ``"local"``: a pair ``(low, high)``;
            ``"tail"``: :math:`p` (then :math:`p` and :math:`1-p`) or a pair, default
            ``(0.05, 0.95)``; the other methods take none.
        relative: the ESS per draw, :math:`1/\hat\tau`, instead of :math:`mn/\hat\tau`.

    Returns:
        float64 tensor of shape ``event`` (0-d for ``[m, n]`` draws) on the draws' device.

    Raises:
        ValueError: an unknown method, a ``prob`` the method does not take or lacks, or draws
            with fewer than 4 draws per chain.
    """
    if method not in ESS_METHODS:
        raise ValueError(f"method must be one of {ESS_METHODS}, got {method!r}")
    if prob is not None and method not in ("quantile", "tail", "local"):
        raise ValueError(f"method={method!r} takes no prob, got prob={prob!r}")
    y, event = as_draws(draws, what=f"ess(method={method!r})")
    return with_nan_rows(_ess_rows(y, method, prob, relative), y).reshape(event)


def mcse(draws: Draws, method: str = "mean", prob: Optional[float] = None) -> torch.Tensor:
    r"""Monte Carlo standard error of each event element's mean, sd or quantile, as
    ``arviz.mcse`` computes it (formulas in the module docstring).

    Args:
        draws: ``[n_chains, n_draws, *event]`` with ``n_draws >= 4``.
        method: ``"mean"``, ``"sd"``, ``"median"`` or ``"quantile"``.
        prob: the probability of ``"quantile"`` (required there, refused elsewhere).

    Returns:
        float64 tensor of shape ``event`` on the draws' device.

    Raises:
        ValueError: an unknown method or a wrong ``prob``.
        ImportError: ``"median"`` and ``"quantile"`` need SciPy (the Beta quantiles).
    """
    if method not in MCSE_METHODS:
        raise ValueError(f"method must be one of {MCSE_METHODS}, got {method!r}")
    if prob is not None and method != "quantile":
        raise ValueError(f"method={method!r} takes no prob, got prob={prob!r}")
    y, event = as_draws(draws, what=f"mcse(method={method!r})")
    flat = y.reshape(y.shape[0], -1)
    if method == "mean":
        result = flat.std(dim=1, unbiased=True) / geyer_ess(split_chains(y)).sqrt()
    elif method == "sd":
        u = (y - flat.mean(dim=1)[:, None, None]) ** 2
        u_flat = u.reshape(u.shape[0], -1)
        mean_u = u_flat.mean(dim=1)
        var_u = ((u_flat**2).mean(dim=1) - mean_u**2) / geyer_ess(split_chains(u))
        result = (var_u / mean_u / 4.0).sqrt()
    else:
        p = 0.5 if method == "median" else _probability(prob, method)
        result = _mcse_quantile(y, p)
    return with_nan_rows(result, y).reshape(event)


def _mcse_quantile(y: torch.Tensor, p: float) -> torch.Tensor:
    try:
        from scipy.special import betaincinv
    except ImportError as exc:  # pragma: no cover - scipy is a test dependency
        raise ImportError(
            "mcse(method='median' | 'quantile') needs SciPy for the Beta quantiles: "
            "pip install scipy"
        ) from exc
    n_eff = _ess_quantile(y, p, relative=False).cpu().numpy()
    probs = torch.tensor(MCSE_QUANTILE_PROBS, dtype=torch.float64)
    a = torch.as_tensor(n_eff * p + 1.0)[:, None]
    b = torch.as_tensor(n_eff * (1.0 - p) + 1.0)[:, None]
    ppf = torch.as_tensor(betaincinv(a.numpy(), b.numpy(), probs[None, :].numpy()))  # [E, 2]
    values = y.reshape(y.shape[0], -1).sort(dim=1).values
    s = values.shape[1]
    scaled = (ppf * s - 1.0).to(y.device)
    # NaN ESS (a NaN row) gives NaN bounds; those rows are set to NaN by the caller.
    low = scaled[:, 0].nan_to_num(0.0).clamp_min(0.0).floor().long()
    high = scaled[:, 1].nan_to_num(s - 1.0).clamp_max(s - 1.0).ceil().long()
    th1 = values.gather(1, low[:, None])[:, 0]
    th2 = values.gather(1, high[:, None])[:, 0]
    return (th2 - th1) / 2.0


__all__ = ["ESS_METHODS", "MCSE_METHODS", "MCSE_QUANTILE_PROBS", "ess", "geyer_ess", "mcse"]
