"""torchebm.losses: contrastive divergence, plain and persistent (with a replay buffer)."""

from torchebm.losses.base_contrastive_divergence import BaseContrastiveDivergence
from torchebm.losses.contrastive_divergence import (
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
)

__all__ = ["BaseContrastiveDivergence", "ContrastiveDivergence", "PersistentContrastiveDivergence"]
