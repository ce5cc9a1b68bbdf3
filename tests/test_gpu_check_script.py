"""scripts/gpu_check.sh, the one-call GPU procedure, checked without a GPU: its syntax, its plan
(every step of the procedure, each with its command), the time guard and the step selection, and
(slow) the whole dry run, in which each step runs in a form that needs no GPU. Also the CPU smoke
mode of scripts/gpu_profile.py, which the GPU run calls."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
# The steps, in the order the script runs them (most important first).
STEPS = [
    "environment", "wheels", "build", "registration", "tests_cuda", "tests_arviz",
    "tests_interrupt", "ddp", "fsdp2", "bench_mlp", "bench_gaussian", "bench_overhead",
    "bench_doublewell", "profile", "bench_compiled", "bench_pt", "bench_ais", "bench_rest", "ncu",
    "nsys",
]  # fmt: skip


def run_script(*args, env=None, timeout=120, cwd=REPO):
    full_env = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    full_env.pop("GPU_CHECK_DRY_RUN", None)
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)


def summary_rows(out: Path) -> dict:
    """step -> (status, seconds, result) from OUT/summary.txt's step table."""
    rows = {}
    for line in (out / "summary.txt").read_text().splitlines():
        m = re.match(r"(\w+)\s+(\S+)\s+(\d+)\s*(.*)$", line)
        if m and m.group(1) in STEPS:
            rows[m.group(1)] = (m.group(2), int(m.group(3)), m.group(4))
    return rows


def test_the_script_parses():
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)


def test_the_plan_lists_every_step_in_order_with_its_command():
    proc = run_script("--plan")
    assert proc.returncode == 0, proc.stderr
    plan = proc.stdout
    assert plan.startswith("gpu_check.sh plan: budget 540s")  # the default (docs/kernels.md)
    headers = re.findall(r"^\s*\d+\. (\w+)\s+cap", plan, flags=re.M)
    assert headers == STEPS
    blocks = dict(zip(STEPS, re.split(r"^\s*\d+\. \w+\s+cap.*$", plan, flags=re.M)[1:]))
    expected = {
        "build": ["TORCHEBM_CUDA=ON", "pip install", "--no-build-isolation", "-Cbuild-dir=build/gpu"],
        "registration": ["scripts/cuda_build_check.py"],
        "tests_cuda": ["pytest", "-m cuda", "tests/test_cuda.py tests/test_mlp_chain_cuda.py"],
        "tests_arviz": ["pytest", "tests/test_diagnostics_arviz.py"],
        "tests_interrupt": ["pytest", "-m cuda tests/test_chain_interrupt.py"],
        "ddp": ["torch.distributed.run", "examples/train_distributed.py --device cuda"],
        "fsdp2": ["torch.distributed.run", "--fsdp"],
        "bench_mlp": ["bench/run.py --device cuda", "--impls fused,fused-cudagraph,hand_eager",
                      "--only mlp_langevin,gpu_mlp_cuda_graph"],
        "bench_gaussian": ["--only gaussian_langevin,gaussian_hmc,gaussian_mala"],
        "bench_overhead": ["--impls fused,fused-op,hand_eager", "--only sample_overhead,mlp_sample_overhead"],
        "bench_doublewell": ["--only gpu_doublewell_chain,doublewell_langevin"],
        "profile": ["scripts/gpu_profile.py --out"],
        "bench_compiled": ["--impls compiled,hand_compiled,hand_eager", "--only mlp_langevin"],
        "bench_pt": ["--only pt_doublewell"],
        "bench_ais": ["--only ais_doublewell"],
        "bench_rest": ["bench/run.py --device cuda"],
        "ncu": ["ncu --clock-control none", "scripts/gpu_profile.py --ncu-target"],
        "nsys": ["nsys profile", "scripts/gpu_profile.py --ncu-target"],
    }
    for step, fragments in expected.items():
        for fragment in fragments:
            assert fragment in blocks[step], (step, fragment, blocks[step])
    # The tests step takes every module with a test marked cuda, but the two with steps of their own.
    marked = {p.name for p in (REPO / "tests").glob("test_*.py") if "mark.cuda" in p.read_text()}
    listed = set(re.findall(r"tests/(test_\w+\.py)", blocks["tests_cuda"]))
    assert listed == marked - {"test_diagnostics_arviz.py", "test_chain_interrupt.py"}


