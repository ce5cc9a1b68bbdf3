"""Where the GPU time of the CUDA workloads goes: kernel times by CUDA events and by the torch
profiler, next to references measured in the same process. ``scripts/gpu_check.sh`` runs it.

    python scripts/gpu_profile.py [--sections dense,overhead,...] [--triton-089 PATH] [--out F]
    python scripts/gpu_profile.py --ncu-target       # one launch of each chain kernel, for ncu
    python scripts/gpu_profile.py --device cpu --quick   # the same code paths on the CPU, tiny

Sections, in this order (float32; the JSON file is rewritten after each one, so a run cut short
keeps what it finished):

- ``dense``: the dense-Gaussian whole-chain kernels (the gaussian_langevin, gaussian_mala and
  gaussian_hmc workloads of bench/workloads.py: their model, step sizes and chain lengths)
  through ``sample()``: milliseconds against the number of chains B, Langevin against the
  dimension d, and the profiler's share of the chain kernel in each call: the curve in B shows
  where the GPU fills.
- ``overhead``: the host cost of a ``sample()`` call: one chain, one step of the double well
  (a cached constant schedule), wall clock; the kernels, copies and allocations that one such
  call makes (profiler events, allocator counters); the host functions that take its time
  (cProfile).
- ``doublewell``: the gpu_doublewell_chain workload's chain: the raw ``langevin_chain`` op, the
  ``LangevinDynamics.sample`` call, and TorchEBM 0.8.9's Triton chain when ``--triton-089`` names
  its ``fused_langevin.py``.
- ``mlp``: the mlp_langevin workload: our sampler (the MLP whole-chain kernel) against bench's
  hand-written eager loop, in one process.
- ``update``: the fused Langevin update over 2^26 elements against ``torch.add(x, g)`` (the same
  12 bytes per element): achieved GB/s of each.
- ``normals``: 2^24 normals, ``philox_normal`` against ``torch.randn``.

Times: the median of ``--repeats`` runs after warm-up, by CUDA events on a GPU (wall clock plus a
synchronisation for ``sample()`` calls, whose host work counts), by wall clock on the CPU. The
benchmark harness (bench/run.py) remains the source of the reported ratios; this script explains
them.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import math
import pstats
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench import workloads as W  # noqa: E402  (bench's models, sizes and hand-written loop)
from torchebm.core import DoubleWellModel, GaussianModel  # noqa: E402
from torchebm.kernels import ops  # noqa: E402
from torchebm.samplers import (  # noqa: E402
    HamiltonianMonteCarlo,
    LangevinDynamics,
    MetropolisAdjustedLangevin,
)
from torchebm.samplers.mcmc_sampler import kernel_model  # noqa: E402

# Kernel-name fragments of the whole-chain kernels (csrc/cuda/*_chain_kernel.cu, mlp_chain_kernel.cu)
# and of their CPU ops, for the profiler split.
CHAIN_KERNELS = "chain"


class Timer:
    """Median milliseconds of ``fn()``: CUDA events on a GPU (device time of the work queued),
    or wall clock around ``fn()`` and a synchronisation (``wall``, or on the CPU)."""

    def __init__(self, device: torch.device, repeats: int, warmup: int):
        self.device, self.repeats, self.warmup = device, repeats, warmup

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def ms(self, fn, wall: bool = False, repeats: int = 0) -> float:
        """``repeats``: this many timed runs instead of the timer's own (at most that many)."""
        for _ in range(self.warmup):
            fn()
        self.sync()
        times = []
        for _ in range(min(repeats, self.repeats) if repeats else self.repeats):
            if self.device.type == "cuda" and not wall:
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                self.sync()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)


def profiler_split(fn, match: str, device: torch.device) -> dict:
    """One call of ``fn`` under the torch profiler: the device time (CPU: self CPU time) of the
    kernels whose name contains ``match`` against all the others, in milliseconds, by name."""
    fn()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    activity = torch.profiler.ProfilerActivity
    with torch.profiler.profile(activities=[activity.CUDA if device.type == "cuda" else activity.CPU]) as prof:
        fn()
        sync()
    ours = other = 0.0
    names: dict = {}
    for e in prof.events():
        if device.type == "cuda":
            if e.device_type != torch.autograd.DeviceType.CUDA:
                continue
            t = e.device_time / 1e3  # microseconds on the device (torch >= 2.4)
        else:
            t = e.self_cpu_time_total / 1e3
        if not t:
            continue
        names[e.name[:80]] = names.get(e.name[:80], 0.0) + t
        if match in e.name:
            ours += t
        else:
            other += t
    return {"matching_ms": ours, "other_ms": other, "kernels_ms": names}


