"""The PCD buffer warm-up (``init_steps``) is visible and costs what its docstring says."""

from __future__ import annotations

import torch
from torch import nn

from torchebm.core import BaseModel
from torchebm.losses import ContrastiveDivergence
from torchebm.samplers import LangevinDynamics


class CountingEnergy(BaseModel):
    """``E(x) = |x - m|^2 / 2`` that counts the rows its forward sees under autograd (one
    gradient evaluation per row on the per-step paths)."""

    def __init__(self):
        super().__init__()
        self.m = nn.Parameter(torch.zeros(2))
        self.rows_with_grad = 0

    def forward(self, x):
        if x.requires_grad:
            self.rows_with_grad += x.shape[0]
        return 0.5 * ((x - self.m) ** 2).sum(-1)


def test_warm_up_costs_init_steps_gradient_evaluations_per_row_and_shows_a_bar(monkeypatch, capsys):
    monkeypatch.setenv("TORCHEBM_PROGRESS", "1")
    model = CountingEnergy()
    sampler = LangevinDynamics(model, step_size=0.01, backend="reference")
    loss = ContrastiveDivergence(model, sampler, k_steps=2, persistent=True, buffer_size=40, init_steps=7)
    loss.initialize_buffer((2,), buffer_chunk_size=16)
    # The model check before the first step evaluates the energy without autograd; every
    # gradient is one row of one step: buffer_size * init_steps in all.
    assert model.rows_with_grad == 40 * 7
    err = capsys.readouterr().err
    for rows in ("chains 0-15 of 40", "chains 16-31 of 40", "chains 32-39 of 40"):
        assert f"ContrastiveDivergence buffer warm-up, {rows}" in err
    assert "7/7" in err  # each chunk's bar runs over the init_steps steps
    assert sampler.progress is False and "progress_desc" not in sampler.__dict__  # restored


def test_warm_up_bar_is_silenced_by_the_environment(monkeypatch, capsys):
    monkeypatch.setenv("TORCHEBM_PROGRESS", "0")
    model = CountingEnergy()
    sampler = LangevinDynamics(model, step_size=0.01)
    loss = ContrastiveDivergence(model, sampler, persistent=True, buffer_size=8, init_steps=3)
    loss.initialize_buffer((2,))
    assert capsys.readouterr().err == ""


def test_default_warm_up_is_ten_training_iterations_of_sampling():
    # The docstring: init_steps / k_steps training iterations at batch size buffer_size; the
    # defaults give 100 / 10 = 10.
    model = CountingEnergy()
    loss = ContrastiveDivergence(model, LangevinDynamics(model, step_size=0.01))
    assert loss.init_steps / loss.k_steps == 10
