"""Progress reporting for long loops (training runs, long chains).

The whole API is one function::

    bar = progress(iterable=None, *, total=None, desc=None, enabled=True)

It returns an iterable wrapper over ``iterable`` (or, when ``iterable`` is None, a bar to
advance by hand with ``bar.update(n)``) that also offers ``bar.set_postfix(**values)`` (shown
after the counter, e.g. the current loss) and ``bar.close()``; it is a context manager.

- With ``tqdm`` importable the wrapper is a ``tqdm`` bar (``mininterval=0.5`` s).
- Without it a minimal bar is written to stderr: ``desc: 45%|450/1000 [3.1s<3.8s, 145 it/s] k=v``,
  redrawn in place at most twice per second and once more when the loop ends.
- ``enabled=False``, or the environment variable ``TORCHEBM_PROGRESS=0``, makes it a pass-through
  that prints nothing (``update``/``set_postfix``/``close`` still work and do nothing).

Nothing is printed per step: redraws are rate-limited, and ``set_postfix`` only stores values
until the next redraw, so calling it every step costs a dict update. Pass Python numbers to
``set_postfix``: formatting a CUDA tensor forces a device synchronisation.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator, Optional, TextIO

__all__ = ["progress"]

_MIN_INTERVAL_S = 0.5


def _disabled_by_env() -> bool:
    return os.environ.get("TORCHEBM_PROGRESS", "1").strip().lower() in ("0", "false", "off", "no")


def progress(
    iterable: Optional[Iterable] = None,
    *,
    total: Optional[int] = None,
    desc: Optional[str] = None,
    enabled: bool = True,
):
    """Wrap ``iterable`` in a progress bar (see the module docstring).

    Args:
        iterable: what to iterate over; None for a bar advanced with ``update(n)``.
        total: number of iterations; defaults to ``len(iterable)`` when it has one.
        desc: label printed before the bar.
        enabled: False turns the bar off (so does ``TORCHEBM_PROGRESS=0``).
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if not enabled or _disabled_by_env():
        return _SilentBar(iterable, total)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _StderrBar(iterable, total, desc, sys.stderr)
    return tqdm(iterable, total=total, desc=desc, mininterval=_MIN_INTERVAL_S, dynamic_ncols=True)


class _SilentBar:
    """Pass-through with the bar's methods, printing nothing."""

    def __init__(self, iterable: Optional[Iterable], total: Optional[int]):
        self.iterable = iterable
        self.total = total
        self.n = 0

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("this progress bar wraps no iterable; advance it with update(n)")
        return iter(self.iterable)

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, ordered_dict: Optional[dict] = None, **values: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _StderrBar(_SilentBar):
    """Minimal in-place bar on a text stream, redrawn at most every ``_MIN_INTERVAL_S``."""

    def __init__(
        self, iterable: Optional[Iterable], total: Optional[int], desc: Optional[str], file: TextIO
    ):
        super().__init__(iterable, total)
        self.desc = desc
        self.file = file
        self.postfix: dict = {}
        self.start = time.monotonic()
        self.last_draw = float("-inf")
        self.closed = False
        self.width = 0  # length of the last line drawn, to blank its leftovers

    def __iter__(self) -> Iterator:
        try:
            for item in super().__iter__():
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last_draw >= _MIN_INTERVAL_S:
            self._draw(now)

    def set_postfix(self, ordered_dict: Optional[dict] = None, **values: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **values}

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._draw(time.monotonic())
        self.file.write("\n")
        self.file.flush()

    def _draw(self, now: float) -> None:
        self.last_draw = now
        elapsed = now - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        if self.total:
            left = (self.total - self.n) / rate if rate > 0 else float("nan")
            body = f"{100 * self.n / self.total:3.0f}%|{self.n}/{self.total} [{elapsed:.1f}s<{left:.1f}s"
        else:
            body = f"{self.n} [{elapsed:.1f}s"
        tail = "".join(f" {k}={_fmt(v)}" for k, v in self.postfix.items())
        line = f"{head}{body}, {rate:.3g} it/s]{tail}"
        self.file.write("\r" + line.ljust(self.width))
        self.width = len(line)
        self.file.flush()


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
