"""Checks the CUDA kernels' logic on a machine without a GPU, by emulation.

The CUDA sources (``csrc/cuda``, as listed in ``csrc/sources.txt``) are rewritten for the host:
every ``kernel<<<grid, block, smem, stream>>>(args)`` becomes a call of ``emu::launch``, which
runs each block's CUDA threads as host threads (``emu_cuda.h`` emulates ``__syncthreads``, warp
shuffles and shared memory), and the CUDA registrations become the ops of a separate library
``torch.ops.torchebm_cuda_emu`` that take CPU tensors. ``tests/test_cuda.py`` then runs in its
``emulated`` mode: the same tests as on a GPU (parity with the references and the CPU kernels,
chains against their per-step loops, statistics), minus CUDA graphs and stream checks.

What it cannot show: anything about real GPU execution (memory coherence, occupancy, speed,
compiler differences of nvcc's device code). It complements, not replaces, ``gpu_check.sh``.

Usage (in an environment with torch, ninja, pytest and the CPU build of torchebm installed):
    python scripts/cuda_emulation/emulate.py [--build-dir build/cuda-emu] [-- pytest args]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def cuda_sources() -> list[str]:
    lines = (REPO / "csrc" / "sources.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip().startswith("cuda/")]


def _matching(text: str, i: int, open_ch: str, close_ch: str) -> int:
    """Index of the bracket closing the one at text[i]."""
    depth = 0
    for j in range(i, len(text)):
        if text[j] == open_ch:
            depth += 1
        elif text[j] == close_ch:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError(f"unbalanced {open_ch}{close_ch} at {i}")


def _split_top_level(args: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in args:
        if ch in "(<[{":
            depth += 1
        elif ch in ")>]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def rewrite_launches(text: str) -> str:
    """``name<T>(cfg)<<<g, b, s, st>>>(args);`` -> ``emu::launch(dim3(g), dim3(b), [&] { ... });``"""
    out, pos = [], 0
    while True:
        k = text.find("<<<", pos)
        if k < 0:
            out.append(text[pos:])
            return "".join(out)
        line_start = text.rfind("\n", 0, k) + 1
        indent = len(text[line_start:k]) - len(text[line_start:k].lstrip())
        kernel = text[line_start + indent:k]
        end_cfg = text.find(">>>", k)
        cfg = _split_top_level(text[k + 3:end_cfg])
        open_paren = end_cfg + 3
        assert text[open_paren] == "(", text[k - 40:open_paren + 10]
        close_paren = _matching(text, open_paren, "(", ")")
        call_args = text[open_paren + 1:close_paren]
        out.append(text[pos:line_start + indent])
        out.append(f"emu::launch(dim3({cfg[0]}), dim3({cfg[1]}), [&] {{ {kernel}({call_args}); }})")
        pos = close_paren + 1


# Stand-ins for the torch CUDA headers the host side includes (CUDA guard, current stream,
# device properties), written next to the rewritten sources as emu_torch_cuda.h.
_TORCH_CUDA_SHIMS = """// emulation shims (scripts/cuda_emulation/emulate.py)
#pragma once
#include <c10/core/Device.h>
namespace c10::cuda {
struct CUDAGuard {
  explicit CUDAGuard(c10::Device) {}
};
struct EmuStream {
  cudaStream_t stream() const { return nullptr; }
};
inline EmuStream getCurrentCUDAStream() { return {}; }
}  // namespace c10::cuda
namespace at::cuda {
struct EmuProps {
  int multiProcessorCount = 1;
};
inline EmuProps* getCurrentDeviceProperties() {
  static EmuProps props;
  return &props;
}
}  // namespace at::cuda
"""

_TORCH_CUDA_HEADERS = ("ATen/cuda/CUDAContext.h", "c10/cuda/CUDAGuard.h", "c10/cuda/CUDAStream.h")


def op_schemas() -> dict[str, str]:
    """The ops' schemas as ``csrc/ops.cpp`` declares them (defaults included), by op name."""
    text = (REPO / "csrc" / "ops.cpp").read_text()
    out = {}
    for m in re.finditer(r'm\.def\(\s*((?:"[^"]*"\s*)+)\)', text):
        schema = "".join(re.findall(r'"([^"]*)"', m.group(1)))
        out[schema.split("(", 1)[0]] = schema
    return out


