"""Fingerprints of every op and every sampler path, for refactors that must not change results.

Runs a few hundred cases of (op or sampler, model, dtype, shape, seed, options) on the CPU and
hashes each case's output tensors (values, dtypes and shapes) with SHA-256::

    python scripts/result_hashes.py --write before.json     # on the old code
    python scripts/result_hashes.py --compare before.json   # on the new code: lists differences

The fingerprints depend on the CPU (the vector-maths clones differ in the last bit), so they
are compared on one machine, before and after a change; they are not committed as test data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from typing import Any, Callable, Iterator

import torch
from torch import nn

import torchebm.core as core
from torchebm.core import BaseModel, CosineScheduler, LinearScheduler
from torchebm.kernels import ops, reference
from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics, MetropolisAdjustedLangevin

DTYPES = (torch.float32, torch.float64)


def fingerprint(value: Any) -> str:
    digest = hashlib.sha256()

    def feed(v: Any) -> None:
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(v, dict):
            for k in sorted(v):
                digest.update(f"K{k}".encode())
                feed(v[k])
        elif isinstance(v, (tuple, list)):
            digest.update(f"L{len(v)}".encode())
            for item in v:
                feed(item)
        else:
            digest.update(f"V{v!r}".encode())

    feed(value)
    return digest.hexdigest()[:24]


def analytic_models(dtype: torch.dtype) -> Iterator[tuple[str, nn.Module, int]]:
    """(name, model, event dimension)."""
    g = torch.Generator().manual_seed(5)
    a = torch.randn(4, 4, generator=g, dtype=torch.float64)
    cov = (a @ a.T / 4 + torch.eye(4, dtype=torch.float64)).to(dtype)
    yield "gaussian", core.GaussianModel(torch.linspace(-1, 1, 4, dtype=dtype), cov, dtype=dtype), 4
    yield "double_well", core.DoubleWellModel(barrier_height=2.0, b=1.3, dtype=dtype), 3
    yield "harmonic", core.HarmonicModel(k=0.7, dtype=dtype), 3
    yield "rosenbrock", core.RosenbrockModel(a=1.0, b=5.0, dtype=dtype), 2
    yield "ackley", core.AckleyModel(dtype=dtype), 2
    yield "rastrigin", core.RastriginModel(a=3.0, dtype=dtype), 2
    yield "himmelblau", core.HimmelblauModel(dtype=dtype), 2
    yield "booth", core.BoothModel(dtype=dtype), 2
    yield "styblinski_tang", core.StyblinskiTangModel(dtype=dtype), 2


class SmallMLP(BaseModel):
    def __init__(self, dim: int, dtype: torch.dtype):
        super().__init__()
        torch.manual_seed(11)
        self.net = nn.Sequential(nn.Linear(dim, 16), nn.SiLU(), nn.Linear(16, 1)).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class Conditional(BaseModel):
    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        shift = 0.0 if y is None else y
        return 0.5 * ((x - shift) ** 2).sum(-1)


class PlainModule(nn.Module):
    """An nn.Module without gradient(): samplers fall back to autograd."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x**4 - 2 * x**2).sum(-1)


