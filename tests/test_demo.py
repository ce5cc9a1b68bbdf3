"""examples/demo.py (what `make demo` runs), at a tiny size."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[1] / "examples" / "demo.py"


def _load_demo():
    spec = importlib.util.spec_from_file_location("torchebm_demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_demo_writes_every_figure_and_prints_a_row_per_sampler_and_model(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    demo = _load_demo()
    rows = []
    run_demo = demo.run_demo

    def recording_run_demo(*args, **kwargs):
        rows.extend(run_demo(*args, **kwargs))
        return rows

    demo.run_demo = recording_run_demo
    out = tmp_path / "demo_out"
    assert demo.main(["--out", str(out), "--chains", "16", "--steps", "5",
                      "--traj-chains", "2", "--traj-steps", "5"]) == 0

    names = [land.name for land in demo.landscapes()]
    expected = {f"{kind}_{name}.png" for kind in ("samples", "trajectories", "diagnostics") for name in names}
    written = {p.name for p in out.iterdir()}
    assert expected <= written, f"missing figures: {sorted(expected - written)}"
    for name in expected:
        data = (out / name).read_bytes()
        assert len(data) > 1000 and data[:8] == b"\x89PNG\r\n\x1a\n", f"{name} is not a PNG image"

    printed = capsys.readouterr().out
    for sampler in demo.SAMPLERS:
        for model in names:
            assert any(sampler in line and model in line for line in printed.splitlines()), (
                f"no table row for {sampler} on {model}:\n{printed}"
            )
    assert len(rows) == len(demo.SAMPLERS) * len(names)
    for row in rows:
        assert row.seconds > 0 and row.path != "?", row
        if row.sampler != "LangevinDynamics":  # Metropolis-corrected: an acceptance rate
            assert row.acceptance is not None and 0.0 <= row.acceptance <= 1.0, row
