"""End-to-end quality of EBM training: persistent CD learns the 8-Gaussians ring on the CPU.

The run: an MLP energy (2 -> 128 -> 128 -> 1, LeakyReLU) trained with
``PersistentContrastiveDivergence`` (10,000-chain replay buffer, restart probability 0.05 from
``U[-3, 3]^2``, 15 Langevin steps per batch of 128, 2,000 Adam steps) and ``LangevinDynamics`` (step 0.01, noise_scale 1: the unadjusted Langevin
sampler of ``exp(-E)`` itself, no cold-noise trick) on ``eight_gaussians(radius=2, std=0.2)``.

Model samples: 2,000 of the persistent chains, moved a further 100 Langevin steps under the
final, frozen model, so every sample is a state of the trained model's own Markov chain.

Checks:

* coverage: each sample is assigned to its nearest mode; every mode must hold between 5% and
  20% of the samples (a perfect model gives 12.5% +- 0.7% each);
* MMD between the model samples and 2,000 fresh data points, against a threshold derived from
  the data-vs-data MMD (see :func:`test_pcd_learns_eight_gaussians` for the derivation).
"""

from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from torchebm.core import EnergyModel, MLP
from torchebm.datasets import eight_gaussian_means, eight_gaussians
from torchebm.losses import PersistentContrastiveDivergence
from torchebm.samplers import LangevinDynamics

RADIUS, STD = 2.0, 0.2
N_EVAL = 2000
# Kernel bandwidth h of k(a, b) = exp(-|a - b|^2 / (2 h^2)): the scale of one mode (std 0.2,
# neighbouring modes 1.53 apart). The median heuristic would give h ~ 2 here, the ring's
# diameter, at which a model that has learnt the ring but not its 8 modes (a uniform band)
# looks almost like the data: see the docstring of the test.
BANDWIDTH = 0.25
N_REFERENCE_DRAWS = 10
THRESHOLD_FACTOR = 4.0


def mmd2(a: torch.Tensor, b: torch.Tensor, bandwidth: float = BANDWIDTH) -> float:
    """Biased (V-statistic) squared MMD with an RBF kernel, ``a`` [n, d] vs ``b`` [m, d]:
    ``mean k(a, a') + mean k(b, b') - 2 mean k(a, b)``."""
    gamma = 1.0 / (2 * bandwidth**2)

    def k(u, v):
        return torch.exp(-gamma * torch.cdist(u, v).square()).mean()

    a, b = a.double(), b.double()
    return float(k(a, a) + k(b, b) - 2 * k(a, b))


