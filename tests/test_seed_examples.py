"""The seed documents' code examples, run as acceptance tests (one test per example).

The examples are read from ``../shared/seeds`` (or ``$TORCHEBM_SEEDS_DIR``) at run time by
``tests/seed_examples.py``; none of their code lives in this repository. Each example runs
unmodified, on CPU unless the example itself picks CUDA, with matplotlib's Agg backend
(``plt.show`` does nothing), in a temporary working directory, after ``torch.manual_seed(0)``.

Namespaces. A self-contained example (every name it reads, it defines or imports) runs in a
fresh namespace. An example that continues an earlier one on its page (``trajectory =
langevin_sampler.sample(...)``) runs in the page's namespace, accumulated from the page's
earlier examples in order, as a reader following the page would; running one such test alone
runs the earlier examples of its page first.

Tables (all explicit, all listed in ``docs/seed_examples.md``):

* ``NOT_RUNNABLE``: examples that cannot run as written, with the reason; reported as skipped.
* ``PREFIXES``: for some of those, the statements before the one that cannot run still state
  API the library must accept; they run as ``<id>_prefix``.
* ``IMPLIED_IMPORTS``: imports a page takes for granted (seed 004's listings use ``torch``,
  ``nn``, ``ABC``... without importing them).
* ``SIZE_PATCHES``: literal sizes reduced to keep CI within budget (printed below).
* ``DOCUMENTED_RESULTS``: what a page says an example produces (``# Shape: [100, 2]``),
  checked after the example runs.
* ``CONTRADICTIONS``: lines of the seeds that contradict each other or the rest of the API.

Regenerate the docs page with ``python tests/test_seed_examples.py --write-docs``.
"""

from __future__ import annotations

import contextlib
import linecache
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seed_examples as se  # noqa: E402

# --------------------------------------------------------------------------------------
# The tables
# --------------------------------------------------------------------------------------

_UNDEFINED = "uses {names}, defined nowhere on the page"

NOT_RUNNABLE: dict[str, str] = {
    # seed 000: "Samplers" guide (markdown, old API)
    "seed000_example5": (
        "training-loop fragment: " + _UNDEFINED.format(names="`optimizer` and `data_batch`")
    ),
    "seed000_example9": "method-body fragment: uses `self` at module level (lines meant for a "
    "sampler's __init__ and sample loop)",
    "seed000_example10": "fragment: " + _UNDEFINED.format(names="`my_sampler`")
    + "; it also moves it to 'cuda:0'",
    # seed 001: the same guide, newer revision (flattened extract, new API)
    "seed001_example5": (
        "training-loop fragment: " + _UNDEFINED.format(names="`optimizer` and `data_batch`")
    ),
    "seed001_example9": "method-body fragment: uses `self` at module level",
    "seed001_example10": "fragment: " + _UNDEFINED.format(names="`my_sampler`")
    + "; it also moves it to 'cuda:0'",
    # seed 003: Langevin tutorial
    "seed003_example3": "empty code fence at the end of the page (an artefact of the extract)",
    # seed 004: "Core components"
    "seed004_example1": "one-line card fragment: " + _UNDEFINED.format(names="`energy_fn` and `x`"),
    "seed004_example2": "one-line card fragment: " + _UNDEFINED.format(names="`sampler`"),
    "seed004_example3": "one-line card fragment: "
    + _UNDEFINED.format(names="`loss_fn`, `model` and `data_samples`"),
    "seed004_example4": "placeholder: `nn.Sequential(...)` with a literal `...`",
    "seed004_example14": "mermaid diagram, not Python",
    "seed004_example15": (
        "usage sketch: its training loop calls `loss_fn(model, data_samples)`, and `data_samples` "
        "is defined nowhere on the page"
    ),
}


@dataclass(frozen=True)
class Prefix:
    stop_at: str  # the first line not run (exact text of that line, stripped)
    preamble: str = ""  # imports, for a prefix run against the library in a fresh namespace
    fresh: bool = False  # fresh namespace (with the preamble) instead of the page's


