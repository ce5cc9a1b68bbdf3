"""The benchmark workloads, one function each, and the worker that runs one in a process.

Importable under either package named ``torchebm`` (ours, distribution ``torchebm-fused``, or
TorchEBM 0.8.9): this module imports only torch and the standard library at the top, and asks
``package_identity()`` which one it got. Each workload function is pure: it builds its inputs
from fixed seeds, runs one warm-up and ``repeats`` timed runs, and returns the times (seconds)
plus, for the Gaussian workloads, a trajectory of every coordinate for the ESS estimates.

Implementations (``impl``):
    fused              ours, ``backend="fused"``
    reference          ours, ``backend="reference"`` (the pure-PyTorch path)
    torchebm089        TorchEBM 0.8.9's samplers
    torchebm089-triton TorchEBM 0.8.9's Triton kernels (GPU workloads only)
    fused-cudagraph    ours, ``backend="fused"`` with ``cuda_graph=True`` (GPU MLP only)
    fused-op           ours, the whole-chain op ``torchebm.kernels.ops.langevin_chain`` called
                       directly: the counterpart of 0.8.9's Triton chain function (GPU double well)
    compiled           ours, ``backend="compiled"`` (each step compiled with ``torch.compile``;
                       neural conv workloads; ``unavailable`` with the reason if it raises)
    hand_eager         a hand-written PyTorch loop, no torchebm: per step
                       ``g = autograd.grad(E(x).sum(), x)``, ``x = x - a g + b randn_like(x)``
                       (neural workloads; runs in our venv, same torch)
    hand_compiled      the same step function wrapped in ``torch.compile`` (default inductor
                       backend); the first call's time is recorded as ``info.compile_s``

Worker (the orchestrator ``bench/run.py`` spawns one per workload and implementation):
    python -m bench.workloads --workload NAME --impl IMPL --result OUT.json [--quick] ...
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import inspect
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from typing import Callable, Optional

import torch

OURS = ("fused", "compiled", "reference", "fused-cudagraph", "fused-op")
THEIRS = ("torchebm089", "torchebm089-triton")
HAND = ("hand_eager", "hand_compiled")  # plain PyTorch, no torchebm: run in our venv
COMPILED = ("compiled", "hand_compiled")  # torch.compile inside: one extra warm-up, compile_s
SEED = 20240601
GAUSS_DIM = 32


class Unavailable(Exception):
    """The implementation cannot run this workload here (API not landed, no CUDA, no Triton)."""


# ----------------------------------------------------------------------------------------------
# Which package is this, and which implementation may run on it.


def package_identity() -> dict:
    """Which ``torchebm`` is importable: ours (has ``torchebm.kernels``) or TorchEBM 0.8.9."""
    import torchebm

    ours = hasattr(torchebm, "kernels")
    dist = "torchebm-fused" if ours else "torchebm"
    try:
        dist_version = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        dist_version = None
    info = {
        "package": "ours" if ours else "torchebm089",
        "distribution": dist,
        "distribution_version": dist_version,
        "torchebm_version": getattr(torchebm, "__version__", None),
        "torchebm_file": getattr(torchebm, "__file__", None),
        "torch_version": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "threads": torch.get_num_threads(),
    }
    if ours:
        kernels = torchebm.kernels
        info["kernels_available"] = bool(kernels.available())
        info["kernels_how_loaded"] = kernels.how_loaded()
        info["cuda_kernels_built"] = bool(kernels.cuda_kernels_built())
    return info


def _check_package(impl: str, identity: dict) -> None:
    if impl in HAND:
        return  # plain PyTorch: whichever torchebm is importable is not used
    want = "ours" if impl in OURS else "torchebm089"
    if identity["package"] != want:
        raise RuntimeError(
            f"impl={impl!r} needs package {want!r} but this interpreter "
            f"({identity['python_executable']}) imports {identity['package']!r} "
            f"from {identity['torchebm_file']}"
        )


# ----------------------------------------------------------------------------------------------
# Sizes. Full sizes are the specification's; quick sizes are for smoke tests only.


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    fn: Callable
    description: str
    full: dict
    quick: dict
    impls: tuple  # implementations that can run it
    targets: dict  # on the CPU: {"vs_torchebm089": x, "vs_reference": y}, any subset
    devices: tuple = ("cpu", "cuda")
    # On CUDA: speedup keys as above, a full speedup entry's name (e.g.
    # "op_vs_torchebm089_triton"), and "fraction_of_peak" (achieved over peak memory
    # bandwidth). The CPU targets are not applied there.
    gpu_targets: dict = dataclasses.field(default_factory=dict)
    na: dict = dataclasses.field(default_factory=dict)  # impl -> why it is n/a
    unit: str = "chain-steps"  # what ``work`` counts, for throughput
    group: str = ""  # ``--only GROUP`` selects every workload of the group (e.g. conv_pcd)

    @property
    def neural(self) -> bool:
        """Measured against hand-written loops too (the neural-energy table)."""
        return any(i in HAND for i in self.impls)


def _ess_sizes(chains: int, steps: int) -> dict:
    return {"ess_chains": chains, "ess_steps": steps}


# ----------------------------------------------------------------------------------------------
# Timing.


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time_runs(
    setup: Callable,
    run: Callable,
    repeats: int,
    warmup: int,
    device: str,
    info: Optional[dict] = None,
    compiled: bool = False,
) -> list:
    """Warm-up runs, then ``repeats`` timed runs of ``run(setup())``; setup is not timed.

    With ``info``, the first warm-up run is timed too and recorded as ``info["first_run_s"]``.
    ``compiled`` (an implementation that calls ``torch.compile``d code): one warm-up more than
    asked (at least 2), so that compilation and any recompilation happen before the timed runs,
    and the first run's time is also ``info["compile_s"]`` (compilation plus one run).
    """
    n_warm = max(warmup + 1, 2) if compiled else warmup
    for i in range(n_warm):
        state = setup()
        _sync(device)
        t0 = time.perf_counter()
        run(state)
        _sync(device)
        if i == 0 and info is not None:
            info["first_run_s"] = time.perf_counter() - t0
            if compiled:
                info["compile_s"] = info["first_run_s"]
    if info is not None:
        info["warmup_runs"] = n_warm
    times = []
    for _ in range(repeats):
        state = setup()
        _sync(device)
        t0 = time.perf_counter()
        run(state)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


# ----------------------------------------------------------------------------------------------
# Models and samplers, built the same way under either package.


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _initial_state(n: int, d: int, device: str, seed: int = SEED) -> torch.Tensor:
    return torch.randn(n, d, generator=_generator(seed)).to(device)


def gaussian_parameters(dim: int = GAUSS_DIM, seed: int = SEED + 1) -> tuple:
    """A fixed dense SPD covariance: random rotation, eigenvalues evenly spaced in [0.5, 2]."""
    g = _generator(seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))  # a unique, well-spread rotation
    eigenvalues = torch.linspace(0.5, 2.0, dim, dtype=torch.float64)
    cov = (q * eigenvalues) @ q.T
    cov = 0.5 * (cov + cov.T)
    return torch.zeros(dim, dtype=torch.float32), cov.to(torch.float32)


def _import_api(*names: str, module: str):
    try:
        mod = __import__(module, fromlist=list(names))
        return [getattr(mod, n) for n in names]
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"{module} does not provide {', '.join(names)} yet: {exc}") from exc


def _accepts(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class _Sampler:
    """A sampler plus the keyword arguments our API wants at ``sample()`` time.

    Our samplers take ``backend=`` (and on CUDA ``cuda_graph=``) in the constructor or in
    ``sample()``; the signature decides where it goes. TorchEBM 0.8.9 takes neither.
    """

    def __init__(self, cls, model, impl: str, device: str, **kwargs):
        extra = {}
        if impl in OURS:
            extra["backend"] = {"reference": "reference", "compiled": "compiled"}.get(impl, "fused")
            if impl == "fused-cudagraph":
                extra["cuda_graph"] = True
        if device != "cpu":
            kwargs["device"] = device
        ctor_extra = {k: v for k, v in extra.items() if _accepts(cls.__init__, k)}
        self.sample_extra = {k: v for k, v in extra.items() if k not in ctor_extra}
        for key in self.sample_extra:
            if not _accepts(cls.sample, key):
                raise Unavailable(
                    f"{cls.__name__} takes no {key}= argument (in __init__ or sample) yet"
                )
        self.sampler = cls(model, **kwargs, **ctor_extra)

    def sample(self, x: torch.Tensor, n_steps: int, **kwargs):
        return self.sampler.sample(x=x, n_steps=n_steps, **kwargs, **self.sample_extra)

    def path_taken(self) -> dict:
        """Which code path the last ``sample()`` ran (``"chain"``, ``"fused"``, ``"reference"``)
        and, when it was not the whole-chain kernel, what stood in the way: our samplers'
        ``last_path`` and ``chain_blocker``. Empty for TorchEBM 0.8.9."""
        return sampler_path(self.sampler)


def sampler_path(sampler) -> dict:
    """``last_path`` and ``chain_blocker`` of one of our samplers and, from ``last_route``, the
    whole-chain op that ran (``op``, e.g. ``"mlp_langevin_chain"``) and why faster paths were
    passed over (``skipped``). Empty for TorchEBM 0.8.9's samplers."""
    out = {}
    for attr in ("last_path", "chain_blocker"):
        value = getattr(sampler, attr, None)
        if value is not None and not callable(value):
            out[attr] = str(value)
    route = getattr(sampler, "last_route", None)
    if route is not None:
        if getattr(route, "op", None):
            out["op"] = str(route.op)
        if getattr(route, "skipped", None):
            out["skipped"] = [str(s) for s in route.skipped]
    return out


