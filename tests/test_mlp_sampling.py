"""The samplers on recognised MLP energies: the whole-chain MLP ops by default (``last_path ==
"chain"``, ``last_route.op`` names the op), the same chains as the per-step fused path to
rounding, the reason recorded when a model is refused, and CD/PCD training on them."""

import pytest
import torch
from torch import nn

from torchebm.core import BaseModel
from torchebm.losses import ContrastiveDivergence, PersistentContrastiveDivergence
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics, MetropolisAdjustedLangevin
from torchebm.samplers import mcmc_sampler

F64 = torch.float64
SAMPLERS = [LangevinDynamics, MetropolisAdjustedLangevin, HamiltonianMonteCarlo]


class NetEnergy(BaseModel):
    """``forward = self.net(x).squeeze(-1)``, the form users write."""

    def __init__(self, width=32, act=nn.SELU, dtype=F64):
        super().__init__(dtype=dtype)
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Linear(2, width), act(), nn.Linear(width, width), act(), nn.Linear(width, 1)
        ).to(dtype)

    def forward(self, x):
        return self.net(x).squeeze(-1)


class ConvEnergy(BaseModel):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 1)

    def forward(self, x):
        return self.conv(x.unsqueeze(1)).pow(2).sum((1, 2))


def make(cls, model, **kw):
    kw.setdefault("step_size", 0.01)
    if cls is HamiltonianMonteCarlo:
        kw.setdefault("n_leapfrog_steps", 3)
    return cls(model, **kw)


@pytest.mark.parametrize("cls", SAMPLERS)
def test_mlp_energy_runs_on_its_chain_op_by_default(cls, require_path):
    require_path(cls, "fused", F64)
    s = make(cls, NetEnergy(), dtype=F64)
    s.sample(dim=2, n_samples=8, n_steps=3)
    assert s.last_path == "chain"
    assert s.last_route.op == cls.algorithm.mlp_chain_op
    assert s.last_route.skipped == ()


@pytest.mark.parametrize("cls", SAMPLERS)
@pytest.mark.parametrize("options", [{}, {"return_trajectory": True, "thin": 3}, {"return_diagnostics": True}])
def test_mlp_chain_equals_the_fused_path_to_rounding(cls, options, require_path, monkeypatch):
    require_path(cls, "fused", F64)
    model = NetEnergy()
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=F64)

    def run():
        s = make(cls, model, dtype=F64)
        out = s.sample(x=x0, n_steps=30, generator=torch.Generator().manual_seed(2), **options)
        return s.last_path, out

    path, chain = run()
    monkeypatch.setattr(mcmc_sampler.mlp, "recognise_mlp", lambda model, x: (None, "mlp: off"))
    fused_path, fused = run()
    assert (path, fused_path) == ("chain", "fused")
    if options.get("return_diagnostics"):
        (chain, cd), (fused, fd) = chain, fused
        for key in ("mean", "var", "energy"):
            torch.testing.assert_close(cd[key], fd[key], rtol=1e-9, atol=1e-10)
        if cls is not LangevinDynamics:
            torch.testing.assert_close(cd["acceptance_rate"], fd["acceptance_rate"], rtol=0, atol=0)
    torch.testing.assert_close(chain, fused, rtol=1e-9, atol=1e-10)


def test_an_optimiser_step_between_calls_is_seen(require_path, monkeypatch):
    require_path(LangevinDynamics, "fused", F64)
    model = NetEnergy()
    sampler = LangevinDynamics(model, step_size=0.01, dtype=F64)
    x0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(1), dtype=F64)

    def run():
        return sampler.sample(x=x0, n_steps=10, generator=torch.Generator().manual_seed(3))

    before = run()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05)  # in place, as an optimiser step
    after = run()
    assert sampler.last_path == "chain"
    monkeypatch.setattr(mcmc_sampler.mlp, "recognise_mlp", lambda model, x: (None, "mlp: off"))
    fused_after = run()
    assert sampler.last_path == "fused"
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, fused_after, rtol=1e-9, atol=1e-10)


def test_a_refused_model_records_why(require_path):
    require_path(LangevinDynamics, "fused")
    s = LangevinDynamics(ConvEnergy(), step_size=0.01)
    s.sample(dim=3, n_samples=4, n_steps=2)
    assert s.last_path == "fused"
    (reason,) = s.last_route.skipped
    assert reason.startswith("chain: ConvEnergy has no kernel_spec()") and "mlp: " in reason
    assert "Conv1d" in reason


@pytest.mark.parametrize("loss_cls", [ContrastiveDivergence, PersistentContrastiveDivergence])
def test_cd_training_samples_its_negatives_on_the_mlp_chain(loss_cls, require_path):
    require_path(LangevinDynamics, "fused")
    model = NetEnergy(width=16, act=nn.SiLU, dtype=torch.float32)
    sampler = LangevinDynamics(model, step_size=0.01)
    loss_fn = loss_cls(model=model, sampler=sampler, k_steps=5)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in model.parameters()]
    for _ in range(3):
        opt.zero_grad()
        loss, _ = loss_fn(data)
        loss.backward()
        opt.step()
    assert sampler.last_path == "chain" and sampler.last_route.op == "mlp_langevin_chain"
    assert all(p.grad is not None for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
