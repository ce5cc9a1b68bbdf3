"""Checks a CUDA build of torchebm without needing a GPU (``make cuda-build`` runs it).

In the interpreter the build was installed into, it checks that ``import torchebm`` works, that
the compiled library is the installed one and was built with CUDA, that every op in
``CUDA_OPS`` has a schema and a CUDA kernel registered with the dispatcher, and that the
library does not depend on the GPU driver (``libcuda``), so it imports on machines without one.
Exits non-zero, naming what is missing, otherwise.
"""

from __future__ import annotations

import subprocess
import sys

# Every op the CUDA back end implements (docs/kernels.md).
CUDA_OPS = (
    "philox_normal",
    "philox_uniform",
    "langevin_update",
    "leapfrog_kick_drift",
    "metropolis_select",
    "mala_select",
    "analytic_energy_grad",
    "langevin_chain",
    "mala_chain",
    "hmc_chain",
    "langevin_update_graphsafe_",
    "philox_state_advance_",
    "mlp_energy_grad",
    "mlp_langevin_chain",
    "mlp_mala_chain",
    "mlp_hmc_chain",
    "dsm_perturb",
    "replica_swap",
)


def main() -> int:
    import torch

    import torchebm
    from torchebm import kernels

    problems = []
    if not kernels.available():
        problems.append(f"the compiled kernels did not load: {kernels.loader.load_error()!r}")
        return report(problems)
    print(f"torch {torch.__version__} (CUDA {torch.version.cuda}), GPU present: "
          f"{torch.cuda.is_available()}")
    print(f"torchebm {torchebm.__version__} from {torchebm.__file__}")
    library = None
    if kernels.how_loaded() == "installed":
        from torchebm import _C

        library = _C.__file__
    print(f"extension {library or '(built just in time)'} (loaded: {kernels.how_loaded()})")
    if torch.version.cuda is None:
        problems.append("this torch has no CUDA: the CUDA kernels cannot have been built")
    for name in CUDA_OPS:
        qualified = f"torchebm::{name}"
        has_schema = hasattr(torch.ops.torchebm, name)
        has_cuda = torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "CUDA")
        print(f"  {qualified:38s} schema {'yes' if has_schema else 'NO '}  "
              f"CUDA kernel {'yes' if has_cuda else 'NO'}")
        if not has_schema:
            problems.append(f"{qualified} has no schema (csrc/ops.cpp)")
        if not has_cuda:
            problems.append(f"{qualified} has no CUDA kernel")
    if library is not None:  # the installed build's dynamic dependencies
        needed = subprocess.run(["readelf", "-d", library], capture_output=True, text=True).stdout
        libs = [ln.split("[", 1)[1].rstrip("]") for ln in needed.splitlines() if "(NEEDED)" in ln]
        print(f"  NEEDED: {' '.join(libs)}")
        if any(lib.startswith("libcuda.so") for lib in libs):
            problems.append("the extension links libcuda (the driver): no import without a GPU")
        if not any(lib.startswith("libc10_cuda") for lib in libs):
            problems.append("the extension does not link libc10_cuda: no CUDA code was built")
    return report(problems)


def report(problems: list[str]) -> int:
    if problems:
        print("cuda-build check FAILED:", *problems, sep="\n  ", file=sys.stderr)
        return 1
    print("cuda-build check passed: every op has a CUDA kernel and torchebm imports without a GPU")
    return 0


if __name__ == "__main__":
    sys.exit(main())