def _energy_class(impl: str):
    """``E(x) = net(x).squeeze(-1)`` as a ``torchebm.core.BaseModel`` subclass of whichever
    package is importable, or, for the hand-written loops, a plain ``torch.nn.Module``: the same
    module tree (``net.*``) either way, so one state dict loads into all of them."""
    if impl in HAND:
        base = torch.nn.Module
    else:
        (base,) = _import_api("BaseModel", module="torchebm.core")

    class NetEnergy(base):
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).squeeze(-1)

    return NetEnergy


def mlp_net() -> torch.nn.Sequential:
    """mlp_langevin's network: 2 -> 64 -> 64 -> 1, SELU."""
    return torch.nn.Sequential(
        torch.nn.Linear(2, 64),
        torch.nn.SELU(),
        torch.nn.Linear(64, 64),
        torch.nn.SELU(),
        torch.nn.Linear(64, 1),
    )


def ring_net() -> torch.nn.Sequential:
    """ring_pcd's network: 2 -> 128 -> 128 -> 1, SiLU."""
    return torch.nn.Sequential(
        torch.nn.Linear(2, 128),
        torch.nn.SiLU(),
        torch.nn.Linear(128, 128),
        torch.nn.SiLU(),
        torch.nn.Linear(128, 1),
    )


CONV_SIDE = 8  # 8 x 8 single-channel images


def conv_net() -> torch.nn.Sequential:
    """The conv workloads' network on [B, 1, 8, 8]: 3x3 convolutions (padding 1) 1 -> 32 ->
    64 -> 64 channels with SiLU, flatten, linear head 64*8*8 -> 1."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1),
        torch.nn.SiLU(),
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.SiLU(),
        torch.nn.Conv2d(64, 64, 3, padding=1),
        torch.nn.SiLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(64 * CONV_SIDE * CONV_SIDE, 1),
    )


def net_weights(build: Callable, seed: int) -> dict:
    """``build()``'s weights drawn from a fixed seed, outside either package's constructors."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build()
    return net.state_dict()


def mlp_weights(seed: int = SEED + 2) -> dict:
    """The MLP's weights, drawn from a fixed seed outside either package's constructors."""
    return net_weights(mlp_net, seed)


NET_SEEDS = {"mlp": SEED + 2, "ring": SEED + 4, "conv": SEED + 6}
# Networks whose workloads are bound by the machine's arithmetic rate (convolutions: most of
# each step is oneDNN's convolution forward and backward, on every implementation alike): their
# hand-written eager worker also records compute_bound() in its info.
COMPUTE_BOUND_NETS = ("conv",)
NETS = {"mlp": mlp_net, "ring": ring_net, "conv": conv_net}


def _net_model(kind: str, impl: str, device: str):
    """The ``kind`` energy ("mlp", "ring", "conv") for ``impl``, with the shared weights."""
    model = _energy_class(impl)(NETS[kind]())
    model.net.load_state_dict(net_weights(NETS[kind], NET_SEEDS[kind]))
    return model.to(device)


def _mlp_model(device: str, impl: str = "fused"):
    return _net_model("mlp", impl, device)


def _checksum(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum().cpu() for p in model.parameters()))


def _ess_trajectory(sampler: _Sampler, x0: torch.Tensor, size: dict) -> torch.Tensor:
    """Untimed run on ``ess_chains`` chains for ``ess_steps`` steps: every coordinate,
    ``[chains, steps, dim]`` float32 on the CPU."""
    x = x0[: size["ess_chains"]].clone()
    traj = sampler.sample(x, size["ess_steps"], return_trajectory=True)
    if isinstance(traj, tuple):
        traj = traj[0]
    return traj.detach().float().cpu()


def _chain_workload(
    impl: str,
    size: dict,
    repeats: int,
    warmup: int,
    device: str,
    make,
    with_ess: bool,
    grads_per_step: int = 0,
) -> dict:
    """Shared body of the sampler workloads: ``make()`` -> (sampler, x0, info). With
    ``with_ess``, also the ESS trajectory and the algorithm's gradient evaluations per chain
    and step (Langevin and MALA 1, HMC its leapfrog steps), for ESS per gradient evaluation."""
    sampler, x0, info = make()
    times = _time_runs(
        setup=lambda: x0.clone(),
        run=lambda x: sampler.sample(x, size["n_steps"]),
        repeats=repeats,
        warmup=warmup,
        device=device,
    )
    info.update(sampler.path_taken())
    out = {"times_s": times, "work": size["n_chains"] * size["n_steps"], "info": info}
    if with_ess:
        out["trajectory"] = _ess_trajectory(sampler, x0, size)
        out["grads_per_step"] = grads_per_step
    return out


# ----------------------------------------------------------------------------------------------
# The workloads.

LANGEVIN_STEP = 0.01  # double well and MLP: TorchEBM's own benchmark uses 0.01 on the double well
GAUSS_LANGEVIN_STEP = 0.05
GAUSS_MALA_STEP = 0.05
GAUSS_HMC_STEP = 0.1
HMC_LEAPFROG = 10


def _samplers_api(*names):
    return _import_api(*names, module="torchebm.samplers")


def doublewell_langevin(impl, size, repeats, warmup, device):
    """Langevin on DoubleWellModel (default parameters), the whole chain per timed run."""
    (DoubleWellModel,) = _import_api("DoubleWellModel", module="torchebm.core")
    (LangevinDynamics,) = _samplers_api("LangevinDynamics")

    def make():
        model = DoubleWellModel().to(device)
        sampler = _Sampler(
            LangevinDynamics, model, impl, device, step_size=LANGEVIN_STEP, noise_scale=1.0
        )
        return sampler, _initial_state(size["n_chains"], size["dim"], device), {}

    return _chain_workload(impl, size, repeats, warmup, device, make, with_ess=False)


