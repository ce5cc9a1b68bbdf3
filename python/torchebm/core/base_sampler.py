"""``BaseSampler``: the base class of every MCMC sampler, built-in or user-written.

A sampler holds a model (``E: [B, *event] -> [B]``), the schedulers of its hyper-parameters and
the dtype and device of its chain state. A custom sampler subclasses it and implements
:meth:`BaseSampler.sample` (TorchEBM's documented contract)::

    class MySampler(BaseSampler):
        def __init__(self, model, step_size=0.1, dtype=torch.float32, device=None):
            super().__init__(model=model, dtype=dtype, device=device)
            self.register_scheduler("step_size", ConstantScheduler(step_size))

        @torch.no_grad()
        def sample(self, x=None, dim=10, n_steps=100, n_samples=1, ...):
            self.reset_schedulers()
            x = self._init_state(x, dim, n_samples)
            for _ in range(n_steps):
                eta = self.get_scheduled_value("step_size")
                x = x - eta * self.model.gradient(x) + (2 * eta) ** 0.5 * torch.randn_like(x)
                self.step_schedulers()
            return x

The old keyword ``energy_function=`` is accepted for ``model=``, and ``sampler.energy_function``
reads and replaces ``sampler.model``.

Dtype (the rule; TorchEBM 0.8.9 takes the chain dtype from the model's first parameter and casts
``x`` to it):

* an explicit ``dtype=`` is honoured: the chains a call returns have that dtype;
* otherwise a call with a floating ``x`` returns chains of ``x``'s dtype;
* otherwise (no ``x``, or an integer one) the model's floating parameter dtype (a parameter-less
  :class:`~torchebm.core.TorchEBMModule` model: its ``dtype``, which follows ``model.double()``);
* otherwise ``torch.get_default_dtype()``.

``sampler.dtype`` is the dtype of a call without ``x``. A model whose parameters have another
dtype than the chains is evaluated in its own dtype (the state is cast for the call, and energies
and gradients are cast back); with an explicit ``dtype=`` that differs from the model's, a
one-time ``UserWarning`` says so.

Half dtypes (``float16``, ``bfloat16``), whichever way the rule picks them: the chain is
integrated in float32 (the update ``x - a*g + b*xi`` loses the small steps in half precision)
and the result (final state or trajectory) is returned in the half dtype; diagnostics stay in
float32. An explicit half ``dtype=`` also evaluates the model under ``torch.autocast`` in that
dtype, on the CPU as on CUDA (:meth:`~torchebm.core.TorchEBMModule.setup_mixed_precision`, which
also serves a float32 sampler); a half model is evaluated in its own dtype.

Device: ``device=`` moves the model there (the model is a submodule, so ``sampler.to(device)``
moves it too); without it the sampler lives where the model does (else on the default device).
A starting state ``x`` of another dtype, or on another CPU/CUDA device, is cast to the chain
dtype and moved to the sampler's device; one on any other device (``meta``...) or of a complex
dtype raises ``ValueError``/``TypeError``.

Checkpoints: a sampler's ``state_dict`` holds its model's (under ``model.``), its buffers, and
the step counts of its schedulers (``scheduler_steps.<name>``, 0-d int64 tensors: a resumed run
continues its schedules). The
keys ``integrator._buf_a``/``_buf_b``/``_buf_c``/``_buf_e`` that TorchEBM 0.8.9 saves for the
Butcher tableau of its Euler-Maruyama integrator (constants, not learned state) are accepted by
``load_state_dict`` and ignored, so a 0.8.9 checkpoint of a sampler, or of a loss holding one,
loads in strict mode.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from typing import Any, Optional, Sequence

import torch
from torch import nn

from torchebm.core.argument_checks import check_dtype, count, event_shape
from torchebm.core.energy_model import energy_and_gradient, own_gradient
from torchebm.core.base_module import DeviceLike
from torchebm.core.schedulable import Schedulable
from torchebm.kernels.dispatch import check_backend
from torchebm.utils.distributed import get_world_size, rank_seed

_HALF_DTYPES = (torch.float16, torch.bfloat16)
_SEED_HIGH = 2**63 - 1


def _first_tensor(module: nn.Module) -> Optional[torch.Tensor]:
    """The module's first parameter (in ``parameters()`` order), else its first buffer, else
    None: one walk over the modules (every ``sample()`` call asks, through
    :meth:`BaseSampler._check_model_device`)."""
    first_buffer = None
    for m in module.modules():
        for tensor in m._parameters.values():
            if tensor is not None:
                return tensor
        if first_buffer is None:
            first_buffer = next((t for t in m._buffers.values() if t is not None), None)
    return first_buffer


def _parameter_dtype(module: nn.Module) -> Optional[torch.dtype]:
    """The dtype of the module's first floating parameter (``parameters()`` order), or None;
    a walk over the modules' own parameters (the fused path asks at every step)."""
    for m in module.modules():
        for param in m._parameters.values():
            if param is not None and param.is_floating_point():
                return param.dtype
    return None


