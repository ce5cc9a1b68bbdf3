"""``Diagnostics``: what ``sample(..., return_diagnostics=True)`` returns next to the samples.

TorchEBM's documentation reads the diagnostics two ways, and this one object serves both:

* as a **dict** (TorchEBM 0.8.9, seed 002): ``diag["mean"]`` ``[n_kept, *event]`` (mean over
  chains), ``diag["var"]`` ``[n_kept, *event]`` (variance over chains, ``unbiased=False``,
  clamped to ``[1e-10, 1e10]``; zeros for a single chain), ``diag["energy"]`` ``[n_kept]``
  (mean energy over chains) and, for MALA and HMC, ``diag["acceptance_rate"]`` ``[n_kept]``
  (fraction of chains that accepted at that step). ``keys()``, iteration, ``len``, ``in`` and
  ``==`` are the dict's.
* as a **tensor** ``[n_kept, 3, n_chains, *event]`` (seeds 000 and 003, e.g.
  ``diag[:, 2, 0, 0]`` is chain 0's energy at each kept step): slot 0 is the mean over chains
  and slot 1 the variance over chains (both broadcast over the chain axis), slot 2 each chain's
  own energy (broadcast over the event axes). Indexing with anything but a string, tensor
  methods and attributes (``.shape``, ``.cpu()``, ``.numpy()``, ``.to()``...) and torch
  functions (``torch.mean(diag)``) act on this tensor. It is built on first use and cached.
  The acceptance rate is read by key only.

Row ``k`` describes the state after step ``(k + 1) * thin`` (the thinned steps that
``return_trajectory`` keeps).

Convergence: :meth:`Diagnostics.ess` (bulk ESS by default) and :meth:`Diagnostics.rhat` (rank
R-hat by default) of the kept states ``draws`` ``[n_chains, n_kept, *event]``, with the
definitions of :func:`torchebm.diagnostics.ess` and :func:`torchebm.diagnostics.rhat` (ArviZ's).
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch

from torchebm.diagnostics.effective_sample_size import Prob, ess
from torchebm.diagnostics.rhat import rhat

VAR_CLAMP = (1e-10, 1e10)

ChainEnergy = Union[torch.Tensor, Callable[[], torch.Tensor]]


class Diagnostics(dict):
    """Per-kept-step sampler diagnostics, readable as a dict and as a stacked tensor.

    Args:
        mean: ``[n_kept, *event]``.
        var: ``[n_kept, *event]``.
        energy: ``[n_kept]``, mean energy over chains.
        n_chains: number of chains ``B``.
        acceptance_rate: ``[n_kept]`` for samplers with an accept/reject step, else None.
        chain_energy: each chain's energy ``[n_kept, B]``, or a zero-argument callable that
            computes it when the tensor view is first built (the whole-chain kernels record only
            the mean energy, so the samplers pass a callable that evaluates the model on the
            recorded trajectory). None: slot 2 holds the mean energy for every chain.
        draws: the kept states ``[n_chains, n_kept, *event]`` (the trajectory) that
            :meth:`ess` and :meth:`rhat` read; None: those methods explain that they are
            missing.
    """

    def __init__(
        self,
        mean: torch.Tensor,
        var: torch.Tensor,
        energy: torch.Tensor,
        *,
        n_chains: int,
        acceptance_rate: Optional[torch.Tensor] = None,
        chain_energy: Optional[ChainEnergy] = None,
        draws: Optional[torch.Tensor] = None,
    ):
        super().__init__(mean=mean, var=var, energy=energy)
        if acceptance_rate is not None:
            self["acceptance_rate"] = acceptance_rate
        self._n_chains = int(n_chains)
        self._chain_energy = chain_energy
        self._draws = draws
        self._stacked: Optional[torch.Tensor] = None

    # ----------------------------------------------------------------- convergence
    @property
    def draws(self) -> torch.Tensor:
        """The kept states ``[n_chains, n_kept, *event]`` (ArviZ's ``[chain, draw, *event]``)."""
        if self._draws is None:
            # Not AttributeError: that would fall through to __getattr__ (the tensor view).
            raise RuntimeError(
                "these diagnostics hold no draws (built without the trajectory), so they have "
                "no ESS or R-hat"
            )
        return self._draws

    def ess(
        self, method: str = "bulk", *, burn_in: int = 0, prob: Prob = None, relative: bool = False
    ) -> torch.Tensor:
        """ESS per event element of the kept states after the first ``burn_in`` of them:
        :func:`torchebm.diagnostics.ess` of ``draws[:, burn_in:]`` (bulk ESS by default);
        float64, shape ``event``."""
        return ess(self._after(burn_in), method, prob=prob, relative=relative)

    def rhat(self, method: str = "rank", *, burn_in: int = 0) -> torch.Tensor:
        """R-hat per event element of the kept states after the first ``burn_in`` of them:
        :func:`torchebm.diagnostics.rhat` of ``draws[:, burn_in:]`` (rank-normalised split
        R-hat by default); float64, shape ``event``."""
        return rhat(self._after(burn_in), method)

    def _after(self, burn_in: int) -> torch.Tensor:
        draws = self.draws
        n_kept = draws.shape[1]
        if isinstance(burn_in, bool) or not isinstance(burn_in, int) or not 0 <= burn_in < n_kept:
            raise ValueError(
                f"burn_in must be an int in [0, {n_kept}) (the kept steps), got {burn_in!r}"
            )
        return draws[:, burn_in:]

    # ----------------------------------------------------------------- the tensor view
    def tensor(self) -> torch.Tensor:
        """The stacked view ``[n_kept, 3, n_chains, *event]`` (built once, then cached)."""
        if self._stacked is None:
            mean, var = self["mean"], self["var"]
            n_kept, event = mean.shape[0], tuple(mean.shape[1:])
            per_chain = self._chain_energy
            if callable(per_chain):
                per_chain = per_chain()
            if per_chain is None:
                per_chain = self["energy"].unsqueeze(1).expand(n_kept, self._n_chains)
            per_chain = per_chain.to(mean.dtype).reshape(
                n_kept, self._n_chains, *([1] * len(event))
            )
            shape = (n_kept, self._n_chains, *event)
            self._stacked = torch.stack(
                [
                    mean.unsqueeze(1).expand(shape),
                    var.unsqueeze(1).expand(shape),
                    per_chain.expand(shape),
                ],
                dim=1,
            )
        return self._stacked

    def __getitem__(self, key):
        if isinstance(key, str):
            return dict.__getitem__(self, key)
        return self.tensor()[key]

    def __getattr__(self, name: str):
        # Only reached when normal lookup fails: dict methods (keys, items, get...) win.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.tensor(), name)

    @property
    def shape(self) -> torch.Size:
        """Shape of the tensor view, ``[n_kept, 3, n_chains, *event]``."""
        return self.tensor().shape

    def __array__(self, dtype=None, copy=None):
        array = self.tensor().detach().cpu().numpy()
        return array if dtype is None else array.astype(dtype)

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        def unwrap(value):
            if isinstance(value, Diagnostics):
                return value.tensor()
            if isinstance(value, (list, tuple)):
                return type(value)(unwrap(v) for v in value)
            return value

        return func(*unwrap(args), **{k: unwrap(v) for k, v in (kwargs or {}).items()})

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}: {tuple(v.shape)}" for k, v in self.items())
        return f"Diagnostics({parts}; tensor view [n_kept, 3, n_chains, *event])"

    def __reduce__(self):
        return (
            _rebuild,
            (
                dict(self),
                self._n_chains,
                self.tensor()[:, 2] if len(self["mean"]) else None,
                self._draws,
            ),
        )


def _rebuild(
    entries: dict,
    n_chains: int,
    slot2: Optional[torch.Tensor],
    draws: Optional[torch.Tensor] = None,
) -> Diagnostics:
    chain_energy = None
    if slot2 is not None:
        chain_energy = slot2.reshape(slot2.shape[0], n_chains, -1)[..., 0]
    return Diagnostics(
        entries["mean"],
        entries["var"],
        entries["energy"],
        n_chains=n_chains,
        acceptance_rate=entries.get("acceptance_rate"),
        chain_energy=chain_energy,
        draws=draws,
    )


def batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance over the chain axis of ``x`` ``[B, *event]`` (or of ``[B, K, *event]``
    per kept step: then ``[K, *event]`` each), as TorchEBM defines them: ``unbiased=False``,
    clamped to ``[1e-10, 1e10]``, zeros for one chain. No host synchronisation."""
    mean = x.mean(dim=0)
    if x.shape[0] < 2:
        return mean, torch.zeros_like(mean)
    return mean, x.var(dim=0, unbiased=False).clamp(*VAR_CLAMP)


__all__ = ["Diagnostics", "batch_moments", "VAR_CLAMP"]
