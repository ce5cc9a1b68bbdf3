"""torchebm.diagnostics against ArviZ: ESS, MCSE and R-hat agree to 1e-6 relative.

Every method of ``arviz.ess``, ``arviz.rhat`` and ``arviz.mcse`` is compared on fixed draws of
several kinds: good (i.i.d. normal; a real HMC run of our sampler), poor (a strongly
autocorrelated AR(1), phi = 0.99), non-converged (chains in two modes), an odd number of
draws (split chains drop the middle draw), ties (integer draws: average ranks), float32 draws,
and several event shapes. ArviZ takes one variable ``[chain, draw]`` at a time; ours computes
all event elements at once. Nested R-hat (not in ArviZ 0.x) is checked against a direct NumPy
transcription of its definition (Margossian et al. 2024, eqs. 15-19) and known properties.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)  # ArviZ 0.x announces its 1.0 refactor
    az = pytest.importorskip("arviz")

from torchebm.core import GaussianModel
from torchebm.diagnostics import (
    ESS_METHODS,
    MCSE_METHODS,
    RHAT_METHODS,
    ess,
    mcse,
    nested_rhat,
    rhat,
    to_arviz,
)
from torchebm.samplers import HamiltonianMonteCarlo

RTOL = 1e-6

# prob of the methods that take one (ArviZ's keyword), per method.
ESS_PROBS = {"quantile": [0.05, 0.3, 0.5, 0.97], "local": [(0.2, 0.7)], "tail": [None, 0.1]}
MCSE_PROBS = {"quantile": [0.05, 0.3, 0.9]}


def _ar1(m: int, n: int, phi: float, seed: int, *event: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    e = rng.standard_normal((m, n, *event))
    y = np.empty_like(e)
    y[:, 0] = e[:, 0]
    for t in range(1, n):
        y[:, t] = phi * y[:, t - 1] + math.sqrt(1 - phi * phi) * e[:, t]
    return y


def _hmc_draws() -> np.ndarray:
    model = GaussianModel(torch.zeros(3), torch.diag(torch.tensor([1.0, 0.25, 4.0])))
    x0 = torch.randn(4, 3, generator=torch.Generator().manual_seed(3))
    traj = HamiltonianMonteCarlo(model, step_size=0.25, n_leapfrog_steps=6).sample(
        x=x0, n_steps=300, return_trajectory=True, generator=torch.Generator().manual_seed(4)
    )
    return traj.double().numpy()  # [4 chains, 300 draws, 3]


def _datasets() -> dict:
    rng = np.random.default_rng(0)
    modes = rng.standard_normal((4, 400, 2)) + np.array([0.0, 0.0, 3.0, 3.0])[:, None, None]
    return {
        "iid": rng.standard_normal((4, 500)),
        "hmc": _hmc_draws(),
        "ar1_poor": _ar1(4, 1000, 0.99, 1, 2),
        "two_modes": modes,
        "odd_draws": rng.standard_normal((3, 101, 2, 3)) * np.arange(1, 4),
        "ties": rng.integers(0, 4, size=(4, 120)).astype(np.float64),
        "float32": rng.standard_normal((2, 64, 2)).astype(np.float32).astype(np.float64),
    }


DATASETS = _datasets()


def _elements(x: np.ndarray):
    """(index, [chain, draw] array) per event element."""
    for index in itertools.product(*map(range, x.shape[2:])):
        yield index, x[(slice(None), slice(None), *index)]


def _compare(ours: torch.Tensor, reference, x: np.ndarray, label: str) -> float:
    """Max relative difference of ``ours`` (shape event) from ``reference(x_element)``."""
    assert ours.shape == x.shape[2:] and ours.dtype == torch.float64, label
    worst = 0.0
    for index, element in _elements(x):
        expected = float(reference(element))
        got = float(ours[index])
        assert math.isfinite(expected), f"{label}{index}: ArviZ gave {expected}"
        diff = abs(got - expected) / abs(expected) if expected != 0 else abs(got)
        assert diff <= RTOL, f"{label}{index}: ours {got!r}, ArviZ {expected!r}"
        worst = max(worst, diff)
    return worst


def _cases(methods, probs):
    return [(m, p) for m in methods for p in probs.get(m, [None])]


@pytest.mark.parametrize("name", DATASETS)
def test_ess_matches_arviz_for_every_method(name):
    x = DATASETS[name]
    draws = torch.from_numpy(x)
    for method, prob in _cases(ESS_METHODS, ESS_PROBS):
        # ArviZ gives constant draws an ESS of m*n even when relative (see the test below);
        # the integer draws make the tail indicators constant.
        for relative in (False, True) if name != "ties" else (False,):
            kwargs = {} if prob is None else {"prob": prob}
            worst = _compare(
                ess(draws, method, relative=relative, **kwargs),
                lambda e: az.ess(e, method=method, relative=relative, **kwargs),
                x,
                f"{name} ess {method} {prob} relative={relative}",
            )
            print(f"{name:10s} ess {method:9s} prob={prob} rel={relative}: {worst:.1e}")


@pytest.mark.parametrize("name", DATASETS)
def test_rhat_matches_arviz_for_every_method(name):
    x = DATASETS[name]
    for method in RHAT_METHODS:
        worst = _compare(
            rhat(torch.from_numpy(x), method), lambda e: az.rhat(e, method=method), x,
            f"{name} rhat {method}",
        )  # fmt: skip
        print(f"{name:10s} rhat {method:8s}: {worst:.1e}")


@pytest.mark.parametrize("name", DATASETS)
def test_mcse_matches_arviz_for_every_method(name):
    x = DATASETS[name]
    for method, prob in _cases(MCSE_METHODS, MCSE_PROBS):
        kwargs = {} if prob is None else {"prob": prob}
        worst = _compare(
            mcse(torch.from_numpy(x), method, **kwargs),
            lambda e: az.mcse(e, method=method, **kwargs), x, f"{name} mcse {method} {prob}",
        )  # fmt: skip
        print(f"{name:10s} mcse {method:8s} prob={prob}: {worst:.1e}")


def test_relative_ess_of_constant_draws_is_one_where_arviz_says_m_times_n():
    """Deliberate difference: ArviZ returns the number of draws for constant draws whatever
    ``relative`` says; the ESS per draw of constant draws is 1 here."""
    x = np.ones((2, 10))
    assert az.ess(x, relative=True) == 20
    assert float(ess(torch.from_numpy(x), relative=True)) == 1.0
    assert float(ess(torch.from_numpy(x))) == 20.0


def test_the_non_converged_draws_are_flagged_and_the_poor_ones_have_low_ess():
    """The datasets are what their names say (so the comparisons cover those regimes)."""
    assert float(rhat(torch.from_numpy(DATASETS["two_modes"])).min()) > 1.5
    assert float(rhat(torch.from_numpy(DATASETS["iid"]))) < 1.01
    # AR(1) with phi = 0.99: tau = 199, so 4000 draws hold about 20 effective ones.
    assert float(ess(torch.from_numpy(DATASETS["ar1_poor"]), "mean").max()) < 100


def test_to_arviz_round_trips_and_arviz_reads_the_same_ess():
    model = GaussianModel(torch.zeros(2), torch.eye(2))
    x0 = torch.randn(4, 2, generator=torch.Generator().manual_seed(5))
    traj, diag = HamiltonianMonteCarlo(model, step_size=0.3, n_leapfrog_steps=4).sample(
        x=x0, n_steps=200, return_trajectory=True, return_diagnostics=True,
        generator=torch.Generator().manual_seed(6),
    )  # fmt: skip
    data = to_arviz(traj, diag, var_name="theta")
    assert isinstance(data, az.InferenceData)
    posterior = data.posterior["theta"]
    assert posterior.dims[:2] == ("chain", "draw") and posterior.shape == (4, 200, 2)
    np.testing.assert_array_equal(posterior.values, traj.double().numpy())
    # The per-chain energies as ArviZ's lp = -E(x), and the chain-mean acceptance per step.
    energy = model(traj.reshape(-1, 2)).reshape(4, 200).double()
    np.testing.assert_allclose(data.sample_stats["lp"].values, -energy.numpy(), rtol=1e-5)
    rate = data.sample_stats["mean_acceptance_rate"].values
    np.testing.assert_array_equal(rate, diag["acceptance_rate"].double().expand(4, -1).numpy())
    for method in ("bulk", "tail", "mean"):
        theirs = az.ess(data, method=method)["theta"].values
        np.testing.assert_allclose(ess(traj, method).numpy(), theirs, rtol=RTOL)
        np.testing.assert_allclose(diag.ess(method).numpy(), theirs, rtol=RTOL)
    np.testing.assert_allclose(
        diag.rhat().numpy(), az.rhat(data)["theta"].values, rtol=RTOL
    )
    # Without a trajectory: the diagnostics' draws; per-chain statistics given directly.
    data = to_arviz(diagnostics=diag, energy=energy, acceptance_rate=torch.ones(4, 200))
    np.testing.assert_array_equal(data.posterior["x"].values, traj.double().numpy())
    assert float(data.sample_stats["acceptance_rate"].min()) == 1.0
    with pytest.raises(ValueError, match=r"energy must have shape \[n_chains, n_draws\]"):
        to_arviz(traj, energy=torch.zeros(200, 4))


def test_to_arviz_without_arviz_says_how_to_install_it(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_arviz(name, *args, **kwargs):
        if name == "arviz":
            raise ImportError("No module named 'arviz'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_arviz)
    with pytest.raises(ImportError, match=r"to_arviz needs ArviZ.*pip install 'arviz>=0\.23,<1'"):
        to_arviz(torch.zeros(2, 10))


# ------------------------------------------------------------------ nested R-hat
def _nested_rhat_numpy(x: np.ndarray, ids) -> float:
    """Nested R-hat of one variable ``x`` [chains, draws], written from the paper's equations
    (superchain means, overall mean, between-superchain variance, within-superchain variance
    as between-chain plus within-chain variance, nR = sqrt(1 + B/W)), with loops."""
    ids = list(ids)
    labels = sorted(set(ids))
    n = x.shape[1]
    superchain_means, within_terms = [], []
    for label in labels:
        chains = [x[c] for c in range(len(ids)) if ids[c] == label]
        means = [sum(chain) / n for chain in chains]
        superchain_means.append(sum(means) / len(means))
        between = 0.0
        if len(chains) > 1:
            between = sum((mu - superchain_means[-1]) ** 2 for mu in means) / (len(chains) - 1)
        within = 0.0
        if n > 1:
            within = sum(
                sum((v - mu) ** 2 for v in chain) / (n - 1) for chain, mu in zip(chains, means)
            ) / len(chains)
        within_terms.append(between + within)
    overall = sum(superchain_means) / len(labels)
    b = sum((mu - overall) ** 2 for mu in superchain_means) / (len(labels) - 1)
    w = sum(within_terms) / len(labels)
    return math.sqrt(1.0 + b / w)


@pytest.mark.parametrize(
    "shape, ids",
    [
        ((8, 50, 2), [0, 0, 1, 1, 2, 2, 3, 3]),
        ((6, 1, 3), [5, 9, 5, 9, 5, 9]),  # one draw per chain, labels in any order
        ((4, 30), [0, 1, 2, 3]),  # one chain per superchain
    ],
)
def test_nested_rhat_matches_its_definition(shape, ids):
    rng = np.random.default_rng(7)
    x = rng.standard_normal(shape) + rng.standard_normal(shape[0])[(...,) + (None,) * (len(shape) - 1)]
    ours = nested_rhat(torch.from_numpy(x), ids)
    assert ours.shape == shape[2:]
    for index, element in _elements(x):
        expected = _nested_rhat_numpy(element, ids)
        assert abs(float(ours[index]) / expected - 1) < 1e-12, (index, float(ours[index]), expected)


def test_nested_rhat_with_one_chain_per_superchain_is_the_classic_rhat_plus_one_over_n():
    """M = 1: nR^2 = 1 + var(means)/W and R^2 = (n-1)/n + var(means)/W, so nR^2 = R^2 + 1/n."""
    x = DATASETS["two_modes"]
    n = x.shape[1]
    nested = nested_rhat(torch.from_numpy(x), list(range(x.shape[0])))
    classic = rhat(torch.from_numpy(x), "identity")
    torch.testing.assert_close(nested**2, classic**2 + 1.0 / n, rtol=1e-12, atol=0)


def test_nested_rhat_flags_superchains_in_different_modes_only():
    """Many short chains (64 superchains x 16 chains x 10 draws). Same target everywhere: the
    between-superchain variance is that of means of 160 i.i.d. draws, so B/W is about 1/160
    and nR about 1.003; superchains 0-31 shifted by 2: B/W about 1, nR about 1.4."""
    rng = np.random.default_rng(8)
    ids = np.repeat(np.arange(64), 16)
    x = rng.standard_normal((64 * 16, 10))
    mixed = float(nested_rhat(torch.from_numpy(x), ids))
    shifted = x + 2.0 * (ids < 32)[:, None]
    stuck = float(nested_rhat(torch.from_numpy(shifted), torch.from_numpy(ids)))
    print(f"nested R-hat: mixed {mixed:.4f}, two modes {stuck:.4f}")
    assert 1.0 < mixed < 1.01 and stuck > 1.3


def test_nested_rhat_rejects_bad_superchains():
    x = torch.zeros(4, 5).normal_()
    with pytest.raises(ValueError, match=r"one label per chain \(4\), got 3"):
        nested_rhat(x, [0, 0, 1])
    with pytest.raises(ValueError, match="at least 2 superchains"):
        nested_rhat(x, [0, 0, 0, 0])
    with pytest.raises(ValueError, match=r"same number of chains, got sizes \{0: 3, 1: 1\}"):
        nested_rhat(x, [0, 0, 0, 1])
    with pytest.raises(ValueError, match="more than 1 draw per chain"):
        nested_rhat(x[:, :1], [0, 1, 2, 3])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_diagnostics_run_on_the_draws_device():
    x = torch.from_numpy(DATASETS["odd_draws"])
    for fn, method in [(ess, "bulk"), (ess, "tail"), (ess, "mad"), (rhat, "rank"), (mcse, "sd"),
                       (mcse, "quantile")]:  # fmt: skip
        kwargs = {"prob": 0.2} if method == "quantile" else {}
        on_gpu = fn(x.cuda(), method, **kwargs)
        assert on_gpu.device.type == "cuda"
        torch.testing.assert_close(on_gpu.cpu(), fn(x, method, **kwargs), rtol=1e-10, atol=0)
