"""Names of TorchEBM 0.8.9 that this package does not provide, and the ImportError that says so.

TorchEBM 0.8.9 also ships flow matching, equilibrium and energy matching, diffusion transformers,
interpolants, couplings, Riemannian-manifold HMC and ODE/SDE solvers for flow samplers; this
package covers the energy-based-model core (models, MCMC samplers, contrastive divergence and
score matching losses, schedulers, diagnostics). Importing one of those names (``import
torchebm.models``, ``from torchebm.losses import FlowMatchingLoss``) raises an ``ImportError``
that names what is missing, instead of an ``AttributeError`` from deep inside.
"""

from __future__ import annotations

_FLOW = "flow matching"
_EQM = "equilibrium and energy matching"
_INTEGRATORS = "ODE/SDE solvers for flow and diffusion samplers"

# module -> {name: the topic it belongs to}
NAMES: dict[str, dict[str, str]] = {
    "torchebm": {
        "models": "the neural network models (DiT, transformers, time-conditioned MLPs)",
        "interpolants": "interpolants (flow matching)",
        "couplings": "couplings (flow matching, optimal transport)",
        "cuda": "the torchebm.cuda module (the samplers here run fused C++/CUDA kernels themselves)",
    },
    "torchebm.losses": {
        "FlowMatchingLoss": _FLOW,
        "EnergyMatchingLoss": _EQM,
        "EquilibriumMatchingLoss": _EQM,
        "compute_eqm_ct": _EQM,
        "compute_flow_weight": _FLOW,
        "dispersive_loss": _FLOW,
        "get_interpolant": "interpolants (flow matching)",
        "mean_flat": _FLOW,
        "trimmed_mean": _FLOW,
    },
    "torchebm.samplers": {
        "FlowSampler": _FLOW,
        "PredictionType": _FLOW,
        "RiemannianManifoldHMC": "Riemannian-manifold HMC (the generalised leapfrog)",
    },
    "torchebm.core": {
        "BaseCoupling": "couplings (flow matching)",
        "BaseCostCoupling": "couplings (flow matching)",
        "BaseModelCoupling": "couplings (flow matching)",
        "CouplingResult": "couplings (flow matching)",
        "BaseInterpolant": "interpolants (flow matching)",
        "expand_t_like_x": "interpolants (flow matching)",
        "BaseIntegrator": _INTEGRATORS,
        "BaseRungeKuttaIntegrator": _INTEGRATORS,
        "BaseSDERungeKuttaIntegrator": _INTEGRATORS,
        "BaseSymplecticIntegrator": _INTEGRATORS,
        "TemperatureScheduler": _EQM,
    },
    "torchebm.integrators": {
        name: _INTEGRATORS
        for name in (
            "get_integrator", "resolve_integrator", "BackwardEulerMaruyamaIntegrator",
            "HeunIntegrator", "GeneralisedLeapfrogIntegrator", "Dopri5Integrator",
            "Dopri8Integrator", "RK4Integrator", "RK438Integrator", "MidpointIntegrator",
            "AdaptiveHeunIntegrator", "Bosh3Integrator",
        )
    },
    "torchebm.utils": {"profile_context": "the profiling helpers"},
}


def not_provided(module: str, name: str) -> ImportError:
    """The ImportError for ``module.name``, a TorchEBM 0.8.9 name this package leaves out."""
    topic = NAMES[module][name]
    return ImportError(
        f"{module}.{name} is not part of this package: torchebm-fused implements TorchEBM's "
        f"energy-based-model core (models, MCMC samplers, contrastive divergence and score "
        f"matching, schedulers), not {topic}. See docs/migration.md."
    )


def module_getattr(module: str):
    """A module-level ``__getattr__`` for ``module``: an ImportError for its left-out names, the
    usual AttributeError for any other."""

    def __getattr__(name: str):
        if name in NAMES.get(module, {}):
            raise not_provided(module, name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
