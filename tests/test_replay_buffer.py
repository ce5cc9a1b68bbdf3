"""The replay buffer of persistent CD: its update rules (``torchebm.losses.replay_buffer``) and
its life inside the loss (creation on the data's device, warm-up, checkpoints, no host sync).

Statistical checks use tolerances from the binomial standard error, not tuned seeds.
"""

from __future__ import annotations

import pytest
import torch

from torchebm.core import EnergyModel, MLP
from torchebm.losses import ContrastiveDivergence, PersistentContrastiveDivergence
from torchebm.losses.replay_buffer import (
    check_buffer_init,
    draw_indices,
    fifo_write,
    fresh_states,
    reinitialise,
)
from torchebm.samplers import LangevinDynamics

CPU = torch.device("cpu")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_pcd(buffer_size: int = 64, seed: int = 0, **kwargs) -> PersistentContrastiveDivergence:
    torch.manual_seed(seed)
    model = EnergyModel(MLP(2, [16, 16]))
    sampler = LangevinDynamics(model, step_size=0.05)
    kwargs.setdefault("k_steps", 3)
    kwargs.setdefault("init_steps", 0)
    return PersistentContrastiveDivergence(model, sampler, buffer_size=buffer_size, **kwargs)


def batch(n: int = 16, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 2, generator=gen(seed))


# --------------------------------------------------------------------------------------
# The update rules
# --------------------------------------------------------------------------------------


def test_drawn_indices_are_distinct_and_in_range():
    for capacity, n in [(100, 100), (100, 7), (10_000, 128), (5, 1)]:
        idx = draw_indices(capacity, n, generator=gen(capacity + n), device=CPU)
        assert idx.shape == (n,) and idx.dtype == torch.long
        assert idx.min() >= 0 and idx.max() < capacity
        assert idx.unique().numel() == n


def test_every_buffer_row_is_drawn_with_probability_n_over_capacity():
    """With 100 rows, batches of 30 (3 strata of 3 rows, 10 rows past 30*3 = 90) drawn 20,000
    times: each row's count is Binomial(20000, 0.3); all 100 must lie within 5 standard
    errors, including the rows past the last stratum, which the rotation makes reachable."""
    capacity, n, draws = 100, 30, 20_000
    g = gen(0)
    counts = torch.zeros(capacity, dtype=torch.long)
    for _ in range(draws):
        counts += torch.bincount(draw_indices(capacity, n, generator=g, device=CPU), minlength=capacity)
    p = n / capacity
    se = (draws * p * (1 - p)) ** 0.5
    worst = (counts.double() - draws * p).abs().max().item()
    assert worst < 5 * se, f"max |count - {draws * p:.0f}| = {worst:.0f}, 5 SE = {5 * se:.0f}"


def test_a_batch_larger_than_the_buffer_is_drawn_with_replacement():
    idx = draw_indices(10, 50, generator=gen(), device=CPU)
    assert idx.shape == (50,) and idx.max() < 10 and idx.unique().numel() <= 10


def test_reinitialise_swaps_whole_rows_with_the_given_probability():
    n, prob = 20_000, 0.05
    start = torch.zeros(n, 3, 4)
    fresh = torch.ones(n, 3, 4)
    out = reinitialise(start, fresh, prob, gen())
    per_row = out.flatten(1)
    assert bool(((per_row == 0).all(1) | (per_row == 1).all(1)).all()), "rows must be whole"
    frac = (per_row[:, 0] == 1).double().mean().item()
    se = (prob * (1 - prob) / n) ** 0.5
    assert abs(frac - prob) < 5 * se, f"restarted fraction {frac:.4f}, expected {prob} +- {se:.4f}"


def test_fifo_write_wraps_around_and_advances_the_pointer():
    storage = torch.zeros(5, 2)
    ptr = torch.tensor(3)
    fifo_write(storage, ptr, torch.arange(1.0, 4.0)[:, None].expand(3, 2))
    assert storage[:, 0].tolist() == [3.0, 0.0, 0.0, 1.0, 2.0]  # rows 3, 4, then 0
    assert ptr.item() == 1
    fifo_write(storage, ptr, torch.full((2, 2), 9.0))
    assert storage[:, 0].tolist() == [3.0, 9.0, 9.0, 1.0, 2.0] and ptr.item() == 3


