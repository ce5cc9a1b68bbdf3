"""torchebm.utils"""

from torchebm.utils.visualization import (  # noqa: E402,F401  (matplotlib is imported lazily)
    energy_grid,
    plot_diagnostics,
    plot_energy_landscape,
    plot_samples,
    plot_trajectories,
)
