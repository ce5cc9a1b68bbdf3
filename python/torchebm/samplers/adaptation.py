r"""Warm-up adaptation of MALA's and HMC's step size and of HMC's trajectory length.

:class:`~torchebm.samplers.MetropolisAdjustedLangevin` and
:class:`~torchebm.samplers.HamiltonianMonteCarlo` have a :meth:`~Adaptive.warmup` method: it
runs the chains for ``n_steps`` steps while adapting, stores what it learned in the sampler
(its :class:`AdaptationState`, part of ``state_dict()``), and returns the chains' states; every
later ``sample()`` call then runs with the adapted settings (fixed, so the chains are exact
MCMC for :math:`e^{-E}`) until :meth:`~Adaptive.reset_adaptation`. Per-chain step sizes reach
the kernels as tensors ``[B]`` (the per-step ops) or schedules ``[n_steps, B]`` (the
whole-chain ops of the analytic models), on the CPU and CUDA alike.

Step size (``adapt="step_size"``): dual averaging (Nesterov 2009, in the form of Hoffman and
Gelman 2014, section 3.2) of :math:`\log\epsilon` towards a target acceptance rate
:math:`\delta`. At warm-up iteration :math:`m = 1, 2, \dots`, with acceptance statistic
:math:`\alpha_m`:

.. math::
    \bar H_m = \Big(1 - \frac{1}{m + t_0}\Big)\bar H_{m-1} + \frac{\delta - \alpha_m}{m + t_0},
    \qquad \log\epsilon_m = \mu - \frac{\sqrt m}{\gamma}\bar H_m,
    \qquad \log\bar\epsilon_m = m^{-\kappa}\log\epsilon_m + (1 - m^{-\kappa})\log\bar\epsilon_{m-1},

with :math:`\mu = \log(10\epsilon_0)`, :math:`\gamma = 0.05`, :math:`t_0 = 10`,
:math:`\kappa = 0.75`, :math:`\bar H_0 = 0`, :math:`\log\bar\epsilon_0 = 0`; the warm-up
steps with :math:`\epsilon_m`, and sampling afterwards uses :math:`\bar\epsilon`. The
acceptance statistic :math:`\alpha` is each chain's acceptance probability :math:`\min(1, r)`
of the transition (HMC: :math:`r = e^{H_0 - H_1}`; MALA: its Metropolis-Hastings ratio).
``per_chain=False`` adapts one step size on the mean statistic over chains;
``per_chain=True`` one per chain on its own statistic (the per-step kernels take a step size per
chain).

Trajectory length (``adapt="chees"``, HMC): ChEES (Hoffman, Radul and Sountsov 2021). The
trajectory length :math:`T` is jittered per iteration, :math:`t_m = h_m T` with :math:`h_m` the
base-2 Halton (van der Corput) sequence or uniform draws, and a transition runs
:math:`L_m = \lceil t_m / \epsilon \rceil` leapfrog steps (at most
:data:`MAX_LEAPFROG_STEPS` = 1000). :math:`\log T` follows Adam
(:math:`\beta_1 = 0`, :math:`\beta_2 = 0.95`, learning rate 0.025) up the gradient of the
ChEES criterion :math:`\tfrac14 E[(\lVert x' - E x'\rVert^2 - \lVert x - E x\rVert^2)^2]`,
estimated across chains as

.. math::
    g = \frac{\sum_i \alpha_i\, t_m\,(\lVert x'_i - \bar x'\rVert^2 - \lVert x_i - \bar x\rVert^2)
        \,(x'_i - \bar x')^\top M^{-1} p'_i}{\sum_i \alpha_i},

(:math:`x_i` the start, :math:`x'_i, p'_i` the proposal and its momentum, :math:`\alpha_i` the
acceptance probability, :math:`\bar x` the chains' mean and :math:`\bar x'` the
:math:`\alpha`-weighted mean of the proposals), with the step size adapted alongside by dual
averaging on the mean acceptance (one step size: every chain runs the same :math:`L_m`).
Sampling afterwards uses the iterate average :math:`\log\bar T_m = m^{-\kappa}\log T_m +
(1 - m^{-\kappa})\log\bar T_{m-1}` and keeps jittering (``jitter=None`` runs
:math:`\lceil \bar T/\epsilon \rceil` steps every time). Each ChEES iteration reads
:math:`L_m` on the host (one synchronisation per warm-up step on a GPU).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from torchebm.core.argument_checks import count
from torchebm.core.base_sampler import norm_layers_in_eval
from torchebm.kernels import dispatch
from torchebm.samplers.algorithms import ChainState
from torchebm.samplers.step_ops import FusedStepOps, ReferenceStepOps, StepOps

Tensor = torch.Tensor

ADAPT = ("step_size", "chees")
"""The values of :meth:`Adaptive.warmup`'s ``adapt``."""