def _gaussian_model(device):
    (GaussianModel,) = _import_api("GaussianModel", module="torchebm.core")
    mean, cov = gaussian_parameters()
    return GaussianModel(mean, cov).to(device)


def gaussian_langevin(impl, size, repeats, warmup, device):
    """Langevin on a 32-D Gaussian with a fixed dense SPD covariance."""
    (LangevinDynamics,) = _samplers_api("LangevinDynamics")

    def make():
        sampler = _Sampler(
            LangevinDynamics,
            _gaussian_model(device),
            impl,
            device,
            step_size=GAUSS_LANGEVIN_STEP,
            noise_scale=1.0,
        )
        return sampler, _initial_state(size["n_chains"], GAUSS_DIM, device), {}

    return _chain_workload(
        impl, size, repeats, warmup, device, make, with_ess=True, grads_per_step=1
    )


def gaussian_hmc(impl, size, repeats, warmup, device):
    """HMC (10 leapfrog steps per proposal) on the same Gaussian; ``n_steps`` MH steps."""
    (HamiltonianMonteCarlo,) = _samplers_api("HamiltonianMonteCarlo")

    def make():
        sampler = _Sampler(
            HamiltonianMonteCarlo,
            _gaussian_model(device),
            impl,
            device,
            step_size=GAUSS_HMC_STEP,
            n_leapfrog_steps=HMC_LEAPFROG,
        )
        return sampler, _initial_state(size["n_chains"], GAUSS_DIM, device), {}

    return _chain_workload(
        impl, size, repeats, warmup, device, make, with_ess=True, grads_per_step=HMC_LEAPFROG
    )


def gaussian_mala(impl, size, repeats, warmup, device):
    """MALA on the same Gaussian (ours only: TorchEBM 0.8.9 has no MALA)."""
    (MALA,) = _samplers_api("MetropolisAdjustedLangevin")

    def make():
        sampler = _Sampler(MALA, _gaussian_model(device), impl, device, step_size=GAUSS_MALA_STEP)
        return sampler, _initial_state(size["n_chains"], GAUSS_DIM, device), {}

    return _chain_workload(
        impl, size, repeats, warmup, device, make, with_ess=True, grads_per_step=1
    )


ILLCOND_SCALES = (0.1, 3.0)  # standard deviations, log-spaced over the 32 coordinates


def _illcond_model(device):
    """A 32-D Gaussian with standard deviations log-spaced in ``ILLCOND_SCALES`` (covariance
    condition number 900): the step size is bounded by the narrow coordinates, the trajectory
    must span the wide ones."""
    (GaussianModel,) = _import_api("GaussianModel", module="torchebm.core")
    std = torch.logspace(math.log10(ILLCOND_SCALES[0]), math.log10(ILLCOND_SCALES[1]), GAUSS_DIM)
    return GaussianModel(torch.zeros(GAUSS_DIM), torch.diag(std**2)).to(device)


def illcond_hmc_fixed(impl, size, repeats, warmup, device):
    """HMC with the hand-set step 0.1 and 10 leapfrog steps (as ``gaussian_hmc``) on the
    ill-conditioned Gaussian: the baseline of ``illcond_hmc_adapted``."""
    (HamiltonianMonteCarlo,) = _samplers_api("HamiltonianMonteCarlo")

    def make():
        sampler = _Sampler(HamiltonianMonteCarlo, _illcond_model(device), impl, device,
                           step_size=GAUSS_HMC_STEP, n_leapfrog_steps=HMC_LEAPFROG)
        return sampler, _initial_state(size["n_chains"], GAUSS_DIM, device), {}

    return _chain_workload(
        impl, size, repeats, warmup, device, make, with_ess=True, grads_per_step=HMC_LEAPFROG
    )


def illcond_hmc_adapted(impl, size, repeats, warmup, device):
    """The same HMC after ``warmup(adapt="chees")`` (untimed; ``warmup_steps`` on the ESS
    chains) from the same step 0.1 and 10 leapfrog steps: dual-averaged step size, ChEES
    trajectory length, Halton-jittered leapfrog counts. ``grads_per_step`` is the mean
    leapfrog count of the ESS run (its jittered counts recomputed from the Halton indices it
    used); ``info`` has the adapted step size and trajectory length and the warm-up time."""
    (HamiltonianMonteCarlo,) = _samplers_api("HamiltonianMonteCarlo")
    jittered = _import_api("jittered_leapfrog_steps", module="torchebm.samplers.adaptation")[0]
    model = _illcond_model(device)
    sampler = _Sampler(HamiltonianMonteCarlo, model, impl, device, step_size=GAUSS_HMC_STEP,
                       n_leapfrog_steps=HMC_LEAPFROG)
    hmc = sampler.sampler
    x0 = _initial_state(size["n_chains"], GAUSS_DIM, device)
    start = time.perf_counter()
    hmc.warmup(x=x0[: size["ess_chains"]].clone(), n_steps=size["warmup_steps"], adapt="chees",
               generator=_generator(SEED + 7))
    warmup_s = time.perf_counter() - start
    times = _time_runs(lambda: x0.clone(), lambda x: sampler.sample(x, size["n_steps"]),
                       repeats, warmup, device)
    adaptation = hmc.adaptation
    first = adaptation.jitter_count + 1
    trajectory = _ess_trajectory(sampler, x0, size)
    step = float(adaptation.step_size)
    counts = [jittered(adaptation.trajectory_length, step, "halton", k, None)[0]
              for k in range(first, adaptation.jitter_count + 1)]
    info = {**sampler.path_taken(), "warmup_steps": size["warmup_steps"],
            "warmup_s": round(warmup_s, 3), "adapted_step_size": step,
            "trajectory_length": adaptation.trajectory_length,
            "mean_leapfrog_steps": sum(counts) / len(counts)}
    return {"times_s": times, "work": size["n_chains"] * size["n_steps"], "info": info,
            "trajectory": trajectory, "grads_per_step": sum(counts) / len(counts)}


def mlp_langevin(impl, size, repeats, warmup, device):
    """Langevin on a small MLP energy (2 -> 64 -> 64 -> 1, SELU): our sampler (its default path
    runs recognised MLPs on the whole-chain MLP kernel), 0.8.9, and the hand-written loops."""
    return _neural_langevin("mlp", (2,), impl, size, repeats, warmup, device)


# ---- Neural energies: ours, TorchEBM 0.8.9 and hand-written PyTorch loops ----------------------

PCD_LR = 1e-3  # Adam
PCD_REINIT = 0.05  # probability that a drawn buffer row restarts from N(0, I)
RING_DATA_SEED = SEED + 3
CONV_DATA_SEED = SEED + 5


def hand_langevin_chain(model: torch.nn.Module, a: float, b: float, compiled: bool, clamp=None):
    """The hand-written Langevin loop, ``chain(x0, n_steps) -> x`` (detached)::

        for t in range(n_steps):
            g = torch.autograd.grad(model(x).sum(), x)[0]
            x = (x - a*g + b*torch.randn_like(x)).detach().requires_grad_()

    (clamped to ``clamp = (lo, hi)`` after the update where given). ``compiled``: the step
    function (gradient and update) is wrapped in ``torch.compile`` with the default (inductor)
    backend and default settings; the loop around it stays in Python.
    """

    def step(x: torch.Tensor) -> torch.Tensor:
        g = torch.autograd.grad(model(x).sum(), x)[0]
        x = x - a * g + b * torch.randn_like(x)
        if clamp is not None:
            x = x.clamp(clamp[0], clamp[1])
        return x

    fn = torch.compile(step) if compiled else step

    def chain(x0: torch.Tensor, n_steps: int) -> torch.Tensor:
        x = x0.detach().requires_grad_()
        for _ in range(n_steps):
            x = fn(x).detach().requires_grad_()
        return x.detach()

    return chain


