"""A short script written against TorchEBM 0.8.9's API, run unchanged against this package.

It builds a model, a scheduled Langevin sampler, a persistent contrastive-divergence loss, an
optimizer and an EMA; trains; saves a checkpoint with ``torchebm.utils.save_checkpoint``;
resumes from it in fresh objects with ``load_checkpoint``; and checks dtypes, shapes, and that
the resumed training is bit-identical to the uninterrupted run.
"""

from __future__ import annotations

import textwrap

import torch

SCRIPT = textwrap.dedent('''
    import torch
    import torch.nn as nn
    from torch.utils.data import DataLoader

    from torchebm.core import BaseModel, LinearScheduler
    from torchebm.datasets import TwoMoonsDataset
    from torchebm.losses import ContrastiveDivergence
    from torchebm.samplers import LangevinDynamics
    from torchebm.utils import EMA, load_checkpoint, save_checkpoint


    class MLPEnergy(BaseModel):
        def __init__(self, input_dim=2, hidden_dim=32):
            super().__init__()
            self.network = nn.Sequential(
                nn.Linear(input_dim, hidden_dim), nn.SiLU(),
                nn.Linear(hidden_dim, hidden_dim), nn.SiLU(),
                nn.Linear(hidden_dim, 1),
            )

        def forward(self, x):
            return self.network(x).squeeze(-1)


    def make_run(seed):
        torch.manual_seed(seed)
        model = MLPEnergy()
        step_size = LinearScheduler(start_value=0.05, end_value=0.01, n_steps=200)
        sampler = LangevinDynamics(model=model, step_size=step_size, noise_scale=0.1)
        loss_fn = ContrastiveDivergence(model=model, sampler=sampler, k_steps=5, persistent=True,
                                        buffer_size=128, init_steps=5)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        ema = EMA(model, decay=0.99)
        return model, sampler, loss_fn, optimizer, ema


    def train(loss_fn, optimizer, ema, batches):
        for batch in batches:
            optimizer.zero_grad()
            loss, negatives = loss_fn(batch)
            loss.backward()
            optimizer.step()
            ema.update(loss_fn.model)
            assert loss.shape == () and loss.dtype == torch.float32
            assert negatives.shape == batch.shape and negatives.dtype == torch.float32


    dataset = TwoMoonsDataset(n_samples=512, noise=0.05, seed=0)
    batches = list(DataLoader(dataset, batch_size=64, shuffle=False))

    # Uninterrupted: 8 steps.
    model, sampler, loss_fn, optimizer, ema = make_run(0)
    train(loss_fn, optimizer, ema, batches)
    uninterrupted = {k: v.clone() for k, v in loss_fn.state_dict().items() if torch.is_tensor(v)}
    uninterrupted_ema = {k: v.clone() for k, v in ema.state_dict().items() if torch.is_tensor(v)}
    samples = sampler.sample(dim=2, n_samples=100, n_steps=10)
    assert samples.shape == (100, 2) and samples.dtype == torch.float32

    # Interrupted after 4 steps, checkpointed (the RNG state in args), resumed in fresh objects.
    model, sampler, loss_fn, optimizer, ema = make_run(0)
    train(loss_fn, optimizer, ema, batches[:4])
    path = save_checkpoint(loss_fn, optimizer, 4, CHECKPOINT_DIR, ema_model=ema,
                           args={"rng_state": torch.get_rng_state()})
    model, sampler, loss_fn, optimizer, ema = make_run(123)
    checkpoint = load_checkpoint(path, loss_fn, ema_model=ema, optimizer=optimizer)
    torch.set_rng_state(checkpoint["args"]["rng_state"])
    assert checkpoint["step"] == 4
    train(loss_fn, optimizer, ema, batches[4:])
    resumed = {k: v for k, v in loss_fn.state_dict().items() if torch.is_tensor(v)}
    resumed_ema = {k: v for k, v in ema.state_dict().items() if torch.is_tensor(v)}
    schedule_steps = sampler.schedulers["step_size"].step_count

    # float64 end to end.
    model64 = MLPEnergy().double()
    sampler64 = LangevinDynamics(model64, step_size=0.01, noise_scale=0.1)
    loss64, negatives64 = ContrastiveDivergence(model64, sampler64, k_steps=2)(
        torch.randn(16, 2, dtype=torch.float64))
    chains64 = sampler64.sample(x=torch.randn(8, 2, dtype=torch.float64), n_steps=3)
''')


def test_a_0_8_9_training_script_runs_and_resumes_bit_identically(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHEBM_PROGRESS", "0")
    namespace = {"CHECKPOINT_DIR": str(tmp_path / "checkpoints")}
    exec(compile(SCRIPT, "torchebm_089_script.py", "exec"), namespace)
    uninterrupted, resumed = namespace["uninterrupted"], namespace["resumed"]
    assert uninterrupted.keys() == resumed.keys()
    assert {"replay_buffer", "buffer_ptr", "model.network.0.weight",
            "sampler.scheduler_steps.step_size"} <= uninterrupted.keys()
    for key in uninterrupted:
        assert torch.equal(uninterrupted[key], resumed[key]), key
    for key in namespace["uninterrupted_ema"]:
        assert torch.equal(namespace["uninterrupted_ema"][key], namespace["resumed_ema"][key]), key
    assert namespace["schedule_steps"] == 8 * 5  # k_steps per call over 8 calls, across the resume
    assert namespace["loss64"].dtype == torch.float64 and namespace["negatives64"].dtype == torch.float64
    assert namespace["chains64"].dtype == torch.float64 and namespace["chains64"].shape == (8, 2)
