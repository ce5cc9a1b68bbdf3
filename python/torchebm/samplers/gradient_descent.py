r"""Deterministic samplers that descend the energy: plain and Nesterov-accelerated gradient
descent (TorchEBM 0.8.9's ``GradientDescentSampler`` and ``NesterovSampler``).

They find low-energy states rather than samples of :math:`e^{-E}`: use them to locate modes,
to polish MCMC samples, or as the noise-free limit of Langevin dynamics.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import torch
from torch import nn

from torchebm.core.argument_checks import real_number
from torchebm.core.base_module import DeviceLike
from torchebm.core.base_scheduler import BaseScheduler
from torchebm.samplers import algorithms
from torchebm.samplers.mcmc_sampler import MCMCSampler

Scheduled = Union[float, BaseScheduler]


class NesterovSampler(MCMCSampler, algorithm=algorithms.NESTEROV):
    r"""Nesterov's accelerated gradient descent on the energy, every chain independently.

    Step :math:`i`, with step size :math:`\eta_i` (may be scheduled) and momentum
    :math:`\mu \in [0, 1)`, from :math:`v_0 = 0`:

    .. math::
        v_{i+1} = \mu v_i - \eta_i \nabla E(x_i + \mu v_i), \qquad x_{i+1} = x_i + v_{i+1}.

    The step is :func:`torchebm.samplers.algorithms.nesterov_step`; the update runs in the
    ``leapfrog_kick_drift`` op on the ``"fused"`` path and in plain PyTorch on the
    ``"reference"`` path (there is no whole-chain kernel). No random numbers are drawn after the
    starting state. ``sample()`` is :meth:`MCMCSampler.sample
    <torchebm.samplers.mcmc_sampler.MCMCSampler.sample>`; the diagnostics' ``energy`` is the mean
    energy of the kept states.

    Args:
        model: the energy model (old keyword: ``energy_function``).
        step_size: :math:`\eta > 0` (float or scheduler).
        momentum: :math:`\mu`, in ``[0, 1)``.
        dtype, device: of the chains (dtype None: the rule of :class:`~torchebm.core.BaseSampler`).
    """

    def __init__(
        self, model: Optional[nn.Module] = None, step_size: Scheduled = 1e-3, momentum: float = 0.9,
        dtype: Optional[torch.dtype] = None, device: DeviceLike = None,
        *, energy_function: Optional[nn.Module] = None, backend: str = "auto", progress: bool = False,
    ):
        super().__init__(model, dtype, device, None, energy_function, backend, progress)
        self._schedule("step_size", step_size)
        self.momentum = real_number(type(self).__name__, "momentum", momentum, non_negative=True)
        if not self.momentum < 1:
            raise ValueError(f"{type(self).__name__}: momentum must be in [0, 1), got {momentum}")

    def _step_arguments(self) -> dict[str, Any]:
        return {"step_size": self.get_scheduled_value("step_size"), "momentum": self.momentum}

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, "
            f"step_size={self.get_scheduled_value('step_size')}, momentum={self.momentum})"
        )


class GradientDescentSampler(NesterovSampler):
    r"""Gradient descent on the energy: :math:`x_{i+1} = x_i - \eta_i \nabla E(x_i)` for every
    chain (:class:`NesterovSampler` with momentum 0).

    Args:
        model: the energy model (old keyword: ``energy_function``).
        step_size: :math:`\eta > 0` (float or scheduler).
        dtype, device: of the chains (dtype None: the rule of :class:`~torchebm.core.BaseSampler`).
    """

    def __init__(
        self, model: Optional[nn.Module] = None, step_size: Scheduled = 1e-3,
        dtype: Optional[torch.dtype] = None, device: DeviceLike = None,
        *, energy_function: Optional[nn.Module] = None, backend: str = "auto", progress: bool = False,
    ):
        super().__init__(
            model, step_size, 0.0, dtype, device,
            energy_function=energy_function, backend=backend, progress=progress,
        )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, "
            f"step_size={self.get_scheduled_value('step_size')})"
        )


__all__ = ["GradientDescentSampler", "NesterovSampler"]