PEAK_GEMM_SIZE = 2048  # square float32 matmul whose rate stands for the machine's peak


def gemm_rate(device: str, n: int = PEAK_GEMM_SIZE, repeats: int = 7) -> float:
    """Floating-point operations per second of an ``n x n`` float32 ``torch.mm`` on ``device``
    (median of ``repeats`` after two warm-ups), on the threads this worker was given: the rate
    of the library's best-tuned kernel, taken as what the machine can sustain."""
    g = _generator(SEED)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    times = _time_runs(lambda: None, lambda _: torch.mm(a, b), repeats, 2, device)
    return 2.0 * n**3 / statistics.median(times)


def compute_bound(run: Callable, state, device: str) -> dict:
    """Work of one timed run ``run(state)`` counted by ``torch.utils.flop_counter`` (matmuls
    and convolutions, forward and backward: a multiply-add is 2 operations) and the machine's
    GEMM rate, for the compute bound of a workload: ``flops / gemm_flops_per_s`` is the time
    of the same operations at the rate of the best-tuned float32 kernel."""
    from torch.utils.flop_counter import FlopCounterMode

    class Totals:
        """Stands in for FlopCounterMode's module tracker, whose hooks refuse
        ``torch.autograd.grad`` on a leaf input (as every Langevin step here does): the counts
        all go to the counter's "Global" total."""

        parents = ("Global",)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = Totals()
    with counter:
        run(state)
    return {"flops_per_run": int(counter.get_total_flops()), "gemm_flops_per_s": gemm_rate(device)}


def _compile_info(impl: str) -> dict:
    """What torch.compile did in this process (graph breaks, graphs compiled), and where
    inductor kept its cache: for the implementations that compile."""
    if impl not in COMPILED:
        return {}
    out = {"inductor_cache_dir": os.environ.get("TORCHINDUCTOR_CACHE_DIR")}
    try:
        from torch._dynamo.utils import counters

        out["dynamo_graph_breaks"] = int(sum(counters["graph_break"].values()))
        out["dynamo_graph_break_reasons"] = sorted(
            {str(r).splitlines()[0][:160] for r in counters["graph_break"]}
        )
        out["dynamo_unique_graphs"] = int(counters["stats"]["unique_graphs"])
    except Exception as exc:  # private API: informative only
        out["dynamo_counters_error"] = f"{type(exc).__name__}: {exc}"
    return out


def _neural_langevin(kind, event_shape, impl, size, repeats, warmup, device):
    """``n_steps`` Langevin steps (step 0.01, noise 1) of ``n_chains`` chains on the ``kind``
    energy; one timed run is one whole chain from the same seeded ``x0 ~ N(0, I)``."""
    n, n_steps = size["n_chains"], size["n_steps"]
    model = _net_model(kind, impl, device)
    info = {"weights_checksum": _checksum(model)}
    x0 = _initial_state(n, math.prod(event_shape), device).view(n, *event_shape)
    if impl in HAND:
        a, b = LANGEVIN_STEP, math.sqrt(2.0 * LANGEVIN_STEP)
        chain = hand_langevin_chain(model, a, b, compiled=impl == "hand_compiled")
        run = lambda x: chain(x, n_steps)  # noqa: E731
        sampler = None
    else:
        (LangevinDynamics,) = _samplers_api("LangevinDynamics")
        sampler = _Sampler(
            LangevinDynamics, model, impl, device, step_size=LANGEVIN_STEP, noise_scale=1.0
        )
        run = lambda x: sampler.sample(x, n_steps)  # noqa: E731
    times = _time_runs(
        lambda: x0.clone(), run, repeats, warmup, device, info=info, compiled=impl in COMPILED
    )
    if sampler is not None:
        info.update(sampler.path_taken())
    if impl == "hand_eager" and kind in COMPUTE_BOUND_NETS:
        info.update(compute_bound(run, x0.clone(), device))
    info.update(_compile_info(impl))
    return {"times_s": times, "work": n * n_steps, "info": info}


def eight_gaussians_mirror(n: int, seed: int) -> torch.Tensor:
    """``torchebm.datasets.eight_gaussians(n, seed=seed, dtype=torch.float32)`` (radius 2, std
    0.2) written out with torch alone, for the TorchEBM 0.8.9 worker, where our package is not
    importable. The same draws in the same order; tests/test_bench_smoke.py checks equality."""
    g = torch.Generator().manual_seed(seed)
    component = torch.randint(8, (n,), generator=g)
    angle = component.to(torch.float64) * (2 * math.pi / 8)
    means = 2.0 * torch.stack([angle.cos(), angle.sin()], dim=1)
    noise = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return (means + 0.2 * noise).to(torch.float32)


def ring_data(n: int, seed: int = RING_DATA_SEED) -> tuple:
    """``n`` points of the 8-Gaussian ring and where they came from: our
    ``torchebm.datasets.eight_gaussians`` where importable, else its mirror (same values)."""
    try:
        from torchebm.datasets import eight_gaussians
    except ImportError:
        return eight_gaussians_mirror(n, seed), "bench.workloads.eight_gaussians_mirror"
    return eight_gaussians(n, seed=seed, dtype=torch.float32), "torchebm.datasets.eight_gaussians"


def conv_data(n: int, seed: int = CONV_DATA_SEED) -> torch.Tensor:
    """``n`` fixed 8x8 single-channel images [n, 1, 8, 8]: one Gaussian bump each (centre
    uniform over the image, width uniform in [0.8, 2] pixels, peak 1), plus N(0, 0.05^2) noise."""
    g = torch.Generator().manual_seed(seed)
    centre = torch.rand(n, 2, generator=g) * (CONV_SIDE - 1)
    width = 0.8 + 1.2 * torch.rand(n, generator=g)
    coord = torch.arange(CONV_SIDE, dtype=torch.float32)
    dy = coord.view(1, -1, 1) - centre[:, 0].view(-1, 1, 1)
    dx = coord.view(1, 1, -1) - centre[:, 1].view(-1, 1, 1)
    img = torch.exp(-(dy**2 + dx**2) / (2 * width.view(-1, 1, 1) ** 2))
    img = img + 0.05 * torch.randn(n, CONV_SIDE, CONV_SIDE, generator=g)
    return img.unsqueeze(1)


