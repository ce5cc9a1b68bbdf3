"""Train a small convolutional EBM on 12x12 images with persistent CD (JEM/IGEBM-style SGLD).

The data are synthetic, so the script needs no download: each image is one bar, horizontal or
vertical, 2 pixels wide at a random position, white (+1) on black (-1). The energy is a small
convolutional network ``E_theta: [B, 1, 12, 12] -> [B]``. Training is persistent contrastive
divergence with the settings that work for small images:

- ``LangevinDynamics(model, step_size=1.0, noise_std=0.01, clamp=(-1, 1))``: the step size and
  the noise chosen separately (``noise_std``), as in JEM; with ``noise_scale`` alone the noise
  would be ``sqrt(2 * 1.0) = 1.4`` per pixel and swamp the images;
- ``PersistentContrastiveDivergence(..., k_steps=30, buffer_init="uniform",
  buffer_init_scale=1.0, new_sample_ratio=0.05)``: a replay buffer of chains started from
  ``U[-1, 1]`` noise, 5% restarted at each use;
- ``energy_reg_weight=1.0`` keeps the energies near 0, and ``check_finite`` (on by default)
  stops at the first non-finite loss instead of training on it.

Writes into ``--out``: ``image_data.png`` (a grid of training images), ``image_buffer.png``
(a grid of replay-buffer chains after training: the model's samples) and ``image_loss.png``
(the loss and the two mean energies against the training step).

    python examples/train_small_images.py --out docs/assets/training     # the docs' pictures
    python examples/train_small_images.py --iters 50 --out /tmp/img       # a quick check
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from torchebm.core import BaseModel  # noqa: E402
from torchebm.losses import PersistentContrastiveDivergence  # noqa: E402
from torchebm.samplers import LangevinDynamics  # noqa: E402

SIZE = 12


def bars(n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` images ``[n, 1, SIZE, SIZE]`` in [-1, 1], each one bar 2 pixels wide."""
    images = -torch.ones(n, 1, SIZE, SIZE)
    vertical = torch.rand(n, generator=generator) < 0.5
    where = torch.randint(0, SIZE - 1, (n,), generator=generator)
    for i in range(n):
        k = int(where[i])
        if vertical[i]:
            images[i, 0, :, k : k + 2] = 1.0
        else:
            images[i, 0, k : k + 2, :] = 1.0
    return images


class ConvEnergy(BaseModel):
    """``E(x) = w^T flatten(f(x)) + c`` with ``f`` three 3x3 convolutions (SiLU)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.SiLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.SiLU(),   # 6x6
            nn.Conv2d(32, 32, 3, stride=2, padding=1), nn.SiLU(),   # 3x3
            nn.Flatten(), nn.Linear(32 * 3 * 3, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def grid(ax, images: torch.Tensor, rows: int, title: str) -> None:
    n = images.shape[0]
    cols = n // rows
    tiles = images[: rows * cols, 0].reshape(rows, cols, SIZE, SIZE)
    padded = torch.nn.functional.pad(tiles, (1, 1, 1, 1), value=-1.0)
    picture = padded.permute(0, 2, 1, 3).reshape(rows * (SIZE + 2), cols * (SIZE + 2))
    ax.imshow(picture.numpy(), cmap="gray", vmin=-1, vmax=1)
    ax.set_title(title)
    ax.axis("off")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("examples_out"))
    parser.add_argument("--iters", type=int, default=800, help="training steps")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--k", type=int, default=30, help="Langevin steps per training step")
    parser.add_argument("--step-size", type=float, default=1.0)
    parser.add_argument("--noise-std", type=float, default=0.01)
    parser.add_argument("--reg", type=float, default=1.0, help="energy_reg_weight (alpha)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads; one is fastest for this small network")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    data = bars(4096, generator)
    model = ConvEnergy()
    sampler = LangevinDynamics(model, step_size=args.step_size, noise_std=args.noise_std, clamp=(-1.0, 1.0))
    loss_fn = PersistentContrastiveDivergence(
        model=model,
        sampler=sampler,
        k_steps=args.k,
        buffer_size=2000,
        init_steps=0,
        new_sample_ratio=0.05,
        energy_reg_weight=args.reg,
        buffer_init="uniform",
        buffer_init_scale=1.0,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4, betas=(0.0, 0.999))
    history = []
    start = time.perf_counter()
    for i in range(args.iters):
        batch = data[torch.randint(0, data.shape[0], (args.batch,), generator=generator)]
        loss, negatives = loss_fn(batch, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i % 10 == 0:
            with torch.no_grad():
                history.append((i, loss.item(), model(batch).mean().item(), model(negatives).mean().item()))
    print(f"{args.iters} steps in {time.perf_counter() - start:.1f} s; sampler path: {sampler.last_path}")

    args.out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 6))
    grid(ax, data[:64], 8, "training images (one bar each)")
    fig.tight_layout()
    fig.savefig(args.out / "image_data.png", dpi=80)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 6))
    rows = torch.randperm(loss_fn.buffer_size, generator=generator)[:64]
    grid(ax, loss_fn.replay_buffer[rows].detach(), 8, f"replay buffer after {args.iters} steps")
    fig.tight_layout()
    fig.savefig(args.out / "image_buffer.png", dpi=80)
    plt.close(fig)

    steps, losses, e_data, e_model = zip(*history)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(steps, e_data, label="mean E(data)")
    ax.plot(steps, e_model, label="mean E(negatives)")
    ax.plot(steps, losses, label="loss", color="k", lw=0.8)
    ax.set_xlabel("training step")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "image_loss.png", dpi=80)
    plt.close(fig)
    print(f"figures in {args.out}")


if __name__ == "__main__":
    main()