def _in_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t.to(dtype)``, without the call where ``t`` has that dtype already (every step)."""
    return t if t.dtype == dtype else t.to(dtype)


def model_dtype(model: nn.Module) -> Optional[torch.dtype]:
    """The model's floating parameter dtype; for a parameter-less
    :class:`~torchebm.core.TorchEBMModule`, its ``dtype`` (its probe buffer's, which follows
    ``.double()``); else None."""
    dtype = _parameter_dtype(model)
    if dtype is None and isinstance(getattr(model, "_torchebm_probe", None), torch.Tensor):
        dtype = model._torchebm_probe.dtype
    return dtype


# TorchEBM 0.8.9 samplers hold an Euler-Maruyama integrator module whose Butcher tableau is
# saved as buffers: these keys, under the sampler's prefix, are accepted and ignored on loading.
_TORCHEBM_089_INTEGRATOR_KEYS = tuple(f"integrator._buf_{k}" for k in "abce")
_SCHEDULER_STEPS = "scheduler_steps."  # state_dict prefix of the schedulers' step counts


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    current = torch.cuda.current_device() if torch.cuda.is_available() else 0
    return (a.index if a.index is not None else current) == (
        b.index if b.index is not None else current
    )


class BaseSampler(Schedulable, ABC):
    """Abstract MCMC sampler (see the module docstring for the contract).

    Args:
        model: the energy model to sample from (an ``nn.Module`` mapping ``[B, *event]`` to
            ``[B]``; a :class:`~torchebm.core.BaseModel` gives ``gradient``). Old keyword:
            ``energy_function``.
        dtype: dtype of the chains a call returns; None (default) applies the rule of the
            module docstring (``x``'s dtype, else the model's, else the default dtype). A half
            dtype integrates in float32, returns the half dtype and evaluates the model under
            autocast.
        device: device of the chain state and the model (default: the model's device).
        backend: ``"auto"``, ``"fused"`` or ``"reference"`` for the built-in samplers
            (:mod:`torchebm.kernels.dispatch`); custom samplers may ignore it.
        progress: show a progress bar over the steps of ``sample()`` (built-in samplers).

    Attributes:
        last_path: the path the last ``sample()`` call took (``"chain"``, ``"fused"``,
            ``"reference"``, or ``"cuda_graph"`` for ``LangevinDynamics(cuda_graph=True)``),
            None before the first call.
    """

    def __init__(
        self,
        model: Optional[nn.Module] = None,
        dtype: Optional[torch.dtype] = None,
        device: DeviceLike = None,
        *,
        energy_function: Optional[nn.Module] = None,
        backend: str = "auto",
        progress: bool = False,
    ):
        owner = type(self).__name__
        model = _resolve_model(owner, model, energy_function)
        dtype = None if dtype is None else check_dtype(dtype)
        if device is None:
            first = _first_tensor(model)
            device = first.device if first is not None else None
        # The probe holds the device, and the dtype of an explicit full-precision ``dtype=``
        # (so that ``sampler.double()`` still changes it); half dtypes are kept aside.
        probe_dtype = dtype if dtype is not None and dtype not in _HALF_DTYPES else None
        super().__init__(device=device, dtype=probe_dtype)
        self.model = model
        self._dtype_arg = dtype
        if device is not None:
            self.model.to(self._torchebm_probe.device)
        self.backend = check_backend(backend)
        self.progress = bool(progress)
        self.last_path: Optional[str] = None
        if dtype in _HALF_DTYPES:
            self.setup_mixed_precision(True, dtype)
        param_dtype = _parameter_dtype(model)
        if probe_dtype is not None and param_dtype is not None and param_dtype != probe_dtype:
            warnings.warn(
                f"{owner}: the chains are {probe_dtype} (dtype=) but the model's parameters are "
                f"{param_dtype}; the model is evaluated in {param_dtype} and its energies and "
                f"gradients cast to {probe_dtype}",
                UserWarning,
                stacklevel=3,
            )

    # ------------------------------------------------------------------ model aliasing
    @property
    def energy_function(self) -> nn.Module:
        """Old name of :attr:`model` (read and write)."""
        return self.model

    @energy_function.setter
    def energy_function(self, value: nn.Module) -> None:
        self.model = value

    def __setattr__(self, name: str, value: Any) -> None:
        # nn.Module.__setattr__ files modules under their own name and would bypass the
        # property; the old name must replace the model itself.
        if name == "energy_function":
            name = "model"
        super().__setattr__(name, value)

    # ------------------------------------------------------------------ dtype and device
    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the chains a call without ``x`` returns: the explicit ``dtype=``, else the
        model's (:func:`model_dtype`), else ``torch.get_default_dtype()``."""
        if self._dtype_arg is not None:
            return self._dtype_arg if self._dtype_arg in _HALF_DTYPES else self._torchebm_probe.dtype
        dtype = model_dtype(self.model)
        return dtype if dtype is not None and dtype.is_floating_point else torch.get_default_dtype()

    def chain_dtype(self, x: Optional[torch.Tensor] = None) -> torch.dtype:
        """The dtype of the chains a call with starting state ``x`` returns (the rule of the
        module docstring): the explicit ``dtype=``, else a floating ``x``'s, else
        :attr:`dtype`."""
        if self._dtype_arg is None and isinstance(x, torch.Tensor) and x.is_floating_point():
            return x.dtype
        return self.dtype

    def state_dtype(self, x: Optional[torch.Tensor] = None) -> torch.dtype:
        """The dtype the chain is integrated in: :meth:`chain_dtype`, or float32 for a half
        dtype."""
        dtype = self.chain_dtype(x)
        return torch.float32 if dtype in _HALF_DTYPES else dtype

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        # The step count of each of the sampler's schedulers, as an int64 0-d tensor under
        # ``scheduler_steps.<name>``: a checkpoint resumes the schedules where they were (they
        # continue across calls).
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name, scheduler in self.schedulers.items():
            destination[f"{prefix}{_SCHEDULER_STEPS}{name}"] = torch.tensor(scheduler.step_count)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, *args, **kwargs):
        # Accept (and drop) the integrator tableau buffers of a TorchEBM 0.8.9 checkpoint. Saved
        # scheduler steps put each scheduler back at its step (reset(), then advance()); a 0.8.9
        # checkpoint has none (it restarts its schedules at every call): they are left as they are.
        for key in _TORCHEBM_089_INTEGRATOR_KEYS:
            state_dict.pop(prefix + key, None)
        head = prefix + _SCHEDULER_STEPS
        for key in [k for k in state_dict if k.startswith(head)]:
            steps = state_dict.pop(key)
            scheduler = self.schedulers.get(key[len(head):])
            if scheduler is None:
                unexpected_keys.append(key)
                continue
            scheduler.reset()
            scheduler.advance(int(steps))
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, *args, **kwargs)

    @property
    def device(self) -> torch.device:
        """Device of the chain state (``cuda:0`` reads ``cuda``, as in TorchEBM)."""
        device = self._torchebm_probe.device
        return torch.device("cuda") if device.type == "cuda" and device.index == 0 else device

    # ------------------------------------------------------------------ the contract
    @abstractmethod
    def sample(
        self,
        x: Optional[torch.Tensor] = None,
        dim: Any = None,
        n_steps: int = 100,
        n_samples: int = 1,
        thin: int = 1,
        return_trajectory: bool = False,
        return_diagnostics: bool = False,
        reset_schedulers: bool = True,
        *,
        y: Any = None,
        model_kwargs: Optional[dict] = None,
        generator: Optional[torch.Generator] = None,
    ):
        """Run the chains; see the built-in samplers for the full contract."""

    def sample_chain(
        self,
        x: Optional[torch.Tensor] = None,
        dim: Any = None,
        n_steps: int = 100,
        n_samples: int = 1,
        *,
        initial_samples: Optional[torch.Tensor] = None,
        **kwargs: Any,
    ):
        """Old name of :meth:`sample` (TorchEBM before 0.2): the same call and result.

        ``initial_samples=`` is the old name of ``x``; every other keyword goes to ``sample``.
        """
        if initial_samples is not None:
            if x is not None:
                raise ValueError("sample_chain: pass the starting state as x or initial_samples, not both")
            x = initial_samples
        # Pass x and dim only when given, so a custom sample() keeps its own defaults.
        given = {k: v for k, v in (("x", x), ("dim", dim)) if v is not None}
        return self.sample(n_steps=n_steps, n_samples=n_samples, **given, **kwargs)

    def _setup_diagnostics(
        self, dim: int, n_steps: int, n_samples: Optional[int] = None
    ) -> torch.Tensor:
        """Empty diagnostics storage in the tensor layout, ``[n_steps, 3, n_samples, dim]``
        (``[n_steps, 3, dim]`` without ``n_samples``); slots are mean, variance, energy."""
        shape = (n_steps, 3, n_samples, dim) if n_samples is not None else (n_steps, 3, dim)
        return torch.empty(shape, device=self.device, dtype=self.state_dtype())

    # ------------------------------------------------------------------ helpers
    def _init_state(
        self,
        x: Optional[torch.Tensor],
        dim: Any = None,
        n_samples: int = 1,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """The starting state in :meth:`state_dtype` on the sampler's device: ``x`` cast (no
        copy when dtype and device match), or ``randn(n_samples, *dim)`` drawn from
        ``generator`` (the global RNG if None).

        Raises:
            ValueError: ``x`` and ``dim`` are both None; ``x`` on an unsupported device.
            TypeError: ``x`` is not a real tensor.
        """
        owner = type(self).__name__
        self._check_sampler_device()
        if x is not None:
            return self._cast_state(x)
        if dim is None:
            raise ValueError(f"{owner}: dim must be provided when x is None")
        event = event_shape(owner, dim)
        n_samples = count(owner, "n_samples", n_samples, minimum=1)
        return generator_randn((n_samples, *event), self.state_dtype(), self._torchebm_probe.device, generator)

    def _check_sampler_device(self) -> None:
        # As for x below: a state on a device without data (meta) would give a "sample" of
        # uninitialised values, so the sampler's own device must hold data too.
        device = self._torchebm_probe.device
        if device.type not in ("cpu", "cuda"):
            raise ValueError(
                f"{type(self).__name__}: the sampler is on device {device}, which holds no data "
                "to sample from; move it to cpu or cuda (sampler.to(...) or device=)"
            )

    def _cast_state(self, x: Any) -> torch.Tensor:
        owner = type(self).__name__
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{owner}: x must be a torch.Tensor, got {type(x).__name__}")
        if x.is_complex():
            raise TypeError(f"{owner}: x must be real, got dtype {x.dtype}")
        if x.device.type not in ("cpu", "cuda"):
            raise ValueError(
                f"{owner}: x is on device {x.device}, which holds no data to sample from; "
                f"pass x on cpu or cuda (the sampler is on {self.device})"
            )
        self._check_sampler_device()
        device, dtype = self._torchebm_probe.device, self.state_dtype(x)
        x = x.detach()
        # .to() would return x itself here too; the comparison is cheaper than its parsing.
        return x if x.dtype == dtype and x.device == device else x.to(device=device, dtype=dtype)

    def _draw_seed(self, generator: Optional[torch.Generator] = None) -> int:
        """One 64-bit Philox key for a whole ``sample()`` call, from ``generator`` (else the
        global CPU generator, so ``torch.manual_seed`` reproduces a run), with this process's
        rank folded in (:func:`torchebm.utils.distributed.rank_seed`; unchanged on rank 0 and
        in a single process): one host read per call, never per step."""
        device = generator.device if generator is not None else torch.device("cpu")
        seed = int(
            torch.randint(0, _SEED_HIGH, (), generator=generator, device=device, dtype=torch.int64)
        )
        return rank_seed(seed)

    def _reference_generator(
        self, generator: Optional[torch.Generator], device: torch.device
    ) -> Optional[torch.Generator]:
        """The generator of the pure-PyTorch path: ``generator`` itself in a single process;
        under ``torch.distributed`` a fresh one on ``device`` seeded with :meth:`_draw_seed`, so
        that the same seed gives each rank its own draws there too."""
        if get_world_size() == 1:
            return generator
        return torch.Generator(device=device).manual_seed(self._draw_seed(generator))

    def _prepare_model_kwargs(self, y: Any = None, model_kwargs: Optional[dict] = None) -> dict:
        """``model_kwargs`` with ``y`` folded in, tensors moved to the sampler's device (their
        dtype is kept). Passing ``y`` both ways raises ``ValueError``."""
        if y is None and model_kwargs is None:
            return {}
        owner = type(self).__name__
        if model_kwargs is not None and not isinstance(model_kwargs, dict):
            raise TypeError(
                f"{owner}: model_kwargs must be a dict, got {type(model_kwargs).__name__}"
            )
        mk = dict(model_kwargs or {})
        if y is not None:
            if "y" in mk:
                raise ValueError(f"{owner}: y given both as y= and as model_kwargs['y']")
            mk["y"] = y
        device = self._torchebm_probe.device
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in mk.items()}

    def _model_input(self, x: torch.Tensor) -> torch.Tensor:
        eval_dtype = _parameter_dtype(self.model)
        return x if eval_dtype is None or eval_dtype == x.dtype else x.to(eval_dtype)

    def _model_energy(self, x: torch.Tensor, mk: Optional[dict] = None) -> torch.Tensor:
        """``E(x)`` ``[B]`` in the state's dtype, under the sampler's autocast."""
        with torch.no_grad(), self.autocast_context():
            energy = self.model(self._model_input(x), **(mk or {}))
        return _in_dtype(energy, x.dtype)

    def _model_gradient(self, x: torch.Tensor, mk: Optional[dict] = None) -> torch.Tensor:
        """``∇E(x)`` in the state's dtype: the model's own ``gradient`` (called without keyword
        arguments when ``mk`` is empty, so models whose ``gradient(x)`` takes none work), else
        autograd of the model's forward (:func:`~torchebm.core.energy_model.energy_and_gradient`:
        the compiled forward and backward of a ``torch.compile``'d model)."""
        xin = self._model_input(x)
        with self.autocast_context():
            gradient = own_gradient(self.model)
            if gradient is None:
                grad = energy_and_gradient(self.model, xin, mk)[1]
            elif mk:
                grad = gradient(xin, mk)
            else:
                grad = gradient(xin)
        return _in_dtype(grad, x.dtype)

    def _energy_and_gradient(
        self, x: torch.Tensor, mk: Optional[dict] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(E(x), ∇E(x))``: from one forward and one backward pass where the gradient is
        autograd's; otherwise ``forward`` and the model's own ``gradient`` (a closed-form or
        user-defined gradient is used as such)."""
        if own_gradient(self.model) is not None:
            return self._model_energy(x, mk), self._model_gradient(x, mk)
        with self.autocast_context():
            energy, grad = energy_and_gradient(self.model, self._model_input(x), mk)
        return _in_dtype(energy, x.dtype), _in_dtype(grad, x.dtype)

    def _check_model_device(self) -> None:
        first = _first_tensor(self.model)
        if first is None:
            return
        device = self._torchebm_probe.device
        if first.device != device and not _same_device(first.device, device):
            raise ValueError(
                f"{type(self).__name__}: the model is on {first.device} but the sampler on "
                f"{self.device}; move both with sampler.to(device)"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__})"


class norm_layers_in_eval:
    """``with norm_layers_in_eval(model):`` within the block, the model's normalisation layers
    that keep running statistics (``BatchNorm*``, ``SyncBatchNorm``, ``InstanceNorm*`` with
    ``track_running_stats=True``) and are in training mode are in eval mode; their modes are
    restored on exit, exceptions included. Sampling thus neither updates their running
    statistics with the chains' states nor couples the chains through batch statistics: each
    chain's energy is that of the model in eval mode. Other layers (dropout...) keep their mode.

    A class rather than a generator-based context manager: every ``sample()`` call enters one,
    and this costs a fraction of a generator's set-up."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.switched: list[nn.Module] = []

    def __enter__(self) -> None:
        self.switched = [
            m for m in self.model.modules()
            if m.training and isinstance(m, _RUNNING_STAT_NORMS) and m.track_running_stats
        ]
        for m in self.switched:
            m.train(False)

    def __exit__(self, *exc_info: Any) -> None:
        for m in self.switched:
            m.train(True)


_RUNNING_STAT_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)