JITTER = ("halton", "uniform", None)
"""The values of :meth:`Adaptive.warmup`'s ``jitter`` (ChEES trajectories)."""

GAMMA, T0, KAPPA = 0.05, 10.0, 0.75
"""Dual averaging's :math:`\\gamma`, :math:`t_0`, :math:`\\kappa` (Hoffman and Gelman 2014)."""

CHEES_LEARNING_RATE, CHEES_BETA2, ADAM_EPS = 0.025, 0.95, 1e-8
"""Adam's settings for :math:`\\log T` in ChEES (:math:`\\beta_1 = 0`)."""


def acceptance_probability(log_accept_ratio: Tensor) -> Tensor:
    """:math:`\\min(1, r)` ``[B]`` float64 from :math:`\\log r` (a NaN ratio: 0, as it rejects)."""
    log_r = log_accept_ratio.to(torch.float64)
    return torch.nan_to_num(torch.exp(log_r.clamp(max=0.0)), nan=0.0)


def halton(n: int) -> float:
    """Element ``n >= 1`` of the base-2 Halton (van der Corput) sequence, in (0, 1):
    1/2, 1/4, 3/4, 1/8, 5/8, ..."""
    h, f = 0.0, 0.5
    while n > 0:
        h += f * (n & 1)
        n >>= 1
        f *= 0.5
    return h


class DualAveraging:
    r"""Dual averaging of :math:`\log\epsilon` (module docstring), for ``K`` step sizes at once.

    Args:
        initial: :math:`\epsilon_0`, a tensor ``[K]`` (``K = 1`` shared, ``K = B`` per chain),
            float64, on the chains' device.
        target: :math:`\delta`, the target acceptance rate in (0, 1).
    """

    def __init__(self, initial: Tensor, target: float):
        self.target = float(target)
        self.mu = torch.log(10.0 * initial)
        self.log_step = torch.log(initial)
        self.log_step_bar = torch.zeros_like(initial)
        self.h_bar = torch.zeros_like(initial)
        self.count = 0

    def update(self, accept_stat: Tensor) -> Tensor:
        """One iteration with the acceptance statistic ``[K]``; returns :math:`\\epsilon_m`."""
        self.count += 1
        m = self.count
        w = 1.0 / (m + T0)
        stat = torch.nan_to_num(accept_stat.to(self.h_bar.dtype), nan=0.0)
        self.h_bar = (1.0 - w) * self.h_bar + w * (self.target - stat)
        self.log_step = self.mu - math.sqrt(m) / GAMMA * self.h_bar
        eta = m ** (-KAPPA)
        self.log_step_bar = eta * self.log_step + (1.0 - eta) * self.log_step_bar
        return torch.exp(self.log_step)

    @property
    def step(self) -> Tensor:
        """The current :math:`\\epsilon_m` (the warm-up's)."""
        return torch.exp(self.log_step)

    @property
    def final(self) -> Tensor:
        """:math:`\\bar\\epsilon`, the step size after warm-up (:math:`\\epsilon_0` before any
        iteration)."""
        return torch.exp(self.log_step_bar) if self.count else torch.exp(self.log_step)