def test_fifo_write_of_more_rows_than_capacity_keeps_the_last_ones():
    storage = torch.zeros(4, 1)
    ptr = torch.tensor(2)
    fifo_write(storage, ptr, torch.arange(10.0)[:, None])
    assert storage[:, 0].tolist() == [6.0, 7.0, 8.0, 9.0] and ptr.item() == 0


def test_fresh_states_from_each_initial_distribution():
    kw = dict(generator=gen(), device=CPU, dtype=torch.float64)
    normal = fresh_states("normal", 20_000, (2,), scale=2.0, **kw)
    assert normal.shape == (20_000, 2) and normal.dtype == torch.float64
    assert abs(normal.std().item() - 2.0) < 0.05
    uniform = fresh_states("uniform", 20_000, (2,), scale=3.0, **kw)
    assert uniform.min() >= -3.0 and uniform.max() <= 3.0 and uniform.abs().max() > 2.9
    custom = fresh_states(lambda n, g: torch.rand(n, 3, 8, 8, generator=g), 5, (3, 8, 8), scale=1.0, **kw)
    assert custom.shape == (5, 3, 8, 8) and custom.dtype == torch.float64


def test_a_bad_initial_distribution_is_rejected():
    with pytest.raises(ValueError, match="buffer_init must be"):
        check_buffer_init("gaussian")
    with pytest.raises(ValueError, match=r"must return a tensor of shape \(4, 2\) for n=4, got \(4, 3\)"):
        fresh_states(lambda n, g: torch.zeros(n, 3), 4, (2,), scale=1.0, generator=None,
                     device=CPU, dtype=torch.float32)


# --------------------------------------------------------------------------------------
# The buffer inside the loss
# --------------------------------------------------------------------------------------


def test_buffer_is_created_on_first_call_with_the_datas_shape_dtype_and_device():
    pcd = make_pcd(buffer_size=64)
    assert pcd.replay_buffer is None and not pcd.buffer_initialized
    pcd(batch(16))
    assert pcd.buffer_initialized
    assert pcd.replay_buffer.shape == (64, 2) and pcd.replay_buffer.dtype == torch.float32
    assert pcd.replay_buffer.device == CPU
    assert pcd.buffer_ptr.item() == 16


def test_negatives_are_written_back_first_in_first_out():
    pcd = make_pcd(buffer_size=40)
    _, first = pcd(batch(16))
    _, second = pcd(batch(16))
    _, third = pcd(batch(16))  # wraps: rows 32..39 then 0..7
    buf = pcd.replay_buffer
    assert torch.equal(buf[16:32], second)
    assert torch.equal(buf[32:40], third[:8]) and torch.equal(buf[0:8], third[8:])
    assert torch.equal(buf[8:16], first[8:])
    assert pcd.buffer_ptr.item() == 8


def test_start_points_come_from_the_buffer_or_fresh_noise():
    pcd = make_pcd(buffer_size=256, new_sample_ratio=0.25, buffer_init="uniform", buffer_init_scale=0.5)
    pcd.initialize_buffer((2,))
    pcd.replay_buffer.fill_(7.0)  # recognisable stored chains
    start = pcd.get_start_points(batch(128), generator=gen(3))
    from_buffer = (start == 7.0).all(dim=1)
    fresh = start.abs().max(dim=1).values <= 0.5
    assert bool((from_buffer | fresh).all())
    frac = fresh.double().mean().item()
    se = (0.25 * 0.75 / 128) ** 0.5
    assert abs(frac - 0.25) < 5 * se


def test_plain_cd_starts_at_the_data():
    torch.manual_seed(0)
    model = EnergyModel(MLP(2, [8]))
    cd = ContrastiveDivergence(model, LangevinDynamics(model, step_size=0.05))
    x = batch(8).requires_grad_(True)
    start = cd.get_start_points(x)
    assert torch.equal(start, x) and not start.requires_grad
    cd.update_buffer(x)  # a no-op without persistence
    assert cd.replay_buffer is None