def op_cases() -> Iterator[tuple[str, Callable[[], Any]]]:
    for dtype in DTYPES:
        dn = str(dtype)[6:]
        for size in ([7], [33, 5], [1000, 3]):
            for seed, step in ((0, 0), (12345, 7), (-3, 2**31 + 5)):
                yield f"philox_normal/{dn}/{size}/{seed}/{step}", lambda s=size, se=seed, st=step, d=dtype: ops.philox_normal(s, se, st, d)
                yield f"philox_uniform/{dn}/{size}/{seed}/{step}", lambda s=size, se=seed, st=step, d=dtype: ops.philox_uniform(s, se, st, d)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(65, 3, generator=g, dtype=dtype)
        grad = torch.randn(65, 3, generator=g, dtype=dtype) * 3
        noise = torch.randn(65, 3, generator=g, dtype=dtype)
        for nz in (None, noise):
            for clamp in ((None, None), (-0.5, 0.7)):
                for clip in (None, 1.0):
                    name = f"langevin_update/{dn}/noise={nz is not None}/clamp={clamp}/clip={clip}"
                    yield name, lambda nz=nz, c=clamp, cl=clip, x=x, g_=grad: ops.langevin_update(x, g_, nz, 0.03, 0.2, c[0], c[1], cl, 99, 4)
        p = torch.randn(65, 3, generator=g, dtype=dtype)
        for inv in (None, torch.tensor(2.0, dtype=dtype), torch.tensor([0.5, 1.0, 2.0], dtype=dtype)):
            yield f"leapfrog_kick_drift/{dn}/inv={None if inv is None else tuple(inv.shape)}", lambda inv=inv, x=x, p=p, g_=grad: ops.leapfrog_kick_drift(x, p, g_, 0.05, 0.1, inv)
        ratio = torch.randn(65, generator=g, dtype=dtype)
        ratio[3] = float("nan")
        xp = torch.randn(65, 3, generator=g, dtype=dtype)
        u = torch.rand(65, generator=g, dtype=dtype)
        for uu in (None, u):
            yield f"metropolis_select/{dn}/u={uu is not None}", lambda uu=uu, r=ratio, x=x, xp=xp: ops.metropolis_select(r, x, xp, uu, 7, 3)
            ex = torch.randn(65, generator=g, dtype=dtype)
            ey = ex + 0.1 * torch.randn(65, generator=g, dtype=dtype)
            gy = torch.randn(65, 3, generator=g, dtype=dtype)
            yield f"mala_select/{dn}/u={uu is not None}", lambda uu=uu, x=x, xp=xp, g_=grad, gy=gy, ex=ex, ey=ey: ops.mala_select(x, xp, g_, gy, ex, ey, 0.01, 0.14, uu, 8, 2)
        for name, model, d in analytic_models(dtype):
            spec = ops.kernel_args(model.kernel_spec(), dtype)
            xs = torch.randn(40, d, generator=g, dtype=dtype)
            yield f"analytic_energy_grad/{dn}/{name}", lambda s=spec, xs=xs: ops.analytic_energy_grad(s[0], xs, s[1], s[2], s[3])
            n = 12
            a = torch.full((n,), 0.01, dtype=torch.float64)
            b = torch.linspace(0.05, 0.15, n, dtype=torch.float64)
            for thin, rec in ((1, False), (3, True)):
                yield f"langevin_chain/{dn}/{name}/thin={thin}/rec={rec}", lambda s=spec, xs=xs, t=thin, r=rec: ops.langevin_chain(s[0], xs, a, b, s[1], s[2], s[3], -3.0, 3.0, 5.0, 21, t, r, r)
                yield f"mala_chain/{dn}/{name}/thin={thin}/rec={rec}", lambda s=spec, xs=xs, t=thin, r=rec: ops.mala_chain(s[0], xs, a, b, s[1], s[2], s[3], 22, t, r, r)
                for inv in (None, torch.full((d,), 1.5, dtype=dtype)):
                    yield f"hmc_chain/{dn}/{name}/thin={thin}/rec={rec}/inv={inv is not None}", lambda s=spec, xs=xs, t=thin, r=rec, inv=inv: ops.hmc_chain(s[0], xs, a, 4, inv, s[1], s[2], s[3], 23, t, r, r)
            yield f"reference.analytic_energy_grad/{dn}/{name}", lambda s=spec, xs=xs: reference.analytic_energy_grad(s[0], xs, s[1], s[2], s[3])


def _diag_fields(diag: Any) -> dict:
    out = {}
    for key in ("mean", "var", "energy", "acceptance_rate", "chain_energy"):
        try:
            out[key] = diag[key]
        except (KeyError, TypeError):
            pass
    return out


