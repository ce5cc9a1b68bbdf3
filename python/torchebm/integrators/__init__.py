r"""torchebm.integrators: the leapfrog and Euler-Maruyama integrators as objects (TorchEBM 0.8.9's
names and methods), backed by the library's step functions.

- :class:`LeapfrogIntegrator`: kick-drift-kick leapfrog for :math:`H(x, p) = U(x) + \tfrac12
  p^\top M^{-1} p`, over :func:`torchebm.samplers.algorithms.leapfrog`.
- :class:`EulerMaruyamaIntegrator`: one Euler-Maruyama step of :math:`dx = f(x, t)\,dt +
  \sqrt{2D}\,dW`, over the Langevin update of :mod:`torchebm.kernels.reference`.

The samplers take them as ``integrator=``: ``LangevinDynamics`` and
``MetropolisAdjustedLangevin`` an :class:`EulerMaruyamaIntegrator`, ``HamiltonianMonteCarlo`` a
:class:`LeapfrogIntegrator` (or the names ``"euler_maruyama"``/``"leapfrog"``). The samplers
run their own fused form of the same update; an integrator object only selects it. TorchEBM
0.8.9's other integrators (Heun, Runge-Kutta, Dormand-Prince...) serve flow and diffusion
samplers, which are not part of this package.
"""

from torchebm.integrators.integrators import EulerMaruyamaIntegrator, LeapfrogIntegrator

__all__ = ["EulerMaruyamaIntegrator", "LeapfrogIntegrator"]

from torchebm._out_of_scope import module_getattr  # noqa: E402

__getattr__ = module_getattr("torchebm.integrators")  # TorchEBM 0.8.9 names left out: an ImportError saying so
