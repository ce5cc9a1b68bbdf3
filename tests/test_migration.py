"""Each deliberate difference from TorchEBM 0.8.9, pinned by one test named after it.

docs/migration.md ("Migrating from TorchEBM 0.8.9") lists them with their reasons and cites
these tests by name. The 0.8.9 behaviour each replaces is stated in the test's docstring.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from torchebm.core import BaseModel, GaussianModel, LinearScheduler
from torchebm.datasets import TwoMoonsDataset
from torchebm.integrators import EulerMaruyamaIntegrator, LeapfrogIntegrator
from torchebm.losses import ContrastiveDivergence
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics


class Net(BaseModel):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(2, 8), nn.SiLU(), nn.Linear(8, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)


class CountingGaussian(GaussianModel):
    """The standard normal with its closed-form gradient, counting the gradient calls."""

    def __init__(self, dim: int = 2):
        super().__init__(torch.zeros(dim), torch.eye(dim))
        self.n_gradient = 0

    def gradient(self, x, model_kwargs=None):
        self.n_gradient += 1
        return x.clone()


def gaussian(dim: int = 2) -> GaussianModel:
    return GaussianModel(torch.zeros(dim), torch.eye(dim))


def test_differs_chain_dtype_follows_x():
    """0.8.9 casts ``x`` to the model's first parameter dtype (float64 x, float32 model:
    float32 chains) and ignores ``dtype=`` when the model has parameters. Here the rule is:
    explicit ``dtype=``, else x's dtype, else the model's, else the default."""
    s = LangevinDynamics(Net(), step_size=0.01)
    assert s.sample(x=torch.zeros(3, 2, dtype=torch.float64), n_steps=2).dtype == torch.float64
    assert s.sample(dim=2, n_samples=3, n_steps=2).dtype == torch.float32  # the model's
    with pytest.warns(UserWarning, match="evaluated in torch.float32"):
        explicit = LangevinDynamics(Net(), step_size=0.01, dtype=torch.float64)
    assert explicit.sample(dim=2, n_samples=3, n_steps=2).dtype == torch.float64


def test_differs_half_dtypes_run_in_float32_with_cpu_autocast():
    """0.8.9's mixed precision is CUDA-only (it warns and turns it off on the CPU) and a half
    chain state is updated in half precision. Here a half dtype integrates in float32, returns
    half, and an explicit half ``dtype=`` runs the model under autocast on the CPU too."""
    s = LangevinDynamics(gaussian(), step_size=0.01, dtype=torch.bfloat16)
    assert s.autocast_available and s.state_dtype() == torch.float32
    assert s.sample(dim=2, n_samples=3, n_steps=2).dtype == torch.bfloat16


def test_differs_norm_layers_run_in_eval_mode_while_sampling():
    """0.8.9 samples with the model in whatever mode it is in: BatchNorm in training mode
    updates its running statistics with the chains. Here they are left alone."""
    model = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))

    class Energy(BaseModel):
        def __init__(self):
            super().__init__()
            self.net = model

        def forward(self, x):
            return self.net(x).squeeze(-1)

    energy = Energy().train()
    LangevinDynamics(energy, step_size=0.01).sample(dim=2, n_samples=8, n_steps=3)
    assert model[1].num_batches_tracked.item() == 0 and model[1].training


def test_differs_buffer_starts_from_the_unit_normal():
    """0.8.9 starts the replay buffer at ``0.01 * N(0, I)``; here at ``N(0, I)``
    (``buffer_init="normal"``, ``buffer_init_scale=1``), as in IGEBM/JEM."""
    model = Net()
    loss = ContrastiveDivergence(model, LangevinDynamics(model, step_size=0.01), persistent=True,
                                 buffer_size=5000, init_steps=0)
    buffer = loss.initialize_buffer((2,), generator=torch.Generator().manual_seed(0))
    # The sample standard deviation of n = 10000 unit normals has standard error
    # 1/sqrt(2n) = 0.0071; 5 standard errors.
    assert abs(buffer.std().item() - 1.0) < 5 / math.sqrt(2 * buffer.numel())


def test_differs_restarted_rows_are_fresh_draws():
    """0.8.9 restarts a drawn row (probability ``new_sample_ratio``) by adding 0.01-scale
    jitter to a buffer row; here the row is replaced by a fresh draw from the initial
    distribution."""
    model = Net()
    loss = ContrastiveDivergence(model, LangevinDynamics(model, step_size=0.01), persistent=True,
                                 buffer_size=64, init_steps=0, new_sample_ratio=1.0)
    loss.initialize_buffer((2,))
    loss.replay_buffer.fill_(100.0)
    starts = loss.get_start_points(torch.zeros(32, 2))
    assert starts.abs().max() < 10  # N(0, I) draws, nowhere near the rows at 100


def test_differs_sampler_schedules_continue_across_loss_calls():
    """0.8.9 restarts the sampler's schedules at every loss call; here a schedule runs over the
    training run (``k_steps`` scheduled values per call)."""
    model = Net()
    step = LinearScheduler(start_value=0.05, end_value=0.01, n_steps=100)
    loss = ContrastiveDivergence(model, LangevinDynamics(model, step_size=step), k_steps=4)
    for _ in range(3):
        loss(torch.randn(8, 2))
    assert step.step_count == 12


def test_differs_nan_loss_raises():
    """0.8.9 silently returns the constant 0.1 for a non-finite loss; here
    ``FloatingPointError`` (``check_finite=False`` turns the check off)."""

    class NaNEnergy(Net):
        def forward(self, x):
            return super().forward(x) * float("nan")

    model = NaNEnergy()
    sampler = LangevinDynamics(model, step_size=0.01, backend="reference")
    loss = ContrastiveDivergence(model, sampler, k_steps=1)
    with pytest.raises(FloatingPointError):
        loss(torch.randn(8, 2))


def test_differs_loss_data_keep_their_dtype():
    """0.8.9 casts the data to the loss's ``dtype``; here they keep their own (and device)."""
    model = Net().double()
    loss = ContrastiveDivergence(model, LangevinDynamics(model, step_size=0.01), k_steps=1)
    value, negatives = loss(torch.randn(8, 2, dtype=torch.float64))
    assert value.dtype == torch.float64 and negatives.dtype == torch.float64


