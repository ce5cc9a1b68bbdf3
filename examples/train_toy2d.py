"""Train an MLP energy with persistent contrastive divergence on each 2-D toy distribution.

For every dataset of ``torchebm.datasets`` this fits ``E_theta`` (2 -> 128 -> 128 -> 1,
LeakyReLU) by PCD: each step draws 128 chains from a 10,000-chain replay buffer (restarting
each from ``U[-s, s]^2`` with probability 0.05), moves them 15 steps of Langevin dynamics
``x <- x - eta clip(grad E(x), 30) + sqrt(2 eta) xi`` (eta = 0.01), and takes an Adam step on

    L = mean E(x_data) - mean E(x_chains) + alpha (mean E(x_data)^2 + mean E(x_chains)^2).

It then writes ``<out>/<dataset>.png``: the learned energy as a heatmap, samples of the
model (the persistent chains moved a further 100 steps under the final model) over the
energy's contour lines, and the data.

    python examples/train_toy2d.py                     # all datasets, ~4000 steps each
    python examples/train_toy2d.py --quick             # a short run (a few seconds each)
    python examples/train_toy2d.py --datasets two_moons checkerboard --out /tmp/toy
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from torchebm.core import EnergyModel, MLP  # noqa: E402
from torchebm.datasets import TOY_DATASETS, make_toy2d  # noqa: E402
from torchebm.losses import PersistentContrastiveDivergence  # noqa: E402
from torchebm.samplers import LangevinDynamics  # noqa: E402
from torchebm.utils.progress import progress  # noqa: E402


def train(name: str, n_iters: int, device: torch.device, seed: int, show_progress: bool):
    """Fit one dataset; returns (model, sampler, loss_fn, extent of the data)."""
    torch.manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed)
    extent = 1.15 * float(make_toy2d(name, 10_000, seed=seed).abs().max())
    model = EnergyModel(MLP(2, [128, 128], activation=torch.nn.LeakyReLU)).to(device)
    # grad_clip: thin data (two_moons) make the energy steep while it trains; without the
    # clip a step of 0.01 x |grad E| in the thousands throws chains out of the box and the
    # energies diverge (seen at about +-4000 after 4000 steps).
    sampler = LangevinDynamics(model, step_size=0.01, noise_scale=1.0, grad_clip=30.0)
    loss_fn = PersistentContrastiveDivergence(
        model=model,
        sampler=sampler,
        k_steps=15,
        buffer_size=10_000,
        init_steps=0,
        new_sample_ratio=0.05,
        energy_reg_weight=1e-4,  # keeps E near 0 without flattening the wells
        buffer_init="uniform",
        buffer_init_scale=extent,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.0, 0.999))
    # lr decays geometrically to 3e-4: fast early progress, a steady model at the end.
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 0.15 ** (i / n_iters))
    bar = progress(range(n_iters), desc=name, enabled=show_progress)
    for i in bar:
        x = make_toy2d(name, 128, generator=generator, device=device)
        loss, _ = loss_fn(x, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        decay.step()
        if i % 100 == 0:  # reading the loss is a device sync: do it rarely
            bar.set_postfix(loss=loss.item())
    return model, sampler, loss_fn, extent


@torch.no_grad()
def plot(name, model, sampler, loss_fn, extent, device, seed, path: Path) -> None:
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    rows = torch.randperm(loss_fn.buffer_size, generator=generator, device=device)[:2000]
    samples = sampler.sample(x=loss_fn.replay_buffer[rows], n_steps=100, generator=generator)
    data = make_toy2d(name, 2000, seed=seed + 2)

    grid = torch.linspace(-extent, extent, 200, device=device)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    energy = model(torch.stack([gx.flatten(), gy.flatten()], dim=1)).reshape(200, 200)
    # Colour scale: up to the 95th percentile, so the far walls do not wash out the wells.
    top = float(energy.flatten().quantile(0.95))
    lim = (-extent, extent)
    energy, samples = energy.cpu().numpy(), samples.cpu().numpy()

    fig, axes = plt.subplots(1, 3, figsize=(15, 5))
    im = axes[0].imshow(energy, origin="lower", extent=(*lim, *lim), cmap="viridis", vmax=top)
    fig.colorbar(im, ax=axes[0], fraction=0.046, label="E(x)")
    axes[0].set_title("learned energy")
    axes[1].contour(gx.cpu().numpy(), gy.cpu().numpy(), energy, levels=15, cmap="viridis",
                    vmax=top, linewidths=0.7)
    axes[1].scatter(samples[:, 0], samples[:, 1], s=2, c="crimson", alpha=0.5)
    axes[1].set_title("model samples over contours of E")
    axes[2].scatter(data[:, 0].numpy(), data[:, 1].numpy(), s=2, c="black", alpha=0.5)
    axes[2].set_title("data")
    for ax in axes:
        ax.set_xlim(*lim)
        ax.set_ylim(*lim)
        ax.set_aspect("equal")
    fig.suptitle(f"{name}: persistent CD, MLP energy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples_out"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="a short run (600 steps per dataset)")
    parser.add_argument("--iters", type=int, default=None, help="training steps per dataset")
    parser.add_argument("--datasets", nargs="+", choices=sorted(TOY_DATASETS), default=sorted(TOY_DATASETS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads; one is fastest for this small network")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    n_iters = args.iters or (600 if args.quick else 4000)
    device = torch.device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.datasets:
        start = time.perf_counter()
        model, sampler, loss_fn, extent = train(name, n_iters, device, args.seed, not args.no_progress)
        path = args.out / f"{name}.png"
        plot(name, model, sampler, loss_fn, extent, device, args.seed, path)
        print(f"{name}: {n_iters} steps in {time.perf_counter() - start:.1f} s -> {path}")


if __name__ == "__main__":
    main()