PREFIXES: dict[str, Prefix] = {
    "seed000_example5": Prefix(stop_at="optimizer.zero_grad()"),
    "seed001_example5": Prefix(stop_at="optimizer.zero_grad()"),
    # The page's own listings (examples 5-13) redefine GaussianEnergy, LangevinDynamics...;
    # the usage flow is read as TorchEBM usage, so it runs against the library.
    "seed004_example15": Prefix(
        stop_at="for epoch in range(100):",
        preamble=(
            "import torch\n"
            "from torchebm.core import GaussianEnergy, EnergyModel, MLP\n"
            "from torchebm.samplers import LangevinDynamics\n"
            "from torchebm.losses import ContrastiveDivergence\n"
        ),
        fresh=True,
    ),
}

IMPLIED_IMPORTS: dict[str, str] = {
    # Seed 004 shows source listings (BaseEnergyFunction, GaussianEnergy, Sampler, ...) that
    # use these names without importing them. The listings define their own classes; running
    # them checks that they are complete Python, not the library.
    "004": (
        "import numpy as np\n"
        "import torch\n"
        "import torch.nn as nn\n"
        "from abc import ABC, abstractmethod\n"
        "from typing import List, Optional, Tuple, Union\n"
    ),
}

# (old literal, new literal, count, why). Applied to the example's text before it runs; each
# old literal must occur exactly `count` times. Keep this table minimal.
SIZE_PATCHES: dict[str, list[tuple[str, str, int, str]]] = {}

# What the pages say an example produces (a comment, the prose, or the arguments' plain
# meaning), checked in the example's namespace right after it runs: (expression, expected, claim).
_SHAPE = "tuple({}.shape)"
DOCUMENTED_RESULTS: dict[str, list[tuple[str, object, str]]] = {
    "seed000_example1": [(_SHAPE.format("samples"), (100, 2), "comment: Shape: [100, 2]")],
    "seed001_example1": [(_SHAPE.format("samples"), (100, 2), "as seed000_example1")],
    "seed000_example2": [(_SHAPE.format("trajectory"), (100, 1000, 2),
                          "comment: Shape: [n_samples, n_steps, dim]")],
    "seed001_example2": [(_SHAPE.format("trajectory"), (100, 1000, 2),
                          "comment: Shape: [n_samples, n_steps, dim]")],
    "seed000_example4": [(_SHAPE.format("samples"), (100, 2), "100 chains in 2-D")],
    "seed001_example4": [(_SHAPE.format("samples"), (100, 2), "100 chains in 2-D")],
    "seed000_example6": [(_SHAPE.format("samples"), (1000, 2), "n_samples = 1000, dim = 2")],
    "seed001_example6": [(_SHAPE.format("samples"), (1000, 2), "n_samples = 1000, dim = 2")],
    "seed000_example7": [(_SHAPE.format("trajectory"), (1, 1000, 2), "trajectory[0, :, 0] is one chain")],
    "seed001_example7": [(_SHAPE.format("trajectory"), (1, 1000, 2), "trajectory[0, :, 0] is one chain")],
    "seed002_example1": [(_SHAPE.format("samples"), (1000, 2), "1000 particles in 2-D")],
    "seed002_example2": [(_SHAPE.format("trajectory"), (5, 200, 2), "comment: 5 chains, 200 steps")],
    "seed002_example3": [(_SHAPE.format("samples"), (1000, 2), "1000 particles in 2-D")],
    "seed002_example4": [("0.0 <= float(acceptance_rate) <= 1.0", True, "an acceptance rate")],
    "seed003_example1": [(_SHAPE.format("samples"), (1000, 2), "n_samples = 1000, dim = 2")],
    "seed003_example2": [
        (_SHAPE.format("trajectory"), (1, 1000, 1), "trajectory[0, :, 0]: one chain in 1-D"),
        (_SHAPE.format("diagnostics[:, 2, 0, 0]"), (1000,), "energy per step"),
    ],
}

