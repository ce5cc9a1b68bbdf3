"""Summaries of the Metropolis acceptance of a MALA or HMC run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Union

import torch


@dataclass(frozen=True)
class AcceptanceSummary:
    """Acceptance rates over the recorded steps.

    Attributes:
        mean: mean acceptance rate over the steps (and chains).
        min, max: lowest and highest per-step rate.
        first_half, second_half: mean rate over the first and the second half of the steps (a
            rate that still drifts between the halves means the chains were not yet stationary
            or a schedule is still moving).
        n_steps: number of steps summarised.
    """

    mean: float
    min: float
    max: float
    first_half: float
    second_half: float
    n_steps: int

    def __str__(self) -> str:
        return (
            f"acceptance {self.mean:.3f} (min {self.min:.3f}, max {self.max:.3f}; first half "
            f"{self.first_half:.3f}, second half {self.second_half:.3f}; {self.n_steps} steps)"
        )


def acceptance_summary(
    source: Union[Mapping[str, torch.Tensor], torch.Tensor],
) -> AcceptanceSummary:
    """Summarise acceptance from a sampler's diagnostics (``diag["acceptance_rate"]``), a
    tensor of per-step rates ``[n_steps]``, or a boolean accept mask ``[n_steps, n_chains]``.

    Raises:
        KeyError: diagnostics without ``acceptance_rate`` (Langevin has no accept step).
        ValueError: an empty or wrongly shaped tensor.
    """
    if isinstance(source, Mapping):
        if "acceptance_rate" not in source:
            raise KeyError(
                "diagnostics have no 'acceptance_rate' (only samplers with an accept/reject "
                "step, MALA and HMC, record one)"
            )
        source = source["acceptance_rate"]
    rates = torch.as_tensor(source).detach().to(device="cpu")
    if rates.dtype == torch.bool or rates.dim() == 2:
        if rates.dim() != 2:
            raise ValueError(
                f"an accept mask must have shape [n_steps, n_chains], got {tuple(rates.shape)}"
            )
        rates = rates.to(torch.float64).mean(dim=1)
    rates = rates.to(torch.float64)
    if rates.dim() != 1 or rates.numel() == 0:
        raise ValueError(f"acceptance rates must be a non-empty [n_steps] tensor, got {tuple(rates.shape)}")
    half = max(1, rates.numel() // 2)
    second = rates[half:] if rates.numel() > 1 else rates
    return AcceptanceSummary(
        mean=float(rates.mean()),
        min=float(rates.min()),
        max=float(rates.max()),
        first_half=float(rates[:half].mean()),
        second_half=float(second.mean()),
        n_steps=int(rates.numel()),
    )


__all__ = ["AcceptanceSummary", "acceptance_summary"]
