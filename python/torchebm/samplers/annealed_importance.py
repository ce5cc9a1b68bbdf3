r"""Annealed importance sampling (AIS, Neal 2001): the log normaliser of an energy model.

For :math:`p(x) = e^{-E(x)}/Z` and a normalised Gaussian base :math:`p_0 = e^{-E_0}/Z_0`, the
geometric path :math:`f_t(x) = e^{-E_{\beta_t}(x)}`, :math:`E_\beta = \beta E + (1-\beta) E_0`,
:math:`0 = \beta_0 < \beta_1 < \dots < \beta_K = 1`, and a chain per sample:

.. math::
    x_0 \sim p_0, \qquad
    \log w = \sum_{t=1}^{K} \log\frac{f_t(x_{t-1})}{f_{t-1}(x_{t-1})}
           = -\sum_{t=1}^{K} (\beta_t - \beta_{t-1})\,\big(E(x_{t-1}) - E_0(x_{t-1})\big),

with :math:`x_t` drawn by ``n_steps_per_temp`` MCMC steps that leave :math:`f_t` invariant, from
:math:`x_{t-1}`. Then :math:`\mathbb E[w] = Z/Z_0`, and

.. math::
    \widehat{\log Z} = \log Z_0 + \log \tfrac1N \sum_i w_i, \qquad
    \mathrm{SE} = \frac{\operatorname{sd}(w)}{\sqrt N\,\bar w} \quad\text{(delta method)}.

By Jensen's inequality :math:`\log Z_0 + \overline{\log w}` is a stochastic lower bound. Given
exact samples of :math:`p`, reverse AIS runs the path backwards (:math:`\beta` from 1 to 0):
:math:`\log w^{\mathrm{rev}} = \sum_{t=K}^{1}(\beta_t - \beta_{t-1})(E - E_0)(x_t)` has
:math:`\mathbb E[w^{\mathrm{rev}}] = Z_0/Z`, so :math:`\log Z_0 - \overline{\log w^{\mathrm{rev}}}`
is a stochastic upper bound (bidirectional Monte Carlo, Grosse et al. 2015): the two bounds
sandwich :math:`\log Z`, and their gap measures how far the chains are from equilibrium.

Transitions run on any built-in sampler. MALA and HMC leave each :math:`f_t` exactly
invariant, so the estimate is unbiased in :math:`w`; unadjusted Langevin leaves a
step-size-dependent neighbour of :math:`f_t` invariant, which biases :math:`\widehat{\log Z}`
(and the bounds) by an amount that shrinks with the step size. Two routes
(``last_route``, a :class:`~torchebm.kernels.dispatch.Route`):

* ``"chain"``: a built-in analytic model (``kernel_spec()``) on a built-in sampler's kernel
  path runs the whole anneal as one call of the sampler's tempered chain op (a long anneal in
  blocks of steps, as :meth:`MCMCSampler._run_chain` runs a chain; ``beta`` the
  path with each :math:`\beta_t` repeated ``n_steps_per_temp`` times, the base as
  ``base_mean``/``base_precision``), the weights accumulated in float64 inside the kernel
  (``log_weight``; docs/kernels.md); only the last increment, at the final state, is added
  in PyTorch. Each temperature takes the sampler's schedules from their start, as a
  ``sample()`` call per temperature does.
* ``"loop"`` otherwise (the reason in ``last_route.skipped``): one ``sample()`` call per
  temperature on :class:`~torchebm.samplers.tempered_model.TemperedModel` with the base, the
  weights accumulated in PyTorch between the calls (one energy evaluation of the model and of
  the base per temperature).

The two routes draw different random numbers, so they agree in distribution, not draw for draw.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from torchebm.core.analytic_models import GaussianModel
from torchebm.core.argument_checks import count
from torchebm.core.base_sampler import BaseSampler, generator_randn
from torchebm.kernels import dispatch, ops
from torchebm.samplers.mcmc_sampler import (
    _CHAIN_SCHEDULES,
    _first_chain_block,
    kernel_model,
    tempered_chain_blocker,
)
from torchebm.samplers.tempered_model import TemperedModel


def fit_gaussian(samples: torch.Tensor, ridge: float = 1e-6) -> GaussianModel:
    """A :class:`~torchebm.core.GaussianModel` with the mean and covariance of ``samples``
    ``[N, d]`` (``N >= 2``), the covariance regularised by ``ridge * mean variance * I``."""
    if samples.dim() != 2 or samples.shape[0] < 2:
        raise ValueError(f"fit_gaussian: samples must be [N, d] with N >= 2, got shape {tuple(samples.shape)}")
    s = samples.detach().double()
    mean = s.mean(dim=0)
    cov = torch.cov(s.T).reshape(s.shape[1], s.shape[1])
    cov = cov + ridge * float(cov.diagonal().mean()) * torch.eye(s.shape[1], dtype=cov.dtype, device=cov.device)
    return GaussianModel(mean, cov, dtype=samples.dtype, device=samples.device)


def gaussian_log_normaliser(base: GaussianModel) -> float:
    r""":math:`\log Z_0 = \tfrac d2 \log 2\pi - \tfrac12 \log\det P` of
    :math:`e^{-\frac12 (x-\mu)^\top P (x-\mu)}`."""
    precision = base.precision.double()
    d = precision.shape[0]
    return 0.5 * d * math.log(2 * math.pi) - 0.5 * float(torch.linalg.slogdet(precision)[1])


@dataclass
class AISResult:
    """What :meth:`AnnealedImportanceSampler.estimate` returns.

    Attributes:
        log_z: :math:`\\widehat{\\log Z}` (log-mean-exp of the weights plus :math:`\\log Z_0`).
        log_z_se: its delta-method standard error.
        log_weights: ``[N]`` per-chain :math:`\\log w`.
        lower_bound: :math:`\\log Z_0 + \\overline{\\log w}` (a stochastic lower bound).
        ess: effective sample size of the weights, :math:`(\\sum w)^2 / \\sum w^2`.
        samples: ``[N, *event]`` the chains' final states (approximate samples of the target
            after reweighting by ``exp(log_weights)``).
        upper_bound: reverse AIS's :math:`\\log Z_0 - \\overline{\\log w^{rev}}` (None without
            target samples), with standard error ``upper_bound_se``.
        log_z_base: :math:`\\log Z_0`.
    """

    log_z: float
    log_z_se: float
    log_weights: torch.Tensor
    lower_bound: float
    ess: float
    samples: torch.Tensor
    upper_bound: Optional[float]
    upper_bound_se: Optional[float]
    log_z_base: float


class AnnealedImportanceSampler(nn.Module):
    r"""Estimates :math:`\log Z` of ``sampler.model`` by AIS; see the module docstring.

    Args:
        sampler: the transition kernel: a built-in sampler (MALA or HMC for exactness;
            Langevin is biased, see above) or any :class:`~torchebm.core.BaseSampler` whose
            ``sample`` takes ``x``, ``n_steps``, ``generator``. A copy of it runs on the path
            model (the model itself is shared).
        betas: the schedule :math:`0 = \beta_0 < \dots < \beta_K = 1`; default ``n_temps + 1``
            evenly spaced values.
        n_temps: ``K``, the number of intermediate distributions (when ``betas`` is None).
        base: the base, a :class:`~torchebm.core.GaussianModel`; None: fitted to the
            ``base_samples`` of :meth:`estimate` (:func:`fit_gaussian`).
        n_steps_per_temp: MCMC steps at each intermediate distribution.

    Attributes:
        last_route: the route of the last anneal (``"chain"`` or ``"loop"``, with the reasons
            the chain route was passed over); see the module docstring.
    """

    def __init__(
        self,
        sampler: BaseSampler,
        betas: Optional[Sequence[float]] = None,
        *,
        n_temps: int = 100,
        base: Optional[GaussianModel] = None,
        n_steps_per_temp: int = 1,
    ):
        super().__init__()
        owner = type(self).__name__
        if not isinstance(sampler, BaseSampler):
            raise TypeError(f"{owner}: sampler must be a BaseSampler, got {type(sampler).__name__}")
        if base is not None and not isinstance(base, GaussianModel):
            raise TypeError(f"{owner}: base must be a GaussianModel (or None: fitted), got {type(base).__name__}")
        if betas is None:
            n_temps = count(owner, "n_temps", n_temps, minimum=1)
            betas = [t / n_temps for t in range(n_temps + 1)]
        self.betas = _check_schedule(owner, betas)
        self.n_steps_per_temp = count(owner, "n_steps_per_temp", n_steps_per_temp, minimum=1)
        self.base = base
        model = sampler.model
        self.sampler = copy.deepcopy(sampler, memo={id(model): model})
        self.last_route: Optional[dispatch.Route] = None

    @property
    def model(self) -> nn.Module:
        """The energy model whose normaliser is estimated (the given sampler's model)."""
        path = self.sampler.model
        return path.inner if isinstance(path, TemperedModel) else path

    @torch.no_grad()
    def estimate(
        self,
        n_samples: int = 1000,
        *,
        base_samples: Optional[torch.Tensor] = None,
        target_samples: Optional[torch.Tensor] = None,
        generator: Optional[torch.Generator] = None,
    ) -> AISResult:
        """Run ``n_samples`` forward AIS chains (and, with ``target_samples``, one reverse
        chain from each of them).

        Args:
            n_samples: forward chains ``N``.
            base_samples: ``[M, d]`` samples to fit the base to when it was not given (e.g.
                the training data).
            target_samples: ``[N', d]`` exact samples of the target, for the reverse AIS upper
                bound.
            generator: drives every draw (base samples and the sampler's seeds).
        """
        owner = type(self).__name__
        n_samples = count(owner, "n_samples", n_samples, minimum=2)
        base = self.base
        if base is None:
            if base_samples is None:
                raise ValueError(f"{owner}: give a base (GaussianModel) or base_samples to fit one to")
            base = fit_gaussian(base_samples.to(self.sampler.device, self.sampler.dtype))
        base = base.to(device=self.sampler.device)
        log_z0 = gaussian_log_normaliser(base)
        model = self.model
        path = TemperedModel(model, 0.0, base=base)
        self.sampler.model = path

        x = self._base_draws(base, n_samples, generator)
        log_w = self._anneal(path, x, self.betas, generator)
        w = torch.exp(log_w - log_w.max())
        log_z = log_z0 + float(torch.logsumexp(log_w, 0)) - math.log(n_samples)
        se = float(w.std() / (math.sqrt(n_samples) * w.mean()))
        ess = float(w.sum() ** 2 / (w * w).sum())
        upper, upper_se = None, None
        if target_samples is not None:
            xr = self.sampler._cast_state(target_samples).clone()
            log_w_rev = self._anneal(path, xr, self.betas[::-1], generator)
            upper = log_z0 - float(log_w_rev.mean())
            upper_se = float(log_w_rev.std()) / math.sqrt(xr.shape[0])
        return AISResult(
            log_z=log_z,
            log_z_se=se,
            log_weights=log_w,
            lower_bound=log_z0 + float(log_w.mean()),
            ess=ess,
            samples=x,
            upper_bound=upper,
            upper_bound_se=upper_se,
            log_z_base=log_z0,
        )

    def _base_draws(self, base: GaussianModel, n: int, generator: Optional[torch.Generator]) -> torch.Tensor:
        chol = torch.linalg.cholesky(base.cov.double())
        z = generator_randn((n, chol.shape[0]), torch.float64, chol.device, generator)
        x = base.mean.double() + z @ chol.T
        return x.to(self.sampler.dtype)

    def _anneal(self, path: TemperedModel, x: torch.Tensor, betas: list[float],
                generator: Optional[torch.Generator]) -> torch.Tensor:
        """Runs the chains ``x`` (in place) along ``betas`` and returns the accumulated
        :math:`\\sum_t \\log f_{b_t}(x) - \\log f_{b_{t-1}}(x)` at the state before each
        transition: :math:`\\log w` for increasing ``betas``, :math:`\\log w^{rev}` for
        decreasing ones."""
        why_not = self._chain_blocker(x)
        if why_not is None:
            self.last_route = dispatch.Route("chain", (), self.sampler.algorithm.chain_op)
            return self._anneal_in_kernel(path, x, betas, generator)
        self.last_route = dispatch.Route("loop", (why_not,))
        log_w = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        for t in range(1, len(betas)):
            xin = self.sampler._model_input(x)  # in the model's parameter dtype
            gap = path.inner(xin).double() - path.base(xin).double()  # E - E0 at x_{t-1}
            log_w -= (betas[t] - betas[t - 1]) * gap
            if t < len(betas) - 1:
                path.beta = betas[t]
                x.copy_(self.sampler.sample(x=x, n_steps=self.n_steps_per_temp, generator=generator))
        return log_w

    def _chain_blocker(self, x: torch.Tensor) -> Optional[str]:
        """Why the anneal cannot run as one tempered chain op call, or None."""
        return tempered_chain_blocker([self.sampler], self.model, x)

    def _anneal_in_kernel(self, path: TemperedModel, x: torch.Tensor, betas: list[float],
                          generator: Optional[torch.Generator]) -> torch.Tensor:
        """:meth:`_anneal` as one call of the sampler's tempered chain op: ``n_steps_per_temp``
        transitions at each of ``betas[1:-1]`` (op ``beta`` = ``betas[0]`` then each of those
        repeated), each temperature with the sampler's schedules from their start; the op
        adds every increment but the last, at the final state, which is added here."""
        sampler, s = self.sampler, self.n_steps_per_temp
        inner = betas[1:-1]
        model = kernel_model(self.model, x)[0]
        sampler.reset_schedulers()
        arguments = sampler._chain_arguments(x, s)
        tiled = {k: v.repeat(len(inner), *([1] * (v.dim() - 1)))
                 for k, v in arguments.items() if k in _CHAIN_SCHEDULES}
        beta = torch.tensor([betas[0]] + [b for b in inner for _ in range(s)], dtype=torch.float64)
        base = path.base
        log_w = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        if inner:
            op = getattr(ops, sampler.algorithm.chain_op)
            fixed = {k: v for k, v in arguments.items() if k not in _CHAIN_SCHEDULES}
            model_args = {"energy": model.name, "params": model.params, "mean": model.mean,
                          "precision": model.precision}
            seed, n_steps = sampler._draw_seed(generator), len(beta) - 1
            # Blocks of steps as MCMCSampler._run_chain's first block (under a second each), so
            # that Ctrl-C stops a long anneal between them; step t of a block [t0, t1) draws
            # the noise of step t0 + t and adds its increments to the same log_w, so the blocks
            # give one call's result bit for bit (tests/test_tempered_chain.py).
            length = _first_chain_block(x, model_args, fixed)
            state = x
            for start in range(0, n_steps, length):
                stop = min(start + length, n_steps)
                state = op(x0=state, seed=seed, beta=beta[start : stop + 1], first_step=start,
                           base_mean=base.mean.to(x), base_precision=base.precision.to(x),
                           log_weight=log_w, **model_args, **fixed,
                           **{k: v[start:stop] for k, v in tiled.items()})[0]
                if state.is_cuda:
                    torch.cuda.synchronize(state.device)
            x.copy_(state)
        xin = sampler._model_input(x)
        gap = path.inner(xin).double() - base(xin).double()  # E - E0 at the final state
        log_w -= (betas[-1] - betas[-2]) * gap
        return log_w


def _check_schedule(owner: str, betas: Sequence[float]) -> list[float]:
    values = [float(b) for b in betas]
    if len(values) < 2 or values[0] != 0.0 or values[-1] != 1.0:
        raise ValueError(f"{owner}: betas must run from 0 to 1 (at least two values), got {values[:3]}...{values[-1:]}")
    for i in range(1, len(values)):
        if not values[i] > values[i - 1]:
            raise ValueError(f"{owner}: betas must increase, got betas[{i - 1}]={values[i - 1]} and betas[{i}]={values[i]}")
    return values


__all__ = ["AISResult", "AnnealedImportanceSampler", "fit_gaussian", "gaussian_log_normaliser"]
