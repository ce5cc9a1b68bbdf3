"""Griffe extension: the reStructuredText bits of our docstrings, in Markdown for the site.

The package's docstrings are Google style with a few reST constructs that read well in
``help()``; mkdocstrings renders Markdown, so before rendering:

- ``.. math::`` followed by an indented block becomes a display formula ``$$ ... $$``;
- ``:math:`x``` becomes inline maths ``$x$`` (both typeset by pymdownx.arithmatex + MathJax);
- ``:class:`~a.b.C```, ``:func:``, ``:mod:``, ``:meth:``, ``:attr:``, ``:data:``, ``:exc:``
  become code spans (``C`` with the ``~``, else the full path);
- a paragraph ending in ``::`` (a reST literal block follows) ends in ``:``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|mod|meth|attr|data|exc|obj):`(~?)([^`]+)`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")


def _role(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


def _math_blocks(text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(".. math::"):
            indent = line[: len(line) - len(line.lstrip())]
            body: list[str] = []
            rest = stripped[len(".. math::"):].strip()
            if rest:
                body.append(rest)
            i += 1
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
                body.append(lines[i].strip())
                i += 1
            while body and not body[-1]:
                body.pop()
            while body and not body[0]:
                body.pop(0)
            out += [indent + "$$"] + [indent + b for b in body if b] + [indent + "$$", ""]
            continue
        out.append(line)
        i += 1
    return "\n".join(out)


def rst_to_markdown(text: str) -> str:
    """The docstring ``text`` with the constructs above rewritten."""
    text = _math_blocks(text)
    text = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
    text = _ROLE.sub(_role, text)
    return re.sub(r"(\S)::$", r"\1:", text, flags=re.MULTILINE)


class RstToMarkdown(griffe.Extension):
    """Rewrites every docstring with :func:`rst_to_markdown` as the object is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
