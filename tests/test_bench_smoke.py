"""Smoke test of the benchmark harness: quick runs of one cheap workload and of two neural ones
(against the hand-written eager loop), our implementations only (TorchEBM 0.8.9 lives in its own
venv, which the test suite does not build; torch.compile cells are too slow here), the schema of
the JSON it writes, and the target bookkeeping on made-up times.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = "doublewell_langevin"
IMPLS = ("fused", "reference")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_out")
    cmd = [
        sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--only", WORKLOAD,
        "--impls", ",".join(IMPLS), "--repeats", "2", "--out", str(out),
        "--ours-python", sys.executable,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"bench/run.py exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return out, proc


def test_bench_quick_run_writes_results_table_and_chart(quick_run):
    out, proc = quick_run
    assert (out / "results.json").is_file()
    assert (out / "speedups.png").stat().st_size > 0
    assert WORKLOAD in proc.stdout and "fused/0.8.9" in proc.stdout


def test_bench_results_json_has_the_documented_schema(quick_run):
    out, _ = quick_run
    report = json.loads((out / "results.json").read_text())
    assert report["schema_version"] == 1
    for key in ("created", "config", "machine", "implementations", "workloads", "warnings"):
        assert key in report, f"results.json lacks {key!r}"
    assert report["config"]["quick"] is True and report["config"]["repeats"] == 2
    assert {"cpu_count", "loadavg_start", "loadavg_end", "platform"} <= set(report["machine"])
    assert list(report["workloads"]) == [WORKLOAD]

    workload = report["workloads"][WORKLOAD]
    for key in ("description", "size", "targets", "results", "speedup", "met"):
        assert key in workload, f"workload entry lacks {key!r}"
    assert set(workload["results"]) == set(IMPLS)
    assert {"fused_vs_torchebm089", "fused_vs_reference"} <= set(workload["speedup"])
    assert workload["speedup"]["fused_vs_torchebm089"] is None  # 0.8.9 was not run

    for impl, entry in workload["results"].items():
        # "unavailable" while the sampler API has not landed; an "error" is a real failure.
        assert entry["status"] in ("ok", "unavailable"), f"{impl}: {entry}"
        if entry["status"] == "ok":
            assert len(entry["times_s"]) == 2 and all(t > 0 for t in entry["times_s"])
            assert entry["median_s"] > 0 and entry["work"] == 256 * 20
            assert entry["identity"]["package"] == "ours"
            assert entry["identity"]["threads"] == 2
        else:
            assert entry["reason"]
    if all(e["status"] == "ok" for e in workload["results"].values()):
        medians = {impl: e["median_s"] for impl, e in workload["results"].items()}
        ratio = medians["reference"] / medians["fused"]
        assert workload["speedup"]["fused_vs_reference"] == pytest.approx(ratio)


def _fake(median_s: float, device_name: str = "NVIDIA H100 80GB HBM3") -> dict:
    return {"status": "ok", "times_s": [median_s] * 3, "work": 1 << 26,
            "cuda_device_name": device_name}  # fmt: skip


def test_gpu_runs_judge_the_gpu_targets_not_the_cpu_ones():
    """On CUDA, a workload is judged by its GPU targets (bandwidth fraction, ratios against
    0.8.9's sampler and Triton kernel); the CPU ratios are not applied there."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import run as bench_run
        import workloads as W
    finally:
        sys.path.pop(0)
    cuda = type("Args", (), {"device": "cuda", "quick": False, "peak_bw_tbs": None})()
    cpu = type("Args", (), {"device": "cpu", "quick": False, "peak_bw_tbs": None})()

    # 12 B x 2^26 in 0.3 ms = 2.68 TB/s = 80.1% of the H100's 3.35 TB/s; 0.31 ms = 77.5%.
    bw = W.WORKLOADS["gpu_langevin_bandwidth"]
    assert bench_run.summarise(bw, {"fused": _fake(0.30e-3)}, cuda)["met"] is True
    assert bench_run.summarise(bw, {"fused": _fake(0.31e-3)}, cuda)["met"] is False

    chain = W.WORKLOADS["gpu_doublewell_chain"]
    fast = {"fused": _fake(2.0), "fused-op": _fake(1.0), "torchebm089": _fake(300.0),
            "torchebm089-triton": _fake(1.5)}  # fmt: skip
    assert bench_run.summarise(chain, fast, cuda)["met"] is True  # the op is judged vs Triton
    slow_vs_triton = dict(fast, **{"torchebm089-triton": _fake(0.9)})
    assert bench_run.summarise(chain, slow_vs_triton, cuda)["met"] is False
    assert bench_run.summarise(chain, {"fused": _fake(1.0)}, cuda)["met"] is None  # not measured

    dw = W.WORKLOADS["doublewell_langevin"]
    slow = {"fused": _fake(1.0), "reference": _fake(2.0), "torchebm089": _fake(3.0)}
    assert bench_run.summarise(dw, slow, cpu)["met"] is False  # 3x < 10x on the CPU
    assert bench_run.summarise(dw, slow, cuda)["targets"] == {} and \
        bench_run.summarise(dw, slow, cuda)["met"] is None


# ---- Neural workloads: our sampler against the hand-written loops ------------------------------

NEURAL = ("ring_pcd", "conv_langevin_b128")
NEURAL_IMPLS = ("fused", "hand_eager")  # torch.compile cells are too slow for a smoke test


def _bench_modules():
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import run as bench_run
    finally:
        sys.path.pop(0)
    return bench_run, bench_run.W  # the workloads module run.py itself uses


@pytest.fixture(scope="module")
def neural_quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_neural")
    cmd = [
        sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--only", ",".join(NEURAL),
        "--impls", ",".join(NEURAL_IMPLS), "--repeats", "2", "--out", str(out), "--no-plot",
        "--ours-python", sys.executable,
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"bench/run.py exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    return json.loads((out / "results.json").read_text()), proc


def test_bench_neural_quick_run_compares_ours_with_the_hand_written_loop(neural_quick_run):
    report, proc = neural_quick_run
    assert list(report["workloads"]) == list(NEURAL)
    assert "neural workload" in proc.stdout and "ours/eager" in proc.stdout
    for name in NEURAL:
        wl = report["workloads"][name]
        assert wl["neural"] is True and set(wl["results"]) == set(NEURAL_IMPLS)
        assert set(wl["met_targets"]) == set(wl["targets"])
        for impl, entry in wl["results"].items():
            assert entry["status"] in ("ok", "unavailable"), f"{name}/{impl}: {entry}"
        entries = [e for e in wl["results"].values() if e["status"] == "ok"]
        # Same weights (and, for PCD, the same data batches) in every implementation.
        assert len({e["info"]["weights_checksum"] for e in entries}) <= 1
        assert len({e["info"].get("data_checksum") for e in entries}) <= 1
        assert all(e["info"]["first_run_s"] > 0 for e in entries)
        if len(entries) == 2:
            medians = {i: e["median_s"] for i, e in wl["results"].items()}
            ratio = medians["hand_eager"] / medians["fused"]
            assert wl["speedup"]["fused_vs_hand_eager"] == pytest.approx(ratio)
    pcd = report["workloads"]["ring_pcd"]
    assert pcd["unit"] == "iterations" and pcd["size"]["n_iters"] == 3
    fused = pcd["results"]["fused"]
    if fused["status"] == "ok":
        assert fused["work"] == 3 and fused["info"]["last_path"] in ("chain", "fused")
        assert fused["info"]["final_loss"] is not None
    conv = report["workloads"]["conv_langevin_b128"]
    assert conv["group"] == "conv_langevin" and conv["size"] == {"n_chains": 16, "n_steps": 3}
    if conv["results"]["hand_eager"]["status"] == "ok":
        # One Langevin step is the network's forward and its input gradient, each with the
        # multiply-adds of conv 1->32, 32->64, 64->64 (3x3 on 8x8) and the 4096 -> 1 head.
        macs = (1 * 32 + 32 * 64 + 64 * 64) * 9 * 64 + 64 * 64
        bound = conv["compute_bound"]
        assert bound["flops_per_run"] == 16 * 3 * 2 * (2 * macs)
        assert bound["gemm_flops_per_s"] > 0


def test_compute_bound_summary():
    """Achieved rates are shares of the GEMM rate, and the speed-up over the eager loop at the
    GEMM rate is the GEMM rate over the eager loop's achieved rate."""
    bench_run, _ = _bench_modules()
    info = {"flops_per_run": 6e9, "gemm_flops_per_s": 100e9}
    res = {"fused": _fake(0.1), "hand_eager": {**_fake(0.08), "info": info}}
    for entry in res.values():
        entry["median_s"] = entry["times_s"][0]
    bound = bench_run._compute_bound(res)
    assert bound["fraction_of_gemm_rate"] == pytest.approx({"fused": 0.6, "hand_eager": 0.75})
    assert bound["speedup_at_gemm_rate"] == pytest.approx(100 / 75)
    del res["hand_eager"]["info"]
    assert bench_run._compute_bound(res) is None


def test_ring_data_mirror_equals_torchebm_datasets():
    """TorchEBM 0.8.9's worker cannot import our datasets: it uses the mirror, which must give
    the same points as torchebm.datasets.eight_gaussians."""
    _, W = _bench_modules()
    from torchebm.datasets import eight_gaussians

    ours = eight_gaussians(1000, seed=W.RING_DATA_SEED, dtype=torch.float32)
    assert torch.equal(W.eight_gaussians_mirror(1000, W.RING_DATA_SEED), ours)


def test_only_accepts_group_names():
    bench_run, W = _bench_modules()
    args = bench_run.parse_args(["--only", "mlp_langevin,conv_pcd", "--impls", "fused,hand_eager"])
    assert args.only == ["mlp_langevin", "conv_pcd_b128", "conv_pcd_b1024"]
    with pytest.raises(SystemExit):
        bench_run.parse_args(["--impls", "hand_eagre"])


def test_neural_targets_are_judged_per_target():
    """conv rows: ours >= 1x the eager loop, compiled >= 1.2x it; a compiled cell that is
    unavailable leaves its target unmeasured, a missed target makes the row NO."""
    bench_run, W = _bench_modules()
    cpu = type("Args", (), {"device": "cpu", "quick": False, "peak_bw_tbs": None})()
    conv = W.WORKLOADS["conv_langevin_b128"]
    unavailable = {"status": "unavailable", "reason": "backend='compiled' raised ValueError: x"}
    res = {"fused": _fake(0.9), "compiled": unavailable, "hand_eager": _fake(1.0)}
    out = bench_run.summarise(conv, res, cpu)
    assert out["met_targets"] == {"vs_hand_eager": True, "compiled_vs_hand_eager": None}
    assert out["met"] is None and bench_run._fmt_met(out) == "yes, -"
    res = {"fused": _fake(1.1), "compiled": _fake(0.8), "hand_eager": _fake(1.0)}
    out = bench_run.summarise(conv, res, cpu)
    assert out["met_targets"] == {"vs_hand_eager": False, "compiled_vs_hand_eager": True}
    assert out["met"] is False and out["speedup"]["compiled_vs_hand_eager"] == pytest.approx(1.25)


def test_compiled_backend_that_raises_is_reported_unavailable(monkeypatch):
    """Our opt-in backend="compiled": a constructor (or sampler) that raises makes the cell
    unavailable, with the reason, not an error of the harness."""
    _, W = _bench_modules()

    class Raising:
        def __init__(self, model, backend="auto", **kwargs):
            raise ValueError(f"backend must be one of ('auto', 'fused'), got {backend!r}")

        def sample(self, x=None, n_steps=1):  # pragma: no cover - never reached
            return x

    monkeypatch.setattr(W, "_samplers_api", lambda *names: [Raising])
    result = W.run_one("conv_langevin_b128", "compiled", True, 1, 0, "cpu", "")
    assert result["status"] == "unavailable"
    assert "compiled" in result["reason"] and "ValueError" in result["reason"]
