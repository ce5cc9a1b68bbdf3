"""torchebm.losses: contrastive divergence, plain and persistent (with a replay buffer)."""

from torchebm.losses.base_contrastive_divergence import BaseContrastiveDivergence
from torchebm.losses.contrastive_divergence import (
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
)

__all__ = ["BaseContrastiveDivergence", "ContrastiveDivergence", "PersistentContrastiveDivergence"]

from torchebm._out_of_scope import module_getattr  # noqa: E402

__getattr__ = module_getattr("torchebm.losses")  # TorchEBM 0.8.9 names left out: an ImportError saying so
