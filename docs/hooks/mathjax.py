"""MkDocs hook: serve MathJax from the site itself.

The MathJax 3 files come from the ``django-static-mathjax`` wheel (it ships MathJax 3.2.2's
``es5`` tree and nothing else is needed from it), so building and reading the docs needs no
network beyond the package index. The combined ``tex-svg.js`` (SVG output: the glyphs are
paths, no web fonts to load) and the folders it loads on demand (TeX extensions,
accessibility, menu) are added to the site under ``assets/mathjax/``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mkdocs.structure.files import File, Files

_BUNDLE = "tex-svg.js"


def _es5_root() -> Path:
    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("MathJax files not found: pip install -r docs/requirements.txt")
    root = Path(next(iter(spec.submodule_search_locations))) / "static" / "mathjax" / "es5"
    if not (root / _BUNDLE).is_file():
        raise RuntimeError(f"{root / _BUNDLE} is missing: reinstall django-static-mathjax")
    return root


def on_files(files: Files, config) -> Files:
    root = _es5_root()
    paths = [root / _BUNDLE] + [p for p in root.rglob("*") if p.is_file() and p.parent != root]
    for path in paths:
        uri = "assets/mathjax/" + path.relative_to(root).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
