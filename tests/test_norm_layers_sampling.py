"""Sampling puts the model's running-statistics norm layers in eval mode, and restores them.

Decision (issue 11): during ``sample()``, BatchNorm/InstanceNorm layers with running statistics
that are in training mode run in eval mode: the chains do not update the running statistics,
and each chain's energy does not depend on the other chains through batch statistics. Their
modes are restored afterwards (exceptions included); other layers keep their mode.
TorchEBM 0.8.9 samples in whatever mode the model is in.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torchebm.core import BaseModel
from torchebm.losses import ContrastiveDivergence
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics, MetropolisAdjustedLangevin

SAMPLERS = [
    lambda m: LangevinDynamics(m, step_size=0.01, noise_scale=0.1),
    lambda m: MetropolisAdjustedLangevin(m, step_size=0.01),
    lambda m: HamiltonianMonteCarlo(m, step_size=0.05, n_leapfrog_steps=2),
]


class BNNet(BaseModel):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.Dropout(0.0), nn.SiLU(), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


@pytest.mark.parametrize("make", SAMPLERS)
def test_sampling_leaves_running_statistics_and_modes_alone(make):
    model = BNNet().train()
    bn = model.net[1]
    before = {k: v.clone() for k, v in bn.state_dict().items()}
    make(model).sample(dim=2, n_samples=16, n_steps=5)
    for k, v in bn.state_dict().items():
        assert torch.equal(v, before[k]), k  # running_mean, running_var, num_batches_tracked
    assert model.training and bn.training and model.net[2].training


@pytest.mark.parametrize("make", SAMPLERS)
def test_chains_sample_the_eval_mode_energy(make):
    # The same seed gives the same chains from a model in train mode as in eval mode.
    x = torch.randn(8, 2)
    outs = []
    for train in (True, False):
        model = BNNet().train(train)
        outs.append(make(model).sample(x=x, n_steps=4, generator=torch.Generator().manual_seed(5)))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_modes_are_restored_when_sampling_raises():
    model = BNNet().train()
    sampler = LangevinDynamics(model, step_size=0.01)
    with pytest.raises(ValueError):
        sampler.sample(x=torch.full((4, 2), float("nan")), n_steps=2)
    assert model.net[1].training


def test_the_loss_still_trains_the_batch_statistics():
    # Outside sampling nothing changes: the loss's own energy evaluations run in training
    # mode and update the running statistics.
    model = BNNet().train()
    loss = ContrastiveDivergence(model, LangevinDynamics(model, step_size=0.01), k_steps=3)
    data = torch.randn(32, 2) * 2 + 1
    value, _ = loss(data)
    value.backward()
    assert model.net[1].num_batches_tracked.item() >= 1
