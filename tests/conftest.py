"""Test-suite settings and the fixtures several test modules share.

Under CI (the CI environment variable is set) hypothesis draws the same examples on every run,
so a landing is judged on a reproducible suite; locally each run explores new examples.
"""

import os

import pytest
import torch

try:
    from hypothesis import settings
except ImportError:  # the CUDA build-check venv runs tests/test_cuda.py only, without hypothesis
    settings = None

if settings is not None:
    settings.register_profile("ci", derandomize=True, print_blob=True)
    if os.environ.get("CI"):
        settings.load_profile("ci")


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test, then the setting restored.

    For runs on tiny tensors (batches of about 128 x 128): a second thread buys nothing and, on
    a loaded 2-core CI machine, intra-op threads spinning against other processes made such a
    run 10x slower (measured: 300 PCD iterations in 19 s with 2 threads vs 2 s with 1).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def require_path():
    """``require_path(sampler_cls, path, dtype=float32, device=cpu)``: skip the test, naming the
    reason, unless the compiled ops of ``path`` (``"chain"``: the algorithm's whole-chain op;
    ``"fused"``: its per-step ops; ``"reference"``: none) run on ``device`` for ``dtype``."""
    from torchebm.kernels import dispatch

    def require(sampler_cls, path, dtype=torch.float32, device=torch.device("cpu")):
        algorithm = sampler_cls.algorithm
        ops = {"chain": (algorithm.chain_op,), "fused": algorithm.step_ops}.get(path, ())
        reason = dispatch.kernels_blocker(ops, device, dtype)
        if reason is not None:
            pytest.skip(f"kernel not available: {reason}")

    return require