def _resolve_model(
    owner: str, model: Optional[nn.Module], energy_function: Optional[nn.Module]
) -> nn.Module:
    if model is None and energy_function is None:
        raise TypeError(f"{owner}.__init__() missing the model to sample from (model=)")
    if model is not None and energy_function is not None and model is not energy_function:
        raise TypeError(
            f"{owner}.__init__() got both model= and energy_function= (its old name); pass one"
        )
    model = model if model is not None else energy_function
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"{owner}: model must be an nn.Module (a BaseModel), got {type(model).__name__}"
        )
    return model


def generator_randn(
    shape: Sequence[int],
    dtype: torch.dtype,
    device: torch.device,
    generator: Optional[torch.Generator],
) -> torch.Tensor:
    """Standard normals on ``device``, drawn on the generator's device if it differs."""
    if generator is not None and not _same_device(generator.device, device):
        return torch.randn(
            shape, generator=generator, dtype=dtype, device=generator.device
        ).to(device)
    return torch.randn(shape, generator=generator, dtype=dtype, device=device)


def generator_rand(
    shape: Sequence[int],
    dtype: torch.dtype,
    device: torch.device,
    generator: Optional[torch.Generator],
) -> torch.Tensor:
    """Uniforms in [0, 1) on ``device``, drawn on the generator's device if it differs."""
    if generator is not None and not _same_device(generator.device, device):
        return torch.rand(shape, generator=generator, dtype=dtype, device=generator.device).to(
            device
        )
    return torch.rand(shape, generator=generator, dtype=dtype, device=device)


__all__ = ["BaseSampler", "generator_rand", "generator_randn", "model_dtype", "norm_layers_in_eval"]
