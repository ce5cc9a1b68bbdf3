r"""``to_arviz``: a sampler run as ArviZ's ``InferenceData``, for ArviZ's plots and summaries.

ArviZ is an optional dependency (``pip install 'arviz>=0.23,<1'``); this module imports it only
when :func:`to_arviz` is called.
"""

from __future__ import annotations

from typing import Optional

import torch

from torchebm.diagnostics.sampler_diagnostics import Diagnostics

ARVIZ_REQUIREMENT = "arviz>=0.23,<1"


def _numpy(value: torch.Tensor):
    """float64 NumPy copy (ArviZ computes in float64; half dtypes have no NumPy twin)."""
    return torch.as_tensor(value).detach().to(device="cpu", dtype=torch.float64).numpy()


def _per_chain(name: str, value, n_chains: int, n_draws: int):
    value = torch.as_tensor(value)
    if tuple(value.shape) != (n_chains, n_draws):
        raise ValueError(
            f"{name} must have shape [n_chains, n_draws] = [{n_chains}, {n_draws}] (the "
            f"trajectory's), got {tuple(value.shape)}"
        )
    return _numpy(value)


def to_arviz(
    trajectory: Optional[torch.Tensor] = None,
    diagnostics: Optional[Diagnostics] = None,
    *,
    var_name: str = "x",
    energy: Optional[torch.Tensor] = None,
    acceptance_rate: Optional[torch.Tensor] = None,
):
    r"""A run's draws as an ``arviz.InferenceData``.

    Args:
        trajectory: the draws ``[n_chains, n_draws, *event]``, the layout of
            ``sample(..., return_trajectory=True)`` (ArviZ's ``[chain, draw, *event]``, so no
            transpose). None: ``diagnostics.draws``.
        diagnostics: the :class:`~torchebm.diagnostics.Diagnostics` of the same run
            (``return_diagnostics=True``), for the sample statistics below.
        var_name: name of the variable in the ``posterior`` group.
        energy: each chain's energy :math:`E(x)` ``[n_chains, n_draws]`` (overrides the one in
            ``diagnostics``).
        acceptance_rate: per-chain acceptance ``[n_chains, n_draws]`` (probabilities or a
            boolean accept mask).

    Returns:
        ``arviz.InferenceData`` with a ``posterior`` group holding ``var_name`` (float64,
        dimensions ``chain``, ``draw``, ``{var_name}_dim_0``...) and, when any statistic is
        known, a ``sample_stats`` group with ``lp`` ``[chain, draw]`` (:math:`-E(x)`, the log
        density up to its constant, from ``energy``, else the per-chain energies of
        ``diagnostics``), ``acceptance_rate`` ``[chain, draw]`` (from ``acceptance_rate``) and
        ``mean_acceptance_rate`` ``[chain, draw]`` (the diagnostics' fraction of all chains
        that accepted at that step: one number per step, repeated for every chain, since the
        samplers do not record per-chain acceptance).

    Raises:
        ImportError: ArviZ is not installed (the message says how to install it).
        ValueError: no draws, or statistics whose shape is not ``[n_chains, n_draws]``.
    """
    try:
        import arviz
    except ImportError as exc:
        raise ImportError(
            f"to_arviz needs ArviZ, an optional dependency: pip install '{ARVIZ_REQUIREMENT}'"
        ) from exc
    if trajectory is None:
        if diagnostics is None:
            raise ValueError("to_arviz needs a trajectory or diagnostics that hold draws")
        trajectory = diagnostics.draws
    trajectory = torch.as_tensor(trajectory)
    if trajectory.dim() < 2:
        raise ValueError(
            "trajectory must have shape [n_chains, n_draws, *event], got shape "
            f"{tuple(trajectory.shape)}"
        )
    n_chains, n_draws = trajectory.shape[:2]
    stats = {}
    if energy is None and diagnostics is not None:
        slot2 = diagnostics.tensor()[:, 2]  # [n_kept, n_chains, *event], energy broadcast
        energy = slot2.reshape(slot2.shape[0], slot2.shape[1], -1)[..., 0].T
    if energy is not None:
        stats["lp"] = -_per_chain("energy", energy, n_chains, n_draws)
    if acceptance_rate is not None:
        stats["acceptance_rate"] = _per_chain("acceptance_rate", acceptance_rate, n_chains, n_draws)
    if diagnostics is not None and "acceptance_rate" in diagnostics:
        rate = torch.as_tensor(diagnostics["acceptance_rate"])
        stats["mean_acceptance_rate"] = _per_chain(
            "diagnostics['acceptance_rate']", rate.expand(n_chains, -1), n_chains, n_draws
        )
    return arviz.from_dict(
        posterior={var_name: _numpy(trajectory)}, sample_stats=stats or None
    )


__all__ = ["ARVIZ_REQUIREMENT", "to_arviz"]
