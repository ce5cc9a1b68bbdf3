"""Where the GPU time of the headline CUDA workloads goes: kernel times by CUDA events and by the
torch profiler, next to roofline references measured in the same process.

    python scripts/gpu_profile.py [--triton-089 PATH/fused_langevin.py] [--out results.json]

Reports, for float32 on the current CUDA device:
- the fused Langevin update over 2^26 elements, and ``torch.add(x, g)`` over the same tensors
  (the same 12 bytes per element, no arithmetic): achieved GB/s of each;
- the double-well whole chain 4096 x 32 x 1000: the raw ``langevin_chain`` op, the full
  ``LangevinDynamics.sample`` call (wall clock, and the profiler's split between our kernel
  and everything else), and TorchEBM 0.8.9's Triton chain when its file is given;
- 2^24 normals: ``philox_normal`` against ``torch.randn``.
The benchmark harness (bench/run.py) remains the source of the reported ratios; this script
explains them.
"""
from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import json
import pstats
import statistics
import time

import torch

from torchebm.core import DoubleWellModel
from torchebm.kernels import ops
from torchebm.samplers import LangevinDynamics
from torchebm.samplers.mcmc_sampler import kernel_model


def event_ms(fn, repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of ``fn()`` between CUDA events on the current stream."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def wall_ms(fn, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall-clock milliseconds of ``fn()`` followed by a device synchronisation."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def profiler_split(fn, match: str) -> dict:
    """Device time of kernels whose name contains ``match`` against all device time, one call."""
    fn()
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    ours = other = 0.0
    names = {}
    for e in prof.events():
        t = e.device_time  # microseconds on the device (torch >= 2.4)
        if e.device_type != torch.autograd.DeviceType.CUDA or not t:
            continue
        names[e.name[:80]] = names.get(e.name[:80], 0.0) + t / 1e3
        if match in e.name:
            ours += t / 1e3
        else:
            other += t / 1e3
    return {"matching_ms": ours, "other_ms": other, "kernels_ms": names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triton-089", default=None, help="path of 0.8.9's fused_langevin.py")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    dev = torch.device("cuda")
    res: dict = {"device": torch.cuda.get_device_name()}

    # Fused update at 2^26 float32 elements, against a same-traffic elementwise add.
    n = 1 << 26
    x = torch.randn(n, device=dev)
    g = torch.randn(n, device=dev)
    out = torch.empty_like(x)
    gb = 12 * n / 1e9
    t_update = event_ms(lambda: ops.langevin_update(x, g, None, 0.01, 0.1414, seed=1, step=2))
    t_add = event_ms(lambda: torch.add(x, g, out=out))
    res["update_2^26"] = {"ms": t_update, "GB/s": gb / t_update * 1e3,
                          "add_ms": t_add, "add_GB/s": gb / t_add * 1e3}
    del x, g, out

    # Double-well chain 4096 x 32 x 1000.
    B, d, steps = 4096, 32, 1000
    x0 = torch.randn(B, d, device=dev, generator=torch.Generator(device=dev).manual_seed(0))
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
    chain = {
        "raw_op_event_ms": event_ms(raw),
        "raw_op_host_schedules_event_ms": event_ms(raw_host),
        "sample_wall_ms": wall_ms(call),
        "sample_profile": profiler_split(call, "langevin_chain"),
        # The host's share: one chain of one step costs the call's fixed overhead only.
        "sample_1x1_step_wall_ms": wall_ms(lambda: sampler.sample(x=x0[:1], n_steps=1)),
    }
    host = cProfile.Profile()
    host.runcall(lambda: [sampler.sample(x=x0[:1], n_steps=1) for _ in range(200)])
    stats = io.StringIO()
    pstats.Stats(host, stream=stats).sort_stats("tottime").print_stats(15)
    print("host time of 200 calls of one step of one chain, by function:\n" + stats.getvalue())
    assert sampler.last_path == "chain", sampler.last_path
    if args.triton_089:
        spec = importlib.util.spec_from_file_location("fused_langevin_089", args.triton_089)
        triton_mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(triton_mod)
        xt = x0.clone()
        chain["triton_089_event_ms"] = event_ms(
            lambda: triton_mod.doublewell_langevin_chain(xt, steps, 0.01, 1.0, 2.0, 1.0, seed=5))
        xt = x0.clone()
        chain["triton_089_wall_ms"] = wall_ms(
            lambda: triton_mod.doublewell_langevin_chain(xt, steps, 0.01, 1.0, 2.0, 1.0, seed=5))
    res["doublewell_chain_4096x32x1000"] = chain

    m = 1 << 24
    res["normals_2^24"] = {
        "philox_normal_ms": event_ms(lambda: ops.philox_normal([m], 1, 0, torch.float32, dev)),
        "randn_ms": event_ms(lambda: torch.randn(m, device=dev)),
    }
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