class ChEES:
    r"""ChEES adaptation of the HMC trajectory length :math:`T` (module docstring)."""

    def __init__(self, initial_length: float, jitter: Optional[str], device: torch.device):
        self.log_length = torch.tensor(math.log(initial_length), dtype=torch.float64, device=device)
        self.log_length_bar = torch.zeros_like(self.log_length)
        self.sq_grad = torch.zeros_like(self.log_length)
        self.count = 0
        self.jitter = jitter

    def update(self, x: Tensor, proposal: Any, accept_prob: Tensor, length: float,
               inv_mass: Optional[Tensor]) -> None:
        """One Adam step of :math:`\\log T` up the ChEES gradient, from the transition that
        started at ``x`` with trajectory length ``length`` (:math:`t_m`)."""
        self.count += 1
        b = x.shape[0]
        x0 = x.reshape(b, -1).to(torch.float64)
        x1 = proposal.x.reshape(b, -1).to(torch.float64)
        p1 = proposal.p.reshape(b, -1).to(torch.float64)
        finite = torch.isfinite(x1).all(dim=1) & torch.isfinite(p1).all(dim=1)
        alpha = torch.where(finite, accept_prob.to(torch.float64),
                            torch.zeros_like(accept_prob, dtype=torch.float64))
        x1 = torch.where(finite[:, None], x1, torch.zeros_like(x1))
        p1 = torch.where(finite[:, None], p1, torch.zeros_like(p1))
        weight = alpha.sum()
        c0 = x0.mean(dim=0)
        c1 = (alpha[:, None] * x1).sum(dim=0) / weight.clamp_min(1e-300)
        d0, d1 = x0 - c0, x1 - c1
        velocity = p1 if inv_mass is None else p1 * inv_mass.reshape(-1).to(torch.float64)
        per_chain = length * ((d1 * d1).sum(1) - (d0 * d0).sum(1)) * (d1 * velocity).sum(1)
        grad = torch.where(weight > 0, (alpha * per_chain).sum() / weight.clamp_min(1e-300),
                           torch.zeros_like(weight))
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        self.sq_grad = CHEES_BETA2 * self.sq_grad + (1.0 - CHEES_BETA2) * grad * grad
        v_hat = self.sq_grad / (1.0 - CHEES_BETA2 ** self.count)
        self.log_length = self.log_length + CHEES_LEARNING_RATE * grad / (v_hat.sqrt() + ADAM_EPS)
        eta = self.count ** (-KAPPA)
        self.log_length_bar = eta * self.log_length + (1.0 - eta) * self.log_length_bar

    @property
    def length(self) -> float:
        """:math:`T_m`, the warm-up's current trajectory length (a host read)."""
        return float(torch.exp(self.log_length))

    @property
    def final(self) -> Tensor:
        """:math:`\\bar T`, the trajectory length after warm-up."""
        return torch.exp(self.log_length_bar) if self.count else torch.exp(self.log_length)


MAX_LEAPFROG_STEPS = 1000
"""The most leapfrog steps a ChEES transition takes (the trajectory length is capped there)."""


def jittered_leapfrog_steps(length: float, step_size: float, jitter: Optional[str], k: int,
                            state: Optional["AdaptationState"] = None) -> tuple[int, float]:
    """``(L, t)`` of iteration ``k >= 1``: :math:`t = h_k T` (:math:`h_k` the ``jitter`` draw:
    ``halton(k)``, a uniform from ``state``'s generator, or 1 without jitter) and
    :math:`L = \\lceil t / \\epsilon \\rceil` in ``[1, MAX_LEAPFROG_STEPS]``."""
    if jitter == "halton":
        h = halton(k)
    elif jitter == "uniform":
        h = state.uniform_draw()
    else:
        h = 1.0
    t = h * length
    steps = t / step_size
    if not math.isfinite(steps):
        return MAX_LEAPFROG_STEPS, t
    return int(min(max(1, math.ceil(steps)), MAX_LEAPFROG_STEPS)), t


