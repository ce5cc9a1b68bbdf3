"""The benchmark pictures of the documentation, drawn from the harness's results.

    python bench/plots.py                 # every picture of the docs -> docs/assets/bench/
    python bench/plots.py --json bench_out/results.json --out /tmp/plots   # one harness run

From a ``results.json`` written by ``bench/run.py`` (the input of record): ``<stem>_speedups.png``,
the speed-ups drawn by the harness's own chart (``bench.run.plot``: log scale, targets dashed),
and, when the run has the neural workloads, ``<stem>_times.png``: the median time of each
implementation per workload, so the near-1x rows show what they compare.

Where no harness JSON of a run was kept, the picture is drawn from the table that
``docs/benchmarks.md`` records for it (``--doc-section``; the columns ``fused/0.8.9`` and
``fused/ref``), and the page showing it says so. By default:

- ``bench/results/cpu_neural_2026-11-30.json``: the CPU neural-energy run of 2026-11-30
  (commit 16c1279) reported in ``docs/benchmarks.md``;
- the table of the CPU analytic-model run of 2026-11-22 (commit c0833df) in
  ``docs/benchmarks.md``, whose JSON was not kept.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.run import plot as plot_speedups  # noqa: E402  (the harness's chart, reused)

DEFAULT_JSON = (REPO / "bench" / "results" / "cpu_neural_2026-11-30.json",)
DEFAULT_DOC = REPO / "docs" / "benchmarks.md"
# The docs/benchmarks.md section whose table has no kept JSON, and the stem of its picture.
DEFAULT_DOC_SECTIONS = (("## CPU: 2 cores, 2 threads (AMD EPYC, 2026-11-22", "cpu_analytic_2026-11-22"),)
# Implementations in the order the times chart draws them, with their labels.
IMPL_LABELS = (
    ("fused", "ours"),
    ("compiled", "ours, backend='compiled'"),
    ("torchebm089", "TorchEBM 0.8.9"),
    ("hand_eager", "hand-written eager"),
    ("hand_compiled", "hand-written torch.compile"),
    ("reference", "our reference path"),
)


def load(path: Path) -> dict:
    report = json.loads(path.read_text())
    if "workloads" not in report or "config" not in report:
        raise ValueError(f"{path}: not a results.json of bench/run.py (no 'workloads'/'config')")
    return report


def plot_times(report: dict, path: Path) -> bool:
    """Median time per implementation and workload (neural workloads only). False if none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n, wl in report["workloads"].items() if wl.get("neural")]
    impls = [
        (key, label) for key, label in IMPL_LABELS
        if any(report["workloads"][n]["results"].get(key, {}).get("status") == "ok" for n in names)
    ]  # fmt: skip
    if not names or not impls:
        return False
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(names) + 2), 4.5))
    width = 0.8 / len(impls)
    for k, (key, label) in enumerate(impls):
        xs, ys = [], []
        for i, n in enumerate(names):
            entry = report["workloads"][n]["results"].get(key, {})
            if entry.get("status") == "ok":
                xs.append(i + (k - (len(impls) - 1) / 2) * width)
                ys.append(1e3 * entry["median_s"])
        ax.bar(xs, ys, width, label=label, color=f"C{k}")
    ax.set_yscale("log")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("median time per timed run, ms (log scale)")
    cfg, machine = report["config"], report["machine"]
    ax.set_title(
        f"{cfg['device']}, {cfg['threads']} threads, {machine.get('cpu_model', '')}, "
        f"commit {str(machine.get('git_commit', ''))[:7]}: lower is faster",
        fontsize=9,
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _ratio(cell: str):
    match = re.fullmatch(r"\s*([0-9.]+)x\s*", cell)
    return float(match.group(1)) if match else None


def report_from_doc(doc: Path, heading: str) -> dict:
    """The speed-ups of the first table under ``heading`` in ``doc`` (columns ``fused/0.8.9``
    and ``fused/ref``), in the shape ``bench.run.plot`` reads."""
    lines = doc.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(heading)), None)
    if start is None:
        raise ValueError(f"{doc}: no section starting with {heading!r}")
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif rows:
            break
    if len(rows) < 3:
        raise ValueError(f"{doc}: no table under {heading!r}")
    header, body = rows[0], [r for r in rows[2:] if len(r) == len(rows[0])]
    col = {name: header.index(name) for name in ("workload", "fused/0.8.9", "fused/ref")}
    workloads = {}
    for row in body:
        speedup = {
            "fused_vs_torchebm089": _ratio(row[col["fused/0.8.9"]]),
            "fused_vs_reference": _ratio(row[col["fused/ref"]]),
        }
        if any(v is not None for v in speedup.values()):
            workloads[row[col["workload"]]] = {"speedup": speedup, "targets": {}}
    return {"workloads": workloads, "config": {"device": "cpu", "threads": 2, "quick": False}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", type=Path, nargs="*", default=None, help="results.json files")
    p.add_argument("--doc", type=Path, default=DEFAULT_DOC)
    p.add_argument("--doc-section", nargs="*", default=None, help="headings of docs/benchmarks.md")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "assets" / "bench")
    args = p.parse_args(argv)
    defaults = args.json is None and args.doc_section is None
    jsons = DEFAULT_JSON if defaults else (args.json or ())
    sections = DEFAULT_DOC_SECTIONS if defaults else [(h, re.sub(r"\W+", "_", h).strip("_").lower()) for h in args.doc_section or ()]
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in jsons:
        report = load(path)
        stem = path.stem if path.stem != "results" else "results"
        plot_speedups(report, args.out / f"{stem}_speedups.png")
        written.append(f"{stem}_speedups.png")
        if plot_times(report, args.out / f"{stem}_times.png"):
            written.append(f"{stem}_times.png")
    for heading, stem in sections:
        report = report_from_doc(args.doc, heading)
        plot_speedups(report, args.out / f"{stem}_speedups.png")
        written.append(f"{stem}_speedups.png (from the table in {args.doc.name}: no JSON kept)")
    for name in written:
        print(f"{args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
