"""Training helpers with TorchEBM 0.8.9's names: ``save_checkpoint``, ``load_checkpoint``,
``update_ema`` and ``requires_grad``.

A checkpoint is one ``torch.save`` file ``{checkpoint_dir}/{step:07d}.pt`` holding a dict:
``"model"`` (the model's state dict; a wrapper with ``.module``, such as DDP, saves the wrapped
module's), ``"opt"`` (the optimizer's), ``"step"``, and, when given, ``"ema"`` and ``"args"``. A
loss is an ``nn.Module``: pass it as ``model`` to save its model, sampler and replay buffer
together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn


def _unwrapped(model: nn.Module) -> nn.Module:
    """The module a DDP/DataParallel-style wrapper holds as ``.module``, else ``model``."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


@torch.no_grad()
def update_ema(ema_model: nn.Module, model: nn.Module, decay: float = 0.9999) -> None:
    r"""Blend ``ema_model``'s parameters toward ``model``'s of the same name:
    :math:`\bar\theta \leftarrow d\,\bar\theta + (1 - d)\,\theta` (parameters missing from
    ``ema_model`` are skipped; an EMA parameter on another device is moved to the model's)."""
    averaged = dict(ema_model.named_parameters())
    for name, param in model.named_parameters():
        target = averaged.get(name)
        if target is None:
            continue
        if target.device != param.device:
            target.data = target.data.to(param.device)
        target.mul_(decay).add_(param.detach(), alpha=1 - decay)


def requires_grad(model: nn.Module, flag: bool = True) -> None:
    """Set ``requires_grad`` of every parameter of ``model`` to ``flag``."""
    for param in model.parameters():
        param.requires_grad_(flag)


def save_checkpoint(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    checkpoint_dir: str,
    ema_model: Optional[nn.Module] = None,
    args: Optional[dict[str, Any]] = None,
) -> str:
    """Save a training checkpoint (see the module docstring) and return its path."""
    checkpoint: dict[str, Any] = {
        "model": _unwrapped(model).state_dict(),
        "opt": optimizer.state_dict(),
        "step": step,
    }
    if ema_model is not None:
        checkpoint["ema"] = ema_model.state_dict()
    if args is not None:
        checkpoint["args"] = args
    Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    path = str(Path(checkpoint_dir) / f"{step:07d}.pt")
    torch.save(checkpoint, path)
    return path


def load_checkpoint(
    checkpoint_path: str,
    model: nn.Module,
    ema_model: Optional[nn.Module] = None,
    optimizer: Optional[torch.optim.Optimizer] = None,
    device: Optional[torch.device] = None,
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` into ``model`` (strictly), and into
    ``ema_model`` and ``optimizer`` when given and saved; tensors are mapped to ``device``.
    Returns the checkpoint dict (``step``, ``args``...).

    The file is read with ``torch.load(weights_only=False)``: it holds the optimizer state and
    ``args``, which are not all tensors. Load only checkpoints you trust.
    """
    checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=False)
    if "model" in checkpoint:
        _unwrapped(model).load_state_dict(checkpoint["model"])
    if ema_model is not None and "ema" in checkpoint:
        ema_model.load_state_dict(checkpoint["ema"])
    if optimizer is not None and "opt" in checkpoint:
        optimizer.load_state_dict(checkpoint["opt"])
    return checkpoint


__all__ = ["load_checkpoint", "requires_grad", "save_checkpoint", "update_ema"]
