"""Which code path a sampler call takes: the whole-chain kernel, the per-step fused ops, the
pure-PyTorch reference, or (opt-in) the compiled step.

Samplers take ``backend="auto" | "fused" | "reference" | "compiled"`` and ask
:func:`choose_path` once per ``sample()`` call:

* ``"chain"``: one whole-chain op runs every step: ``langevin_chain``, ``mala_chain``,
  ``hmc_chain`` for a built-in analytic model (a ``kernel_spec()``), or ``mlp_langevin_chain``,
  ``mlp_mala_chain``, ``mlp_hmc_chain`` for an energy recognised as an MLP
  (:func:`torchebm.kernels.mlp.recognise_mlp`); the sampler says what stands in the way, if
  anything, as ``chain_blocker``, and :attr:`Route.op` names the op that ran.
* ``"fused"``: a Python loop over steps around the model's ``gradient``, each update done by the
  per-step ops (``langevin_update``, ``leapfrog_kick_drift``, ``metropolis_select``,
  ``mala_select``) with in-kernel Philox draws.
* ``"reference"``: the same loop with :mod:`torchebm.kernels.reference` and ``torch.randn``.

A kernel path applies only where every op it calls is registered (the compiled library loaded
and the op built: ops land one at a time), has a kernel for the state's device (``CPU`` or
``CUDA`` dispatch key, :func:`has_kernel`) and the state's dtype is one of
:data:`KERNEL_PATH_DTYPES` (float32, float64).

``auto`` takes the first path that applies in the order chain, fused, reference, so an
unsupported dtype or device, or a missing op, falls back instead of failing. ``fused`` takes
chain or fused and raises :class:`NoKernelError` naming every reason when neither applies.
``reference`` always takes the reference path. ``compiled`` (opt-in) takes the
``"compiled"`` path: each step through ``torch.compile``, its random numbers drawn by the
``philox_normal``/``philox_uniform`` ops (:mod:`torchebm.samplers.compiled_step`); it raises
:class:`NoKernelError` where those ops do not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from torchebm.kernels.loader import load_error, load_ops

BACKENDS = ("auto", "fused", "reference", "compiled")
"""The values of a sampler's ``backend=`` argument."""

PATHS = ("chain", "fused", "reference", "compiled", "cuda_graph")
"""The values of ``sampler.last_path`` (``"cuda_graph"``: ``LangevinDynamics`` asked for
``cuda_graph=True``, which bypasses :func:`choose_path`)."""

COMPILED_PATH_OPS = ("philox_normal", "philox_uniform")
"""The ops the ``"compiled"`` path calls outside its compiled steps (its random numbers)."""

KERNEL_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}
"""State dtypes each back end's kernels accept, by device type (the CUDA kernels compute
float16/bfloat16 states in float32; ``csrc/include/torchebm/checks.h``, ``Backend``)."""

KERNEL_PATH_DTYPES = (torch.float32, torch.float64)
"""State dtypes the samplers' kernel paths (chain, fused) take on every device. float16 and
bfloat16 states run on the reference path, in their own dtype: the CUDA kernels would accept
them, but the samplers' kernel paths are not validated for them."""

_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}
# An op registered for every back end at once also runs on CPU and CUDA.
_ANY_BACKEND_KEYS = ("CompositeExplicitAutograd", "CompositeImplicitAutograd")


class NoKernelError(RuntimeError):
    """``backend="fused"`` was asked for, but no compiled kernel applies to this call."""


