r"""Parallel tempering (replica exchange) over any of the built-in samplers.

``K`` inverse temperatures :math:`1 = \beta_0 > \beta_1 > \dots > \beta_{K-1} > 0`, each a batch
of ``B`` chains of the base sampler on the tempered target
:math:`\pi_k \propto e^{-\beta_k E}` (:class:`~torchebm.samplers.tempered_model.TemperedModel`).
Every ``swap_every`` steps one round of swaps is proposed between neighbouring temperatures,
chain by chain (column ``b`` of every temperature forms one ladder): pair :math:`(k, k+1)`
exchanges its two states with probability

.. math::
    \min\Big(1, \frac{\pi_k(x_{k+1})\,\pi_{k+1}(x_k)}{\pi_k(x_k)\,\pi_{k+1}(x_{k+1})}\Big)
    = \min\big(1, e^{(\beta_k - \beta_{k+1})(E(x_k) - E(x_{k+1}))}\big),

which leaves the product :math:`\prod_k \pi_k` invariant, so the cold chain (:math:`\beta_0=1`)
samples :math:`e^{-E}` exactly whenever the base sampler is exact (MALA, HMC) and crosses
barriers through the hot chains. One round proposes the even pairs (0-1, 2-3, ...) or the odd
ones (1-2, 3-4, ...), all in one call of the fused op ``replica_swap``
(:func:`torchebm.kernels.ops.replica_swap`; uniforms from Philox stream 1):

* ``schedule="deo"`` (deterministic even/odd, the non-reversible scheme of Syed et al. 2021):
  rounds alternate even, odd, even, ...; the index process of a replica then moves in one
  direction until a swap is rejected, and round trips between the ends take
  :math:`O(K)` rounds instead of the :math:`O(K^2)` of a random walk.
* ``schedule="seo"`` (stochastic even/odd, reversible): each round's parity is a fair coin.

Diagnostics (``return_diagnostics=True``, :class:`TemperingDiagnostics`): per-pair swap
acceptance rates and the round-trip rate, a round trip being a replica's passage from the cold
end to the hot end and back.

Routes (``last_route``, a :class:`~torchebm.kernels.dispatch.Route`): for a built-in analytic
model on a built-in sampler's kernel path, the MCMC steps of a round run all temperatures in
one call of the sampler's chain op on the ``K B`` chains, chain ``(k, b)`` tempered by
``beta = betas[k]`` (a per-chain ``beta``, constant over the steps; ``"chain"``); otherwise each
temperature's sampler copy runs its ``sample()`` (``"loop"``, the reason in
``last_route.skipped``). The routes draw different random numbers: they agree in distribution.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import nn

from torchebm.core.argument_checks import count, flag, real_number
from torchebm.core.base_module import DeviceLike
from torchebm.core.base_sampler import BaseSampler, generator_rand
from torchebm.kernels import dispatch, ops, reference
from torchebm.samplers.mcmc_sampler import kernel_model, tempered_chain_blocker
from torchebm.samplers.tempered_model import TemperedModel

SCHEDULES = ("deo", "seo")


def geometric_ladder(n_temps: int, beta_min: float) -> list[float]:
    r"""``n_temps`` inverse temperatures :math:`\beta_k = \beta_{\min}^{k/(K-1)}`, from 1 (cold)
    down to ``beta_min`` (hot): a constant ratio between neighbours, which gives equal swap
    rates between them when the heat capacity is constant (Kofke 2002). ``n_temps=1`` gives
    ``[1.0]``."""
    n_temps = count("geometric_ladder", "n_temps", n_temps, minimum=1)
    beta_min = real_number("geometric_ladder", "beta_min", beta_min, positive=True)
    if beta_min >= 1.0:
        raise ValueError(f"geometric_ladder: beta_min must be in (0, 1), got {beta_min}")
    if n_temps == 1:
        return [1.0]
    return [beta_min ** (k / (n_temps - 1)) for k in range(n_temps)]


@dataclass
class TemperingDiagnostics:
    """What one ``ParallelTempering.sample()`` call reports.

    Attributes:
        betas: the ladder, ``[K]``, cold first.
        swap_attempts: proposals per pair ``(k, k+1)``, ``[K-1]`` (rounds of its parity times
            ``B``).
        swap_accepts: accepted swaps per pair, ``[K-1]``.
        swap_acceptance_rate: ``swap_accepts / swap_attempts``, ``[K-1]`` (NaN for a pair
            never proposed).
        n_rounds: swap rounds in the call.
        round_trips: completed round trips (cold end -> hot end -> cold end) of all replicas,
            counted from the call's start.
        round_trip_rate: ``round_trips / (B * n_rounds)``: round trips per ladder and round.
    """

    betas: torch.Tensor
    swap_attempts: torch.Tensor
    swap_accepts: torch.Tensor
    swap_acceptance_rate: torch.Tensor
    n_rounds: int
    round_trips: torch.Tensor
    round_trip_rate: torch.Tensor


class _RoundTrips:
    """Tracks which replica sits at each temperature and counts cold -> hot -> cold passages.

    ``labels[k, b]``: the replica at temperature ``k`` of ladder ``b``. ``phase[r, b]`` of
    replica ``r``: 0 not yet at the cold end, 1 left the cold end, 2 reached the hot end since.
    """

    def __init__(self, k: int, b: int, device: torch.device):
        self.labels = torch.arange(k, device=device).unsqueeze(1).expand(k, b).contiguous()
        self.phase = torch.zeros((k, b), dtype=torch.long, device=device)
        self.trips = torch.zeros((), dtype=torch.long, device=device)
        self._visit()

    def swap(self, accepted: torch.Tensor) -> None:
        self.labels = reference.swap_rows(self.labels, accepted)
        self._visit()

    def _visit(self) -> None:
        cold, hot = self.labels[:1], self.labels[-1:]
        at_cold = self.phase.gather(0, cold)
        self.trips += (at_cold == 2).sum()
        self.phase.scatter_(0, cold, torch.ones_like(cold))
        at_hot = self.phase.gather(0, hot)
        self.phase.scatter_(0, hot, torch.where(at_hot == 1, 2, at_hot))


class ParallelTempering(BaseSampler):
    r"""Replica exchange over a base sampler; see the module docstring for the maths.

    Args:
        sampler: the base sampler (``LangevinDynamics``, ``MALA``, ``HamiltonianMonteCarlo``,
            or any :class:`~torchebm.core.BaseSampler` whose ``sample`` takes ``x``,
            ``n_steps``, ``reset_schedulers``, ``generator``). Each temperature runs a copy of
            it (its own schedulers) on ``TemperedModel(sampler.model, beta_k)``, sharing the
            model: a built-in analytic model keeps the whole-chain kernels
            (:data:`~torchebm.samplers.tempered_model.SCALED_PARAMETER`), any other model runs
            on the base sampler's per-step path. Langevin dynamics is biased at every
            temperature (its step-size bias), so the cold chain is exact only with MALA or HMC.
        betas: the inverse temperatures, cold first; the first must be 1 and they must
            decrease. Default: :func:`geometric_ladder` ``(n_temps, beta_min)``.
        n_temps, beta_min: the default ladder's size and hottest inverse temperature.
        swap_every: MCMC steps of every temperature between two swap rounds (``>= 1``).
        schedule: ``"deo"`` (deterministic even/odd, non-reversible) or ``"seo"`` (stochastic
            even/odd).
        keep_hot_replicas: when a call's batch has the previous call's shape, the hot
            temperatures continue from where that call left them (only the cold chain starts
            at ``x``): as the negative sampler of persistent contrastive divergence, the cold
            chains come from the replay buffer while the hot ladder keeps mixing. Otherwise
            every temperature starts at ``x``.

    Attributes:
        betas: the ladder (a list of floats).
        replicas: the last call's final states of every temperature, ``[K, B, *event]``.
        last_diagnostics: the last call's :class:`TemperingDiagnostics`.
        last_route: the last call's route (``"chain"`` or ``"loop"``; module docstring).
    """

    def __init__(
        self,
        sampler: BaseSampler,
        betas: Optional[Sequence[float]] = None,
        *,
        n_temps: int = 8,
        beta_min: float = 0.1,
        swap_every: int = 1,
        schedule: str = "deo",
        keep_hot_replicas: bool = True,
        dtype: Optional[torch.dtype] = None,
        device: DeviceLike = None,
    ):
        owner = type(self).__name__
        if not isinstance(sampler, BaseSampler):
            raise TypeError(f"{owner}: sampler must be a BaseSampler, got {type(sampler).__name__}")
        super().__init__(
            sampler.model,
            dtype=dtype or sampler.dtype,
            device=device or sampler.device,
            backend=sampler.backend,
        )
        self.betas = _check_ladder(owner, geometric_ladder(n_temps, beta_min) if betas is None else betas)
        self.swap_every = count(owner, "swap_every", swap_every, minimum=1)
        if schedule not in SCHEDULES:
            raise ValueError(f"{owner}: schedule must be one of {SCHEDULES}, got {schedule!r}")
        self.schedule = schedule
        self.keep_hot_replicas = flag(owner, "keep_hot_replicas", keep_hot_replicas)
        model = sampler.model
        copies = []
        for beta in self.betas:
            c = copy.deepcopy(sampler, memo={id(model): model})
            c.model = model if beta == 1.0 else TemperedModel(model, beta)
            copies.append(c)
        self.samplers = nn.ModuleList(copies)
        self.replicas: Optional[torch.Tensor] = None
        self.last_diagnostics: Optional[TemperingDiagnostics] = None
        self.last_route: Optional[dispatch.Route] = None
        self._round = 0  # DEO parity continues across calls

    # ------------------------------------------------------------------ the model
    def _bind_model(self) -> None:
        """Point every temperature at ``self.model`` (a loss may have rebound it)."""
        for c in self.samplers:
            target = c.model.inner if isinstance(c.model, TemperedModel) else c.model
            if target is self.model:
                continue
            if isinstance(c.model, TemperedModel):
                c.model = TemperedModel(self.model, c.model.beta)
            else:
                c.model = self.model

    # ------------------------------------------------------------------ sample
    @torch.no_grad()
    def sample(
        self,
        x: Optional[torch.Tensor] = None,
        dim: Any = None,
        n_steps: int = 100,
        n_samples: int = 1,
        thin: int = 1,
        return_trajectory: bool = False,
        return_diagnostics: bool = False,
        reset_schedulers: bool = True,
        *,
        y: Any = None,
        model_kwargs: Optional[dict] = None,
        generator: Optional[torch.Generator] = None,
        n_chains: Optional[int] = None,
    ):
        """Run ``n_steps`` steps of every temperature, with a swap round after every
        ``swap_every`` steps (a last, shorter segment gets none).

        Args:
            x: starting states ``[B, *event]`` (or one chain ``[dim]``); None: ``randn`` of
                ``dim``. Every temperature starts there (see ``keep_hot_replicas``).
            dim, n_samples, n_chains, y, model_kwargs, generator, reset_schedulers: as in
                :meth:`~torchebm.samplers.mcmc_sampler.MCMCSampler.sample`.
            n_steps: MCMC steps per temperature, ``>= 0``.
            thin: keep every ``thin``-th state of the cold chain in the trajectory.
            return_trajectory: return the cold chain's kept states ``[B, n_steps // thin,
                *event]`` (states after the MCMC step, before that step's swap round).
            return_diagnostics: also return a :class:`TemperingDiagnostics`.

        Returns:
            The cold chain's final states ``[B, *event]`` (``[dim]`` for a 1-D ``x``), or its
            trajectory; with ``return_diagnostics``, a tuple ``(that, diagnostics)``.
        """
        owner = type(self).__name__
        n_steps = count(owner, "n_steps", n_steps, minimum=0)
        thin = count(owner, "thin", thin, minimum=1)
        if n_chains is not None:
            n_samples = n_chains
        self._bind_model()
        mk = self._prepare_model_kwargs(y, model_kwargs)
        unbatched = x is not None and x.dim() == 1
        start = self._init_state(x.unsqueeze(0) if unbatched else x, dim, n_samples, generator)
        k_temps, b = len(self.betas), start.shape[0]
        state = start.unsqueeze(0).repeat(k_temps, *([1] * start.dim()))
        if self.keep_hot_replicas and self.replicas is not None and self.replicas.shape == state.shape:
            state[1:] = self.replicas[1:].to(state)
        seed = self._draw_seed(generator)
        parities = random.Random(seed)
        trips = _RoundTrips(k_temps, b, state.device)
        attempts = torch.zeros(max(k_temps - 1, 0), dtype=torch.long)
        accepts = torch.zeros(max(k_temps - 1, 0), dtype=torch.long, device=state.device)
        kept = []
        done, n_rounds = 0, 0
        use_op = self.backend != "reference" and dispatch.has_kernel("replica_swap", state.device.type)
        why_not = self._chain_blocker(state, mk)
        self.last_route = (dispatch.Route("chain", (), self.samplers[0].algorithm.chain_op)
                           if why_not is None else dispatch.Route("loop", (why_not,)))
        while done < n_steps:
            seg = min(self.swap_every, n_steps - done)
            reset = reset_schedulers and done == 0
            traj = None  # the cold chain's states after each of the segment's steps
            if why_not is None:
                traj = self._round_in_one_call(state, seg, reset, return_trajectory, generator)
            else:
                for k, c in enumerate(self.samplers):
                    call = dict(x=state[k], n_steps=seg, reset_schedulers=reset, generator=generator)
                    if mk:
                        call["model_kwargs"] = mk
                    if k == 0 and return_trajectory:
                        traj = c.sample(return_trajectory=True, **call)
                        state[0] = traj[:, -1]
                    else:
                        state[k] = c.sample(**call)
            if return_trajectory:
                steps = torch.arange(done + 1, done + seg + 1)
                kept.append(traj[:, (steps % thin == 0).nonzero().flatten().to(traj.device)])
            done += seg
            if seg < self.swap_every or k_temps < 2:
                continue
            parity = self._next_parity(parities)
            energy = self._model_energy(state.reshape(k_temps * b, *state.shape[2:]), mk).reshape(k_temps, b)
            energy = energy.to(state.dtype)
            if use_op:
                state, _, accepted = ops.replica_swap(state, energy, self.betas, parity, seed=seed, step=n_rounds)
            else:
                u = generator_rand((k_temps - 1, b), state.dtype, state.device, generator)
                state, _, accepted = reference.replica_swap(state, energy, self.betas, parity, u)
            attempts[parity::2] += b
            accepts += accepted.sum(dim=1)
            trips.swap(accepted)
            n_rounds += 1
        self.replicas = state
        attempts = attempts.to(accepts.device)
        rate = accepts.to(state.dtype) / attempts.to(state.dtype)
        diag = TemperingDiagnostics(
            betas=torch.tensor(self.betas, dtype=state.dtype),
            swap_attempts=attempts,
            swap_accepts=accepts,
            swap_acceptance_rate=rate,
            n_rounds=n_rounds,
            round_trips=trips.trips,
            round_trip_rate=trips.trips.to(state.dtype) / max(b * n_rounds, 1),
        )
        self.last_diagnostics = diag
        if return_trajectory:
            shape = (b, 0, *state.shape[2:])
            out = torch.cat(kept, dim=1) if kept else state.new_empty(shape)
        else:
            out = state[0].squeeze(0) if unbatched else state[0]
        return (out, diag) if return_diagnostics else out

    def _chain_blocker(self, state: torch.Tensor, mk: dict) -> Optional[str]:
        """Why a round's steps cannot run as one chain-op call over every temperature
        (``state`` ``[K, B, *event]``), or None."""
        if mk:
            return "model_kwargs/y given (the kernels evaluate x-only closed forms)"
        return tempered_chain_blocker(self.samplers, self.model, state[0])

    def _round_in_one_call(self, state: torch.Tensor, seg: int, reset: bool,
                           return_trajectory: bool, generator: Optional[torch.Generator]):
        """``seg`` steps of every temperature (``state`` ``[K, B, d]``, stepped in place) as one
        chain-op call on the ``K B`` chains with the per-chain ``beta`` of their temperature;
        the cold chain's states after each step ``[B, seg, d]`` when ``return_trajectory``.
        The schedules are the first temperature's copy's (every copy's are equal: they are
        reset and advanced together)."""
        first = self.samplers[0]
        k_temps, b, d = state.shape
        flat = state.reshape(k_temps * b, d)
        if reset:
            for c in self.samplers:
                c.reset_schedulers()
        model = kernel_model(self.model, flat)[0]
        arguments = first._chain_arguments(flat, seg)
        betas = torch.tensor(self.betas, dtype=torch.float64).repeat_interleave(b)
        x, trajectory, *_ = getattr(ops, first.algorithm.chain_op)(
            energy=model.name, x0=flat.contiguous(), params=model.params, mean=model.mean,
            precision=model.precision, seed=first._draw_seed(generator),
            record_trajectory=return_trajectory, beta=betas.expand(seg + 1, k_temps * b),
            **arguments)
        state.copy_(x.reshape(k_temps, b, d))
        for c in self.samplers:  # where seg steps of each copy's sample() would leave them
            for scheduler in c._subtree_schedulers():
                scheduler.advance(seg)
        return trajectory[:b] if return_trajectory else None

    def _next_parity(self, coin: random.Random) -> int:
        if self.schedule == "seo":
            return coin.getrandbits(1)
        parity = self._round % 2
        self._round += 1
        return parity

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(sampler={type(self.samplers[0]).__name__}, "
            f"betas={[round(b, 4) for b in self.betas]}, swap_every={self.swap_every}, "
            f"schedule={self.schedule!r})"
        )


def _check_ladder(owner: str, betas: Sequence[float]) -> list[float]:
    values = [real_number(owner, f"betas[{i}]", v, positive=True) for i, v in enumerate(betas)]
    if not values:
        raise ValueError(f"{owner}: betas must hold at least one inverse temperature")
    if values[0] != 1.0:
        raise ValueError(f"{owner}: betas[0] must be 1 (the target itself), got {values[0]}")
    for i in range(1, len(values)):
        if not values[i] < values[i - 1]:
            raise ValueError(
                f"{owner}: betas must decrease (cold first), got betas[{i - 1}]={values[i - 1]} "
                f"and betas[{i}]={values[i]}"
            )
    return values


__all__ = ["ParallelTempering", "TemperingDiagnostics", "geometric_ladder"]
