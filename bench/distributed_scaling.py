"""Strong and weak scaling of data-parallel PCD training (examples/train_distributed.py).

Runs the example under ``torchrun --standalone`` with 1 and then 2 (``--ranks``) gloo processes on
the CPU, one intra-op thread each, and reads the throughput it prints:

* **strong scaling**: a fixed global batch ``G`` (``--global-batch``), ``G / W`` chains per rank;
  speed-up ``S(W) = R(W) / R(1)`` with ``R`` the total chain steps per second (chains times
  Langevin steps, all ranks), efficiency ``S(W) / W``;
* **weak scaling**: a fixed batch per rank ``b`` (``--rank-batch``), ``W b`` chains in all;
  efficiency ``R(W) / (W R(1))``, which is also the ratio of synchronous steps per second.

On a machine with ``c`` cores, ``W`` single-threaded ranks can scale up to ``min(W, c)``; on the
2-core development machine that caps everything at 2, and any other load there takes from it.
Write what is measured, with the load average this script records.

    .venv/bin/python bench/distributed_scaling.py --out bench_out/distributed.json
    .venv/bin/python bench/distributed_scaling.py --quick      # tiny sizes: a smoke test only
    .venv/bin/python bench/distributed_scaling.py --device cuda --ranks 1 2 4 8   # NCCL, GPUs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "train_distributed.py"
_TOTAL = re.compile(r"^total:\s+([0-9.]+) chain steps/s\s+\(([0-9.]+) synchronous steps/s\)", re.M)


def run(ranks: int, batch: int, args: argparse.Namespace) -> dict:
    """One torchrun launch of the example; its total chain steps/s and synchronous steps/s."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
        str(EXAMPLE), "--steps", str(args.steps), "--batch", str(batch), "--k-steps", str(args.k_steps),
        "--buffer", str(max(args.buffer, batch)), "--hidden", str(args.hidden), "--device", args.device,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
    match = _TOTAL.search(proc.stdout)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return {
        "ranks": ranks,
        "batch_per_rank": batch,
        "chain_steps_per_s": float(match.group(1)),
        "steps_per_s": float(match.group(2)),
        "output": proc.stdout.strip().splitlines(),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--global-batch", type=int, default=1024, help="strong scaling: chains in all")
    parser.add_argument("--rank-batch", type=int, default=512, help="weak scaling: chains per rank")
    parser.add_argument("--steps", type=int, default=60, help="training steps per run (the first is not timed)")
    parser.add_argument("--k-steps", type=int, default=10)
    parser.add_argument("--buffer", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds per launch")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.global_batch, args.rank_batch, args.steps, args.k_steps = 32, 16, 3, 2
        args.buffer, args.hidden = 64, 16
    if args.ranks[0] != 1:
        parser.error("--ranks must start with 1 (the baseline of both scalings)")
    for w in args.ranks:
        if args.global_batch % w:
            parser.error(f"--global-batch {args.global_batch} is not divisible by {w} ranks")

    load_before = os.getloadavg()
    strong = [run(w, args.global_batch // w, args) for w in args.ranks]
    weak = [run(w, args.rank_batch, args) for w in args.ranks]
    for rows in (strong, weak):
        base = rows[0]["chain_steps_per_s"]
        for row in rows:
            row["speedup"] = row["chain_steps_per_s"] / base
            row["efficiency"] = row["speedup"] / row["ranks"]
    result = {
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "cpu_count": os.cpu_count(),
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "strong": strong,
        "weak": weak,
    }
    for name, rows in (("strong", strong), ("weak", weak)):
        print(f"{name} scaling ({args.device}):")
        for row in rows:
            print(f"  {row['ranks']} rank(s) x {row['batch_per_rank']:5d} chains: "
                  f"{row['chain_steps_per_s']:12.0f} chain steps/s, {row['steps_per_s']:7.2f} steps/s, "
                  f"speed-up {row['speedup']:.2f}, efficiency {row['efficiency']:.2f}")
    print(f"load average before {load_before[0]:.2f}, after {result['load_average']['after'][0]:.2f} "
          f"({os.cpu_count()} cores)")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