CONTRADICTIONS: dict[str, str] = {
    "seed002_example4 vs seed003_example2": (
        "sampler diagnostics: seed 002 indexes a dict (`diagnostics['acceptance_rate']`, HMC) "
        "while its own comment calls it 'the diagnostics tensor'; seed 003 indexes a tensor "
        "(`diagnostics[:, 2, 0, 0]`: [n_steps, 3, n_samples, dim], energy in slot 2, Langevin), "
        "as does seed 000's custom-sampler `_setup_diagnostics`. Both examples are run as written."
    ),
    "seed000_example3 vs seed000_example7 (and 001)": (
        "scheduler keywords: `CosineScheduler(start_value=, end_value=, n_steps=)` next to "
        "`LinearScheduler(initial_value=, final_value=, total_steps=)`; both spellings are run."
    ),
    "seeds 000/003/004 vs seeds 001/002": (
        "sampler keyword `energy_function=` (000, 003, 004) vs `model=` (001, 002); both are run."
    ),
    "seed004_example15 vs seed000_example5": (
        "contrastive divergence: `ContrastiveDivergence(sampler=sampler, k=10)` called as "
        "`loss = loss_fn(model, data_samples)` (seed 004) vs `ContrastiveDivergence("
        "energy_function=..., sampler=..., k_steps=10, ...)` called as `loss, negatives = "
        "loss_fn(data_batch)` (seeds 000/001, API 0.8.9). The construction of both forms runs "
        "(the prefixes); neither call can, for want of data on the page."
    ),
    "seed004_example15 vs seed000_example1": (
        "generating samples: `sampler.sample_chain(dim=2, n_steps=1000, n_samples=100)` (seed 004, "
        "pre-0.4 name) vs `sampler.sample(x=..., n_steps=...)` everywhere else; both are run."
    ),
    "seed004_example7 vs seed000_example7/seed003_example2": (
        "DoubleWellEnergy: the seed-004 listing is `DoubleWellEnergy(a=1.0, b=2.0)`, "
        "E = a*sum((x^2 - b)^2); the API used elsewhere is `DoubleWellEnergy(barrier_height=...)`. "
        "The listing defines its own class on its page and is run only as a listing."
    ),
    "seed004_example10 vs seed000_example2": (
        "trajectories: the seed-004 listing's `sample_chain(..., return_trajectory=True)` returns "
        "`(x, trajectory)` with trajectory [n_steps+1, n_samples, dim]; the API returns the "
        "trajectory alone, [n_samples, n_steps, dim]. The listing is run only as a listing."
    ),
}

# Examples found per seed file, pinned so that an extractor regression (or a changed seed)
# shows up as a clear failure rather than as silently fewer tests.
EXPECTED_COUNTS = {
    "000_3dce65d63d878522.txt": 11,
    "001_b754babd844e99b4.txt": 11,
    "002_c8a25a8a51da72fd.txt": 4,
    "003_bfdb2001b5090623.txt": 3,
    "004_35c093f20a9da8d1.txt": 15,
}


def _size_patch_table() -> str:
    if not SIZE_PATCHES:
        return "Size patches: none (every example runs at its own sizes).\n"
    rows = ["Size patches (example: old -> new, why):"]
    for ex_id, patches in SIZE_PATCHES.items():
        for old, new, _count, why in patches:
            rows.append(f"  {ex_id}: {old!r} -> {new!r}, {why}")
    return "\n".join(rows) + "\n"


__doc__ = (__doc__ or "") + "\n" + _size_patch_table()

# --------------------------------------------------------------------------------------
# Running an example
# --------------------------------------------------------------------------------------

SEEDS = se.seeds_dir()
EXAMPLES: dict[str, list[se.Example]] = se.extract_all(SEEDS) if SEEDS else {}
BY_ID = {ex.id: ex for exs in EXAMPLES.values() for ex in exs}
SKIP_NO_SEEDS = (
    f"seed documents not found: ${se.SEEDS_ENV_VAR}={os.environ[se.SEEDS_ENV_VAR]!r} is not a folder"
    if os.environ.get(se.SEEDS_ENV_VAR)
    else f"seed documents not found: set ${se.SEEDS_ENV_VAR} or place them in "
    f"{se.REPO_ROOT.parent / 'shared' / 'seeds'}"
)