def dense_models(dims, device):
    """bench's dense-Gaussian model (``gaussian_parameters``) for each dimension."""
    out = {}
    for d in dims:
        mean, cov = W.gaussian_parameters(d)
        out[d] = GaussianModel(mean, cov).to(device)
    return out


# The dense-Gaussian workloads of bench/workloads.py, by sampler.
DENSE = {"langevin": "gaussian_langevin", "mala": "gaussian_mala", "hmc": "gaussian_hmc"}


def harness_size(workload: str) -> dict:
    """A workload's full size in bench/workloads.py (``n_chains``, ``n_steps``...)."""
    return W.WORKLOADS[workload].full


def dense_samplers(model, device):
    """The samplers of the dense-Gaussian workloads with bench's settings, and their harness
    chain lengths (HMC: transitions of ``W.HMC_LEAPFROG`` leapfrog steps)."""
    samplers = {
        "langevin": LangevinDynamics(model, step_size=W.GAUSS_LANGEVIN_STEP, noise_scale=1.0,
                                     device=device),
        "mala": MetropolisAdjustedLangevin(model, step_size=W.GAUSS_MALA_STEP, device=device),
        "hmc": HamiltonianMonteCarlo(model, step_size=W.GAUSS_HMC_STEP,
                                     n_leapfrog_steps=W.HMC_LEAPFROG, device=device),
    }
    return {k: (v, harness_size(DENSE[k])["n_steps"]) for k, v in samplers.items()}


def start_state(n: int, d: int, device) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0)).to(device)


def section_dense(dev, timer, quick) -> dict:
    """Chain-kernel time against the number of chains (d = W.GAUSS_DIM) and against d."""
    chains = (16, 64) if quick else (256, 1024, 4096, 16384, 65536)
    dims = (8, 32) if quick else (8, 32, 64, 128)
    d_chains = 64 if quick else harness_size("gaussian_langevin")["n_chains"]
    models = dense_models(sorted(set(dims) | {W.GAUSS_DIM}), dev)
    res: dict = {"by_chains": {}, "by_dim_langevin": {}}
    for name, (sampler, steps) in dense_samplers(models[W.GAUSS_DIM], dev).items():
        steps = 5 if quick else steps
        rows = {}
        for n in chains:
            x0 = start_state(n, W.GAUSS_DIM, dev)
            call = lambda: sampler.sample(x=x0, n_steps=steps)  # noqa: E731
            ms = timer.ms(call, wall=True, repeats=5)  # 10-100 ms a call on the GPU
            split = profiler_split(call, CHAIN_KERNELS, dev)
            rows[n] = {"sample_ms": ms, "chain_kernel_ms": split["matching_ms"],
                       "other_device_ms": split["other_ms"], "path": sampler.last_path,
                       "chain_steps_per_s": n * steps / ms * 1e3}
            print(f"dense {name:8s} B={n:6d} d={W.GAUSS_DIM} steps={steps}: {ms:9.3f} ms "
                  f"(chain kernel {split['matching_ms']:.3f} ms, path {sampler.last_path})")
        res["by_chains"][name] = {"n_steps": steps, "dim": W.GAUSS_DIM, "rows": rows}
    steps = 5 if quick else harness_size("gaussian_langevin")["n_steps"]
    for d in dims:
        sampler, _ = dense_samplers(models[d], dev)["langevin"]
        x0 = start_state(d_chains, d, dev)
        call = lambda: sampler.sample(x=x0, n_steps=steps)  # noqa: E731
        ms = timer.ms(call, wall=True, repeats=5)
        res["by_dim_langevin"][d] = {"chains": d_chains, "n_steps": steps, "sample_ms": ms,
                                     "path": sampler.last_path}
        print(f"dense langevin B={d_chains} d={d:4d} steps={steps}: {ms:9.3f} ms")
    return res


