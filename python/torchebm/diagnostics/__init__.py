"""torchebm.diagnostics: what sampler runs report and how to judge them.

- :func:`ess`, :func:`mcse`, :func:`rhat`: effective sample size, Monte Carlo standard error and
  :math:`\\hat R` of draws ``[chain, draw, *event]`` with ArviZ's definitions (bulk/tail ESS,
  rank-normalised split :math:`\\hat R`...), in torch on the draws' device.
- :func:`nested_rhat`: nested :math:`\\hat R` for many short chains grouped in superchains
  (Margossian et al. 2024).
- :class:`Diagnostics`: the per-step record ``sample(..., return_diagnostics=True)`` returns,
  readable as a dict (``mean``, ``var``, ``energy``, ``acceptance_rate``) and as a tensor
  ``[n_kept, 3, n_chains, *event]``; its :meth:`~Diagnostics.ess` and
  :meth:`~Diagnostics.rhat` give the bulk ESS and rank :math:`\\hat R` of the run.
- :func:`to_arviz`: a run as ``arviz.InferenceData`` (ArviZ optional).
- :func:`acceptance_summary`: mean / range / drift of the acceptance rate (MALA, HMC).
"""

from torchebm.diagnostics.acceptance import AcceptanceSummary, acceptance_summary
from torchebm.diagnostics.arviz_data import to_arviz
from torchebm.diagnostics.effective_sample_size import ESS_METHODS, MCSE_METHODS, ess, mcse
from torchebm.diagnostics.rhat import RHAT_METHODS, nested_rhat, rhat
from torchebm.diagnostics.sampler_diagnostics import Diagnostics

__all__ = [
    "AcceptanceSummary",
    "Diagnostics",
    "ESS_METHODS",
    "MCSE_METHODS",
    "RHAT_METHODS",
    "acceptance_summary",
    "ess",
    "mcse",
    "nested_rhat",
    "rhat",
    "to_arviz",
]
