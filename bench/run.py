"""Benchmark orchestrator: ours (fused, reference) against TorchEBM 0.8.9, same machine, same run;
on the neural workloads also against hand-written PyTorch loops (eager and ``torch.compile``).

Each (workload, implementation) runs in its own process, in the venv of its package (ours and
the hand-written loops in the project's ``.venv``, TorchEBM 0.8.9 in ``.venv-torchebm089``: both
packages import as ``torchebm``), on ``--threads`` threads, with warm-up and ``--repeats`` timed
runs. Ratios are taken between medians measured in this same run. Outputs under ``--out``:
``results.json`` (raw times, medians, ratios, ESS, machine, versions), ``speedups.png``,
``table.txt``; the table is printed.

    python bench/run.py                       # everything, CPU, 2 threads, 5 repeats
    python bench/run.py --quick --only doublewell_langevin --impls fused,reference
    python bench/run.py --only mlp_langevin,ring_pcd,conv_langevin,conv_pcd   # neural workloads
    python bench/run.py --device cuda         # the GPU section (skipped without CUDA)
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import workloads as W  # noqa: E402  (after the path fix; imports torch)

SCHEMA_VERSION = 1
ALL_IMPLS = (
    "fused", "compiled", "reference", "torchebm089", "hand_eager", "hand_compiled",
    "torchebm089-triton", "fused-cudagraph", "fused-op",
)  # fmt: skip
CPU_IMPLS = ("fused", "reference", "torchebm089")
# Speedups of the neural workloads: (name, slow implementation, fast implementation).
NEURAL_RATIOS = (
    ("fused_vs_hand_eager", "hand_eager", "fused"),
    ("fused_vs_hand_compiled", "hand_compiled", "fused"),
    ("compiled_vs_hand_eager", "hand_eager", "compiled"),
    ("compiled_vs_hand_compiled", "hand_compiled", "compiled"),
    ("compiled_vs_fused", "fused", "compiled"),
    ("compiled_vs_torchebm089", "torchebm089", "compiled"),
    ("hand_compiled_vs_hand_eager", "hand_eager", "hand_compiled"),
)
BURN_IN_FRACTION = 0.25
# Peak HBM bandwidth (bytes/s) by device-name substring, most specific first.
PEAK_BANDWIDTH = (("H100 PCIe", 2.0e12), ("H100", 3.35e12), ("H200", 4.8e12))

ESS_FOOTNOTE = (
    "ESS/s: an untimed run of the same sampler on the first chains x steps ({sizes}) "
    "records every coordinate at every step; the first {burn:.0%} is dropped as burn-in; ESS = "
    "{estimator}; ESS per draw = ESS / (chains x kept draws); ESS/s = ESS per draw x (chains x "
    "steps of the timed run) / its median time; ESS/grad = ESS per draw / gradient evaluations "
    "per chain and step (Langevin and MALA 1, HMC its leapfrog steps)."
)


# ----------------------------------------------------------------------------------------------
# Running workers.


def _python_for(impl: str, args) -> str:
    # The hand-written loops import no torchebm; they run in our venv (the same torch).
    return args.ours_python if impl in W.OURS or impl in W.HAND else args.torchebm089_python


def _child_env(impl: str, threads: int, cache_dir: Path = None) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    if impl in W.THEIRS:
        env.pop("PYTHONPATH", None)  # ours must not shadow TorchEBM 0.8.9 there
    if cache_dir is not None and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        # A fresh inductor cache per worker: compile_s is a cold compile, not a cache hit
        # left by an earlier run (a TORCHINDUCTOR_CACHE_DIR set by the caller is kept).
        env["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)
    return env


def run_worker(name: str, impl: str, args, workdir: Path) -> dict:
    python = _python_for(impl, args)
    if not Path(python).exists():
        hint = "run `make bench` to create it" if impl not in W.OURS else "run `make build`"
        return {"status": "unavailable", "reason": f"no interpreter at {python} ({hint})"}
    result_file = workdir / f"{name}__{impl}.json"
    traj_file = args.out / "trajectories" / f"{name}__{impl}.pt"
    cmd = [
        python, "-m", "bench.workloads",
        "--workload", name, "--impl", impl, "--result", str(result_file),
        "--traj", str(traj_file), "--repeats", str(args.repeats), "--warmup", str(args.warmup),
        "--threads", str(args.threads), "--device", args.device,
    ]  # fmt: skip
    if args.quick:
        cmd.append("--quick")
    loadavg_before = os.getloadavg()[0]
    try:
        cache_dir = workdir / f"inductor__{name}__{impl}" if impl in W.COMPILED else None
        proc = subprocess.run(
            cmd, cwd=REPO, env=_child_env(impl, args.threads, cache_dir), capture_output=True,
            text=True, timeout=args.timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {args.timeout} s"}
    if not result_file.exists():
        return {
            "status": "error",
            "reason": f"worker exited with {proc.returncode} and wrote no result",
            "stderr_tail": proc.stderr[-3000:],
        }
    result = json.loads(result_file.read_text())
    result["loadavg_before"] = loadavg_before  # 1-minute load just before the worker started
    if proc.stderr.strip():
        result["stderr_tail"] = proc.stderr[-3000:]
    return result


# ----------------------------------------------------------------------------------------------
# ESS.


def compute_ess(entry: dict, warnings: list) -> None:
    """Adds ``ess``, ``ess_per_s`` and ``ess_per_grad`` to a worker result that saved a
    trajectory ``[chains, steps, dim]``: the bulk ESS (``torchebm.diagnostics.ess``, ArviZ's
    definition) of every coordinate after burn-in, and its minimum over the coordinates. The
    unsplit ESS of ``x[:, :, 0]`` (``method="identity"``) is cross-checked against
    bench/ess.py."""
    path = entry.get("trajectory_file")
    if entry.get("status") != "ok" or not path or not Path(path).exists():
        return
    import torch

    from bench.ess import multichain_ess

    draws = torch.load(path)  # [chains, steps, dim]
    kept = draws[:, int(BURN_IN_FRACTION * draws.shape[1]) :]
    ess_bench = multichain_ess(kept[..., 0])
    per_coordinate = None
    try:
        from torchebm.diagnostics import ess as diagnostics_ess

        per_coordinate = diagnostics_ess(kept, "bulk")
        ess_identity_x0 = float(diagnostics_ess(kept[..., 0], "identity"))
    except Exception as exc:  # an API mismatch must not lose the bench's own estimate
        warnings.append(f"torchebm.diagnostics.ess failed on [chains, draws, dim] draws: {exc}")
    if per_coordinate is not None:
        ess = float(per_coordinate.min())
        method = "bulk ESS (torchebm.diagnostics.ess), min over coordinates"
        if abs(math.log(ess_identity_x0 / ess_bench)) > math.log(1.25):
            warnings.append(
                f"torchebm.diagnostics.ess(method='identity') gives {ess_identity_x0:.1f} on "
                f"x[:, :, 0], bench/ess.py {ess_bench:.1f} (>25% apart)"
            )
    else:
        ess, method, ess_identity_x0 = ess_bench, "bench/ess.py on x[:, :, 0] (Geyer)", None
    per_draw = ess / (kept.shape[0] * kept.shape[1])
    grads = entry.get("grads_per_step") or None
    entry["ess"] = {
        "chains": kept.shape[0],
        "draws_kept": kept.shape[1],
        "burn_in_fraction": BURN_IN_FRACTION,
        "ess": ess,
        "ess_per_coordinate": None if per_coordinate is None else per_coordinate.tolist(),
        "ess_identity_x0": ess_identity_x0,
        "ess_bench_x0": ess_bench,
        "method": method,
        "ess_per_draw": per_draw,
        "grads_per_step": grads,
    }
    entry["ess_per_s"] = per_draw * entry["work"] / entry["median_s"]
    entry["ess_per_grad"] = per_draw / grads if grads else None


# ----------------------------------------------------------------------------------------------
# Aggregation.


def _ratio(results: dict, slow: str, fast: str):
    a, b = results.get(slow, {}), results.get(fast, {})
    if a.get("status") == "ok" and b.get("status") == "ok":
        return a["median_s"] / b["median_s"]
    return None


def summarise(workload: W.Workload, results: dict, args) -> dict:
    for entry in results.values():
        if entry.get("status") == "ok":
            entry["median_s"] = statistics.median(entry["times_s"])
            entry["throughput_per_s"] = entry["work"] / entry["median_s"]
    speedup = {
        "fused_vs_torchebm089": _ratio(results, "torchebm089", "fused"),
        "fused_vs_reference": _ratio(results, "reference", "fused"),
    }
    if "torchebm089-triton" in workload.impls:
        speedup["fused_vs_torchebm089_triton"] = _ratio(results, "torchebm089-triton", "fused")
    if "fused-cudagraph" in workload.impls:
        speedup["cudagraph_vs_fused"] = _ratio(results, "fused", "fused-cudagraph")
    if "fused-op" in workload.impls:
        speedup["op_vs_torchebm089_triton"] = _ratio(results, "torchebm089-triton", "fused-op")
    if workload.neural:
        for key, slow, fast in NEURAL_RATIOS:
            if slow in workload.impls and fast in workload.impls:
                speedup[key] = _ratio(results, slow, fast)
    bandwidth = _bandwidth(results, args) if workload.name == "gpu_langevin_bandwidth" else None
    bound = _compute_bound(results)
    targets = workload.gpu_targets if args.device.startswith("cuda") else workload.targets
    # A target names a speedup entry ("op_vs_..."), or one of the fused path ("vs_...").
    measured = {key: speedup.get(key if key in speedup else f"fused_{key}") for key in targets}
    if "fraction_of_peak" in targets:
        measured["fraction_of_peak"] = (bandwidth or {}).get("fused", {}).get("fraction_of_peak")
    # Per target: True / False, None when a time it needs is missing. Overall: False when any
    # target is missed, else None when any is unmeasured, else True.
    met_targets = {k: None if measured[k] is None else measured[k] >= targets[k] for k in targets}
    met = None
    if any(v is False for v in met_targets.values()):
        met = False
    elif targets and all(v is True for v in met_targets.values()):
        met = True
    out = {
        "description": workload.description,
        "size": workload.quick if args.quick else workload.full,
        "unit": workload.unit,
        "group": workload.group or None,
        "neural": workload.neural,
        "targets": targets,
        "results": results,
        "speedup": speedup,
        "met_targets": met_targets,
        "met": met,
    }
    if bandwidth is not None:
        out["bandwidth"] = bandwidth
    if bound is not None:
        out["compute_bound"] = bound
    return out


def _compute_bound(results: dict):
    """Where the hand-written eager worker counted the operations of one timed run and measured
    the machine's GEMM rate (bench.workloads.compute_bound): each implementation's achieved
    rate as a fraction of that GEMM rate, and the speed-up over the hand-written eager loop of
    an implementation doing the same operations at the GEMM rate (GEMM rate / the eager loop's
    achieved rate): near 1, the eager loop already runs at the rate of the best-tuned float32
    kernel, and a faster implementation must do less arithmetic (or lower its precision)."""
    info = results.get("hand_eager", {}).get("info", {})
    if "flops_per_run" not in info or results["hand_eager"].get("status") != "ok":
        return None
    flops, peak = info["flops_per_run"], info["gemm_flops_per_s"]
    achieved = {
        impl: flops / entry["median_s"]
        for impl, entry in results.items()
        if entry.get("status") == "ok"
    }
    return {
        "flops_per_run": flops,
        "gemm_flops_per_s": peak,
        "fraction_of_gemm_rate": {impl: rate / peak for impl, rate in achieved.items()},
        "speedup_at_gemm_rate": peak / achieved["hand_eager"],
    }


def _peak_bandwidth(device_name: str, override_tbs):
    if override_tbs:
        return override_tbs * 1e12, "--peak-bw-tbs"
    for key, peak in PEAK_BANDWIDTH:
        if key in (device_name or ""):
            return peak, f"table entry {key!r}"
    return None, None


def _bandwidth(results: dict, args) -> dict:
    out = {}
    for impl, entry in results.items():
        if entry.get("status") != "ok":
            continue
        achieved = W.LANGEVIN_BYTES_PER_ELEMENT * entry["work"] / entry["median_s"]
        peak, source = _peak_bandwidth(entry.get("cuda_device_name"), args.peak_bw_tbs)
        out[impl] = {
            "bytes_per_s": achieved,
            "peak_bytes_per_s": peak,
            "peak_source": source,
            "fraction_of_peak": achieved / peak if peak else None,
        }
    return out


def machine_info() -> dict:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "loadavg_start": list(os.getloadavg()),
    }
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        info["git_commit"] = commit or None
        info["git_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


# ----------------------------------------------------------------------------------------------
# Reporting.


def _fmt_time(entry: dict) -> str:
    status = entry.get("status")
    if status == "ok":
        s = entry["median_s"]
        return f"{s * 1e3:.1f} ms" if s < 10 else f"{s:.2f} s"
    return {"n/a": "n/a", "unavailable": "unavail.", "error": "ERROR"}.get(status, "-")


def _fmt_path(entry: dict) -> str:
    path = entry.get("info", {}).get("last_path")
    return f" [{path}]" if path else ""


def _fmt_ratio(r) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _fmt_rate(x) -> str:
    if x is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


_IMPL_SHORT = {
    "torchebm089": "0.8.9", "reference": "ref", "hand_eager": "eager",
    "hand_compiled": "hand-compiled", "torchebm089_triton": "0.8.9 Triton", "fused": "fused",
}  # fmt: skip


def _fmt_one_target(key: str, value: float) -> str:
    """``vs_X``: ours (fused) against X; ``<who>_vs_X``: implementation <who> against X."""
    if key == "fraction_of_peak":
        return f">={value:.0%} of peak BW"
    who, _, other = key.partition("vs_")
    who = who.rstrip("_")
    return f"{who + ' ' if who else ''}>={value:g}x {_IMPL_SHORT.get(other, other)}"


def _fmt_target(targets: dict) -> str:
    return ", ".join(_fmt_one_target(k, v) for k, v in targets.items()) or "-"


_MET = {True: "yes", False: "NO", None: "-"}


def _fmt_met(wl: dict) -> str:
    """One mark per target when there are several (``yes, NO``), else the overall mark."""
    per = wl.get("met_targets") or {}
    if len(per) > 1:
        return ", ".join(_MET[v] for v in per.values())
    return _MET[wl["met"]]


def _columns(header: list, rows: list) -> list:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return lines


def render_table(report: dict) -> str:
    classic = {n: wl for n, wl in report["workloads"].items() if not wl.get("neural")}
    neural = {n: wl for n, wl in report["workloads"].items() if wl.get("neural")}
    lines = []
    if classic or not neural:
        lines += _classic_table(classic)
    if neural:
        lines += ([""] if lines else []) + _neural_table(neural)
    return "\n".join(lines + [""] + footnotes(report))


def _classic_table(workloads: dict) -> list:
    header = [
        "workload", "ours-fused", "ours-reference", "torchebm-0.8.9", "fused/0.8.9",
        "fused/ref", "target", "met?", "fused rate/s", "ESS/s fused | ref | 0.8.9",
        "ESS/grad fused",
    ]  # fmt: skip
    rows = []
    for name, wl in workloads.items():
        res = wl["results"]
        ess = [res.get(i, {}).get("ess_per_s") for i in CPU_IMPLS]
        rows.append([
            name,
            _fmt_time(res.get("fused", {})) + _fmt_path(res.get("fused", {})),
            _fmt_time(res.get("reference", {})),
            _fmt_time(res.get("torchebm089", {})),
            _fmt_ratio(wl["speedup"]["fused_vs_torchebm089"]),
            _fmt_ratio(wl["speedup"]["fused_vs_reference"]),
            _fmt_target(wl["targets"]),
            _fmt_met(wl),
            _fmt_rate(res.get("fused", {}).get("throughput_per_s")) + " " + _unit_short(wl),
            " | ".join(_fmt_rate(e) for e in ess) if any(e is not None for e in ess) else "-",
            _fmt_rate(res.get("fused", {}).get("ess_per_grad")),
        ])  # fmt: skip
    return _columns(header, rows)


def _fmt_compile(entry: dict) -> str:
    s = entry.get("info", {}).get("compile_s") if entry.get("status") == "ok" else None
    return "-" if s is None else f"{s:.1f}"


def _neural_table(workloads: dict) -> list:
    """Neural energies: ours (default path, and backend="compiled" where run), TorchEBM 0.8.9,
    and the hand-written eager and torch.compile loops."""
    header = [
        "neural workload", "ours", "ours-compiled", "torchebm-0.8.9", "hand-eager",
        "hand-compiled", "ours/0.8.9", "ours/eager", "ours/h-comp", "compiled/eager",
        "target", "met?", "ours rate/s", "compile s: ours | hand",
    ]  # fmt: skip
    rows = []
    for name, wl in workloads.items():
        res, sp = wl["results"], wl["speedup"]
        comp = res.get("compiled", {})
        rows.append([
            name,
            _fmt_time(res.get("fused", {})) + _fmt_path(res.get("fused", {})),
            _fmt_time(comp) + _fmt_path(comp) if "compiled" in res else "-",
            _fmt_time(res.get("torchebm089", {})),
            _fmt_time(res.get("hand_eager", {})),
            _fmt_time(res.get("hand_compiled", {})),
            _fmt_ratio(sp.get("fused_vs_torchebm089")),
            _fmt_ratio(sp.get("fused_vs_hand_eager")),
            _fmt_ratio(sp.get("fused_vs_hand_compiled")),
            _fmt_ratio(sp.get("compiled_vs_hand_eager")),
            _fmt_target(wl["targets"]),
            _fmt_met(wl),
            _fmt_rate(res.get("fused", {}).get("throughput_per_s")) + " " + _unit_short(wl),
            f"{_fmt_compile(comp)} | {_fmt_compile(res.get('hand_compiled', {}))}",
        ])  # fmt: skip
    return _columns(header, rows)


def _unit_short(wl: dict) -> str:
    return {
        "chain-steps": "steps", "normals": "normals", "elements": "elem", "iterations": "iter",
        "chain-temperatures": "temps",
    }[wl["unit"]]  # fmt: skip


def footnotes(report: dict) -> list:
    cfg, machine = report["config"], report["machine"]
    notes = [
        f"Medians of {cfg['repeats']} timed runs after {cfg['warmup']} warm-up run(s), "
        f"{cfg['threads']} threads, device {cfg['device']}"
        + (", QUICK sizes (smoke test, not the targets' sizes)" if cfg["quick"] else "")
        + ". Each implementation runs in its own process; ratios are slow median / fast median "
        "from this same run (fused/0.8.9 = t(0.8.9) / t(fused)).",
        f"Machine: {machine['cpu_model']} ({machine['cpu_count']} CPUs), load average "
        f"{machine['loadavg_start'][0]:.2f} at start, {machine['loadavg_end'][0]:.2f} at end "
        f"(the run's own {cfg['threads']} threads count up to {cfg['threads']} of it)"
        + (" - the machine was busy: timings are noisy." if _busy(machine, cfg) else "."),
        "[chain] / [fused] / [compiled] after one of our times: the path our sampler reports it "
        "took (sampler.last_path: whole-chain kernel, per-step fused ops around the gradient, "
        "or the torch.compile'd step of backend='compiled').",
        "normal_generation: 'fused' is torchebm.kernels.ops.philox_normal; the reference and "
        "0.8.9 columns are torch.randn in each venv (0.8.9 draws its noise with randn_like).",
    ]
    if any(wl.get("neural") for wl in report["workloads"].values()):
        notes.append(
            "Neural workloads: 'ours' is backend='fused' (the path the default backend takes "
            "when the kernels are loaded), 'ours-compiled' backend='compiled'; hand-eager is "
            "the loop g = autograd.grad(E(x).sum(), x); x = (x - a g + b randn_like(x))"
            ".detach().requires_grad_(), hand-compiled the same step in torch.compile "
            "(inductor, defaults). Compiled implementations get one extra untimed warm-up; "
            "'compile s' is their first run's wall time (a cold compile, fresh inductor cache, "
            "plus one run). PCD rows: one timed run = size['n_iters'] training iterations "
            "(sampling, loss, backward, Adam); rate in iterations/s."
        )
    ess_sizes, estimators = [], set()
    for name, wl in report["workloads"].items():
        methods = {e["ess"]["method"] for e in wl["results"].values() if "ess" in e}
        if methods:
            estimators |= methods
            ess_sizes.append(f"{name} {wl['size']['ess_chains']} x {wl['size']['ess_steps']}")
    if ess_sizes:
        notes.append(
            ESS_FOOTNOTE.format(
                sizes=", ".join(ess_sizes), burn=BURN_IN_FRACTION,
                estimator=" / ".join(sorted(estimators)),
            )  # fmt: skip
        )
    for name, wl in report["workloads"].items():
        for impl, entry in wl["results"].items():
            if entry.get("status") in ("n/a", "unavailable", "error"):
                notes.append(f"{name} / {impl}: {entry['status']}: {entry.get('reason')}")
        for impl, bw in wl.get("bandwidth", {}).items():
            frac = bw["fraction_of_peak"]
            notes.append(
                f"{name} / {impl}: {bw['bytes_per_s'] / 1e9:.0f} GB/s"
                + (f" = {frac:.0%} of peak ({bw['peak_source']})" if frac else " (peak unknown)")
            )
        bound = wl.get("compute_bound")
        if bound is not None:
            shares = ", ".join(
                f"{impl} {share:.0%}" for impl, share in bound["fraction_of_gemm_rate"].items()
            )
            notes.append(
                f"{name}: compute bound: {bound['flops_per_run'] / 1e9:.2f} GFLOP per timed run "
                f"(torch.utils.flop_counter), GEMM rate {bound['gemm_flops_per_s'] / 1e9:.0f} "
                f"GFLOP/s ({W.PEAK_GEMM_SIZE}^3 float32 torch.mm, same threads); achieved "
                f"share of it: {shares}; the same operations at the GEMM rate would be "
                f"{bound['speedup_at_gemm_rate']:.2f}x the hand-written eager loop"
            )
        for key in (
            "fused_vs_torchebm089_triton", "op_vs_torchebm089_triton", "cudagraph_vs_fused",
            "compiled_vs_fused", "compiled_vs_hand_compiled", "hand_compiled_vs_hand_eager",
        ):  # fmt: skip
            if wl["speedup"].get(key) is not None:
                notes.append(f"{name}: {key} = {wl['speedup'][key]:.2f}x")
        ref = wl["results"].get("reference", {})
        if wl.get("neural") and ref.get("status") == "ok":
            notes.append(
                f"{name}: our reference path {_fmt_time(ref)}, fused_vs_reference = "
                f"{_fmt_ratio(wl['speedup'].get('fused_vs_reference'))}"
            )
    notes += report.get("warnings", [])
    return [f"[{i + 1}] {n}" for i, n in enumerate(notes)]


def _busy(machine: dict, cfg: dict) -> bool:
    """Other work on the machine: at the start the load is theirs alone; at the end it includes
    up to ``threads`` of the benchmark's own (a 1-minute average taken as its last worker ends)."""
    limit = max(1.0, (machine["cpu_count"] or 1) - cfg["threads"] + 0.5)
    return machine["loadavg_start"][0] > limit or machine["loadavg_end"][0] > limit + cfg["threads"]


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["workloads"])
    candidates = [
        ("fused_vs_torchebm089", "ours / TorchEBM 0.8.9", "vs_torchebm089"),
        ("fused_vs_reference", "ours / our reference", "vs_reference"),
        ("fused_vs_hand_eager", "ours / hand-written eager", "vs_hand_eager"),
        ("compiled_vs_hand_eager", "ours compiled / hand-written eager", "compiled_vs_hand_eager"),
    ]
    # The first two always (the chart's legend is stable); the neural ones where measured.
    series = candidates[:2] + [
        c for c in candidates[2:]
        if any(wl["speedup"].get(c[0]) is not None for wl in report["workloads"].values())
    ]  # fmt: skip
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(series) * len(names) + 2), 4.5))
    width = 0.8 / len(series)
    for k, (key, label, target_key) in enumerate(series):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(names))]
        values = [report["workloads"][n]["speedup"].get(key) for n in names]
        bars = ax.bar(
            [x for x, v in zip(xs, values) if v is not None],
            [v for v in values if v is not None],
            width, label=label, color=f"C{k}",
        )  # fmt: skip
        ax.bar_label(bars, fmt="%.1fx", fontsize=7)
        for x, n in zip(xs, names):
            target = report["workloads"][n]["targets"].get(target_key)
            if target:
                ax.hlines(target, x - width / 2, x + width / 2, colors="k", linestyles="--")
    ax.axhline(1.0, color="grey", lw=0.8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("speedup (ratio of medians, log scale)")
    cfg = report["config"]
    ax.set_title(
        f"torchebm-fused speedups, {cfg['device']}, {cfg['threads']} threads"
        + (" (QUICK sizes)" if cfg["quick"] else "")
        + "\n-- dashed: target",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeats", type=int, default=None, help="timed runs per cell (5; quick: 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs per cell")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not a measure")
    p.add_argument(
        "--only", default="",
        help="comma-separated workload or group names (conv_langevin, conv_pcd; default: all)",
    )  # fmt: skip
    p.add_argument(
        "--impls", default=",".join(ALL_IMPLS), help="comma-separated implementations to run"
    )
    p.add_argument("--out", type=Path, default=REPO / "bench_out", help="output folder")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU section")
    p.add_argument(
        "--ours-python",
        default=str(REPO / ".venv/bin/python") if (REPO / ".venv/bin/python").exists()
        else sys.executable,
    )  # fmt: skip
    p.add_argument(
        "--torchebm089-python",
        default=str(REPO / ".venv-torchebm089/bin/python"),
        help="an interpreter with torchebm==0.8.9 (for --device cuda: with a CUDA torch)",
    )
    p.add_argument(
        "--peak-bw-tbs", type=float, default=None,
        help="peak memory bandwidth, TB/s (default: by device name: H100 3.35, H200 4.8)",
    )  # fmt: skip
    p.add_argument("--timeout", type=int, default=1800, help="seconds per worker")
    p.add_argument("--no-plot", action="store_true")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.repeats < 1:
        p.error(f"--repeats: expected >= 1, got {args.repeats}")
    args.impls = [i for i in args.impls.split(",") if i]
    unknown = [i for i in args.impls if i not in ALL_IMPLS]
    if unknown:
        p.error(f"--impls: unknown {unknown}; expected a subset of {list(ALL_IMPLS)}")
    only = []
    for n in (n for n in args.only.split(",") if n):  # a group name stands for its workloads
        only += [m for m in W.GROUPS.get(n, [n]) if m not in only]
    args.only = only
    unknown = [n for n in args.only if n not in W.WORKLOADS]
    if unknown:
        names = sorted(W.WORKLOADS) + sorted(W.GROUPS)
        p.error(f"--only: unknown {unknown}; expected names from {names}")
    args.out = args.out.resolve()
    return args


def select_workloads(args) -> list:
    kind = "cuda" if args.device.startswith("cuda") else "cpu"
    chosen = [W.WORKLOADS[n] for n in args.only] if args.only else list(W.WORKLOADS.values())
    runnable = [w for w in chosen if kind in w.devices]
    skipped = [w.name for w in chosen if kind not in w.devices]
    if skipped:
        names = ", ".join(skipped)
        print(f"skipped (need --device cuda on a CUDA machine): {names}", file=sys.stderr)
    return runnable


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print("GPU section skipped: torch here has no CUDA device "
                  f"(torch {torch.__version__}).", file=sys.stderr)  # fmt: skip
            return 0
    (args.out / "trajectories").mkdir(parents=True, exist_ok=True)
    report = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "config": {
            "repeats": args.repeats, "warmup": args.warmup, "quick": args.quick,
            "threads": args.threads, "device": args.device, "impls": args.impls,
            "only": args.only, "ours_python": args.ours_python,
            "torchebm089_python": args.torchebm089_python,
        },  # fmt: skip
        "machine": machine_info(),
        "implementations": {},
        "workloads": {},
        "warnings": [],
    }
    with tempfile.TemporaryDirectory(prefix="torchebm-bench-") as tmp:
        for workload in select_workloads(args):
            results = {}
            for impl in ALL_IMPLS:
                if impl not in args.impls:
                    continue
                if impl in workload.na:
                    results[impl] = {"status": "n/a", "reason": workload.na[impl]}
                    continue
                if impl not in workload.impls:
                    continue
                entry = run_worker(workload.name, impl, args, Path(tmp))
                results[impl] = entry
                if "identity" in entry:
                    report["implementations"].setdefault(impl, entry["identity"])
                _progress(workload.name, impl, entry)
            report["workloads"][workload.name] = summarise(workload, results, args)
            for entry in results.values():
                compute_ess(entry, report["warnings"])
    report["machine"]["loadavg_end"] = list(os.getloadavg())

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    table = render_table(report)
    (args.out / "table.txt").write_text(table + "\n")
    if not args.no_plot and report["workloads"]:
        plot(report, args.out / "speedups.png")
    print(table)
    written = ["results.json", "table.txt"] + ([] if args.no_plot else ["speedups.png"])
    print(f"\nwrote {', '.join(str(args.out / name) for name in written)}")
    return 0


def _progress(name: str, impl: str, entry: dict) -> None:
    status = entry.get("status")
    if status == "ok":
        med = statistics.median(entry["times_s"])
        msg = f"ok, median {med * 1e3:.1f} ms over {len(entry['times_s'])} runs"
    else:
        msg = f"{status}: {entry.get('reason')}"
    print(f"[{name} / {impl}] {msg}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
