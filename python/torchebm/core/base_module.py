"""``TorchEBMModule``: the ``nn.Module`` every torchebm component that holds tensors derives from.

It gives each component read-only ``device`` and ``dtype`` properties that follow the module
through ``.to()``, ``.double()``, ``.cuda()``: they are read from the first parameter when there
is one, else from a zero-element, non-persistent probe buffer, which ``nn.Module._apply`` moves
and casts like any other buffer (so a parameter-less sampler or analytic model still knows
where it lives, and checkpoints do not carry the probe).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Optional, Union

import torch
from torch import nn

from torchebm.core.argument_checks import check_dtype

DeviceLike = Union[str, torch.device, None]

_warned_keys: set[str] = set()


def warn_once(
    key: str,
    message: str,
    category: type[Warning] = DeprecationWarning,
    stacklevel: int = 3,
) -> None:
    """Issue ``warnings.warn(message, category)`` the first time ``key`` is seen in this process.

    Meant for hot paths (a per-step sampler loop, a per-batch loss): after the first call it
    returns before touching the warnings machinery at all, so repeating it costs a set lookup.
    """
    if key in _warned_keys:
        return
    _warned_keys.add(key)
    warnings.warn(message, category, stacklevel=stacklevel)


def _public_device(device: torch.device) -> torch.device:
    # TorchEBM 0.8.9 reports the first GPU as ``cuda`` rather than ``cuda:0`` so that
    # ``module.device == torch.device("cuda")`` holds; keep that for drop-in compatibility.
    if device.type == "cuda" and device.index == 0:
        return torch.device("cuda")
    return device


class TorchEBMModule(nn.Module):
    """``nn.Module`` with ``device``/``dtype`` properties and opt-in autocast.

    Args:
        device: where the module starts (``None``: the default device, normally the CPU).
        dtype: the floating dtype the module reports while it has no parameters
            (``None``: ``torch.get_default_dtype()``).
    """

    def __init__(self, device: DeviceLike = None, dtype: Optional[torch.dtype] = None):
        super().__init__()
        probe_dtype = torch.get_default_dtype() if dtype is None else check_dtype(dtype)
        self.register_buffer(
            "_torchebm_probe", torch.empty(0, dtype=probe_dtype, device=device), persistent=False
        )
        self.use_mixed_precision = False
        self.autocast_available = False
        self.amp_dtype = torch.float16

    def _reference_tensor(self) -> torch.Tensor:
        # Not cached: parameters may be registered after the first query, and a lookup is a
        # few microseconds against the milliseconds of any model evaluation.
        return next(self.parameters(), self._torchebm_probe)

    @property
    def device(self) -> torch.device:
        """Device of the first parameter, else of the probe buffer (``cuda:0`` reads ``cuda``)."""
        return _public_device(self._reference_tensor().device)

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the first parameter, else of the probe buffer."""
        return self._reference_tensor().dtype

    def setup_mixed_precision(
        self, use_mixed_precision: bool, amp_dtype: torch.dtype = torch.float16
    ) -> None:
        """Turn autocast on or off for :meth:`autocast_context`.

        Autocast runs on the module's device when PyTorch has an autocast for that device type
        (``torch.amp.is_autocast_available``: CUDA, and the CPU, where ``bfloat16`` and
        ``float16`` autocast exist); on any other device this warns (``UserWarning``) and leaves
        mixed precision off. :attr:`autocast_available` (as in TorchEBM 0.8.9) tells whether
        :meth:`autocast_context` now enters an autocast region.
        """
        self.amp_dtype = check_dtype(amp_dtype)
        self.use_mixed_precision = bool(use_mixed_precision)
        device_type = self._reference_tensor().device.type
        if self.use_mixed_precision and not torch.amp.is_autocast_available(device_type):
            warnings.warn(
                f"mixed precision needs a device with an autocast (cuda or cpu), but "
                f"{type(self).__name__} is on {self.device}; running in full precision",
                UserWarning,
                stacklevel=2,
            )
            self.use_mixed_precision = False
        self.autocast_available = self.use_mixed_precision

    def autocast_context(self) -> contextlib.AbstractContextManager:
        """``torch.autocast(amp_dtype)`` on the module's device when mixed precision is on, else
        a no-op."""
        if self.use_mixed_precision:
            return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)
        return contextlib.nullcontext()