_STATE_KEYS = ("step_size", "target_accept", "per_chain", "dual_mu", "dual_log_step",
               "dual_log_step_bar", "dual_h_bar", "dual_count", "trajectory_length",
               "chees_log_length", "chees_log_length_bar", "chees_sq_grad", "chees_count",
               "jitter", "jitter_count", "uniform_state")
_JITTER_CODES = {None: 0, "halton": 1, "uniform": 2}


class AdaptationState:
    """What a warm-up learned: the step size (a 0-d tensor, or ``[B]`` per chain), the ChEES
    trajectory length and jitter (HMC), and the accumulators of both adaptations (to inspect, or
    to resume). Saved in the sampler's ``state_dict`` under ``adaptation.<name>`` (tensors)."""

    def __init__(self, dual: DualAveraging, per_chain: bool, chees: Optional[ChEES]):
        self.dual = dual
        self.per_chain = per_chain
        self.chees = chees
        self.jitter_count = 0  # trajectories jittered so far (the Halton index)
        self.uniform_state: Optional[Tensor] = None  # the uniform jitter's CPU generator state
        self.finish()

    def finish(self) -> None:
        """Take the accumulators' final values as the settings sampling uses."""
        final = self.dual.final
        self.step_size: Tensor = final if self.per_chain else final.reshape(())
        """The step size sampling uses, float64: 0-d (shared) or ``[B]`` (per chain)."""
        self.trajectory_length: Optional[float] = (
            None if self.chees is None else float(self.chees.final))
        """The ChEES trajectory length :math:`\\bar T` sampling uses (None: not adapted)."""

    def uniform_draw(self) -> float:
        """One U(0, 1) draw of the uniform jitter, advancing its generator state."""
        generator = torch.Generator()
        generator.set_state(self.uniform_state)
        u = float(torch.rand((), dtype=torch.float64, generator=generator))
        self.uniform_state = generator.get_state()
        return u

    def tensors(self) -> dict[str, Tensor]:
        d = self.dual
        out = {
            "step_size": self.step_size.clone(),
            "target_accept": torch.tensor(d.target, dtype=torch.float64),
            "per_chain": torch.tensor(self.per_chain),
            "dual_mu": d.mu.clone(), "dual_log_step": d.log_step.clone(),
            "dual_log_step_bar": d.log_step_bar.clone(), "dual_h_bar": d.h_bar.clone(),
            "dual_count": torch.tensor(d.count),
        }
        if self.chees is not None:
            c = self.chees
            out.update({
                "trajectory_length": torch.tensor(self.trajectory_length, dtype=torch.float64),
                "chees_log_length": c.log_length.clone(),
                "chees_log_length_bar": c.log_length_bar.clone(),
                "chees_sq_grad": c.sq_grad.clone(), "chees_count": torch.tensor(c.count),
                "jitter": torch.tensor(_JITTER_CODES[c.jitter]),
                "jitter_count": torch.tensor(self.jitter_count),
            })
        if self.uniform_state is not None:
            out["uniform_state"] = self.uniform_state.clone()
        return out

    @classmethod
    def from_tensors(cls, t: dict[str, Tensor], device: torch.device) -> "AdaptationState":
        def f64(name):
            return t[name].to(device=device, dtype=torch.float64)

        dual = DualAveraging.__new__(DualAveraging)
        dual.target = float(t["target_accept"])
        dual.mu, dual.log_step = f64("dual_mu"), f64("dual_log_step")
        dual.log_step_bar, dual.h_bar = f64("dual_log_step_bar"), f64("dual_h_bar")
        dual.count = int(t["dual_count"])
        chees = None
        if "chees_log_length" in t:
            chees = ChEES.__new__(ChEES)
            chees.log_length = f64("chees_log_length")
            chees.log_length_bar = f64("chees_log_length_bar")
            chees.sq_grad = f64("chees_sq_grad")
            chees.count = int(t["chees_count"])
            codes = {v: k for k, v in _JITTER_CODES.items()}
            chees.jitter = codes[int(t["jitter"])]
        state = cls(dual, bool(t["per_chain"]), chees)
        if chees is not None:
            state.jitter_count = int(t["jitter_count"])
        if "uniform_state" in t:
            state.uniform_state = t["uniform_state"].clone()
        state.step_size = f64("step_size")
        if state.per_chain != (state.step_size.dim() == 1):
            raise ValueError(
                f"adaptation.per_chain={state.per_chain} does not fit adaptation.step_size of "
                f"shape {tuple(state.step_size.shape)} (per chain: [B]; shared: 0-d)")
        if chees is not None:
            state.trajectory_length = float(t["trajectory_length"])
        return state