def section_overhead(dev, timer, quick) -> dict:
    """The host cost of one ``sample()`` call of one chain and one step (double well)."""
    model = DoubleWellModel().to(dev)
    sampler = LangevinDynamics(model=model, step_size=0.01, noise_scale=1.0, device=dev)
    x1 = start_state(1, 32, dev)
    call = lambda: sampler.sample(x=x1, n_steps=1)  # noqa: E731
    calls = 20 if quick else 200
    res = {"sample_1x1_step_wall_ms": timer.ms(call, wall=True)}
    res["path"] = sampler.last_path
    if dev.type == "cuda":
        before = torch.cuda.memory_stats(dev).get("allocation.all.allocated", 0)
        call()
        torch.cuda.synchronize(dev)
        res["allocations_per_call"] = torch.cuda.memory_stats(dev).get("allocation.all.allocated", 0) - before
        activity = torch.profiler.ProfilerActivity
        with torch.profiler.profile(activities=[activity.CPU, activity.CUDA]) as prof:
            call()
            torch.cuda.synchronize(dev)
        device_events = [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
        res["device_events_per_call"] = sorted(device_events)
        res["host_to_device_copies_per_call"] = sum("HtoD" in n for n in device_events)
    host = cProfile.Profile()
    host.runcall(lambda: [call() for _ in range(calls)])
    stats = io.StringIO()
    pstats.Stats(host, stream=stats).sort_stats("tottime").print_stats(15)
    print(f"host time of {calls} calls of one step of one chain, by function:\n{stats.getvalue()}")
    print(f"overhead: sample() of 1 chain x 1 step: {res['sample_1x1_step_wall_ms'] * 1e3:.1f} us")
    return res


def section_doublewell(dev, timer, quick, triton_089) -> dict:
    """The double-well chain of gpu_doublewell_chain: raw op, sampler call, 0.8.9's Triton chain."""
    size = harness_size("gpu_doublewell_chain")
    n, d, steps = (64, 32, 20) if quick else (size["n_chains"], size["dim"], size["n_steps"])
    x0 = start_state(n, d, dev)
    model = DoubleWellModel().to(dev)
    km, why = kernel_model(model, x0)
    assert km is not None, why
    a = torch.full((steps,), 0.01, dtype=torch.float64)
    b = torch.full((steps,), (2 * 0.01) ** 0.5, dtype=torch.float64)
    a_dev, b_dev = a.to(dev), b.to(dev)
    raw = lambda: ops.langevin_chain(km.name, x0, a_dev, b_dev, km.params, seed=3)  # noqa: E731
    raw_host = lambda: ops.langevin_chain(km.name, x0, a, b, km.params, seed=3)  # noqa: E731
    sampler = LangevinDynamics(model=model, step_size=0.01, noise_scale=1.0, device=dev)
    call = lambda: sampler.sample(x=x0, n_steps=steps)  # noqa: E731
    res = {
        "size": [n, d, steps],
        "raw_op_ms": timer.ms(raw),
        "raw_op_host_schedules_ms": timer.ms(raw_host),
        "sample_wall_ms": timer.ms(call, wall=True),
        "sample_profile": profiler_split(call, "langevin_chain", dev),
    }
    assert sampler.last_path == "chain", sampler.last_path
    if triton_089:
        spec = importlib.util.spec_from_file_location("fused_langevin_089", triton_089)
        triton_mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(triton_mod)
        xt = x0.clone()
        run = lambda: triton_mod.doublewell_langevin_chain(xt, steps, 0.01, 1.0, 2.0, 1.0, seed=5)  # noqa: E731
        res["triton_089_ms"] = timer.ms(run)
        res["triton_089_wall_ms"] = timer.ms(run, wall=True)
        res["sample_vs_triton_089_wall"] = res["triton_089_wall_ms"] / res["sample_wall_ms"]
    print(f"doublewell {n}x{d}x{steps}: op {res['raw_op_ms']:.3f} ms, sample() "
          f"{res['sample_wall_ms']:.3f} ms" + (f", 0.8.9 Triton {res['triton_089_wall_ms']:.3f} ms"
                                                if triton_089 else ""))
    return res


def section_mlp(dev, timer, quick) -> dict:
    """bench's MLP Langevin workload: our sampler against the hand-written eager loop."""
    n, steps = (64, 5) if quick else (harness_size("mlp_langevin")["n_chains"], harness_size("mlp_langevin")["n_steps"])
    ours = W._net_model("mlp", "fused", str(dev))
    hand = W._net_model("mlp", "hand_eager", str(dev))
    x0 = start_state(n, 2, dev)
    sampler = LangevinDynamics(ours, step_size=W.LANGEVIN_STEP, noise_scale=1.0, device=dev)
    call = lambda: sampler.sample(x=x0, n_steps=steps)  # noqa: E731
    chain = W.hand_langevin_chain(hand, W.LANGEVIN_STEP, math.sqrt(2 * W.LANGEVIN_STEP), compiled=False)
    res = {
        "size": [n, 2, steps],
        "sample_wall_ms": timer.ms(call, wall=True),
        "route": W.sampler_path(sampler),
        "sample_profile": profiler_split(call, "mlp", dev),
        "hand_eager_wall_ms": timer.ms(lambda: chain(x0, steps), wall=True),
    }
    res["sample_vs_hand_eager"] = res["hand_eager_wall_ms"] / res["sample_wall_ms"]
    print(f"mlp {n}x{steps}: sample() {res['sample_wall_ms']:.3f} ms ({res['route']}), hand eager "
          f"{res['hand_eager_wall_ms']:.3f} ms: {res['sample_vs_hand_eager']:.2f}x")
    return res


def section_update(dev, timer, quick) -> dict:
    """Fused Langevin update against a same-traffic elementwise add (12 bytes per element)."""
    n = 1 << (16 if quick else 26)
    x = torch.randn(n, device=dev)
    g = torch.randn(n, device=dev)
    out = torch.empty_like(x)
    gb = 12 * n / 1e9
    t_update = timer.ms(lambda: ops.langevin_update(x, g, None, 0.01, 0.1414, seed=1, step=2))
    t_add = timer.ms(lambda: torch.add(x, g, out=out))
    res = {"elements": n, "ms": t_update, "GB/s": gb / t_update * 1e3, "add_ms": t_add,
           "add_GB/s": gb / t_add * 1e3}
    print(f"update 2^{n.bit_length() - 1}: {res['GB/s']:.4g} GB/s (add {res['add_GB/s']:.4g} GB/s)")
    return res


def section_normals(dev, timer, quick) -> dict:
    m = 1 << (16 if quick else 24)
    return {
        "normals": m,
        "philox_normal_ms": timer.ms(lambda: ops.philox_normal([m], 1, 0, torch.float32, dev)),
        "randn_ms": timer.ms(lambda: torch.randn(m, device=dev)),
    }


SECTIONS = {
    "dense": lambda dev, timer, args: section_dense(dev, timer, args.quick),
    "overhead": lambda dev, timer, args: section_overhead(dev, timer, args.quick),
    "doublewell": lambda dev, timer, args: section_doublewell(dev, timer, args.quick, args.triton_089),
    "mlp": lambda dev, timer, args: section_mlp(dev, timer, args.quick),
    "update": lambda dev, timer, args: section_update(dev, timer, args.quick),
    "normals": lambda dev, timer, args: section_normals(dev, timer, args.quick),
}


def ncu_target(dev, quick) -> None:
    """One ``sample()`` of each dense-Gaussian chain and of the MLP chain at its harness size
    (bench/workloads.py): one launch of each chain kernel, for ``ncu -k regex:...`` or ``nsys``."""
    model = dense_models([W.GAUSS_DIM], dev)[W.GAUSS_DIM]
    for name, (sampler, steps) in dense_samplers(model, dev).items():
        n = 16 if quick else harness_size(DENSE[name])["n_chains"]
        sampler.sample(x=start_state(n, W.GAUSS_DIM, dev), n_steps=5 if quick else steps)
        print(f"ncu target: {name} {n} chains, path {sampler.last_path}")
    net = LangevinDynamics(W._net_model("mlp", "fused", str(dev)), step_size=W.LANGEVIN_STEP,
                           noise_scale=1.0, device=dev)
    size = harness_size("mlp_langevin")
    net.sample(x=start_state(16 if quick else size["n_chains"], 2, dev),
               n_steps=5 if quick else size["n_steps"])
    print(f"ncu target: mlp, path {net.last_path}")
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def brief(obj):
    """``obj`` without the per-kernel and per-event listings (they stay in the JSON file)."""
    if isinstance(obj, dict):
        return {k: brief(v) for k, v in obj.items() if k not in ("kernels_ms", "device_events_per_call")}
    return obj


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated, in the order given (default: {','.join(SECTIONS)})")
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu for a smoke run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run, not a measure")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (20; quick: 2)")
    parser.add_argument("--triton-089", default=None, help="path of 0.8.9's fused_langevin.py")
    parser.add_argument("--ncu-target", action="store_true",
                        help="only launch each chain kernel once (under ncu or nsys)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    sections = [s for s in args.sections.split(",") if s]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"--sections: unknown {unknown}; expected names from {list(SECTIONS)}")
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch {torch.__version__} here has no CUDA device")
    if args.ncu_target:
        ncu_target(dev, args.quick)
        return 0
    repeats = args.repeats or (2 if args.quick else 20)
    if repeats < 1:
        parser.error(f"--repeats: expected >= 1, got {repeats}")
    timer = Timer(dev, repeats, warmup=1 if args.quick else 3)
    res: dict = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                 "torch": torch.__version__, "quick": args.quick, "repeats": repeats}
    failed = []
    for name in sections:
        t0 = time.perf_counter()
        try:
            res[name] = SECTIONS[name](dev, timer, args)
        except Exception:  # recorded; the other sections still run
            traceback.print_exc()
            res[name] = {"error": traceback.format_exc()}
            failed.append(name)
        res[name]["section_s"] = round(time.perf_counter() - t0, 2)
        if args.out:  # after each section: a run cut short keeps what it finished
            Path(args.out).write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(json.dumps(brief(res), indent=1, default=str))
    if failed:
        print(f"gpu_profile.py: sections that raised: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
