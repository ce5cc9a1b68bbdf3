"""The documentation site's runnable code blocks, executed (one test per page).

A fenced ``python`` block in ``docs/`` is runnable when the line before its fence is the HTML
comment ``<!-- runnable -->`` (invisible on the site). ``<!-- runnable slow -->`` marks a block
too long for the quick suite. ``<!-- not runnable: <why> -->`` marks one that is shown but not
run (a sketch, a fragment); on a page with a runnable block, every ``python`` block carries
one of these markers, so none is skipped by accident.

A page's runnable blocks run in order in one namespace, as a reader following the page would
(a block may use what an earlier one defined), on the CPU, with matplotlib's Agg backend, in a
temporary working directory, after ``torch.manual_seed(0)``. ``test_page`` runs the blocks
before the page's first slow one; ``test_page_slow`` (marked slow) runs them all.
"""

from __future__ import annotations

import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
_MARKER = re.compile(r"^\s*<!--\s*(runnable(?: slow)?|not runnable:[^>]*)\s*-->\s*$")
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*(\w*)")


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the fence
    code: str
    slow: bool


def parse_page(path: Path) -> tuple[list[Block], list[str]]:
    """The runnable blocks of one page, and its marker errors."""
    lines = path.read_text(encoding="utf-8").splitlines()
    name = path.relative_to(DOCS).as_posix()
    blocks, errors, python_fences, marked = [], [], [], set()
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        indent, ticks, lang = fence.groups()
        start = i
        i += 1
        body = []
        while i < len(lines) and not lines[i].strip().startswith(ticks):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if lang != "python":
            continue
        python_fences.append(start)
        marker = _MARKER.match(lines[start - 1]) if start > 0 else None
        if marker is None:
            continue
        marked.add(start)
        if marker.group(1).startswith("runnable"):
            code = textwrap.dedent("\n".join(b[len(indent):] if b.startswith(indent) else b for b in body))
            blocks.append(Block(name, start + 1, code, marker.group(1) == "runnable slow"))
    for j, line in enumerate(lines):
        if _MARKER.match(line) and j + 1 not in python_fences:
            errors.append(f"{name}:{j + 1}: a marker not directly followed by a ```python fence")
    if blocks:
        errors += [
            f"{name}:{s + 1}: a python block with neither <!-- runnable --> nor <!-- not runnable: why -->"
            for s in python_fences if s not in marked
        ]  # fmt: skip
    return blocks, errors


def all_pages() -> dict[str, list[Block]]:
    pages = {}
    for path in sorted(DOCS.rglob("*.md")):
        blocks, _ = parse_page(path)
        if blocks:
            pages[path.relative_to(DOCS).as_posix()] = blocks
    return pages


PAGES = all_pages()


def test_markers_are_well_formed():
    errors = [e for path in sorted(DOCS.rglob("*.md")) for e in parse_page(path)[1]]
    assert not errors, "\n".join(errors)


def test_the_guides_have_runnable_blocks():
    # The parser finding nothing would make every page test vanish: pin the pages that have some.
    for page in ("getting-started.md", "sampling.md", "training.md", "reproducibility.md", "seed-guides.md"):
        assert page in PAGES, f"docs/{page}: no runnable block found"


def _run(blocks: list[Block], tmp_path: Path, monkeypatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    torch.manual_seed(0)
    namespace: dict = {"__name__": "__docs_example__"}
    try:
        for block in blocks:
            code = compile(block.code, f"docs/{block.page}:{block.line}", "exec")
            exec(code, namespace)  # noqa: S102 - the docs' own examples
    finally:
        plt.close("all")


@pytest.mark.parametrize("page", sorted(PAGES))
def test_page(page, tmp_path, monkeypatch):
    blocks = PAGES[page]
    first_slow = next((k for k, b in enumerate(blocks) if b.slow), len(blocks))
    _run(blocks[:first_slow], tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("page", sorted(p for p, bs in PAGES.items() if any(b.slow for b in bs)))
def test_page_slow(page, tmp_path, monkeypatch):
    _run(PAGES[page], tmp_path, monkeypatch)


def test_benchmark_pictures_come_from_the_recorded_numbers(tmp_path):
    """bench/plots.py reads the harness JSON kept for the docs and the benchmarks.md table the
    docs draw where no JSON was kept, and writes the pictures."""
    import sys

    sys.path.insert(0, str(DOCS.parent))
    from bench import plots

    table = plots.report_from_doc(DOCS / "benchmarks.md", plots.DEFAULT_DOC_SECTIONS[0][0])
    speedups = [wl["speedup"] for wl in table["workloads"].values()]
    # The table's first row (double well) and its MALA row (no 0.8.9 column), as printed there.
    assert speedups[0] == {"fused_vs_torchebm089": 18.0, "fused_vs_reference": 9.56}
    assert {"fused_vs_torchebm089": None, "fused_vs_reference": 6.62} in speedups
    assert plots.main(["--json", str(plots.DEFAULT_JSON[0]), "--out", str(tmp_path)]) == 0
    stem = plots.DEFAULT_JSON[0].stem
    assert (tmp_path / f"{stem}_speedups.png").stat().st_size > 0
    assert (tmp_path / f"{stem}_times.png").stat().st_size > 0