def test_a_buffer_smaller_than_the_batch_warns_and_samples_with_replacement():
    pcd = make_pcd(buffer_size=8)
    with pytest.warns(UserWarning, match=r"Buffer size \(8\) is smaller than batch size \(16\)"):
        _, negatives = pcd(batch(16))
    assert torch.equal(pcd.replay_buffer, negatives[-8:]) and pcd.buffer_ptr.item() == 0


def test_warm_up_moves_the_new_buffer_by_init_steps():
    cold = make_pcd(buffer_size=50, init_steps=0)
    warm = make_pcd(buffer_size=50, init_steps=5)
    a = cold.initialize_buffer((2,), generator=gen(1))
    b = warm.initialize_buffer((2,), buffer_chunk_size=16, generator=gen(1))
    assert a.shape == b.shape == (50, 2)
    assert not torch.equal(a, b)
    assert warm.initialize_buffer((2,)) is None  # already there: nothing is redone


def test_event_shape_change_is_reported():
    pcd = make_pcd()
    pcd(batch(8))
    with pytest.raises(ValueError, match=r"holds states of shape \(2,\) but the data batch has rows of shape \(3,\)"):
        pcd.get_start_points(torch.randn(8, 3))


def test_state_dict_round_trip_restores_the_chains_exactly():
    pcd = make_pcd(buffer_size=48, seed=0)
    for _ in range(3):
        pcd(batch(16), generator=gen(5))
    state = pcd.state_dict()
    assert "replay_buffer" in state and "buffer_ptr" in state
    restored = make_pcd(buffer_size=48, seed=1)
    assert restored.replay_buffer is None
    restored.load_state_dict(state)
    assert torch.equal(restored.replay_buffer, pcd.replay_buffer)
    assert restored.buffer_ptr.item() == pcd.buffer_ptr.item()
    # Same model weights, same chains, same generator: the next step is identical.
    loss_a, neg_a = pcd(batch(16, seed=9), generator=gen(6))
    loss_b, neg_b = restored(batch(16, seed=9), generator=gen(6))
    assert torch.equal(neg_a, neg_b) and torch.equal(loss_a, loss_b)


def test_loading_a_buffer_of_another_size_fails_clearly():
    pcd = make_pcd(buffer_size=32)
    pcd(batch(8))
    other = make_pcd(buffer_size=64)
    with pytest.raises(RuntimeError, match="holds 32 chains but buffer_size is 64"):
        other.load_state_dict(pcd.state_dict())


def test_drawing_and_writing_never_read_a_tensor_back_to_the_host(monkeypatch):
    """The hot path must not synchronise a GPU: on the CPU, make every tensor-to-Python
    conversion raise while start points are drawn (with restarts) and negatives written."""
    pcd = make_pcd(buffer_size=64, new_sample_ratio=0.3)
    pcd.initialize_buffer((2,), generator=gen())
    x = batch(16)

    def host_read(*args, **kwargs):
        raise AssertionError("host synchronisation in the replay-buffer hot path")

    for name in ("item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, host_read)
    start = pcd.get_start_points(x, generator=gen(1))
    pcd.update_buffer(start + 1)
    monkeypatch.undo()
    assert pcd.buffer_ptr.item() == 16


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_buffer_lives_on_the_gpu_and_its_hot_path_does_not_synchronise():
    pcd = make_pcd(buffer_size=256, new_sample_ratio=0.05).cuda()
    x = batch(64).cuda()
    g = torch.Generator(device="cuda").manual_seed(0)
    pcd(x, generator=g)
    assert pcd.replay_buffer.is_cuda and pcd.buffer_ptr.is_cuda
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        start = pcd.get_start_points(x, generator=g)
        pcd.update_buffer(start)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    moved = make_pcd(buffer_size=256)
    moved.load_state_dict({k: v.cpu() for k, v in pcd.state_dict().items()})
    moved.cuda()
    assert moved.replay_buffer.is_cuda