def sampler_cases() -> Iterator[tuple[str, Callable[[], Any]]]:
    samplers = {
        "langevin": lambda m, **kw: LangevinDynamics(m, step_size=0.02, noise_scale=0.9, **kw),
        "langevin_clamp": lambda m, **kw: LangevinDynamics(m, step_size=0.05, noise_scale=1.0, clamp=(-1.0, 1.2), grad_clip=2.0, **kw),
        "langevin_noise_std_sched": lambda m, **kw: LangevinDynamics(m, step_size=LinearScheduler(0.05, 0.01, 10), noise_std=CosineScheduler(0.3, 0.05, 10), **kw),
        "mala": lambda m, **kw: MetropolisAdjustedLangevin(m, step_size=0.05, **kw),
        "mala_sched": lambda m, **kw: MetropolisAdjustedLangevin(m, step_size=LinearScheduler(0.1, 0.02, 8), noise_scale=0.8, **kw),
        "hmc": lambda m, **kw: HamiltonianMonteCarlo(m, step_size=0.05, n_leapfrog_steps=3, **kw),
        "hmc_mass": lambda m, **kw: HamiltonianMonteCarlo(m, step_size=0.04, n_leapfrog_steps=2, mass=torch.tensor([1.0, 2.0]), **kw),
        "hmc_scalar_mass_sched": lambda m, **kw: HamiltonianMonteCarlo(m, step_size=LinearScheduler(0.08, 0.02, 6), n_leapfrog_steps=4, mass=1.7, **kw),
    }
    for dtype in DTYPES:
        dn = str(dtype)[6:]
        models = [(n, m, d) for n, m, d in analytic_models(dtype) if n in ("gaussian", "double_well", "rosenbrock")]
        models += [("mlp", SmallMLP(2, dtype), 2), ("plain_module", PlainModule(), 2)]
        for mname, model, d in models:
            for sname, make in samplers.items():
                if sname == "hmc_mass" and d != 2:
                    continue
                for backend in ("auto", "fused", "reference"):
                    for opts in ("final", "traj_thin2", "diag"):
                        key = f"sampler/{sname}/{mname}/{dn}/{backend}/{opts}"

                        def run(make=make, model=model, backend=backend, opts=opts, d=d, dtype=dtype):
                            sampler = make(model, dtype=dtype, backend=backend)
                            g = torch.Generator().manual_seed(1234)
                            kw: dict = {}
                            if opts == "traj_thin2":
                                kw = dict(return_trajectory=True, thin=2)
                            elif opts == "diag":
                                kw = dict(return_diagnostics=True)
                            out = sampler.sample(dim=d, n_samples=9, n_steps=10, generator=g, **kw)
                            x0 = torch.randn(5, d, generator=torch.Generator().manual_seed(3), dtype=dtype)
                            out2 = sampler.sample(x=x0, n_steps=4, generator=torch.Generator().manual_seed(4), reset_schedulers=False)
                            torch.manual_seed(77)
                            out3 = sampler.sample(dim=d, n_samples=3, n_steps=3)
                            if opts == "diag":
                                out = (out[0], _diag_fields(out[1]))
                            return out, out2, out3, sampler.last_path

                        yield key, run
    # conditional model (model_kwargs / y) on every sampler
    for sname, make in samplers.items():
        for backend in ("auto", "reference"):
            def run(make=make, backend=backend):
                sampler = make(Conditional(), backend=backend)
                y = torch.linspace(-1, 1, 6).unsqueeze(-1)
                return sampler.sample(dim=2, n_samples=6, n_steps=5, y=y, generator=torch.Generator().manual_seed(9)), sampler.last_path

            yield f"sampler/{sname}/conditional/{backend}", run
    # n_steps=0, 1-D x
    for sname, make in samplers.items():
        def run(make=make):
            sampler = make(core.DoubleWellModel())
            return sampler.sample(x=torch.tensor([0.3, -0.2]), n_steps=5, generator=torch.Generator().manual_seed(2)), sampler.sample(dim=2, n_samples=4, n_steps=0, generator=torch.Generator().manual_seed(2))

        yield f"sampler/{sname}/unbatched_and_zero_steps", run


def training_cases() -> Iterator[tuple[str, Callable[[], Any]]]:
    from torchebm.losses import ContrastiveDivergence, PersistentContrastiveDivergence

    for name, cls in (("cd", ContrastiveDivergence), ("pcd", PersistentContrastiveDivergence)):
        def run(cls=cls):
            torch.manual_seed(0)
            model = SmallMLP(2, torch.float32)
            sampler = LangevinDynamics(model, step_size=0.01, noise_scale=1.0)
            loss_fn = cls(model=model, sampler=sampler, k_steps=5)
            opt = torch.optim.SGD(model.parameters(), lr=0.01)
            data = torch.randn(32, 2, generator=torch.Generator().manual_seed(1))
            losses = []
            for _ in range(3):
                opt.zero_grad()
                loss, neg = loss_fn(data)
                loss.backward()
                opt.step()
                losses.append(loss.detach())
                losses.append(neg)
            return losses, [p.detach() for p in model.parameters()]

        yield f"training/{name}", run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--write", metavar="FILE")
    group.add_argument("--compare", metavar="FILE")
    args = parser.parse_args()
    torch.set_num_threads(2)
    hashes = {}
    for source in (op_cases, sampler_cases, training_cases):
        for name, fn in source():
            try:
                hashes[name] = fingerprint(fn())
            except Exception as exc:  # an error is a result too
                hashes[name] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
    if args.write:
        with open(args.write, "w") as fh:
            json.dump(hashes, fh, indent=0, sort_keys=True)
        print(f"{len(hashes)} cases written to {args.write}")
        return 0
    with open(args.compare) as fh:
        before = json.load(fh)
    changed = sorted(k for k in before.keys() & hashes.keys() if before[k] != hashes[k])
    missing = sorted(before.keys() - hashes.keys())
    new = sorted(hashes.keys() - before.keys())
    for k in changed:
        print(f"CHANGED {k}: {before[k]} -> {hashes[k]}")
    for k in missing:
        print(f"MISSING {k}")
    for k in new:
        print(f"NEW {k}: {hashes[k]}")
    same = len(before.keys() & hashes.keys()) - len(changed)
    print(f"{same} identical, {len(changed)} changed, {len(missing)} missing, {len(new)} new")
    return 1 if changed or missing else 0


if __name__ == "__main__":
    sys.exit(main())
