"""Three samplers on three 2-D landscapes: pictures and a speed table.

    python examples/demo.py --out demo_out          # what `make demo` runs (well under a minute)

For each landscape — the correlated Gaussian and the double well of the tutorials, and a
four-well mixture like the one in the "Sampling from EBMs" guide — each of LangevinDynamics,
HamiltonianMonteCarlo and MetropolisAdjustedLangevin runs a batch of chains from N(0, I),
timed, with diagnostics; then a few chains from one starting point are run again with their
trajectories recorded. Written to ``--out``:

    samples_<model>.png        final states of every chain, one panel per sampler, over E(x)
    trajectories_<model>.png   a few chains' paths, one panel per sampler, over E(x)
    diagnostics_<model>.png    mean energy and acceptance rate against step, per sampler

The drawn paths cost the same number of gradient evaluations for every sampler (an HMC step
spends ``n_leapfrog_steps`` of them, so its paths have fewer, longer steps).

A table is printed: sampler, model, chains x steps, steps/s (sampler iterations per second for
the whole batch), acceptance rate (Metropolis-corrected samplers), and the execution path the
sampler reports in ``sampler.last_path`` (``chain``: the whole chain in one kernel call;
``fused``: the model's gradient per step around fused update ops; ``reference``: PyTorch).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import torchebm  # noqa: E402
from torchebm.core import BaseModel, DoubleWellModel, GaussianModel  # noqa: E402
from torchebm.samplers import (  # noqa: E402
    HamiltonianMonteCarlo,
    LangevinDynamics,
    MetropolisAdjustedLangevin,
)
from torchebm.utils import plot_diagnostics, plot_samples, plot_trajectories  # noqa: E402


class FourWellModel(BaseModel):
    """Four Gaussian wells at (+-1.5, +-1.5); the two on the anti-diagonal are a little wider.

    E(x) = -log sum_k exp(-w_k |x - c_k|^2 / 2): a soft minimum over the wells, where a larger
    precision w_k makes a narrower, deeper-looking well. Gradient by autograd (a user model).
    """

    def __init__(self):
        super().__init__()
        centers = torch.tensor([[-1.5, -1.5], [1.5, 1.5], [-1.5, 1.5], [1.5, -1.5]])
        self.register_buffer("centers", centers)
        self.register_buffer("precisions", torch.tensor([1.0, 1.0, 0.8, 0.8]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sq_dist = ((x[:, None, :] - self.centers) ** 2).sum(-1)  # [B, 4]
        return -torch.logsumexp(-0.5 * self.precisions * sq_dist, dim=-1)


@dataclass
class Landscape:
    name: str
    title: str
    model: BaseModel
    start: tuple  # where the trajectory chains start
    box: tuple  # plotting box, (x_range, y_range)
    samplers: dict  # sampler name -> keyword arguments


def landscapes() -> list[Landscape]:
    gaussian = GaussianModel(torch.tensor([1.0, -1.0]), torch.tensor([[1.0, 0.5], [0.5, 2.0]]))
    return [
        Landscape(
            "gaussian", "Gaussian, mean (1, -1)", gaussian, (-2.0, 2.5), ((-3.0, 5.0), (-5.5, 3.5)),
            {
                "LangevinDynamics": dict(step_size=0.05, noise_scale=1.0),
                "HamiltonianMonteCarlo": dict(step_size=0.25, n_leapfrog_steps=8),
                "MetropolisAdjustedLangevin": dict(step_size=0.25),
            },
        ),
        Landscape(
            "double_well", "double well, barrier 2", DoubleWellModel(barrier_height=2.0),
            (0.0, 0.0), ((-2.0, 2.0), (-2.0, 2.0)),
            {
                "LangevinDynamics": dict(step_size=0.01, noise_scale=1.0),
                "HamiltonianMonteCarlo": dict(step_size=0.1, n_leapfrog_steps=8),
                "MetropolisAdjustedLangevin": dict(step_size=0.03),
            },
        ),
        Landscape(
            "four_wells", "four wells (user model, autograd)", FourWellModel(), (0.0, 0.0),
            ((-4.0, 4.0), (-4.0, 4.0)),
            {
                "LangevinDynamics": dict(step_size=0.05, noise_scale=1.0),
                "HamiltonianMonteCarlo": dict(step_size=0.3, n_leapfrog_steps=8),
                "MetropolisAdjustedLangevin": dict(step_size=0.2),
            },
        ),
    ]


SAMPLERS = {
    "LangevinDynamics": LangevinDynamics,
    "HamiltonianMonteCarlo": HamiltonianMonteCarlo,
    "MetropolisAdjustedLangevin": MetropolisAdjustedLangevin,
}


def execution_path(sampler: Any) -> str:
    """The path the sampler's last ``sample()`` call took (``sampler.last_path``): "chain"
    (whole chain in one kernel call), "fused" (model gradient per step, fused update op) or
    "reference" (pure PyTorch)."""
    return str(getattr(sampler, "last_path", None) or "?")


def acceptance(diagnostics: Any) -> Optional[float]:
    try:
        rate = diagnostics["acceptance_rate"]
    except (KeyError, TypeError, IndexError):
        return None
    return float(torch.as_tensor(rate, dtype=torch.float64).mean())


@dataclass
class Row:
    sampler: str
    model: str
    chains: int
    steps: int
    seconds: float
    acceptance: Optional[float]
    path: str

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 else math.inf


def run_demo(
    out: os.PathLike | str,
    n_chains: int = 1000,
    n_steps: int = 300,
    traj_chains: int = 4,
    traj_steps: int = 150,
    seed: int = 0,
    dpi: int = 110,
    log: Callable[[str], None] = print,
) -> list[Row]:
    """Sample every landscape with every sampler; write the figures to ``out``; return the rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[Row] = []
    for land in landscapes():
        finals, paths, diags = {}, {}, {}
        for name, cls in SAMPLERS.items():
            sampler = cls(model=land.model, **land.samplers[name])
            torch.manual_seed(seed)
            x0 = torch.randn(n_chains, 2)
            sampler.sample(x=x0[:8], n_steps=2)  # warm-up: first-call costs stay out of the timing
            start = time.perf_counter()
            samples, diagnostics = sampler.sample(x=x0, n_steps=n_steps, return_diagnostics=True)
            seconds = time.perf_counter() - start
            rows.append(Row(name, land.name, n_chains, n_steps, seconds, acceptance(diagnostics),
                            execution_path(sampler)))
            finals[name], diags[name] = samples, diagnostics
            # Paths of equal cost: an HMC step spends n_leapfrog_steps gradients, so it takes
            # fewer steps (and its long jumps stay readable).
            path_steps = max(1, traj_steps // getattr(sampler, "n_leapfrog_steps", 1))
            start_points = torch.tensor([land.start]).repeat(traj_chains, 1)
            traj = sampler.sample(x=start_points, n_steps=path_steps, return_trajectory=True)
            # The trajectory holds the states after each step; draw the paths from the start.
            paths[name] = torch.cat([start_points[:, None, :], traj.to(start_points.dtype)], dim=1)
        _figures(land, finals, paths, diags, out, dpi)
    log(format_table(rows))
    return rows


def _figures(land: Landscape, finals: dict, paths: dict, diags: dict, out: Path, dpi: int) -> None:
    (x_range, y_range) = land.box
    n = len(finals)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n + 0.8, 4.4))
    for ax, (name, samples) in zip(axes, finals.items()):
        plot_samples(samples, land.model, ax=ax, x_range=x_range, y_range=y_range, s=4, alpha=0.5,
                     colorbar=ax is axes[-1], title=f"{name}\n{samples.shape[0]} chains, final states")
    fig.suptitle(f"Samples: {land.title}")
    fig.tight_layout()
    fig.savefig(out / f"samples_{land.name}.png", dpi=dpi)
    plt.close(fig)

    fig, axes = plt.subplots(1, n, figsize=(4.4 * n + 0.8, 4.4))
    for ax, (name, traj) in zip(axes, paths.items()):
        plot_trajectories(traj, land.model, ax=ax, x_range=x_range, y_range=y_range,
                          linewidth=0.8, colorbar=ax is axes[-1],
                          title=f"{name}\n{traj.shape[0]} chains x {traj.shape[1] - 1} steps")
    fig.suptitle(f"Trajectories: {land.title}")
    fig.tight_layout()
    fig.savefig(out / f"trajectories_{land.name}.png", dpi=dpi)
    plt.close(fig)

    fig, axes = plt.subplots(n, 2, figsize=(10, 2.6 * n), squeeze=False)
    for row, (name, diagnostics) in zip(axes, diags.items()):
        try:
            plot_diagnostics(diagnostics, axes=row, title=None)
        except ValueError:
            pass
        row[0].set_title(f"{name}: mean energy")
        if not row[1].has_data():
            row[1].set_visible(False)
    fig.suptitle(f"Diagnostics: {land.title}")
    fig.tight_layout()
    fig.savefig(out / f"diagnostics_{land.name}.png", dpi=dpi)
    plt.close(fig)


