"""The package's build and loading: installed extension, reference fallback, JIT build."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import torchebm
from torchebm import kernels

REPO = Path(__file__).resolve().parents[1]


def test_installed_extension_registers_the_ops():
    assert kernels.available(), "torchebm._C did not load; see the warning at import"
    assert kernels.how_loaded() in ("installed", "jit")
    assert hasattr(torch.ops.torchebm, "langevin_update")


def test_fused_langevin_update_matches_reference():
    g = torch.Generator().manual_seed(0)
    x, grad, noise = (torch.randn(64, 5, generator=g, dtype=torch.float64) for _ in range(3))
    fused = kernels.ops.langevin_update(x, grad, noise, 0.1, 0.3)
    ref = kernels.reference.langevin_update(x, grad, noise, 0.1, 0.3)
    torch.testing.assert_close(fused, ref, rtol=0, atol=1e-15)


def _run(code: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_missing_extension_warns_once_and_samples_on_reference_path():
    code = """
        import sys, warnings
        class Block:  # make `import torchebm._C` fail as it would without a build
            def find_spec(self, name, path=None, target=None):
                if name == "torchebm._C":
                    raise ImportError("no compiled extension (blocked by test)")
        sys.meta_path.insert(0, Block())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import torch, torchebm
            from torchebm.core import DoubleWellModel
            from torchebm.samplers import LangevinDynamics
            s = LangevinDynamics(DoubleWellModel(), step_size=0.01)
            x = s.sample(dim=2, n_samples=8, n_steps=5)
            s.sample(dim=2, n_samples=8, n_steps=5)
        msgs = [str(w.message) for w in caught if "compiled kernels" in str(w.message)]
        print("WARNINGS", len(msgs))
        print("AVAILABLE", torchebm.kernels.available())
        print("PATH", s.last_path, tuple(x.shape))
    """
    out = _run(code)
    assert out.returncode == 0, out.stderr
    assert "WARNINGS 1" in out.stdout, out.stdout + out.stderr
    assert "AVAILABLE False" in out.stdout
    assert "PATH reference (8, 2)" in out.stdout


@pytest.mark.skipif(
    not (REPO / "csrc" / "sources.txt").exists(), reason="needs a source checkout (csrc/)"
)
@pytest.mark.slow  # compiles every source file again: 1.5-3 minutes on 2 cores
def test_jit_build_compiles_the_same_sources(tmp_path):
    code = """
        import torch, torchebm
        from torchebm import kernels
        print("HOW", kernels.how_loaded())
        x = torch.randn(16, 3); g = torch.randn(16, 3); n = torch.randn(16, 3)
        err = (kernels.ops.langevin_update(x, g, n, 0.1, 0.2, None, None, None, 0, 0)
               - kernels.reference.langevin_update(x, g, n, 0.1, 0.2)).abs().max().item()
        print("ERR", err)
    """
    out = _run(code, {"TORCHEBM_JIT": "1", "TORCH_EXTENSIONS_DIR": str(tmp_path)})
    assert out.returncode == 0, out.stderr[-4000:]
    assert "HOW jit" in out.stdout, out.stdout + out.stderr[-4000:]
    # Float32 rounding: the JIT build may contract multiply-adds differently from the CMake build.
    err = float(out.stdout.split("ERR")[1].split()[0])
    assert err <= 4 * torch.finfo(torch.float32).eps, out.stdout
