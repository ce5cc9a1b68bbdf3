"""recognise_mlp skips its probe of forward() when the model's fingerprint (every Python value
its known code can read) equals the one of the last probe that passed; anything it cannot see
into probes at every call."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from torchebm.core import MLP, BaseModel, EnergyModel
from torchebm.kernels import mlp as mlpk
from torchebm.kernels.forward_fingerprint import fingerprint

SCALE = 2.0  # read by GlobalScaled.forward; test_a_global_read_by_forward_is_seen changes it


class Tempered(BaseModel):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.SiLU(), nn.Linear(8, 1))
        self.temperature = 1.0

    def forward(self, x):
        return self.net(x).squeeze(-1) / self.temperature


class GlobalScaled(BaseModel):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1) * SCALE


class Branching(Tempered):
    def forward(self, x):
        if self.temperature > 0:
            return self.net(x).squeeze(-1) / self.temperature
        return self.net(x).squeeze(-1)


class WithHelper(Tempered):
    def scaled(self, e):
        return e / self.temperature

    def forward(self, x):
        return self.scaled(self.net(x).squeeze(-1))


@pytest.fixture
def probes(monkeypatch):
    """The number of probes recognise_mlp has run."""
    calls = []
    real = mlpk._probe_mismatch
    monkeypatch.setattr(mlpk, "_probe_mismatch", lambda *a: calls.append(1) or real(*a))
    return calls


def energies(spec, x):
    return mlpk.mlp_energy_grad(x, **spec.op_args())[0]


def recognised(model, x):
    spec, reason = mlpk.recognise_mlp(model, x)
    assert spec is not None, reason
    return spec


@pytest.mark.parametrize(
    "build",
    [
        lambda: EnergyModel(MLP(2, [16, 16])),
        lambda: EnergyModel(nn.Sequential(nn.Linear(2, 8), nn.GELU(), nn.Linear(8, 1))),
        Tempered,
    ],
    ids=["EnergyModel(MLP)", "EnergyModel(Sequential)", "straight-line forward"],
)
def test_a_known_model_is_probed_once(build, probes):
    torch.manual_seed(0)
    model, x = build(), torch.randn(32, 2)
    spec = recognised(model, x)
    assert len(probes) == 1
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        model(x).sum().backward()
        opt.step()  # in place: the spec reads the new values
        assert recognised(model, x) is spec
        torch.testing.assert_close(energies(spec, x), model(x).detach(), rtol=1e-5, atol=1e-5)
    assert len(probes) == 1


def test_a_changed_attribute_is_seen(probes):
    model, x = Tempered(), torch.randn(8, 2)
    assert recognised(model, x).out_scale == pytest.approx(1.0)
    model.temperature = 4.0
    assert recognised(model, x).out_scale == pytest.approx(0.25)
    assert len(probes) == 3  # the first trace, the changed fingerprint, the new trace
    recognised(model, x)
    assert len(probes) == 3


def test_a_global_read_by_forward_is_seen(monkeypatch, probes):
    model, x = GlobalScaled(), torch.randn(8, 2)
    assert recognised(model, x).out_scale == pytest.approx(2.0)
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 3.0)
    assert recognised(model, x).out_scale == pytest.approx(3.0)


def test_a_replaced_submodule_is_seen():
    # No parameter changes: the trace's cache key stays, the fingerprint does not.
    torch.manual_seed(0)
    model, x = EnergyModel(MLP(2, [8, 8])), torch.randn(8, 2)
    assert recognised(model, x).layers[0].activation == "silu"
    model.network.layers[1] = nn.ReLU()  # the same attributes as the SiLU (inplace=False)
    spec = recognised(model, x)
    assert spec.layers[0].activation == "relu"
    torch.testing.assert_close(energies(spec, x), model(x).detach(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_class", [Branching, WithHelper])
def test_code_it_cannot_see_into_is_probed_every_call(model_class, probes):
    model, x = model_class(), torch.randn(8, 2)
    assert fingerprint(model, "cpu") is None
    for _ in range(3):
        recognised(model, x)
    assert len(probes) == 3
    model.temperature = 2.0
    assert recognised(model, x).out_scale == pytest.approx(0.5)


def test_no_fingerprint_under_a_hook_autocast_an_unknown_attribute_or_call():
    model = EnergyModel(MLP(2, [8]))
    assert fingerprint(model, "cpu") is not None
    handle = model.network.register_forward_hook(lambda m, i, out: 2 * out)
    assert fingerprint(model, "cpu") is None
    handle.remove()
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, out: out)
    try:
        assert fingerprint(model, "cpu") is None
    finally:
        handle.remove()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fingerprint(model, "cpu") is None
    model.network.widths = [2, 8, 1]  # a list: its contents could change unseen
    assert fingerprint(model, "cpu") is None
    tempered = Tempered()
    tempered.temperature = torch.tensor(2.0)  # a plain tensor: changed in place unseen
    assert fingerprint(tempered, "cpu") is None

    class Called(Tempered):
        def __call__(self, x):
            return 2 * super().__call__(x)

    assert fingerprint(Tempered(), "cpu") is not None and fingerprint(Called(), "cpu") is None


def test_a_hook_added_after_the_probe_is_honoured():
    torch.manual_seed(0)
    model, x = EnergyModel(MLP(2, [8])), torch.randn(8, 2)
    recognised(model, x)
    model.network.register_forward_hook(lambda m, i, out: 2 * out)
    spec, reason = mlpk.recognise_mlp(model, x)
    if spec is not None:  # the hook traced into the network, or refused: never the old spec
        torch.testing.assert_close(energies(spec, x), model(x).detach(), rtol=1e-5, atol=1e-5)
