"""TorchEBM 0.8.9 checkpoints load (issue 11).

0.8.9's LangevinDynamics holds an Euler-Maruyama integrator module whose Butcher tableau is
saved as buffers, so its samplers' and losses' state dicts carry ``integrator._buf_a/_b/_c``
(``sampler.integrator._buf_*`` in a loss). Those keys are accepted and ignored in strict mode.

Two sources of 0.8.9 state dicts: a committed fixture built by hand in 0.8.9's layout
(tests/fixtures/make_torchebm089_fixture.py), which runs everywhere, and, where the
.venv-torchebm089 environment exists, state dicts written by TorchEBM 0.8.9 itself in a
subprocess.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from torchebm.core import BaseModel
from torchebm.losses import ContrastiveDivergence
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "torchebm089_pcd_state_dict.pt"
PYTHON_089 = ROOT / ".venv-torchebm089" / "bin" / "python"

MODEL_SOURCE = """
import torch
from torchebm.core import BaseModel

class Net(BaseModel):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.SiLU(), torch.nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)
"""
namespace: dict = {}
exec(MODEL_SOURCE, namespace)  # the same model class as the 0.8.9 subprocess defines
Net = namespace["Net"]


def pcd() -> ContrastiveDivergence:
    model = Net()
    sampler = LangevinDynamics(model, step_size=0.01, noise_scale=0.1)
    return ContrastiveDivergence(model, sampler, k_steps=2, persistent=True, buffer_size=16)


def test_the_hand_built_fixture_has_0_8_9s_integrator_keys():
    saved = torch.load(FIXTURE, weights_only=True)
    assert {"sampler.integrator._buf_a", "sampler.integrator._buf_b", "sampler.integrator._buf_c"} <= set(saved)


def test_a_0_8_9_loss_state_dict_loads_strictly_from_the_fixture():
    saved = torch.load(FIXTURE, weights_only=True)
    loss = pcd()
    result = loss.load_state_dict(saved)  # strict: raises on any unexpected or missing key
    assert result.missing_keys == [] and result.unexpected_keys == []
    for key, value in saved.items():
        if "integrator" not in key:
            torch.testing.assert_close(loss.state_dict()[key], value, rtol=0, atol=0)
    assert not any("integrator" in k for k in loss.state_dict())
    # The loaded loss trains on.
    out, negatives = loss(torch.randn(8, 2))
    assert torch.isfinite(out) and negatives.shape == (8, 2)


def test_a_0_8_9_sampler_state_dict_loads_strictly_from_the_fixture():
    saved = torch.load(FIXTURE, weights_only=True)
    sampler_part = {k[len("sampler."):]: v for k, v in saved.items() if k.startswith("sampler.")}
    sampler = LangevinDynamics(Net(), step_size=0.01)
    sampler.load_state_dict(sampler_part)
    torch.testing.assert_close(sampler.model.net[0].weight, saved["model.net.0.weight"], rtol=0, atol=0)


def test_a_0_8_9_checkpoint_leaves_the_schedules_where_they_are():
    # 0.8.9 saves no scheduler steps (it restarts its schedules at every call): loading one
    # keeps ours as they are, while our own checkpoints restore them.
    from torchebm.core import LinearScheduler

    saved = torch.load(FIXTURE, weights_only=True)
    loss = pcd()
    step = LinearScheduler(start_value=0.05, end_value=0.01, n_steps=100)
    loss.sampler.register_scheduler("step_size", step)
    step.advance(3)
    loss.load_state_dict(saved)
    assert step.step_count == 3
    ours = loss.state_dict()
    step.advance(10)
    loss.load_state_dict(ours)
    assert step.step_count == 3


def test_other_unexpected_keys_still_fail_in_strict_mode():
    saved = dict(torch.load(FIXTURE, weights_only=True))
    saved["sampler.integrator._buf_z"] = torch.zeros(1)
    with pytest.raises(RuntimeError, match=r"sampler.integrator._buf_z"):
        pcd().load_state_dict(saved)


WRITE_089 = MODEL_SOURCE + """
import sys
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics
from torchebm.losses import ContrastiveDivergence

torch.manual_seed(0)
model = Net()
sampler = LangevinDynamics(model, step_size=0.01, noise_scale=0.1)
loss = ContrastiveDivergence(model, sampler, k_steps=2, persistent=True, buffer_size=16)
loss(torch.randn(8, 2))  # creates and fills the replay buffer
hmc = HamiltonianMonteCarlo(Net(), step_size=0.1, n_leapfrog_steps=3)
out = sys.argv[1]
torch.save(loss.state_dict(), out + "/loss.pt")
torch.save(sampler.state_dict(), out + "/langevin.pt")
torch.save(hmc.state_dict(), out + "/hmc.pt")
"""


@pytest.fixture(scope="module")
def written_by_0_8_9(tmp_path_factory):
    if not PYTHON_089.exists():
        pytest.skip(f"TorchEBM 0.8.9's environment {PYTHON_089} is not there")
    out = tmp_path_factory.mktemp("torchebm089")
    subprocess.run([str(PYTHON_089), "-c", textwrap.dedent(WRITE_089), str(out)], check=True, timeout=300,
                   cwd="/tmp")  # not the repository root: 0.8.9's torchebm, not this one
    return out


@pytest.mark.slow  # the 0.8.9 subprocess spends seconds importing
def test_state_dicts_written_by_0_8_9_load_strictly(written_by_0_8_9):
    loss_sd = torch.load(written_by_0_8_9 / "loss.pt", weights_only=True)
    assert "sampler.integrator._buf_a" in loss_sd
    loss = pcd()
    loss.load_state_dict(loss_sd)
    for key, value in loss_sd.items():
        if "integrator" not in key:
            torch.testing.assert_close(loss.state_dict()[key], value, rtol=0, atol=0)

    langevin_sd = torch.load(written_by_0_8_9 / "langevin.pt", weights_only=True)
    assert "integrator._buf_a" in langevin_sd
    sampler = LangevinDynamics(Net(), step_size=0.01)
    sampler.load_state_dict(langevin_sd)
    torch.testing.assert_close(sampler.model.net[2].bias, langevin_sd["model.net.2.bias"], rtol=0, atol=0)

    hmc = HamiltonianMonteCarlo(Net(), step_size=0.1, n_leapfrog_steps=3)
    hmc.load_state_dict(torch.load(written_by_0_8_9 / "hmc.pt", weights_only=True))
