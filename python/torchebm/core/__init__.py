"""torchebm.core: models, schedulers and the base classes of samplers and losses.

Old names from TorchEBM's earlier documentation are the same objects as the new ones:
``BaseEnergyFunction`` is ``BaseModel``, ``GaussianEnergy`` is ``GaussianModel``, and so on;
``CompositeEnergy`` is ``CompositeModel`` taking ``energy_functions=``.
"""

from torchebm.core.analytic_models import (
    AckleyEnergy,
    AckleyModel,
    AnalyticModel,
    BananaModel,
    BoothModel,
    DoubleWellEnergy,
    DoubleWellModel,
    GaussianEnergy,
    GaussianModel,
    HarmonicEnergy,
    HarmonicModel,
    HimmelblauModel,
    RastriginEnergy,
    RastriginModel,
    RosenbrockEnergy,
    RosenbrockModel,
    StyblinskiTangModel,
)
from torchebm.core.energy_model import BaseEnergyFunction, BaseModel
from torchebm.core.base_loss import BaseLoss
from torchebm.core.base_module import TorchEBMModule, warn_once
from torchebm.core.base_sampler import BaseSampler
from torchebm.core.base_scheduler import (
    BaseScheduler,
    ConstantScheduler,
    CosineScheduler,
    ExponentialDecayScheduler,
    LinearScheduler,
    MultiStepScheduler,
    WarmupScheduler,
)
from torchebm.core.composite_model import CompositeEnergy, CompositeModel
from torchebm.core.neural_models import MLP, EnergyModel
from torchebm.core.schedulable import Schedulable

__all__ = [
    "TorchEBMModule",
    "warn_once",
    "Schedulable",
    "BaseSampler",
    "BaseLoss",
    "BaseContrastiveDivergence",
    "BaseScoreMatching",
    # models
    "BaseModel",
    "AnalyticModel",
    "GaussianModel",
    "DoubleWellModel",
    "HarmonicModel",
    "RosenbrockModel",
    "AckleyModel",
    "RastriginModel",
    "HimmelblauModel",
    "BoothModel",
    "StyblinskiTangModel",
    "BananaModel",
    "CompositeModel",
    "EnergyModel",
    "MLP",
    # old model names
    "BaseEnergyFunction",
    "GaussianEnergy",
    "DoubleWellEnergy",
    "HarmonicEnergy",
    "RosenbrockEnergy",
    "AckleyEnergy",
    "RastriginEnergy",
    "CompositeEnergy",
    # schedulers
    "BaseScheduler",
    "ConstantScheduler",
    "LinearScheduler",
    "CosineScheduler",
    "ExponentialDecayScheduler",
    "MultiStepScheduler",
    "WarmupScheduler",
]


def __getattr__(name: str):
    # BaseContrastiveDivergence lives in torchebm.losses; TorchEBM 0.8.9 users import it from
    # here. Resolved on first use, so that core itself imports nothing from the losses.
    if name == "BaseContrastiveDivergence":
        from torchebm.losses.base_contrastive_divergence import BaseContrastiveDivergence

        return BaseContrastiveDivergence
    if name == "BaseScoreMatching":  # likewise
        from torchebm.losses.base_score_matching import BaseScoreMatching

        return BaseScoreMatching
    from torchebm._out_of_scope import module_getattr

    return module_getattr(__name__)(name)  # TorchEBM 0.8.9 names left out: an ImportError
