"""torchebm.diagnostics: what sampler runs report and how to judge them.

- :class:`Diagnostics`: the per-step record ``sample(..., return_diagnostics=True)`` returns,
  readable as a dict (``mean``, ``var``, ``energy``, ``acceptance_rate``) and as a tensor
  ``[n_kept, 3, n_chains, *event]``.
- :func:`acceptance_summary`: mean / range / drift of the acceptance rate (MALA, HMC).
- :func:`effective_sample_size`, :func:`monte_carlo_standard_error`: initial-positive-sequence
  (Geyer) or batch-means ESS over several chains.
- :func:`split_rhat`: rank-normalised (default) or classic split-R-hat.
"""

from torchebm.diagnostics.acceptance import AcceptanceSummary, acceptance_summary
from torchebm.diagnostics.effective_sample_size import (
    effective_sample_size,
    monte_carlo_standard_error,
)
from torchebm.diagnostics.rhat import split_rhat
from torchebm.diagnostics.sampler_diagnostics import Diagnostics

__all__ = [
    "AcceptanceSummary",
    "Diagnostics",
    "acceptance_summary",
    "effective_sample_size",
    "monte_carlo_standard_error",
    "split_rhat",
]
