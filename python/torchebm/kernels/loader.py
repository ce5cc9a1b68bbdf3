"""Loads the compiled op library ``torchebm._C``, or builds it just in time when asked.

The installed extension is the default. Setting ``TORCHEBM_JIT=1`` builds the same sources
(``csrc/sources.txt``, the list CMake reads) with ``torch.utils.cpp_extension.load`` instead:
for a source checkout, or a GPU machine whose installed build lacks CUDA. Without either, the
package runs on the pure-PyTorch reference path and says so once.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

_state: dict = {"loaded": None, "how": None, "error": None}


def _source_root() -> Path:
    return Path(__file__).resolve().parents[3] / "csrc"


def jit_sources(root: Path) -> list[str]:
    """Source files named in ``csrc/sources.txt``; those under ``cuda/`` (kernels and their
    registrations) only when CUDA can be built."""
    with_cuda = torch.cuda.is_available() and torch.version.cuda is not None
    out = []
    for line in (root / "sources.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("cuda/") and not with_cuda:
            continue
        out.append(str(root / line))
    return out


def _cuda_include_paths() -> list[str]:
    """torch's nvidia-* wheel headers (cuBLAS, cuSPARSE...), for a CUDA toolkit without them:
    torch's CUDA headers include them. Empty when the toolkit has its own."""
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME and (Path(CUDA_HOME) / "include" / "cublas_v2.h").exists():
        return []
    try:
        import nvidia  # the namespace package of torch's CUDA wheels
    except ImportError:
        return []
    found = []
    for base in getattr(nvidia, "__path__", []):
        found += [str(p) for p in sorted(Path(base).glob("cu[0-9]*/include")) if p.is_dir()]
    return found


def _jit_build() -> None:
    from torch.utils.cpp_extension import load

    root = _source_root()
    if not (root / "sources.txt").exists():
        raise ImportError(f"TORCHEBM_JIT=1 needs a source checkout; {root} has no sources.txt")
    sources = jit_sources(root)
    with_cuda = any(s.endswith(".cu") for s in sources)
    load(
        name="torchebm_jit_ops",
        sources=sources,
        extra_include_paths=[str(root / "include")] + (_cuda_include_paths() if with_cuda else []),
        # -fopenmp: at::parallel_for is inline, and runs serially in a module built without it.
        extra_cflags=["-O3", "-fopenmp", "-fno-math-errno", "-fno-trapping-math"] + (["-DTORCHEBM_WITH_CUDA"] if with_cuda else []),
        extra_ldflags=["-fopenmp"],
        # No --use_fast_math: it would change the Philox normals (approximate division and
        # sqrt) and flush denormals; the .cu files are C++17, as in the CMake build.
        extra_cuda_cflags=["-O3", "-std=c++17"],
        is_python_module=False,
        verbose=os.environ.get("TORCHEBM_JIT_VERBOSE") == "1",
    )


def load_ops() -> bool:
    """Loads the op library once; returns whether the compiled kernels are available."""
    if _state["loaded"] is not None:
        return _state["loaded"]
    try:
        if os.environ.get("TORCHEBM_JIT") == "1":
            _jit_build()
            _state["how"] = "jit"
        else:
            from torchebm import _C  # noqa: F401  (registers the ops with torch.ops.torchebm)

            _state["how"] = "installed"
        _state["loaded"] = True
    except (ImportError, OSError, RuntimeError) as exc:
        _state["loaded"] = False
        _state["error"] = exc
        warnings.warn(
            "torchebm: the compiled kernels could not be loaded "
            f"({type(exc).__name__}: {exc}); every sampler runs on the pure-PyTorch reference path.",
            RuntimeWarning,
            stacklevel=2,
        )
    return _state["loaded"]


def load_error() -> BaseException | None:
    """Why the compiled kernels could not be loaded, or None (loaded, or not tried yet)."""
    return _state["error"]


def how_loaded() -> str | None:
    """``"installed"``, ``"jit"``, or None when the kernels are unavailable."""
    load_ops()
    return _state["how"]