def format_table(rows: list[Row]) -> str:
    head = ("sampler", "model", "chains x steps", "steps/s", "acceptance", "path")
    body = [
        (
            r.sampler,
            r.model,
            f"{r.chains} x {r.steps}",
            f"{r.steps_per_s:,.0f}",
            "-" if r.acceptance is None else f"{r.acceptance:.2f}",
            r.path,
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    kernels = torchebm.kernels
    backend = (
        f"compiled kernels: {'loaded (' + kernels.how_loaded() + ')' if kernels.available() else 'not loaded'}"
        f", CUDA: {'yes' if kernels.cuda_available() else 'no'}, threads: {torch.get_num_threads()}"
    )
    return "\n".join([backend, line(head), line(["-" * w for w in widths]), *map(line, body)])


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="demo_out", help="output folder for the PNG figures")
    parser.add_argument("--chains", type=int, default=1000, help="chains per timed run")
    parser.add_argument("--steps", type=int, default=300, help="sampler steps per timed run")
    parser.add_argument("--traj-chains", type=int, default=4, help="chains drawn as paths")
    parser.add_argument("--traj-steps", type=int, default=150, help="gradient evaluations per drawn path (an HMC step spends n_leapfrog_steps)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    run_demo(args.out, args.chains, args.steps, args.traj_chains, args.traj_steps, args.seed)
    print(f"figures in {Path(args.out).resolve()} ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