def check_backend(backend: object) -> str:
    """Return ``backend`` if it is one of :data:`BACKENDS`, else raise ``ValueError``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return backend  # type: ignore[return-value]


def has_kernel(name: str, device_type: str) -> bool:
    """Whether op ``torchebm::<name>`` has a kernel for ``device_type`` (``"cpu"``, ``"cuda"``)
    in the loaded library: the one test of what a build contains (true for CUDA kernels on a
    machine without a GPU, too). A kernel found is remembered (every ``sample()`` call asks):
    the library registers its kernels when it loads and never removes them."""
    if (name, device_type) in _KERNELS_FOUND:
        return True
    key = _DISPATCH_KEYS.get(device_type)
    if key is None or not load_ops() or not hasattr(torch.ops.torchebm, name):
        return False
    found = any(
        torch._C._dispatch_has_kernel_for_dispatch_key(f"torchebm::{name}", k)
        for k in (key, *_ANY_BACKEND_KEYS)
    )
    if found:
        _KERNELS_FOUND.add((name, device_type))
    return found


_KERNELS_FOUND: set[tuple[str, str]] = set()  # (op, device type) pairs has_kernel found


def op_blocker(name: str, device: torch.device) -> Optional[str]:
    """Why op ``name`` cannot run on ``device``, or None when it can."""
    if not load_ops():
        return f"the compiled kernels are not loaded ({load_error()})"
    if not hasattr(torch.ops.torchebm, name):
        return f"op torchebm::{name} is not built in this version of the extension"
    if device.type not in _DISPATCH_KEYS:
        return f"no kernels exist for device type {device.type!r} (only cpu and cuda)"
    if not has_kernel(name, device.type):
        return f"op torchebm::{name} has no {_DISPATCH_KEYS[device.type]} kernel in this build"
    return None


def kernels_blocker(
    ops: Sequence[str], device: torch.device, dtype: torch.dtype
) -> Optional[str]:
    """Why the ops ``ops`` cannot run on a ``dtype`` state on ``device`` in a sampler's kernel
    path, or None."""
    if dtype not in KERNEL_PATH_DTYPES:
        names = ", ".join(str(d).replace("torch.", "") for d in KERNEL_PATH_DTYPES)
        return f"the kernel paths take {names} states, got {str(dtype).replace('torch.', '')}"
    for name in ops:
        reason = op_blocker(name, device)
        if reason is not None:
            return reason
    return None


@dataclass(frozen=True)
class Route:
    """The path chosen for one ``sample()`` call, why each faster path was passed over, and, on
    the ``"chain"`` path, the whole-chain op that ran (e.g. ``"mlp_langevin_chain"``)."""

    path: str
    skipped: tuple[str, ...] = ()
    op: Optional[str] = None


def choose_path(
    backend: str,
    *,
    device: torch.device,
    dtype: torch.dtype,
    chain_ops: Sequence[str],
    step_ops: Sequence[str],
    chain_blocker: Optional[str] = None,
    sampler: str = "sampler",
) -> Route:
    """Resolve ``backend`` to a :class:`Route` (see the module docstring for the rules).

    Args:
        backend: ``"auto"``, ``"fused"`` or ``"reference"``.
        device, dtype: of the chain state.
        chain_ops: the whole-chain op(s) the chain path calls.
        step_ops: the per-step ops the fused path calls.
        chain_blocker: the sampler's own reason the chain path cannot serve this call (no
            ``kernel_spec()``, ``model_kwargs`` given, ...), or None.
        sampler: the sampler's name, for the error message.

    Raises:
        NoKernelError: ``backend="fused"`` and neither kernel path applies.
    """
    check_backend(backend)
    if backend == "reference":
        return Route("reference")
    if backend == "compiled":
        reason = kernels_blocker(COMPILED_PATH_OPS, device, dtype)
        if reason is not None:
            raise NoKernelError(
                f"{sampler}: backend='compiled' draws its random numbers with the Philox ops, "
                f"but {reason}. Use backend='auto'."
            )
        return Route("compiled")
    skipped = []
    reason = chain_blocker or kernels_blocker(chain_ops, device, dtype)
    if reason is None:
        return Route("chain", op=chain_ops[0] if chain_ops else None)
    skipped.append(f"chain: {reason}")
    reason = kernels_blocker(step_ops, device, dtype)
    if reason is None:
        return Route("fused", tuple(skipped))
    skipped.append(f"fused: {reason}")
    if backend == "fused":
        raise NoKernelError(
            f"{sampler}: backend='fused' but no compiled kernel applies to this call: "
            + "; ".join(skipped)
            + ". Use backend='auto' to fall back to the reference path."
        )
    return Route("reference", tuple(skipped))


__all__ = [
    "BACKENDS",
    "COMPILED_PATH_OPS",
    "KERNEL_DTYPES",
    "KERNEL_PATH_DTYPES",
    "PATHS",
    "NoKernelError",
    "Route",
    "check_backend",
    "choose_path",
    "has_kernel",
    "kernels_blocker",
    "op_blocker",
]