def rewrite_host(text: str) -> str:
    """The CUDA ops' host side (``*_host.cpp`` and the headers they include) for CPU tensors:
    the CUDA back end's checks take the CPU device, and the ops register as
    ``torchebm_cuda_emu::<op>`` (a fragment per file, with the schema of csrc/ops.cpp, so
    arguments with defaults may be left out as with ``torchebm::<op>``) instead of for the CUDA
    dispatch key."""
    for header in _TORCH_CUDA_HEADERS:
        text = text.replace(f"#include <{header}>\n", "")
    if "#include <torch/library.h>\n" in text:
        text = text.replace("#include <torch/library.h>\n",
                            '#include <torch/library.h>\n#include "emu_torch_cuda.h"\n')
    text = text.replace(".is_cuda()", ".is_cpu()").replace("at::Device(at::kCUDA)", "at::Device(at::kCPU)")
    text = text.replace("checks::kCuda", "checks::Backend{c10::DeviceType::CPU, true}")
    text = text.replace(".pin_memory()", "")  # host memory throughout; pinning needs a driver
    text = text.replace("TORCH_LIBRARY_IMPL(torchebm, CUDA, m)", "TORCH_LIBRARY_FRAGMENT(torchebm_cuda_emu, m)")
    schemas = op_schemas()
    return re.sub(r'\bm\.impl\("(\w+)"', lambda m: f'm.def("{schemas.get(m.group(1), m.group(1))}"', text)


def _write_if_changed(path: Path, text: str) -> None:
    # an unchanged file keeps its timestamp, so ninja does not rebuild what it already built
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def build(build_dir: Path) -> Path:
    from torch.utils.cpp_extension import load

    src = build_dir / "src"
    src.mkdir(parents=True, exist_ok=True)
    _write_if_changed(src / "emu_torch_cuda.h", _TORCH_CUDA_SHIMS)
    cuda_dir = REPO / "csrc" / "cuda"
    for header in list(cuda_dir.glob("*.h")) + list(cuda_dir.glob("*.cuh")):
        _write_if_changed(src / header.name, rewrite_launches(rewrite_host(header.read_text())))
    sources = []
    for rel in cuda_sources():
        path = REPO / "csrc" / rel
        text = path.read_text()
        text = rewrite_host(text) if path.suffix == ".cpp" else rewrite_launches(text)
        # kernels and host sides may share a stem (x_kernel.cu, x_host.cpp): keep the suffix
        target = src / (path.name.replace(".", "_") + "_emu.cpp")
        _write_if_changed(target, text)
        sources.append(str(target))
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    load(
        name="torchebm_cuda_emu",
        sources=sources,
        extra_include_paths=[str(src), str(REPO / "csrc" / "include"), str(HERE), f"{cuda_home}/include"],
        extra_cflags=["-O1", "-include", "emu_cuda.h", "-Wno-attributes", "-pthread"],
        extra_ldflags=["-pthread"],
        build_directory=str(build_dir),
        is_python_module=False,
        verbose=os.environ.get("TORCHEBM_JIT_VERBOSE") == "1",
    )
    return build_dir / "torchebm_cuda_emu.so"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", default=str(REPO / "build" / "cuda-emu"))
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    lib = build(Path(args.build_dir).resolve())
    print(f"emulated CUDA kernels: {lib}", flush=True)
    env = dict(os.environ, TORCHEBM_CUDA_TESTS_ON="emulated", TORCHEBM_CUDA_EMU_LIB=str(lib))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
           str(REPO / "tests" / "test_cuda.py"), str(REPO / "tests" / "test_mlp_chain_cuda.py"),
           *args.pytest_args]
    return subprocess.call(cmd, env=env, cwd=REPO)


if __name__ == "__main__":
    sys.exit(main())