def _pcd(kind, data, data_source, impl, size, repeats, warmup, device):
    """PCD training of the ``kind`` energy: one timed run is ``n_iters`` iterations, each

        negatives = 20 Langevin steps (step 0.01, noise 1) from ``batch`` replay-buffer rows,
                    each restarted from N(0, I) with probability 0.05; written back
        loss = E(data batch).mean() - E(negatives).mean();  loss.backward();  Adam step

    Ours and 0.8.9: ``PersistentContrastiveDivergence(model, sampler=LangevinDynamics(...),
    k_steps, buffer_size, new_sample_ratio=0.05, init_steps=0, energy_reg_weight=0)``;
    hand-written: the same iteration in plain PyTorch (random rows, written back in place).
    Every run starts from the same weights, a fresh Adam and a fresh buffer (not timed); batch
    ``i`` of every run is ``data[i]``.
    """
    batch, k, n_iters, buffer_size = (
        size["batch"], size["k_steps"], size["n_iters"], size["buffer_size"]
    )  # fmt: skip
    data = data.view(n_iters, batch, *data.shape[1:]).to(device)
    event = tuple(data.shape[2:])
    model = _net_model(kind, impl, device)
    initial = {name: t.detach().clone() for name, t in model.state_dict().items()}
    info = {
        "weights_checksum": _checksum(model),
        "data_checksum": float(data.double().sum()),
        "data_source": data_source,
    }
    last_loss = {}
    sampler = None

    if impl in HAND:
        a, b = LANGEVIN_STEP, math.sqrt(2.0 * LANGEVIN_STEP)
        chain = hand_langevin_chain(model, a, b, compiled=impl == "hand_compiled")
        row_shape = (batch,) + (1,) * len(event)

        def setup():
            model.load_state_dict(initial)
            opt = torch.optim.Adam(model.parameters(), lr=PCD_LR)
            return opt, torch.randn(buffer_size, *event, device=device)

        def run(state):
            opt, buffer = state
            for i in range(n_iters):
                idx = torch.randint(buffer_size, (batch,), device=device)
                start = buffer[idx]
                restart = torch.rand(batch, device=device) < PCD_REINIT
                start = torch.where(restart.view(row_shape), torch.randn_like(start), start)
                neg = chain(start, k)
                buffer[idx] = neg
                loss = model(data[i]).mean() - model(neg).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            last_loss["value"] = float(loss.detach())

    else:
        (LangevinDynamics,) = _samplers_api("LangevinDynamics")
        (PCD,) = _import_api("PersistentContrastiveDivergence", module="torchebm.losses")
        sampler = _Sampler(
            LangevinDynamics, model, impl, device, step_size=LANGEVIN_STEP, noise_scale=1.0
        )
        if sampler.sample_extra:
            raise Unavailable(
                f"LangevinDynamics takes {sorted(sampler.sample_extra)} only in sample(), which "
                "PersistentContrastiveDivergence does not pass"
            )

        def setup():
            model.load_state_dict(initial)
            opt = torch.optim.Adam(model.parameters(), lr=PCD_LR)
            loss_fn = PCD(
                model=model, sampler=sampler.sampler, k_steps=k, buffer_size=buffer_size,
                new_sample_ratio=PCD_REINIT, init_steps=0, energy_reg_weight=0.0,
                device=torch.device(device),
            )  # fmt: skip
            return opt, loss_fn

        def run(state):
            opt, loss_fn = state
            for i in range(n_iters):
                loss, _ = loss_fn(data[i])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            last_loss["value"] = float(loss.detach())

    times = _time_runs(setup, run, repeats, warmup, device, info=info, compiled=impl in COMPILED)
    if sampler is not None:
        info.update(sampler.path_taken())
    if impl == "hand_eager" and kind in COMPUTE_BOUND_NETS:
        info.update(compute_bound(run, setup(), device))
    info["final_loss"] = last_loss.get("value")
    info.update(_compile_info(impl))
    return {"times_s": times, "work": n_iters, "info": info}


def ring_pcd(impl, size, repeats, warmup, device):
    """PCD on the 8-Gaussian ring with an MLP energy 2-128-128-1 (SiLU)."""
    data, source = ring_data(size["n_iters"] * size["batch"])
    return _pcd("ring", data, source, impl, size, repeats, warmup, device)


def conv_langevin(impl, size, repeats, warmup, device):
    """Langevin on the conv energy over [B, 1, 8, 8] states."""
    return _neural_langevin("conv", (1, CONV_SIDE, CONV_SIDE), impl, size, repeats, warmup, device)


def conv_pcd(impl, size, repeats, warmup, device):
    """PCD of the conv energy on fixed 8x8 bump images."""
    data = conv_data(size["n_iters"] * size["batch"])
    return _pcd("conv", data, "bench.workloads.conv_data", impl, size, repeats, warmup, device)


def normal_generation(impl, size, repeats, warmup, device):
    """Raw standard normals: our Philox op (fused) against ``torch.randn`` (the other columns).

    ``reference`` and ``torchebm089`` both time ``torch.randn`` (what TorchEBM 0.8.9 draws its
    noise with), in our venv and in 0.8.9's; the target compares fused with the 0.8.9 column.
    """
    n = size["n_normals"]
    if impl == "fused":
        import torchebm.kernels.ops as ops

        philox_normal = getattr(ops, "philox_normal", None)
        if philox_normal is None:
            raise Unavailable("torchebm.kernels.ops.philox_normal does not exist yet")
        counter = iter(range(10**9))

        def run(_):
            return philox_normal((n,), SEED, next(counter), dtype=torch.float32, device=device)

        info = {"op": "torchebm.kernels.ops.philox_normal"}
    else:

        def run(_):
            return torch.randn(n, dtype=torch.float32, device=device)

        info = {"op": "torch.randn"}
    times = _time_runs(lambda: None, run, repeats, warmup, device)
    return {"times_s": times, "work": n, "info": info}


# ---- GPU-only workloads (run with --device cuda; skipped with a message otherwise) -----------

LANGEVIN_BYTES_PER_ELEMENT = 12  # float32: read x, read grad, write x'; the noise is in-kernel


LAUNCHES_PER_RUN = 20  # back-to-back updates per timed run of the bandwidth workload


def gpu_langevin_bandwidth(impl, size, repeats, warmup, device):
    """Fused Langevin updates over 2^26 float32 elements: achieved bytes/s (12 B/element).

    A timed run is ``LAUNCHES_PER_RUN`` updates launched back to back, so that the GPU time of
    the kernel is measured, not the host's call and synchronisation (about as long as one
    0.3 ms update on the H100 hosts, and noisy)."""
    n = size["n_elements"]
    g = _generator(SEED)
    x = torch.randn(n, generator=g).to(device)
    grad = torch.randn(n, generator=g).to(device)
    step_size, noise_scale = 0.01, 1.0
    a, b = step_size, noise_scale * math.sqrt(2.0 * step_size)
    counter = iter(range(10**9))
    if impl == "fused":
        import torchebm.kernels.ops as ops

        def run(_):
            return ops.langevin_update(x, grad, None, a, b, seed=SEED, step=next(counter))

        info = {"op": "torchebm.kernels.ops.langevin_update"}
    elif impl == "torchebm089-triton":
        fused_langevin_step = _triton_089("fused_langevin_step")
        out_buf = torch.empty_like(x)

        def run(_):
            return fused_langevin_step(
                x, grad, step_size, noise_scale, seed=next(counter), out=out_buf
            )

        info = {"op": "torchebm.cuda.fused_langevin.fused_langevin_step"}
    else:
        raise Unavailable(f"impl {impl!r} has no standalone Langevin update op")

    def run_batch(_):
        for _ in range(LAUNCHES_PER_RUN):
            run(None)

    times = _time_runs(lambda: None, run_batch, repeats, warmup, device)
    info["bytes_per_element"] = LANGEVIN_BYTES_PER_ELEMENT
    info["launches_per_run"] = LAUNCHES_PER_RUN
    return {"times_s": times, "work": n * LAUNCHES_PER_RUN, "info": info}


def _triton_089(name: str):
    try:
        from torchebm.cuda import fused_langevin
    except ImportError as exc:  # the module imports triton at the top
        raise Unavailable(f"TorchEBM 0.8.9's Triton kernels need triton: {exc}") from exc
    return getattr(fused_langevin, name)


