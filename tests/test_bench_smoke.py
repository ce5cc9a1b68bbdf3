"""Smoke test of the benchmark harness: a quick run of one cheap workload, our implementations
only (TorchEBM 0.8.9 lives in its own venv, which the test suite does not build), and the schema
of the JSON it writes.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
