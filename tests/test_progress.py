"""The progress bar: a pass-through iterator that can be silenced, rate-limited when drawing."""

from __future__ import annotations

import io
import sys

import pytest

from torchebm.utils import progress as progress_module
from torchebm.utils.progress import progress


def test_wraps_an_iterable_unchanged():
    assert list(progress(range(5), enabled=False)) == [0, 1, 2, 3, 4]
    assert list(progress(range(5), desc="x")) == [0, 1, 2, 3, 4]


def test_disabled_bar_prints_nothing(capsys):
    bar = progress(range(3), enabled=False)
    for _ in bar:
        bar.set_postfix(loss=0.5)
    bar.update(2)
    bar.close()
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""


def test_environment_variable_turns_bars_off(monkeypatch, capsys):
    monkeypatch.setenv("TORCHEBM_PROGRESS", "0")
    assert list(progress(range(3), desc="quiet")) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_fallback_bar_redraws_at_most_every_half_second(monkeypatch):
    clock = iter(i * 0.01 for i in range(10_000))  # 10 ms per step
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    stream = io.StringIO()
    bar = progress_module._StderrBar(range(500), 500, "train", stream)
    for i in bar:
        bar.set_postfix(loss=1.0 / (i + 1))
    text = stream.getvalue()
    draws = text.count("\r")
    # 500 steps of 10 ms = 5 s: about 10 redraws, plus the first and the final one.
    assert 2 <= draws <= 13, f"{draws} redraws"
    assert text.endswith("\n") and "train: 100%|500/500" in text and "loss=0.002" in text


def test_manual_bar_counts_updates():
    stream = io.StringIO()
    bar = progress_module._StderrBar(None, 10, None, stream)
    with bar:
        for _ in range(10):
            bar.update(1)
    assert bar.n == 10 and "10/10" in stream.getvalue()
    with pytest.raises(TypeError, match="advance it with update"):
        iter(progress(None, total=3, enabled=False))


def test_without_tqdm_the_fallback_writes_to_stderr(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # makes `from tqdm.auto import` fail
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    bar = progress(range(3), desc="fallback")
    assert isinstance(bar, progress_module._StderrBar)
    assert list(bar) == [0, 1, 2]
    assert "fallback: 100%|3/3" in sys.stderr.getvalue()