class Adaptive:
    """The warm-up adaptation of :class:`~torchebm.samplers.MetropolisAdjustedLangevin` and
    :class:`~torchebm.samplers.HamiltonianMonteCarlo` (a mixin of
    :class:`~torchebm.samplers.mcmc_sampler.MCMCSampler` subclasses). A subclass provides
    :meth:`_adapted_arguments` (the step's arguments for step sizes ``[B]``) and
    :meth:`_warmup_transition`."""

    default_target_accept: float
    adaptation: Optional[AdaptationState] = None

    # ------------------------------------------------------------------ the public API
    @torch.no_grad()
    def warmup(
        self,
        x: Optional[Tensor] = None,
        dim: Any = None,
        n_steps: int = 500,
        n_samples: int = 1,
        *,
        adapt: str = "step_size",
        target_accept: Optional[float] = None,
        per_chain: bool = False,
        jitter: Optional[str] = "halton",
        y: Any = None,
        model_kwargs: Optional[dict] = None,
        generator: Optional[torch.Generator] = None,
        n_chains: Optional[int] = None,
    ) -> Tensor:
        """Run ``n_steps`` warm-up steps from ``x`` (or ``n_samples`` ``randn`` chains of event
        shape ``dim``) while adapting, store the result in :attr:`adaptation` and return the
        chains' final states ``[B, *event]`` (start ``sample(x=...)`` from them).

        Args:
            adapt: ``"step_size"`` (dual averaging; MALA and HMC) or ``"chees"`` (HMC: ChEES
                trajectory length with dual-averaged step size).
            target_accept: :math:`\\delta` in (0, 1); default 0.574 (MALA) or 0.65 (HMC).
            per_chain: one step size per chain (``"step_size"`` only) instead of one shared.
            jitter: ``"halton"``, ``"uniform"`` or None: the jitter of the ChEES trajectory
                length, during warm-up and in later ``sample()`` calls.
            y, model_kwargs, generator, n_chains: as in ``sample()``.

        The warm-up starts from the sampler's current ``step_size`` value (and HMC's
        ``n_leapfrog_steps * step_size`` as the trajectory length), steps no scheduler, and
        replaces any earlier adaptation. Uses the per-step ops (path ``"fused"``) where they
        run, else the reference path; ``backend="reference"`` always the reference path.
        """
        owner = type(self).__name__
        if adapt not in ADAPT:
            raise ValueError(f"{owner}.warmup: adapt must be one of {ADAPT}, got {adapt!r}")
        if adapt == "chees" and not self._has_trajectory:
            raise ValueError(f"{owner}.warmup: adapt='chees' adapts an HMC trajectory length; "
                             f"{owner} has none (use adapt='step_size')")
        if adapt == "chees" and per_chain:
            raise ValueError(f"{owner}.warmup: adapt='chees' adapts one step size (every chain "
                             "runs the same number of leapfrog steps); use per_chain=False")
        if jitter not in JITTER:
            raise ValueError(f"{owner}.warmup: jitter must be one of {JITTER}, got {jitter!r}")
        target = self.default_target_accept if target_accept is None else target_accept
        if not isinstance(target, (int, float)) or not 0.0 < float(target) < 1.0:
            raise ValueError(f"{owner}.warmup: target_accept must be in (0, 1), got {target!r}")
        n_steps = count(owner, "n_steps", n_steps, minimum=1)
        if not isinstance(per_chain, bool):
            raise TypeError(f"{owner}.warmup: per_chain must be a bool, got {per_chain!r}")
        if n_chains is not None:
            n_samples = count(owner, "n_chains", n_chains, minimum=1)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"{owner}.warmup: generator must be a torch.Generator, got "
                            f"{type(generator).__name__}")
        self._check_model_device()
        mk = self._prepare_model_kwargs(y, model_kwargs)
        state_x = self._starting_state(x, dim, n_samples, generator)
        self._check_model_once(state_x, mk)
        fixed = self._fixed_arguments_unadapted(state_x)
        b = state_x.shape[0]

        eps0 = float(self.get_scheduled_value("step_size"))
        device = state_x.device
        dual = DualAveraging(torch.full((b if per_chain else 1,), eps0, dtype=torch.float64,
                                        device=device), target)
        chees = None
        if adapt == "chees":
            chees = ChEES(self.n_leapfrog_steps * eps0, jitter, device)
        adaptation = AdaptationState(dual, per_chain, chees)
        if jitter == "uniform":
            adaptation.uniform_state = _child_generator(generator).get_state()

        route = dispatch.choose_path(
            "reference" if self.backend == "reference" else "auto", device=device,
            dtype=state_x.dtype, chain_ops=(), step_ops=self.algorithm.step_ops,
            chain_blocker="the warm-up adapts at every step", sampler=owner,
        )
        step_ops: StepOps = (ReferenceStepOps(generator) if route.path == "reference"
                             else FusedStepOps(self._draw_seed(generator)))
        with norm_layers_in_eval(self.model):
            chain = self._warmup_loop(state_x, n_steps, mk, fixed, step_ops, adaptation, per_chain)
        adaptation.finish()
        self.adaptation = adaptation
        self.last_path = route.path
        return chain.x

    def _warmup_loop(self, state_x, n_steps, mk, fixed, step_ops, adaptation, per_chain):
        """The warm-up's transitions, adapting after each; returns the final chain state."""
        dual, chees, jitter = adaptation.dual, adaptation.chees, None
        if chees is not None:
            jitter = chees.jitter
        b = state_x.shape[0]
        target_fn = self._target(mk)
        chain = self.algorithm.init(target_fn, state_x)
        for t in range(n_steps):
            eps = dual.step.expand(b).to(state_x.dtype).contiguous()
            arguments = self._adapted_arguments(eps)
            length = None
            if chees is not None:
                adaptation.jitter_count += 1
                arguments["n_leapfrog"], length = jittered_leapfrog_steps(
                    chees.length, float(dual.step[0]), jitter, adaptation.jitter_count,
                    adaptation)
            start = chain
            chain, accept_stat, proposal = self._warmup_transition(
                step_ops, target_fn, chain, t, {**fixed, **arguments})
            dual.update(accept_stat if per_chain else accept_stat.mean().reshape(1))
            if chees is not None:
                chees.update(start.x, proposal, accept_stat, length, fixed.get("inv_mass"))
        return chain

    def reset_adaptation(self) -> None:
        """Forget the warm-up: later calls use the constructor's settings again."""
        self.adaptation = None

    # ------------------------------------------------------------------ what sample() asks
    def _adapted_schedule(self, x: Tensor, n_steps: int) -> Tensor:
        """The adapted step sizes as a chain op's schedule: float64 on the CPU, ``[n_steps]``
        (shared) or ``[n_steps, B]`` (per chain, constant over the steps: a stride-0 view),
        rounded through ``x``'s dtype as the per-step path passes them."""
        step = self.adaptation.step_size.to(device="cpu").to(x.dtype).to(torch.float64)
        if step.dim() == 0:
            return step.expand(n_steps).contiguous()
        return step.expand(n_steps, step.shape[0])

    def _adapted_step_sizes(self, x: Tensor) -> Optional[Tensor]:
        """The adapted step sizes ``[B]`` in ``x``'s dtype and device, or None (not adapted).
        Raises ValueError when per-chain step sizes do not match ``x``'s number of chains."""
        if self.adaptation is None:
            return None
        step = self.adaptation.step_size.to(device=x.device)
        b = x.shape[0]
        if step.dim() == 1 and step.shape[0] != b:
            raise ValueError(
                f"{type(self).__name__}: the warm-up adapted {step.shape[0]} per-chain step sizes, "
                f"but x has {b} chains; sample as many chains, or warm up again "
                f"(or reset_adaptation())")
        return step.expand(b).to(x.dtype).contiguous()

    def _leapfrog_schedule(self, n_steps: int) -> Optional[Tensor]:
        """The next ``n_steps`` transitions' ``L`` after a ChEES warm-up as a chain op's
        ``leapfrog_steps`` (int64 ``[n_steps]`` on the CPU; advancing the jitter as ``n_steps``
        per-step transitions do), or None."""
        if self.adaptation is None or self.adaptation.chees is None:
            return None
        return torch.tensor([self._next_leapfrog_steps() for _ in range(n_steps)],
                            dtype=torch.int64)

    def _next_leapfrog_steps(self) -> Optional[int]:
        """The next sampling transition's ``L`` after a ChEES warm-up (advancing the jitter),
        or None."""
        a = self.adaptation
        if a is None or a.chees is None:
            return None
        a.jitter_count += a.chees.jitter is not None
        n, _ = jittered_leapfrog_steps(a.trajectory_length, float(a.step_size.reshape(-1)[0]),
                                       a.chees.jitter, a.jitter_count, a)
        return n

    # ------------------------------------------------------------------ state_dict
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        if self.adaptation is not None:
            for name, value in self.adaptation.tensors().items():
                destination[prefix + "adaptation." + name] = value

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        head = prefix + "adaptation."
        mine = {k[len(head):]: state_dict.pop(k) for k in list(state_dict) if k.startswith(head)}
        unknown = sorted(set(mine) - set(_STATE_KEYS))
        if unknown:
            unexpected_keys.extend(head + k for k in unknown)
        elif mine:
            self.adaptation = AdaptationState.from_tensors(mine, self._torchebm_probe.device)
        else:
            self.adaptation = None
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    # ------------------------------------------------------------------ subclass hooks
    _has_trajectory = False

    def _fixed_arguments_unadapted(self, x: Tensor) -> dict[str, Any]:
        raise NotImplementedError

    def _adapted_arguments(self, step: Tensor) -> dict[str, Any]:
        """The step's keyword arguments for per-chain step sizes ``step`` ``[B]``."""
        raise NotImplementedError

    def _warmup_transition(self, ops: StepOps, target, state: ChainState, t: int,
                           arguments: dict) -> tuple[ChainState, Tensor, Any]:
        """One transition: ``(state, acceptance statistic [B] float64, proposal or None)``."""
        raise NotImplementedError


def _child_generator(generator: Optional[torch.Generator]) -> torch.Generator:
    """A CPU generator for the uniform jitter, seeded from ``generator`` (else the global RNG)."""
    device = generator.device if generator is not None else "cpu"
    seed = int(torch.randint(0, 2**62, (), generator=generator, device=device))
    child = torch.Generator()
    child.manual_seed(seed)
    return child


__all__ = ["ADAPT", "JITTER", "MAX_LEAPFROG_STEPS", "AdaptationState", "Adaptive", "ChEES",
           "DualAveraging", "acceptance_probability", "halton", "jittered_leapfrog_steps"]
