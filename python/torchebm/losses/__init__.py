"""torchebm.losses: contrastive divergence, plain and persistent (with a replay buffer), and
score matching (exact, sliced, denoising)."""

from torchebm.losses.base_contrastive_divergence import BaseContrastiveDivergence
from torchebm.losses.contrastive_divergence import (
    ContrastiveDivergence,
    PersistentContrastiveDivergence,
)
from torchebm.losses.base_score_matching import BaseScoreMatching
from torchebm.losses.score_matching import (
    DenoisingScoreMatching,
    ScoreMatching,
    SlicedScoreMatching,
)

__all__ = ["BaseContrastiveDivergence", "ContrastiveDivergence", "PersistentContrastiveDivergence",
           "BaseScoreMatching", "ScoreMatching", "SlicedScoreMatching", "DenoisingScoreMatching"]

from torchebm._out_of_scope import module_getattr  # noqa: E402

__getattr__ = module_getattr("torchebm.losses")  # TorchEBM 0.8.9 names left out: an ImportError saying so
