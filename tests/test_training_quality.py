"""End-to-end quality of EBM training: persistent CD learns the 8-Gaussians ring on the CPU.

The run: an MLP energy (2 -> 128 -> 128 -> 1, SiLU) trained with
``PersistentContrastiveDivergence`` (10,000-chain replay buffer, restart probability 0.05 from
``U[-3, 3]^2``) and ``LangevinDynamics`` (step 0.01, noise_scale 1: the unadjusted Langevin
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
import time

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
    n_iters: int = 2500,
    batch_size: int = 128,
    k_steps: int = 15,
    step_size: float = 0.01,
    hidden: int = 128,
    lr: float = 2e-3,
    lr_final: float = 2e-3,
    seed: int = 0,
    first_scale: float = 1.0,
    act: str = "SiLU",
):
    """Train the model of the module docstring; returns (model, sampler, loss_fn, seconds)."""
    torch.manual_seed(seed)
    model = EnergyModel(MLP(2, [hidden, hidden], activation=getattr(torch.nn, act)))
    with torch.no_grad():
        model.network.layers[0].weight.mul_(first_scale)
        model.network.layers[0].bias.mul_(first_scale)
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
    return model, sampler, loss_fn, time.perf_counter() - start


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