def gpu_doublewell_chain(impl, size, repeats, warmup, device):
    """Whole-chain double well, 4096 x 32 x 1000: our sampler against 0.8.9's sampler, and our
    chain op against 0.8.9's Triton chain function (each a kernel behind a thin wrapper)."""
    x0 = _initial_state(size["n_chains"], size["dim"], device).contiguous()
    n_steps = size["n_steps"]
    counter = iter(range(10**9))
    if impl == "torchebm089-triton":
        chain = _triton_089("doublewell_langevin_chain")
        # signature in 0.8.9: (x, n_steps, step_size, noise_scale=1.0, barrier_height=2.0,
        # b=1.0, seed=None); in place on a contiguous CUDA float32 x
        run = lambda x: chain(x, n_steps, LANGEVIN_STEP, 1.0, 2.0, 1.0, seed=next(counter))  # noqa: E731
        op = "torchebm.cuda.fused_langevin.doublewell_langevin_chain"
    elif impl == "fused-op":
        (DoubleWellModel,) = _import_api("DoubleWellModel", module="torchebm.core")
        from torchebm.kernels import ops
        from torchebm.samplers.mcmc_sampler import kernel_model

        spec, why = kernel_model(DoubleWellModel().to(device), x0)
        if spec is None:
            raise Unavailable(f"no chain kernel for DoubleWellModel: {why}")
        # The schedules, like the Triton function's scalars, are prepared once.
        a = torch.full((n_steps,), LANGEVIN_STEP, dtype=torch.float64, device=device)
        b = torch.full((n_steps,), math.sqrt(2.0 * LANGEVIN_STEP), dtype=torch.float64, device=device)
        run = lambda x: ops.langevin_chain(spec.name, x, a, b, spec.params, seed=next(counter))  # noqa: E731
        op = "torchebm.kernels.ops.langevin_chain"
    else:
        return doublewell_langevin(impl, size, repeats, warmup, device)
    times = _time_runs(setup=lambda: x0.clone(), run=run, repeats=repeats, warmup=warmup, device=device)
    return {"times_s": times, "work": size["n_chains"] * n_steps, "info": {"op": op}}


def gpu_mlp_cuda_graph(impl, size, repeats, warmup, device):
    """MLP Langevin on CUDA, our fused path with and without ``cuda_graph=True``."""
    return mlp_langevin(impl, size, repeats, warmup, device)


# ---- parallel tempering and AIS (docs/tempering_ais.md) ---------------------------------------

PT_BARRIER = 10.0  # 1-D double well h (x^2 - 1)^2: a barrier of 10 kT at beta = 1
PT_STEP = 0.02  # MALA, every temperature


def pt_doublewell(impl, size, repeats, warmup, device):
    """Parallel tempering (MALA base, geometric ladder down to beta 0.1, DEO swaps every 10
    steps) on the 1-D double well, chains started in the left well. ``info``: the round-trip
    rate (round trips of all replicas per ladder and swap round) and the per-pair swap
    acceptance rates of the last timed run, the cold chain's fraction in the right well."""
    DoubleWellModel, = _import_api("DoubleWellModel", module="torchebm.core")
    MALA, ParallelTempering, geometric_ladder = _samplers_api(
        "MALA", "ParallelTempering", "geometric_ladder")
    backend = "reference" if impl == "reference" else "auto"
    model = DoubleWellModel(barrier_height=PT_BARRIER).to(device)
    betas = geometric_ladder(size["n_temps"], 0.1)
    x0 = torch.full((size["n_chains"], 1), -1.0, device=device)
    last = {}

    def run(x):
        pt = ParallelTempering(MALA(model, step_size=PT_STEP, backend=backend), betas=betas,
                               swap_every=size["swap_every"])
        last["out"], last["diag"] = pt.sample(x=x, n_steps=size["n_steps"], return_diagnostics=True)
        # The chain route runs every temperature in one op call (the copies never sample).
        last["paths"] = (["chain"] if pt.last_route.path == "chain"
                         else sorted({c.last_path for c in pt.samplers}))

    times = _time_runs(lambda: x0.clone(), run, repeats, warmup, device)
    diag = last["diag"]
    info = {
        "round_trip_rate": float(diag.round_trip_rate),
        "swap_acceptance_rate": [round(float(r), 4) for r in diag.swap_acceptance_rate],
        "cold_right_well_fraction": float((last["out"] > 0).float().mean()),
        "n_temps": size["n_temps"],
        "last_path": ",".join(last["paths"]),
    }
    return {"times_s": times, "work": size["n_chains"] * size["n_steps"] * size["n_temps"],
            "info": info}


def ais_doublewell(impl, size, repeats, warmup, device):
    """AIS log Z of the 1-D double well (h = 4) from a N(0, 1) base, MALA transitions (step
    0.02, one per temperature), ``n_temps`` temperatures: its time against ``n_temps``.
    ``info``: the estimate and its standard error (the last timed run)."""
    DoubleWellModel, GaussianModel = _import_api("DoubleWellModel", "GaussianModel",
                                                 module="torchebm.core")
    MALA, AnnealedImportanceSampler = _samplers_api("MALA", "AnnealedImportanceSampler")
    backend = "reference" if impl == "reference" else "auto"
    model = DoubleWellModel(barrier_height=4.0).to(device)
    base = GaussianModel(torch.zeros(1), torch.eye(1)).to(device)
    last = {}

    def run(_):
        ais = AnnealedImportanceSampler(MALA(model, step_size=0.02, backend=backend),
                                        n_temps=size["n_temps"], base=base)
        last["result"] = ais.estimate(size["n_chains"], generator=_generator(SEED))

    times = _time_runs(lambda: None, run, repeats, warmup, device)
    result = last["result"]
    info = {"log_z": result.log_z, "log_z_se": result.log_z_se, "n_temps": size["n_temps"]}
    return {"times_s": times, "work": size["n_chains"] * size["n_temps"], "info": info}


# ---- the fixed host cost of a sample() call (issue 15) ----------------------------------------

OVERHEAD_LEAPFROG = 5  # HMC's leapfrog steps in sample_overhead's HMC figure


