"""Neural energy models: ``EnergyModel`` turns any network into a :class:`BaseModel`, and
``MLP`` is a plain fully connected network to put inside it.

    model = EnergyModel(network=MLP(input_dim=2, hidden_dims=[32, 32], output_dim=1))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from torchebm.core.argument_checks import count
from torchebm.core.energy_model import BaseModel
from torchebm.core.base_module import DeviceLike


class EnergyModel(BaseModel):
    """A network ``f`` used as the energy, ``E(x) = f(x)``.

    ``f(x)`` may be ``[B]`` or ``[B, 1]`` (squeezed to ``[B]``); ``gradient`` is autograd's.
    Keyword arguments of ``forward`` (conditioning, e.g. ``y=``) are passed to the network.

    Args:
        network: any ``nn.Module``; stored as ``self.network``, so its parameters are the
            model's and ``model.device``/``model.dtype`` follow them.
    """

    def __init__(
        self,
        network: nn.Module,
        dtype: torch.dtype = torch.float32,
        device: DeviceLike = None,
    ):
        super().__init__(dtype=dtype, device=device)
        if not isinstance(network, nn.Module):
            raise TypeError(
                f"EnergyModel: network must be an nn.Module, got {type(network).__name__}"
            )
        self.network = network

    def forward(self, x: torch.Tensor, **model_kwargs: Any) -> torch.Tensor:
        """``f(x)`` as energies ``[B]``."""
        energy = self.network(x, **model_kwargs)
        if energy.dim() == 2 and energy.shape[1] == 1:
            energy = energy.squeeze(1)
        if energy.dim() != 1:
            raise ValueError(
                f"EnergyModel: network must return energies of shape (batch,) or (batch, 1), "
                f"got shape {tuple(energy.shape)} for x of shape {tuple(x.shape)}"
            )
        return energy


class MLP(nn.Module):
    """Fully connected network ``[B, input_dim] -> [B, output_dim]``.

    ``Linear -> activation`` for each hidden width, then a final ``Linear`` with no activation
    (an energy must be free to take any real value). With ``output_dim=1`` it is a scalar
    energy network for :class:`EnergyModel`.

    Args:
        input_dim: state dimension.
        hidden_dims: widths of the hidden layers (may be empty: a linear map).
        output_dim: output width.
        activation: called with no arguments to make each hidden activation module
            (a class such as ``nn.SiLU``, the default: smooth, so energy gradients are too).
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dims: Sequence[int] = (64, 64),
        output_dim: int = 1,
        activation: Callable[[], nn.Module] = nn.SiLU,
    ):
        super().__init__()
        widths = [count("MLP", "input_dim", input_dim, minimum=1)]
        widths += [
            count("MLP", f"hidden_dims[{i}]", h, minimum=1) for i, h in enumerate(hidden_dims)
        ]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), activation()]
        layers.append(nn.Linear(widths[-1], count("MLP", "output_dim", output_dim, minimum=1)))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
