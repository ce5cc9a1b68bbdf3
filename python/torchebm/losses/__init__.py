"""torchebm.losses: contrastive divergence, plain and persistent (with a replay buffer).

The classes load on first access (as in TorchEBM): ``torchebm.core.base_loss`` imports
``torchebm.losses.replay_buffer``, so importing the loss classes eagerly here would be circular.
"""

from importlib import import_module
from typing import Any

_LAZY = {
    "ContrastiveDivergence": "torchebm.losses.contrastive_divergence",
    "PersistentContrastiveDivergence": "torchebm.losses.contrastive_divergence",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'torchebm.losses' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | set(_LAZY))