def sample_overhead(impl, size, repeats, warmup, device):
    """The fixed cost of one call: ``n_steps`` (1) Langevin step of ``n_chains`` (16) chains
    (d = 2, step 0.01, noise scale 1) of ``size["model"]``: the double well, or ``"mlp"``
    (mlp_langevin's 2-64-64-1 SELU network, which our sampler recognises and runs on the MLP
    chain kernel), so that the call's own work is small. A timed run makes ``n_calls`` calls
    on the same state (``work`` counts calls).

    ``fused``: our ``sample()``; ``torchebm089``: 0.8.9's; ``fused-op``: our whole-chain op
    called directly, schedules and network arguments prepared once (the floor under our
    sampler); ``torchebm089-triton``: 0.8.9's Triton chain function (CUDA, double well);
    ``hand_eager`` (MLP): one step of the hand-written loop. ``info``: microseconds per
    call (``us_per_call``) and, for the samplers, those of MALA (ours) and HMC
    (``OVERHEAD_LEAPFROG`` leapfrog steps) on the same chains, timed the same way."""
    x0 = _initial_state(size["n_chains"], size["dim"], device).contiguous()
    n_steps, n_calls = size["n_steps"], size["n_calls"]
    counter = iter(range(10**12))
    a = torch.full((n_steps,), LANGEVIN_STEP, dtype=torch.float64, device=device)
    b = torch.full((n_steps,), math.sqrt(2.0 * LANGEVIN_STEP), dtype=torch.float64, device=device)
    if size.get("model") == "mlp":
        model = _net_model("mlp", impl, device)
    else:
        (DoubleWellModel,) = _import_api("DoubleWellModel", module="torchebm.core")
        model = DoubleWellModel().to(device)
    if impl == "torchebm089-triton":
        if not device.startswith("cuda"):
            raise Unavailable("0.8.9's Triton chain function runs on CUDA only")
        chain = _triton_089("doublewell_langevin_chain")
        call = lambda x: chain(x, n_steps, LANGEVIN_STEP, 1.0, 2.0, 1.0, seed=next(counter))  # noqa: E731
        calls = {"langevin": call}
    elif impl == "fused-op" and size.get("model") == "mlp":
        from torchebm.kernels import mlp

        spec, why = mlp.recognise_mlp(model, x0)
        if spec is None:
            raise Unavailable(f"no MLP chain kernel for the network: {why}")
        net = spec.op_args()
        call = lambda x: mlp.mlp_langevin_chain(x, a=a, b=b, seed=next(counter), **net)  # noqa: E731
        calls = {"langevin": call}
    elif impl == "fused-op":
        from torchebm.kernels import ops
        from torchebm.samplers.mcmc_sampler import kernel_model

        spec, why = kernel_model(model, x0)
        if spec is None:
            raise Unavailable(f"no chain kernel for DoubleWellModel: {why}")
        call = lambda x: ops.langevin_chain(spec.name, x, a, b, spec.params, seed=next(counter))  # noqa: E731
        calls = {"langevin": call}
    elif impl == "hand_eager":
        chain = hand_langevin_chain(model, LANGEVIN_STEP, math.sqrt(2.0 * LANGEVIN_STEP), compiled=False)
        calls = {"langevin": lambda x: chain(x, n_steps)}
    else:
        names = ("LangevinDynamics", "HamiltonianMonteCarlo") + (("MALA",) if impl in OURS else ())
        classes = dict(zip(names, _samplers_api(*names)))
        samplers = {
            "langevin": _Sampler(classes["LangevinDynamics"], model, impl, device,
                                 step_size=LANGEVIN_STEP, noise_scale=1.0),
            "hmc": _Sampler(classes["HamiltonianMonteCarlo"], model, impl, device,
                            step_size=LANGEVIN_STEP, n_leapfrog_steps=OVERHEAD_LEAPFROG),
        }
        if "MALA" in classes:
            samplers["mala"] = _Sampler(classes["MALA"], model, impl, device, step_size=LANGEVIN_STEP)
        calls = {k: (lambda x, s=s: s.sample(x, n_steps)) for k, s in samplers.items()}

    def run_calls(call):
        def run(x):
            for _ in range(n_calls):
                call(x)
        return run

    info = {}
    times = {}
    for kind, call in calls.items():
        times[kind] = _time_runs(lambda: x0.clone(), run_calls(call), repeats, warmup, device)
        key = "us_per_call" if kind == "langevin" else f"{kind}_us_per_call"
        info[key] = round(statistics.median(times[kind]) / n_calls * 1e6, 2)
    if impl not in ("fused-op", "torchebm089-triton", "hand_eager"):
        info.update(sampler_path(samplers["langevin"].sampler))
    return {"times_s": times["langevin"], "work": n_calls, "info": info}


# ----------------------------------------------------------------------------------------------
# The registry: sizes, implementations and targets. ``run.py`` reads it; nothing here runs.

_CPU_IMPLS = ("fused", "reference", "torchebm089")
_CONV_IMPLS = ("fused", "compiled", "torchebm089") + HAND
# Ours (default path) never slower than the hand-written eager loop; the compiled backend
# >= 1.2x it.
_CONV_TARGETS = {"vs_hand_eager": 1.0, "compiled_vs_hand_eager": 1.2}
# Training iterations per timed run (a run of ~0.5-2 s on the 2-core reference machine).
RING_PCD_ITERS = 100
CONV_PCD_ITERS = {128: 4, 1024: 1}

