"""torchebm.samplers: MCMC samplers for energy-based models.

- :class:`LangevinDynamics`: unadjusted Langevin dynamics / SGLD.
- :class:`HamiltonianMonteCarlo`: HMC with a leapfrog integrator (scalar or diagonal mass).
- :class:`MetropolisAdjustedLangevin` (alias ``MALA``): Langevin proposals with an MH correction.
- :class:`GradientDescentSampler`, :class:`NesterovSampler`: deterministic descent of the energy.
- :class:`ParallelTempering`: replica exchange over any of the above (docs/tempering_ais.md).
- :class:`AnnealedImportanceSampler`: log Z by annealed importance sampling (docs/tempering_ais.md).

The algorithms themselves are step functions in :mod:`torchebm.samplers.algorithms`, written
against the :class:`~torchebm.samplers.step_ops.StepOps` interface; the classes declare their
parameters and share one ``sample()`` (:class:`~torchebm.samplers.mcmc_sampler.MCMCSampler`).
Each call runs on one of three paths (``backend=``, ``sampler.last_path``): a whole-chain
kernel, per-step fused kernels, or the pure-PyTorch reference; see
:mod:`torchebm.kernels.dispatch`.
"""

from torchebm.samplers.annealed_importance import AISResult, AnnealedImportanceSampler
from torchebm.samplers.gradient_descent import GradientDescentSampler, NesterovSampler
from torchebm.samplers.hmc import HamiltonianMonteCarlo
from torchebm.samplers.langevin_dynamics import LangevinDynamics
from torchebm.samplers.mala import MALA, MetropolisAdjustedLangevin
from torchebm.samplers.parallel_tempering import ParallelTempering, TemperingDiagnostics, geometric_ladder

__all__ = [
    "LangevinDynamics",
    "HamiltonianMonteCarlo",
    "MetropolisAdjustedLangevin",
    "MALA",
    "GradientDescentSampler",
    "NesterovSampler",
    "ParallelTempering",
    "TemperingDiagnostics",
    "geometric_ladder",
    "AnnealedImportanceSampler",
    "AISResult",
]

from torchebm._out_of_scope import module_getattr  # noqa: E402

__getattr__ = module_getattr("torchebm.samplers")  # TorchEBM 0.8.9 names left out: an ImportError saying so