def runnable(ex: se.Example) -> bool:
    return ex.id not in NOT_RUNNABLE and ex.is_python and bool(ex.source.strip()) and not ex.problem


def patched_source(ex: se.Example) -> str:
    source = ex.source
    for old, new, count, why in SIZE_PATCHES.get(ex.id, []):
        found = source.count(old)
        assert found == count, f"{ex.id}: size patch {old!r} expected {count}x, found {found}x ({why})"
        source = source.replace(old, new)
    return source


@dataclass
class Outcome:
    ok: bool
    seconds: float
    error: str = ""
    exc_type: str = ""
    mismatches: tuple = ()  # documented results that did not hold


def _check_documented_results(ex_id: str, namespace: dict) -> tuple:
    bad = []
    for expression, expected, claim in DOCUMENTED_RESULTS.get(ex_id, []):
        try:
            got = eval(expression, dict(namespace))
        except Exception as exc:  # noqa: BLE001 - reported by the test
            got = f"{type(exc).__name__}: {exc}"
        if got != expected:
            bad.append(f"{expression} = {got!r}, expected {expected!r} ({claim})")
    return tuple(bad)


@contextlib.contextmanager
def _sandbox(workdir: Path):
    """Agg backend, plt.show a no-op, cwd = workdir, figures closed afterwards."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    saved_show, saved_cwd = plt.show, os.getcwd()
    plt.show = lambda *args, **kwargs: None
    workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(workdir)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        plt.show = saved_show
        plt.close("all")


def _execute(source: str, filename: str, namespace: dict, workdir: Path) -> Outcome:
    import torch

    lines = source.splitlines(keepends=True)
    linecache.cache[filename] = (len(source), None, lines, filename)  # readable tracebacks
    code = compile(source, filename, "exec")
    torch.manual_seed(0)
    start = time.perf_counter()
    with _sandbox(workdir):
        try:
            exec(code, namespace)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__.tb_next)
            return Outcome(False, time.perf_counter() - start, "".join(tb), type(exc).__name__)
    return Outcome(True, time.perf_counter() - start)


class PageRun:
    """One page's examples executed in order, once each, sharing the page's namespace."""

    def __init__(self, seed: str, workdir: Path):
        self.seed = seed
        self.workdir = workdir
        self.namespace: dict = {"__name__": "__main__"}
        self.outcomes: dict[str, Outcome] = {}
        preamble = IMPLIED_IMPORTS.get(seed)
        if preamble:
            exec(compile(preamble, f"<{seed} implied imports>", "exec"), self.namespace)

    def fresh_namespace(self) -> dict:
        ns: dict = {"__name__": "__main__"}
        preamble = IMPLIED_IMPORTS.get(self.seed)
        if preamble:
            exec(compile(preamble, f"<{self.seed} implied imports>", "exec"), ns)
        return ns

    def run_before(self, ex: se.Example) -> None:
        """Run (once) every runnable example of the page that comes before ``ex``."""
        for earlier in EXAMPLES[self.seed]:
            if earlier.index >= ex.index:
                break
            if runnable(earlier) and earlier.id not in self.outcomes:
                self._run_one(earlier)

    def run(self, ex: se.Example) -> Outcome:
        self.run_before(ex)
        if ex.id not in self.outcomes:
            self._run_one(ex)
        return self.outcomes[ex.id]

    def _run_one(self, ex: se.Example) -> None:
        source = patched_source(ex)
        implied = set()
        if self.seed in IMPLIED_IMPORTS:
            implied = set(self.fresh_namespace()) - {"__name__", "__builtins__"}
        if se.free_names(source) <= implied:
            ns = self.fresh_namespace()
            outcome = _execute(source, f"<{ex.id}>", ns, self.workdir)
            self.namespace.update({k: v for k, v in ns.items() if k != "__builtins__"})
        else:
            ns = self.namespace
            outcome = _execute(source, f"<{ex.id}>", ns, self.workdir)
        if outcome.ok:
            outcome.mismatches = _check_documented_results(ex.id, ns)
        self.outcomes[ex.id] = outcome

    def failed_before(self, ex: se.Example) -> list[str]:
        return [i for i, o in self.outcomes.items() if not o.ok and BY_ID[i].index < ex.index]


_PAGES: dict[str, PageRun] = {}


@pytest.fixture(scope="session")
def page_runs(tmp_path_factory):
    def get(seed: str) -> PageRun:
        if seed not in _PAGES:
            _PAGES[seed] = PageRun(seed, tmp_path_factory.mktemp(f"seed{seed}"))
        return _PAGES[seed]

    yield get
    _PAGES.clear()


def _params():
    if not EXAMPLES:
        return [pytest.param(None, id="seeds_missing", marks=pytest.mark.skip(reason=SKIP_NO_SEEDS))]
    return [pytest.param(ex, id=ex.id) for exs in EXAMPLES.values() for ex in exs]


def _savefig_targets(source: str) -> list[str]:
    return re.findall(r"savefig\(\s*['\"]([^'\"]+)['\"]", source)


@pytest.mark.parametrize("ex", _params())
def test_seed_example(ex: se.Example, page_runs):
    if ex.id in NOT_RUNNABLE:
        pytest.skip(f"not runnable: {NOT_RUNNABLE[ex.id]}")
    if ex.problem:
        pytest.fail(f"{ex.id}: {ex.problem}; list it in NOT_RUNNABLE or fix the extractor")
    if SIZE_PATCHES.get(ex.id):
        print(_size_patch_table())
    page = page_runs(ex.seed)
    outcome = page.run(ex)
    if not outcome.ok:
        context = ""
        earlier = page.failed_before(ex)
        if earlier and outcome.exc_type == "NameError":
            context = f"\n(earlier examples of this page failed: {', '.join(earlier)})"
        pytest.fail(
            f"{ex.id} (seed {ex.seed}, line {ex.line}, '{ex.heading}') raised:\n"
            f"{outcome.error}{context}",
            pytrace=False,
        )
    assert not outcome.mismatches, f"{ex.id} ran, but: " + "; ".join(outcome.mismatches)
    for name in _savefig_targets(ex.source):
        target = page.workdir / name
        assert target.is_file() and target.stat().st_size > 0, f"{ex.id} did not write {name}"


def _prefix_params():
    if not EXAMPLES:
        return [pytest.param(None, id="seeds_missing", marks=pytest.mark.skip(reason=SKIP_NO_SEEDS))]
    return [pytest.param(i, id=f"{i}_prefix") for i in PREFIXES if i in BY_ID]


def prefix_source(ex_id: str) -> str:
    ex, prefix = BY_ID[ex_id], PREFIXES[ex_id]
    lines = ex.source.splitlines()
    stops = [k for k, line in enumerate(lines) if line.strip() == prefix.stop_at]
    assert len(stops) == 1, f"{ex_id}: prefix stop line {prefix.stop_at!r} found {len(stops)}x"
    return "\n".join(lines[: stops[0]]) + "\n"


@pytest.mark.parametrize("ex_id", _prefix_params())
def test_seed_example_prefix(ex_id: str, page_runs):
    """The runnable head of a non-runnable example (API it states must still be accepted)."""
    ex, prefix = BY_ID[ex_id], PREFIXES[ex_id]
    page = page_runs(ex.seed)
    source = prefix_source(ex_id)
    if prefix.fresh:
        ns: dict = {"__name__": "__main__"}
        outcome = _execute(prefix.preamble, f"<{ex_id}_prefix preamble>", ns, page.workdir)
        if not outcome.ok:
            pytest.fail(f"{ex_id}_prefix: its imports failed:\n{outcome.error}", pytrace=False)
    else:
        page.run_before(ex)
        ns = dict(page.namespace)
    outcome = _execute(source, f"<{ex_id}_prefix>", ns, page.workdir)
    if not outcome.ok:
        pytest.fail(f"{ex_id}_prefix raised:\n{outcome.error}", pytrace=False)


# --------------------------------------------------------------------------------------
# The extraction itself
# --------------------------------------------------------------------------------------

needs_seeds = pytest.mark.skipif(not EXAMPLES, reason=SKIP_NO_SEEDS)


@needs_seeds
def test_every_seed_file_yields_its_pinned_number_of_examples():
    found = {path.name: len(EXAMPLES[seed]) for seed, path in se.seed_files(SEEDS).items()}
    assert found == EXPECTED_COUNTS


@needs_seeds
def test_tables_name_only_existing_examples():
    for table in (NOT_RUNNABLE, PREFIXES, SIZE_PATCHES, DOCUMENTED_RESULTS):
        unknown = set(table) - set(BY_ID)
        assert not unknown, f"unknown example ids: {sorted(unknown)}"
    assert set(PREFIXES) <= set(NOT_RUNNABLE), "a prefix is only for a non-runnable example"
    assert not set(SIZE_PATCHES) & set(NOT_RUNNABLE)


@needs_seeds
def test_every_non_python_or_empty_block_is_listed_as_not_runnable():
    for ex in BY_ID.values():
        if not ex.is_python or not ex.source.strip() or ex.problem:
            assert ex.id in NOT_RUNNABLE, f"{ex.id} ({ex.language or 'no language'}) is unlisted"


@needs_seeds
def test_every_python_example_parses():
    for ex in BY_ID.values():
        if ex.is_python and ex.source.strip():
            compile(ex.source, ex.id, "exec")


def _shape(source: str) -> str:
    """The AST with names, attributes, constants and docstrings abstracted away."""
    import ast

    class Abstract(ast.NodeTransformer):
        def visit_Name(self, node):
            return ast.copy_location(ast.Name(id="_", ctx=node.ctx), node)

        def visit_Attribute(self, node):
            self.generic_visit(node)
            node.attr = "_"
            return node

        def visit_Constant(self, node):
            return ast.copy_location(ast.Constant(value=type(node.value).__name__), node)

        def visit_arg(self, node):
            node.arg, node.annotation = "_", self.visit(node.annotation) if node.annotation else None
            return node

        def visit_keyword(self, node):
            self.generic_visit(node)
            node.arg = "_" if node.arg else None
            return node

        def visit_alias(self, node):
            node.name, node.asname = "_", ("_" if node.asname else None)
            return node

        def _named(self, node):
            node.body = [
                s for s in node.body
                if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                        and isinstance(s.value.value, str))
            ] or [ast.Pass()]
            self.generic_visit(node)
            node.name = "_"
            return node

        visit_FunctionDef = visit_ClassDef = _named

        def visit_ImportFrom(self, node):
            self.generic_visit(node)
            node.module = "_"
            return node

    return ast.dump(Abstract().visit(ast.parse(source)))


@needs_seeds
def test_flattened_examples_have_their_twins_block_structure():
    """Each rebuilt 001 example has exactly the statement tree of its markdown twin."""
    flattened = [ex for ex in BY_ID.values() if ex.origin.startswith("flattened")]
    assert flattened, "expected seed 001 to be a flattened page"
    for ex in flattened:
        assert ex.origin.startswith("flattened+twin:"), f"{ex.id} has no twin ({ex.origin})"
        twin = BY_ID[ex.origin.split(":", 1)[1]]
        assert _shape(ex.source) == _shape(twin.source), f"{ex.id} differs from {twin.id}"


@needs_seeds
def test_docs_page_lists_every_example_with_its_status():
    page = (se.REPO_ROOT / "docs" / "seed_examples.md").read_text(encoding="utf-8")
    assert page == render_docs(), "docs/seed_examples.md is stale: python tests/test_seed_examples.py --write-docs"


# --------------------------------------------------------------------------------------
# docs/seed_examples.md
# --------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_docs() -> str:
    out = [
        "# The seed documents' code examples",
        "",
        "Generated by `python tests/test_seed_examples.py --write-docs` from the seed files in",
        "`../shared/seeds` and the tables in `tests/test_seed_examples.py`; a test checks that this",
        "page is current. `tests/test_seed_examples.py` runs every example marked *runs* as one",
        "pytest test (`pytest tests/test_seed_examples.py -k seed002`), unmodified, on CPU, with",
        "matplotlib's Agg backend, in a temporary directory. Examples that continue an earlier one",
        "run in their page's accumulated namespace; self-contained ones in a fresh namespace.",
        "",
        "How the code is found: seeds 000, 002, 003 and 004 are markdown (fenced blocks, some",
        "indented in list items or tabs). Seed 001 is a flattened text extract: code lines lost",
        "their indentation and gained spaces between tokens. `tests/seed_examples.py` finds the code",
        "lines, then takes each line's indentation from the same example in seed 000 (a twin, matched",
        "line by line on token shape, so the 001 renames such as `energy_function=` -> `model=` do",
        "not matter); a test checks that every rebuilt example has its twin's statement tree.",
        "Indentation rules alone are not enough: for 001 examples 7, 8 and 11 they produce code that",
        "compiles but nests loops and branches differently. To read an example as the tests run it:",
        "`python tests/seed_examples.py seed001_example7`.",
        "",
    ]
    for seed, exs in EXAMPLES.items():
        n_run = sum(runnable(ex) for ex in exs)
        out += [f"## Seed {seed} ({len(exs)} examples, {n_run} run)", ""]
        out += ["| id | line | section | status |", "| --- | --- | --- | --- |"]
        for ex in exs:
            if runnable(ex):
                status = "runs"
                if seed in IMPLIED_IMPORTS:
                    status += " (a listing defining its own classes, with the page's implied imports)"
                if ex.id in SIZE_PATCHES:
                    status += " (size-patched)"
            else:
                status = "not runnable: " + NOT_RUNNABLE.get(ex.id, ex.problem or "not Python")
            if ex.id in PREFIXES:
                status += f"; `{ex.id}_prefix` runs the lines before `{PREFIXES[ex.id].stop_at}`"
            origin = f" (rebuilt, twin {ex.origin.split(':', 1)[1]})" if ":" in ex.origin else ""
            out.append(f"| {ex.id} | {ex.line} | {_cell(ex.heading)}{origin} | {_cell(status)} |")
        out.append("")
    out += ["## Documented results checked after an example runs", ""]
    out += ["| id | expression | expected | the page's claim |", "| --- | --- | --- | --- |"]
    for ex_id, checks in DOCUMENTED_RESULTS.items():
        for expression, expected, claim in checks:
            out.append(f"| {ex_id} | `{_cell(expression)}` | `{expected!r}` | {_cell(claim)} |")
    out.append("")
    out += ["## Implied imports", ""]
    for seed, text in IMPLIED_IMPORTS.items():
        out += [f"Seed {seed}:", "", "```python", text.rstrip(), "```", ""]
    out += ["## Size patches", ""]
    if SIZE_PATCHES:
        out += ["| id | old | new | why |", "| --- | --- | --- | --- |"]
        for ex_id, patches in SIZE_PATCHES.items():
            for old, new, _count, why in patches:
                out.append(f"| {ex_id} | `{old}` | `{new}` | {_cell(why)} |")
    else:
        out.append("None: every example runs at its own sizes.")
    out += ["", "## Contradictions", ""]
    for where, what in CONTRADICTIONS.items():
        out.append(f"- **{where}**: {what}")
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    if "--write-docs" in sys.argv:
        target = se.REPO_ROOT / "docs" / "seed_examples.md"
        target.write_text(render_docs(), encoding="utf-8")
        print(f"wrote {target}")
    else:
        print(__doc__)
