"""TorchEBM 0.8.9's import path for the energy models (``from torchebm.core.base_model import
BaseModel, GaussianModel``): :class:`~torchebm.core.energy_model.BaseModel` and every model class
of :mod:`torchebm.core.analytic_models`, re-exported. The library itself imports them from
where they are defined."""

from torchebm.core import analytic_models as _analytic_models
from torchebm.core.energy_model import BaseEnergyFunction, BaseModel, KernelSpec

# Every model class of analytic_models (new and old names), so that no list of them is kept here.
_MODEL_CLASSES = {
    name: value
    for name, value in vars(_analytic_models).items()
    if isinstance(value, type) and issubclass(value, BaseModel) and value is not BaseModel
}
globals().update(_MODEL_CLASSES)

__all__ = ["BaseEnergyFunction", "BaseModel", "KernelSpec", *sorted(_MODEL_CLASSES)]