def test_differs_dim_is_inferred_from_a_gaussian_mean_by_every_sampler():
    """0.8.9's HamiltonianMonteCarlo infers ``dim`` from a Gaussian model's mean; here every
    sampler does."""
    out = LangevinDynamics(gaussian(3), step_size=0.01).sample(n_samples=4, n_steps=2)
    assert out.shape == (4, 3)


def test_differs_hmc_spends_L_gradients_per_step():
    """0.8.9's HMC spends ``2L`` gradient evaluations per step; here ``L`` (the leapfrog's end
    gradient carries over to the next kick and to the next step), plus one per call."""
    model = CountingGaussian()
    HamiltonianMonteCarlo(model, step_size=0.1, n_leapfrog_steps=5, backend="reference").sample(
        dim=2, n_samples=4, n_steps=7
    )
    assert model.n_gradient == 1 + 7 * 5


def test_differs_leapfrog_integrator_spends_n_plus_one_forces():
    """0.8.9's ``LeapfrogIntegrator.integrate`` evaluates the force twice per step; here
    ``n_steps + 1`` times in all (consecutive half kicks share their force)."""
    calls = []
    LeapfrogIntegrator().integrate({"x": torch.ones(2, 2), "p": torch.zeros(2, 2)}, 0.1, 5,
                                   drift=lambda x, t: calls.append(1) or -x)
    assert len(calls) == 6


def test_differs_samplers_run_their_own_update_for_an_integrator_object():
    """0.8.9's samplers call the integrator object's ``step``; here they run their fused form of
    the same update, so an integrator object only selects it, and a subclass (whose ``step``
    would not be called) is refused (``TypeError``)."""
    obj = EulerMaruyamaIntegrator()
    a = LangevinDynamics(gaussian(), step_size=0.1, integrator=obj).sample(
        dim=2, n_samples=3, n_steps=3, generator=torch.Generator().manual_seed(0))
    b = LangevinDynamics(gaussian(), step_size=0.1).sample(
        dim=2, n_samples=3, n_steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)

    class Heun(EulerMaruyamaIntegrator):
        pass

    with pytest.raises(TypeError, match="would not be run"):
        LangevinDynamics(gaussian(), integrator=Heun())


def test_differs_kernel_paths_draw_philox_numbers():
    """0.8.9 draws its noise with ``torch.randn`` in step order. The reference path keeps that
    order (the same generator gives 0.8.9's numbers); the fused and chain paths draw Philox
    numbers keyed by (seed, step), so their chains differ from 0.8.9's draw for draw (not in
    distribution)."""
    x = torch.zeros(4, 2)
    ref = LangevinDynamics(gaussian(), step_size=0.05, backend="reference")
    fused = LangevinDynamics(gaussian(), step_size=0.05, backend="fused")
    a = ref.sample(x=x, n_steps=1, generator=torch.Generator().manual_seed(7))
    noise = torch.randn(4, 2, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, math.sqrt(2 * 0.05) * noise)  # grad E(0) = 0
    b = fused.sample(x=x, n_steps=1, generator=torch.Generator().manual_seed(7))
    assert fused.last_path in ("fused", "chain") and not torch.equal(a, b)


def test_differs_dataset_seed_leaves_the_global_rng_alone():
    """0.8.9's datasets call ``torch.manual_seed(seed)``; here a seed drives a private
    generator (and the points are this library's generators', with 0.8.9's names and
    arguments)."""
    torch.manual_seed(3)
    expected = torch.rand(1)
    torch.manual_seed(3)
    TwoMoonsDataset(n_samples=10, seed=0)
    assert torch.equal(torch.rand(1), expected)


def test_differs_sampler_dtype_default_is_none():
    """0.8.9's samplers default to ``dtype=torch.float32``; here ``dtype=None`` applies the
    dtype rule (an explicit ``torch.float32`` is honoured)."""
    import inspect

    assert inspect.signature(LangevinDynamics.__init__).parameters["dtype"].default is None
    s = LangevinDynamics(Net().double(), step_size=0.01)
    assert s.dtype == torch.float64  # 0.8.9: float64 too (the model's), with a float32 default


def test_differs_left_out_names_raise_import_error():
    """0.8.9's flow matching, equilibrium matching, DiT models, interpolants and couplings are
    not part of this package: importing them raises an ImportError that says so."""
    with pytest.raises(ImportError, match="not part of this package"):
        from torchebm.losses import FlowMatchingLoss  # noqa: F401