def test_unknown_options_and_step_names_are_refused_by_name():
    proc = run_script("--frobnicate")
    assert proc.returncode == 2 and "unknown option --frobnicate" in proc.stderr
    proc = run_script("--dry-run", env={"GPU_CHECK_ONLY": "build,bogus"})
    assert proc.returncode == 2 and "no step 'bogus'" in proc.stderr
    proc = run_script("--dry-run", env={"GPU_CHECK_BUDGET_S": "9m"})
    assert proc.returncode == 2 and "GPU_CHECK_BUDGET_S" in proc.stderr


def test_a_work_folder_it_did_not_make_is_left_alone(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "keep.txt").write_text("not the script's")
    proc = run_script("--dry-run", str(tmp_path / "out"), env={"GPU_CHECK_WORK": str(work)})
    assert proc.returncode == 2 and "not emptying it" in proc.stderr
    assert (work / "keep.txt").exists()


def test_a_spent_budget_skips_every_step_and_still_writes_the_outputs(tmp_path):
    """OUT relative to the caller's folder, not the repository's."""
    out, work = tmp_path / "out", tmp_path / "work"
    proc = run_script("--dry-run", "out", env={"GPU_CHECK_BUDGET_S": "0", "GPU_CHECK_WORK": str(work)},
                      cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    rows = summary_rows(out)
    assert list(rows) == STEPS
    assert all(status == "SKIP" and note.startswith("time:") for status, _, note in rows.values())
    assert "overall: INCOMPLETE" in (out / "summary.txt").read_text()
    assert tarfile.open(out / "gpu_check.tar.gz").getnames() == ["."]


def test_only_the_chosen_steps_run_each_with_its_log(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    proc = run_script("--dry-run", str(out), env={"GPU_CHECK_ONLY": "environment,registration",
                                                 "GPU_CHECK_WORK": str(work)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = summary_rows(out)
    assert list(rows) == ["environment", "registration"]
    assert rows["environment"][0] == "ok" and rows["environment"][2].startswith("torch ")
    assert rows["registration"][0] == "ok"
    names = set(tarfile.open(out / "gpu_check.tar.gz").getnames())
    assert {"./environment.log", "./registration.log"} <= names
    assert "py_compile scripts/cuda_build_check.py" in (work / "registration.log").read_text()


def test_the_profile_runs_on_the_cpu_and_writes_each_section(tmp_path):
    out = tmp_path / "profile.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "gpu_profile.py"), "--device", "cpu",
                    "--quick", "--sections", "overhead,doublewell,update", "--out", str(out)],
                   cwd=REPO, check=True, capture_output=True, timeout=120)
    res = json.loads(out.read_text())
    assert set(res) >= {"overhead", "doublewell", "update"} and "dense" not in res
    assert res["overhead"]["path"] == "chain" and res["overhead"]["sample_1x1_step_wall_ms"] > 0
    assert res["doublewell"]["size"] == [64, 32, 20] and res["doublewell"]["raw_op_ms"] > 0


@pytest.mark.slow
def test_the_dry_run_runs_every_step_without_a_gpu(tmp_path):
    """Every step in its no-GPU form: the plan first, then each command (minutes)."""
    out, work = tmp_path / "out", tmp_path / "work"
    proc = run_script("--dry-run", str(out), env={"GPU_CHECK_WORK": str(work),
                                                 "GPU_CHECK_WHEELS": str(tmp_path / "none")},
                      timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "gpu_check.sh plan:" in proc.stdout
    rows = summary_rows(out)
    assert list(rows) == STEPS
    # NONE: nothing to run here (no wheels carried, a workload or cuda tests not there yet).
    assert {s: r[0] for s, r in rows.items() if r[0] not in ("ok", "NONE")} == {}
    assert rows["tests_cuda"][2].startswith(tuple("0123456789")) and "collected" in rows["tests_cuda"][2]
    for step in ("bench_mlp", "bench_gaussian", "bench_doublewell", "bench_pt", "bench_ais"):
        assert "cells ok:" in rows[step][2] and (work / step / "results.json").exists(), step
    assert json.loads((work / "profile.json").read_text())["quick"] is True
    names = set(tarfile.open(out / "gpu_check.tar.gz").getnames())
    assert {f"./{s}.log" for s in STEPS} <= names
    assert not any("checkpoint" in n or "trajectories" in n for n in names)