def train_pcd(
    *,
    n_iters: int = 2000,
    batch_size: int = 128,
    k_steps: int = 15,
    step_size: float = 0.01,
    hidden: int = 128,
    lr: float = 2e-3,
    lr_final: float = 3e-4,
    seed: int = 0,
):
    """Train the model of the module docstring; returns (sampler, loss_fn, seconds)."""
    torch.manual_seed(seed)
    # LeakyReLU rather than a smooth activation: with SiLU the same budget learns the ring
    # but not its 8 modes (a uniform band; the network's smooth, low-frequency start needs
    # many more steps to carve bumps of width 0.2).
    model = EnergyModel(MLP(2, [hidden, hidden], activation=torch.nn.LeakyReLU))
    sampler = LangevinDynamics(model, step_size=step_size, noise_scale=1.0)
    loss_fn = PersistentContrastiveDivergence(
        model=model,
        sampler=sampler,
        k_steps=k_steps,
        buffer_size=10_000,
        init_steps=0,
        new_sample_ratio=0.05,
        energy_reg_weight=0.0,
        buffer_init="uniform",
        buffer_init_scale=3.0,
    )
    # beta1 = 0: the CD gradient is a difference of two noisy Monte Carlo means whose target
    # moves with the model; momentum over stale estimates destabilises it (as in IGEBM/JEM).
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.0, 0.999))
    # Geometric decay lr -> lr_final: a large rate to learn the modes fast, a small one at the
    # end so the final model (and its chains' mode weights) stops jittering between updates.
    decay = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: (lr_final / lr) ** (i / n_iters)
    )
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(n_iters):
        data = eight_gaussians(batch_size, radius=RADIUS, std=STD, generator=generator)
        loss, _ = loss_fn(data, generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        decay.step()
    return sampler, loss_fn, time.perf_counter() - start


def model_samples(sampler, loss_fn, generator: torch.Generator, n_steps: int = 100) -> torch.Tensor:
    """``N_EVAL`` persistent chains continued ``n_steps`` under the frozen model, [N_EVAL, 2]."""
    rows = torch.randperm(loss_fn.buffer_size, generator=generator)[:N_EVAL]
    return sampler.sample(x=loss_fn.replay_buffer[rows], n_steps=n_steps, generator=generator)


def mode_coverage(samples: torch.Tensor) -> torch.Tensor:
    """Fraction of ``samples`` [n, 2] nearest to each of the 8 means, [8]."""
    nearest = torch.cdist(samples.double(), eight_gaussian_means(RADIUS)).argmin(dim=1)
    return torch.bincount(nearest, minlength=8).double() / samples.shape[0]


def reference_mmd2(generator: torch.Generator) -> torch.Tensor:
    """Squared MMD between independent data draws of ``N_EVAL`` points, [N_REFERENCE_DRAWS]."""
    return torch.tensor([
        mmd2(
            eight_gaussians(N_EVAL, radius=RADIUS, std=STD, generator=generator),
            eight_gaussians(N_EVAL, radius=RADIUS, std=STD, generator=generator),
        )
        for _ in range(N_REFERENCE_DRAWS)
    ])


def ring_without_modes(n: int, generator: torch.Generator) -> torch.Tensor:
    """A failure mode: the ring learnt without its modes (uniform angle, radial std STD)."""
    angle = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    r = RADIUS + STD * torch.randn(n, generator=generator, dtype=torch.float64)
    return torch.stack([r * angle.cos(), r * angle.sin()], dim=1)


def one_mode_missing(n: int, generator: torch.Generator) -> torch.Tensor:
    """A failure mode: mode 0 dropped, its mass spread over the other 7."""
    x = eight_gaussians(2 * n, radius=RADIUS, std=STD, generator=generator)
    keep = torch.cdist(x.double(), eight_gaussian_means(RADIUS)).argmin(dim=1) != 0
    return x[keep][:n]


@pytest.mark.slow
def test_pcd_learns_eight_gaussians(one_thread):
    """PCD + Langevin + MLP learns all 8 modes, at the right weights and widths.

    Threshold derivation. Let ``R`` be the squared MMD (RBF kernel, h = 0.25) between two
    independent data draws of 2,000 points: its mean over 10 draws is the MMD^2 that sampling
    noise alone produces at this sample size (about 9e-4, standard deviation about 2e-4).
    A mean + 3 std rule would demand a model indistinguishable from the data at n = 2,000,
    which no finite network trained for seconds is; what the test must separate is "learnt the
    distribution" from the ways CD training fails. Measured at this n and h, in units of
    mean(R): the ring without its modes scores about 27, one mode missing 10, every mode 1.5x
    too wide (std 0.3) 8, one mode at twice its weight 6.5, modes 1.25x too wide 3.4.
    The threshold is 4 mean(R) (2 mean(R)^(1/2) in MMD units): it rejects the first four and
    accepts the last; the test re-measures the first two on every run and asserts they
    exceed it, so the threshold is shown to have power here. Trained models over seeds 0-6
    scored 0.8-2.7 mean(R).
    """
    sampler, loss_fn, seconds = train_pcd()
    generator = torch.Generator().manual_seed(1234)
    samples = model_samples(sampler, loss_fn, generator)
    coverage = mode_coverage(samples)
    data = eight_gaussians(N_EVAL, radius=RADIUS, std=STD, generator=generator)
    score = mmd2(samples, data)
    reference = reference_mmd2(generator)
    threshold = THRESHOLD_FACTOR * float(reference.mean())
    failures = {
        "ring without modes": mmd2(ring_without_modes(N_EVAL, generator), data),
        "one mode missing": mmd2(one_mode_missing(N_EVAL, generator), data),
    }
    report = (
        f"training {seconds:.1f} s; coverage per mode {[round(c, 3) for c in coverage.tolist()]}; "
        f"MMD^2 model-vs-data {score:.5f} (MMD {math.sqrt(max(score, 0)):.4f}); reference "
        f"MMD^2 data-vs-data {float(reference.mean()):.5f} +- {float(reference.std()):.5f} "
        f"over {N_REFERENCE_DRAWS} draws; threshold {threshold:.5f}; failure modes "
        + ", ".join(f"{k} {v:.5f}" for k, v in failures.items())
    )
    print("\n" + report)
    for name, value in failures.items():
        assert value > threshold, f"threshold has no power against '{name}': {report}"
    assert bool(((coverage >= 0.05) & (coverage <= 0.20)).all()), f"mode coverage: {report}"
    assert score < threshold, f"MMD: {report}"


def test_toy2d_example_writes_one_figure_per_dataset(tmp_path):
    """``examples/train_toy2d.py`` runs end to end (a few steps) and writes its PNGs."""
    script = Path(__file__).resolve().parents[1] / "examples" / "train_toy2d.py"
    result = subprocess.run(
        [sys.executable, str(script), "--iters", "5", "--no-progress", "--out", str(tmp_path),
         "--datasets", "two_moons", "checkerboard"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    for name in ("two_moons", "checkerboard"):
        png = tmp_path / f"{name}.png"
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