WORKLOADS = {
    w.name: w
    for w in [
        Workload(
            "doublewell_langevin",
            doublewell_langevin,
            "Langevin, DoubleWellModel() default params, step 0.01",
            full={"n_chains": 4096, "dim": 32, "n_steps": 200},
            quick={"n_chains": 256, "dim": 32, "n_steps": 20},
            impls=_CPU_IMPLS,
            targets={"vs_torchebm089": 10.0, "vs_reference": 5.0},
        ),
        Workload(
            "gaussian_langevin",
            gaussian_langevin,
            "Langevin, 32-D Gaussian, dense SPD covariance (eig 0.5..2), step 0.05",
            full={"n_chains": 4096, "n_steps": 200, **_ess_sizes(256, 2000)},
            quick={"n_chains": 256, "n_steps": 20, **_ess_sizes(16, 200)},
            impls=_CPU_IMPLS,
            targets={"vs_torchebm089": 20.0},
        ),
        Workload(
            "gaussian_hmc",
            gaussian_hmc,
            "HMC, same Gaussian, step 0.1, 10 leapfrog steps",
            full={"n_chains": 1024, "n_steps": 50, **_ess_sizes(256, 500)},
            quick={"n_chains": 64, "n_steps": 5, **_ess_sizes(16, 100)},
            impls=_CPU_IMPLS,
            targets={"vs_torchebm089": 40.0},
        ),
        Workload(
            "gaussian_mala",
            gaussian_mala,
            "MALA, same Gaussian, step 0.05",
            full={"n_chains": 4096, "n_steps": 200, **_ess_sizes(256, 2000)},
            quick={"n_chains": 256, "n_steps": 20, **_ess_sizes(16, 200)},
            impls=("fused", "reference"),
            targets={},
            na={"torchebm089": "TorchEBM 0.8.9 has no MALA"},
        ),
        Workload(
            "illcond_hmc_fixed",
            illcond_hmc_fixed,
            "HMC, 32-D Gaussian with std 0.1..3 (log-spaced), step 0.1, 10 leapfrog steps",
            full={"n_chains": 1024, "n_steps": 50, **_ess_sizes(256, 500)},
            quick={"n_chains": 64, "n_steps": 5, **_ess_sizes(16, 100)},
            impls=("fused",),
            targets={},
            group="illcond_hmc",
        ),
        Workload(
            "illcond_hmc_adapted",
            illcond_hmc_adapted,
            "HMC, same Gaussian, after warmup(adapt='chees') from step 0.1, 10 leapfrog steps",
            full={"n_chains": 1024, "n_steps": 50, "warmup_steps": 500, **_ess_sizes(256, 500)},
            quick={"n_chains": 64, "n_steps": 5, "warmup_steps": 100, **_ess_sizes(16, 100)},
            impls=("fused",),
            targets={},
            group="illcond_hmc",
        ),
        Workload(
            "mlp_langevin",
            mlp_langevin,
            "Langevin, MLP energy 2-64-64-1 SELU (same weights), step 0.01",
            full={"n_chains": 8192, "n_steps": 100},
            quick={"n_chains": 512, "n_steps": 10},
            impls=_CPU_IMPLS + ("compiled",) + HAND,
            targets={"vs_torchebm089": 3.0, "vs_hand_eager": 2.5},
            gpu_targets={"vs_hand_eager": 10.0},
        ),
        Workload(
            "ring_pcd",
            ring_pcd,
            "PCD, MLP 2-128-128-1 SiLU on the 8-Gaussian ring, k=20 Langevin (step 0.01), "
            "5% restarts, Adam",
            full={"batch": 256, "k_steps": 20, "n_iters": RING_PCD_ITERS, "buffer_size": 10000},
            quick={"batch": 64, "k_steps": 5, "n_iters": 3, "buffer_size": 1000},
            impls=("fused", "torchebm089") + HAND,
            targets={"vs_torchebm089": 2.0},
            devices=("cpu",),
            unit="iterations",
        ),
        *[
            Workload(
                f"conv_langevin_b{batch}",
                conv_langevin,
                f"Langevin, conv energy 1-32-64-64 (3x3, SiLU) + linear on 8x8, step 0.01",
                full={"n_chains": batch, "n_steps": 20},
                quick={"n_chains": quick_batch, "n_steps": 3},
                impls=_CONV_IMPLS,
                targets=_CONV_TARGETS,
                devices=("cpu",),
                group="conv_langevin",
            )
            for batch, quick_batch in ((128, 16), (1024, 32))
        ],
        *[
            Workload(
                f"conv_pcd_b{batch}",
                conv_pcd,
                "PCD, same conv energy on fixed 8x8 bump images, k=20 Langevin (step 0.01), "
                "5% restarts, Adam",
                full={"batch": batch, "k_steps": 20, "n_iters": iters, "buffer_size": 10000},
                quick={"batch": quick_batch, "k_steps": 3, "n_iters": 2, "buffer_size": 256},
                impls=_CONV_IMPLS,
                targets=_CONV_TARGETS,
                devices=("cpu",),
                unit="iterations",
                group="conv_pcd",
            )
            for batch, quick_batch, iters in ((128, 16, CONV_PCD_ITERS[128]),
                                              (1024, 32, CONV_PCD_ITERS[1024]))  # fmt: skip
        ],
        Workload(
            "pt_doublewell",
            pt_doublewell,
            "Parallel tempering, MALA (step 0.02) on the 1-D double well (barrier 10 kT), "
            "geometric ladder to beta 0.1, DEO swaps every 10 steps",
            full={"n_chains": 1024, "n_temps": 8, "n_steps": 2000, "swap_every": 10},
            quick={"n_chains": 64, "n_temps": 4, "n_steps": 100, "swap_every": 10},
            impls=("fused", "reference"),
            targets={},
            na={"torchebm089": "TorchEBM 0.8.9 has no parallel tempering (it removed "
                               "ParallelTemperingCD)"},
            # work: chain-steps summed over the temperatures
        ),
        *[
            Workload(
                f"ais_doublewell_k{k}",
                ais_doublewell,
                f"AIS log Z, 1-D double well (h=4), N(0,1) base, MALA, {k} temperatures",
                full={"n_chains": 1024, "n_temps": k},
                quick={"n_chains": 64, "n_temps": max(k // 10, 2)},
                impls=("fused", "reference"),
                targets={},
                na={"torchebm089": "TorchEBM 0.8.9 has no AIS"},
                unit="chain-temperatures",
                group="ais_doublewell",
            )
            for k in (10, 100, 1000)
        ],
        Workload(
            "normal_generation",
            normal_generation,
            "2^24 float32 standard normals: Philox op vs torch.randn",
            full={"n_normals": 1 << 24},
            quick={"n_normals": 1 << 18},
            impls=_CPU_IMPLS,
            targets={"vs_torchebm089": 3.0},
            unit="normals",
        ),
        Workload(
            "gpu_langevin_bandwidth",
            gpu_langevin_bandwidth,
            "fused Langevin update, 2^26 float32 elements, 12 B/element",
            full={"n_elements": 1 << 26},
            quick={"n_elements": 1 << 20},
            impls=("fused", "torchebm089-triton"),
            targets={},
            devices=("cuda",),
            gpu_targets={"fraction_of_peak": 0.8},
            unit="elements",
        ),
        Workload(
            "gpu_doublewell_chain",
            gpu_doublewell_chain,
            "whole-chain double well on CUDA, step 0.01",
            full={"n_chains": 4096, "dim": 32, "n_steps": 1000},
            quick={"n_chains": 256, "dim": 32, "n_steps": 50},
            impls=("fused", "fused-op", "reference", "torchebm089", "torchebm089-triton"),
            targets={},
            devices=("cuda",),
            gpu_targets={"vs_torchebm089": 100.0, "op_vs_torchebm089_triton": 1.0},
        ),
        Workload(
            "gpu_mlp_cuda_graph",
            gpu_mlp_cuda_graph,
            "MLP Langevin on CUDA, with and without cuda_graph=True",
            full={"n_chains": 8192, "n_steps": 100},
            quick={"n_chains": 512, "n_steps": 10},
            impls=("fused", "fused-cudagraph", "reference", "torchebm089"),
            targets={},
            devices=("cuda",),
        ),
        Workload(
            "sample_overhead",
            sample_overhead,
            "host cost of one sample() call: 1 Langevin step of 16 double-well chains (d=2), "
            "work = calls",
            full={"n_chains": 16, "dim": 2, "n_steps": 1, "n_calls": 1000},
            quick={"n_chains": 16, "dim": 2, "n_steps": 1, "n_calls": 20},
            impls=("fused", "fused-op", "torchebm089", "torchebm089-triton"),
            targets={},
            unit="iterations",
        ),
        Workload(
            "mlp_sample_overhead",
            sample_overhead,
            "host cost of one sample() call on an MLP energy: 1 Langevin step of 16 chains of "
            "mlp_langevin's 2-64-64-1 network, work = calls",
            full={"n_chains": 16, "dim": 2, "n_steps": 1, "n_calls": 1000, "model": "mlp"},
            quick={"n_chains": 16, "dim": 2, "n_steps": 1, "n_calls": 20, "model": "mlp"},
            impls=("fused", "fused-op", "torchebm089", "hand_eager"),
            targets={},
            unit="iterations",
        ),
    ]
}

GROUPS: dict = {}
for _w in WORKLOADS.values():
    if _w.group:
        GROUPS.setdefault(_w.group, []).append(_w.name)


# ----------------------------------------------------------------------------------------------
# The worker.


def run_one(
    name: str, impl: str, quick: bool, repeats: int, warmup: int, device: str, traj_path: str
) -> dict:
    """Runs one workload for one implementation in this process; never raises."""
    result: dict = {"workload": name, "impl": impl, "device": device}
    try:
        identity = package_identity()
        result["identity"] = identity
        _check_package(impl, identity)
        workload = WORKLOADS[name]
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise Unavailable(f"torch {torch.__version__} here has no CUDA device")
            result["cuda_device_name"] = torch.cuda.get_device_name()
        size = workload.quick if quick else workload.full
        out = workload.fn(impl, size, repeats, warmup, device)
        trajectory = out.pop("trajectory", None)
        if trajectory is not None and traj_path:
            torch.save(trajectory, traj_path)
            result["trajectory_file"] = traj_path
        result.update(out)
        result["size"] = size
        result["status"] = "ok"
    except Unavailable as exc:
        result["status"] = "unavailable"
        result["reason"] = str(exc)
    except Exception as exc:
        if impl == "compiled":
            # Our opt-in compiled backend: not there yet, or failing on this model. Reported
            # as unavailable (with the traceback) rather than as a harness error.
            result["status"] = "unavailable"
            result["reason"] = f"backend='compiled' raised {type(exc).__name__}: {exc}"
            result["traceback"] = traceback.format_exc()
            return result  # reported, not raised: one failure must not sink the run
        # Ours raises NoKernelError for backend="fused" where no kernel applies (yet).
        no_kernel = type(exc).__name__ == "NoKernelError"
        result["status"] = "unavailable" if no_kernel else "error"
        result["reason"] = f"{type(exc).__name__}: {exc}"
        if not no_kernel:
            result["traceback"] = traceback.format_exc()
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run one benchmark workload (worker).")
    parser.add_argument("--workload", required=True, choices=sorted(WORKLOADS))
    parser.add_argument("--impl", required=True, choices=OURS + THEIRS + HAND)
    parser.add_argument("--result", required=True, help="where to write the result JSON")
    parser.add_argument("--traj", default="", help="where to save the ESS trajectory (.pt)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    result = run_one(
        args.workload, args.impl, args.quick, args.repeats, args.warmup, args.device, args.traj
    )
    result["platform"] = platform.platform()
    result["pid"] = os.getpid()
    with open(args.result, "w") as fh:
        json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
