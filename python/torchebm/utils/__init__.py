"""torchebm.utils"""

from torchebm.utils.visualization import (  # noqa: E402,F401  (matplotlib is imported lazily)
    energy_grid,
    plot_diagnostics,
    plot_energy_landscape,
    plot_samples,
    plot_trajectories,
)
from torchebm.utils.ema import EMA  # noqa: E402,F401
from torchebm.utils.training import (  # noqa: E402,F401
    load_checkpoint,
    requires_grad,
    save_checkpoint,
    update_ema,
)

from torchebm._out_of_scope import module_getattr  # noqa: E402

__getattr__ = module_getattr("torchebm.utils")  # TorchEBM 0.8.9 names left out: an ImportError saying so
