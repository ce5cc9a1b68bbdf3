"""Whole-chain kernels for MLP energies.

An energy whose ``forward(x)`` is a chain of ``nn.Linear`` layers and elementwise activations
with one output per chain can run whole Langevin, MALA and HMC chains in one op call, forward
pass, backward pass (in x) and update fused for every step, the weights read once per call.

- :func:`recognise_mlp` decides from the code itself (``torch.export`` of ``forward``, never
  attribute names) whether a model is such a chain, and returns an :class:`MLPSpec` holding
  references to the live parameters (so optimiser steps between calls are seen without
  re-tracing), or the reason it is not.
- The op wrappers (:func:`mlp_energy_grad`, :func:`mlp_langevin_chain`,
  :func:`mlp_mala_chain`, :func:`mlp_hmc_chain`) take the network as tensor lists; each has its
  fake kernel right below it and a pure-PyTorch reference (``*_reference``) further down.

The network (``torchebm/mlp.h``): layer l is ``z_l = W_l h_{l-1} + b_l``, ``h_l = act_l(z_l)``
(``h_{-1} = x``), and ``E(x) = out_scale * sum_j h_{L-1, j} + out_offset``. Chains follow the
contracts of ``langevin_chain``/``mala_chain``/``hmc_chain`` (docs/kernels.md): same random
streams and counters, same acceptance rule, same outputs.
"""

from __future__ import annotations

import math
import sys
import warnings
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from torchebm.kernels import reference
from torchebm.kernels.forward_fingerprint import fingerprint
from torchebm.kernels.loader import load_ops
from torchebm.kernels.ops import (
    chain_outputs_fake,
    check_first_step,
    check_same_device,
    check_trajectory_size,
    float_or_none,
    seed64,
)

_LOADED = load_ops()

# ---- activations ------------------------------------------------------------------------------

# Activation codes of the ops (mlp.h's Act); each layer carries ACT_PARAMS parameters.
ACTIVATIONS: dict[str, int] = {
    "identity": 0,
    "relu": 1,
    "leaky_relu": 2,  # negative_slope
    "elu": 3,  # alpha, scale, input_scale (ELU and SELU)
    "silu": 4,
    "gelu": 5,
    "gelu_tanh": 6,
    "tanh": 7,
    "sigmoid": 8,
    "softplus": 9,  # beta, threshold
    "celu": 10,  # alpha, 1/alpha, 1/alpha as autograd's derivative rounds it (float32)
}
ACT_PARAMS = 3

_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def _act_value(kind: str, p: Sequence[float], z: torch.Tensor) -> torch.Tensor:
    """torch's own function for an activation code: the reference of the kernels' maths."""
    if kind == "identity":
        return z
    if kind == "relu":
        return F.relu(z)
    if kind == "leaky_relu":
        return F.leaky_relu(z, p[0])
    if kind == "elu":
        return torch.ops.aten.elu(z, p[0], p[1], p[2])
    if kind == "celu":
        return F.celu(z, p[0])
    if kind == "silu":
        return F.silu(z)
    if kind == "gelu":
        return F.gelu(z)
    if kind == "gelu_tanh":
        return F.gelu(z, approximate="tanh")
    if kind == "tanh":
        return torch.tanh(z)
    if kind == "sigmoid":
        return torch.sigmoid(z)
    if kind == "softplus":
        return F.softplus(z, p[0], p[1])
    raise ValueError(f"unknown activation {kind!r}; expected one of {sorted(ACTIVATIONS)}")


def _no_params(args, kwargs) -> tuple[float, float, float]:
    return (0.0, 0.0, 0.0)


def _arg(args, kwargs, i: int, name: str, default):
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


def _celu_params(args, kwargs) -> tuple[float, float, float]:
    alpha = float(_arg(args, kwargs, 1, "alpha", 1.0))
    # torch.celu(x) = elu(x, alpha, 1, 1/alpha); autograd's derivative uses 1/float32(alpha).
    return (alpha, 1.0 / alpha, 1.0 / float(np.float32(alpha)))


def _gelu_kind(args, kwargs) -> str:
    return "gelu_tanh" if _arg(args, kwargs, 1, "approximate", "none") == "tanh" else "gelu"


# aten op name (overload packet, in-place forms included) -> (kind or kind function, params).
_ATEN_ACTIVATIONS: dict[str, tuple[Any, Callable]] = {
    "relu": ("relu", _no_params),
    "leaky_relu": (
        "leaky_relu",
        lambda a, k: (float(_arg(a, k, 1, "negative_slope", 0.01)), 0.0, 0.0),
    ),
    "elu": (
        "elu",
        lambda a, k: (
            float(_arg(a, k, 1, "alpha", 1.0)),
            float(_arg(a, k, 2, "scale", 1.0)),
            float(_arg(a, k, 3, "input_scale", 1.0)),
        ),
    ),
    "selu": ("elu", lambda a, k: (_SELU_ALPHA, _SELU_SCALE, 1.0)),
    "celu": ("celu", _celu_params),
    "silu": ("silu", _no_params),
    "gelu": (_gelu_kind, _no_params),
    "tanh": ("tanh", _no_params),
    "sigmoid": ("sigmoid", _no_params),
    "softplus": (
        "softplus",
        lambda a, k: (
            float(_arg(a, k, 1, "beta", 1.0)),
            float(_arg(a, k, 2, "threshold", 20.0)),
            0.0,
        ),
    ),
}

# ---- the spec ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class MLPLayer:
    """One linear map and the activation after it. ``weight``/``bias`` are the model's own
    tensors (parameters or buffers), read at each call; ``layout`` says how ``weight`` is the
    ``[n_out, n_in]`` matrix of ``F.linear``: ``"linear"`` (as is: ``nn.Linear``, ``F.linear``),
    ``"transposed"`` (``h @ weight``), or ``"row"`` (a vector: ``h @ weight``, one output)."""

    weight: torch.Tensor
    bias: Optional[torch.Tensor]
    activation: str
    params: tuple[float, float, float]
    layout: str = "linear"

    def linear_weight(self) -> torch.Tensor:
        """The ``[n_out, n_in]`` weight (a view of the live tensor, differentiable)."""
        if self.layout == "transposed":
            return self.weight.t()
        if self.layout == "row":
            return self.weight.unsqueeze(0)
        return self.weight


@dataclass(frozen=True)
class MLPSpec:
    """A recognised MLP energy: ``E(x) = out_scale * sum_j h_{L-1, j}(x) + out_offset``.

    ``layers`` hold references to the live parameters; :meth:`op_args` reads their current
    values, so an optimiser step between calls is seen without re-tracing.
    """

    layers: tuple[MLPLayer, ...]
    out_scale: float
    out_offset: float

    @property
    def in_features(self) -> int:
        return int(self.layers[0].linear_weight().shape[1])

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.layers[0].weight.device

    def op_args(self) -> dict[str, Any]:
        """The ops' network arguments, from the parameters' current values:
        ``weights``, ``biases`` (zeros for a Linear without bias), ``activations`` (codes),
        ``act_params`` (ACT_PARAMS per layer), ``out_scale``, ``out_offset``."""
        weights, biases, codes, params = [], [], [], []
        for layer in self.layers:
            w = layer.linear_weight().detach()
            weights.append(w)
            biases.append(
                layer.bias.detach()
                if layer.bias is not None
                else torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
            )
            codes.append(ACTIVATIONS[layer.activation])
            params.extend(layer.params)
        return {
            "weights": weights,
            "biases": biases,
            "activations": codes,
            "act_params": params,
            "out_scale": self.out_scale,
            "out_offset": self.out_offset,
        }

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """``E(x)`` in PyTorch (differentiable in x and the parameters)."""
        h = x
        for layer in self.layers:
            h = _act_value(
                layer.activation, layer.params, F.linear(h, layer.linear_weight(), layer.bias)
            )
        return self.out_scale * h.sum(-1) + self.out_offset

    def describe(self) -> str:
        parts = []
        for layer in self.layers:
            n_out, n_in = layer.linear_weight().shape
            act = "" if layer.activation == "identity" else f" {layer.activation}"
            parts.append(f"Linear({n_in}->{n_out}){act}")
        return f"{' -> '.join(parts)}; E = {self.out_scale:g} * sum + {self.out_offset:g}"


# ---- recognising a model ----------------------------------------------------------------------

# Leaf modules of torch.nn an MLP chain can contain; any other torch.nn leaf (Conv2d, LayerNorm,
# Embedding...) refuses the model before tracing it. (User-defined modules are traced.)
_ALLOWED_LEAVES = (
    nn.Linear,
    nn.ReLU,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.SiLU,
    nn.GELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Dropout,
    nn.AlphaDropout,
    nn.Identity,
    nn.Flatten,
)

# aten ops that do not change a [B, w] value (or its [B] energy) when they keep its shape.
_SHAPE_OPS = {
    "view",
    "reshape",
    "_unsafe_view",
    "flatten",
    "squeeze",
    "squeeze_",
    "select",
    "clone",
    "contiguous",
    "alias",
    "_to_copy",
    "to",
    "slice",
}
_DROPOUT_OPS = {"dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout"}
# Bookkeeping nodes of a dynamic-shape export.
_IGNORED_OPS = {"sym_size", "_assert_scalar", "sym_constrain_range_for_size", "_assert_tensor_metadata"}

_EXAMPLE_BATCH = 3  # any size >= 2 (export specialises sizes 0 and 1)


class _Refused(Exception):
    pass


@dataclass(frozen=True)
class _Chain:
    """The abstract value of a node computed from x: the layers so far and the output map."""

    layers: tuple  # of (weight, bias, activation, params, layout) tuples
    width: int
    reduced: bool = False  # summed over the features (the energy, [B] or [B, 1])
    scale: float = 1.0
    offset: float = 0.0


def _op_name(target) -> str:
    name = getattr(target, "__name__", str(target))  # e.g. "linear.default"
    return name.split(".")[0]


def _number(v) -> Optional[float]:
    if isinstance(v, (bool,)):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _walk(ep, model: nn.Module, x_dtype: torch.dtype) -> MLPSpec:
    """Interprets the exported graph as a chain, or raises _Refused(reason)."""
    sig = ep.graph_signature
    kinds: dict[str, tuple[str, Any]] = {}
    for spec in sig.input_specs:
        name = spec.arg.name
        kind = spec.kind.name
        if kind == "PARAMETER":
            kinds[name] = ("tensor", model.get_parameter(spec.target))
        elif kind == "BUFFER":
            kinds[name] = ("tensor", model.get_buffer(spec.target))
        elif kind == "USER_INPUT":
            kinds[name] = ("x", None)
        else:
            kinds[name] = ("other", spec.target)
    values: dict[Any, Any] = {}
    batch = None
    output = None
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            kind, obj = kinds.get(node.name, ("other", None))
            if kind == "x":
                if batch is not None:
                    raise _Refused("forward takes more than one tensor input")
                batch = node.meta["val"].shape[0]
                values[node] = _Chain((), int(node.meta["val"].shape[1]))
            elif kind == "tensor":
                values[node] = obj
            else:
                values[node] = None
            continue
        if node.op == "output":
            outs = node.args[0]
            if len(outs) != 1:
                raise _Refused(f"forward returns {len(outs)} values, expected one energy tensor")
            output = values.get(outs[0])
            shape = tuple(outs[0].meta["val"].shape) if hasattr(outs[0], "meta") else ()
            break
        if node.op != "call_function":
            raise _Refused(f"forward has a {node.op} node ({node.target})")
        op = _op_name(node.target)
        if op in _IGNORED_OPS:
            continue
        values[node] = _step(op, node, values, batch, x_dtype)
    if not isinstance(output, _Chain):
        raise _Refused("forward's output is not computed from x")
    if not output.reduced or len(shape) != 1:
        raise _Refused(
            f"forward returns shape {_describe_shape(shape, batch)}, expected one energy per "
            "chain [B]"
        )
    layers = tuple(
        MLPLayer(w, b, act, tuple(p), layout) for (w, b, act, p, layout) in output.layers
    )
    if not layers:
        raise _Refused("forward has no Linear layer")
    return MLPSpec(layers, output.scale, output.offset)


@dataclass(frozen=True)
class _ParamView:
    """A 2-D parameter seen transposed (``W.t()``, ``W.T``) or not (a transpose of one)."""

    tensor: torch.Tensor
    transposed: bool


def _param_view(op: str, node, args) -> Optional[_ParamView]:
    src = args[0] if args else None
    if isinstance(src, torch.Tensor) and src.dim() == 2:
        base = _ParamView(src, False)
    elif isinstance(src, _ParamView):
        base = src
    else:
        return None
    if op in ("t", "numpy_T"):
        flip = True
    elif op == "transpose":
        flip = sorted(int(d) % 2 for d in node.args[1:3]) == [0, 1]
        if not flip:
            return None
    elif op == "permute":
        flip = [int(d) % 2 for d in node.args[1]] == [1, 0]
        if not flip:
            return None
    else:
        return None
    return _ParamView(base.tensor, not base.transposed)


def _append_linear(c: "_Chain", w, b, layout: str, x_dtype: torch.dtype) -> "_Chain":
    """c followed by the linear map of `w` (as `layout`) and bias `b`."""
    if c.reduced or c.scale != 1.0 or c.offset != 0.0:
        raise _Refused("forward scales, shifts or sums a hidden layer before a linear map")
    if not isinstance(w, torch.Tensor) or (b is not None and not isinstance(b, torch.Tensor)):
        raise _Refused("a Linear weight or bias is computed in forward (parametrised?)")
    if layout == "row":
        n_out, n_in = (1, w.shape[0]) if w.dim() == 1 else (-1, -1)
    else:
        n_out, n_in = (w.shape[0], w.shape[1]) if w.dim() == 2 else (-1, -1)
        if layout == "transposed":
            n_out, n_in = n_in, n_out
    if n_in != c.width or (b is not None and tuple(b.shape) != (n_out,)):
        raise _Refused(
            f"a linear map of weight shape {list(w.shape)} after a layer of width {c.width}"
        )
    for t in (w, b):
        if t is not None and t.dtype != x_dtype:
            raise _Refused(f"a Linear parameter is {t.dtype} but x is {x_dtype} (mixed dtypes)")
    return _Chain(c.layers + ((w, b, "identity", (0.0, 0.0, 0.0), layout),), int(n_out))


def _describe_shape(shape, batch=None) -> str:
    return "[" + ", ".join("B" if batch is not None and str(s) == str(batch) else str(s) for s in shape) + "]"


def _step(op: str, node, values: dict, batch, x_dtype: torch.dtype):
    args = [values.get(a, a) if isinstance(a, torch.fx.Node) else a for a in node.args]
    kwargs = dict(node.kwargs)
    chains = [a for a in args if isinstance(a, _Chain)]
    val = node.meta.get("val")
    out_shape = tuple(val.shape) if isinstance(val, torch.Tensor) else None
    aten = f"aten.{op}"

    if not chains:
        view = _param_view(op, node, args)
        if view is not None:
            return view
        if any(isinstance(a, (torch.Tensor, _ParamView)) for a in args):
            raise _Refused(f"forward computes {aten} on parameters (not a Linear/activation chain)")
        return None  # a constant computation (not used by the chain)
    if len(chains) > 1:
        raise _Refused(f"forward combines two values computed from x with {aten} (not a chain)")
    c = chains[0]
    first = args[0]

    if op == "linear":
        if first is not c:
            raise _Refused(f"x reaches {aten} as a weight")
        w = args[1] if len(args) > 1 else kwargs.get("weight")
        b = args[2] if len(args) > 2 else kwargs.get("bias")
        if isinstance(w, _ParamView) or isinstance(b, _ParamView):
            raise _Refused("a Linear weight or bias is computed in forward (parametrised?)")
        return _append_linear(c, w, b, "linear", x_dtype)

    if op in ("t", "numpy_T", "transpose", "permute"):
        raise _Refused(f"forward computes {aten} on a value computed from x")

    if op in ("matmul", "mm", "addmm"):
        # h @ M (+ bias) is F.linear(h, M^T, bias); M a parameter, or its transpose.
        lhs, rhs = (args[1], args[2]) if op == "addmm" else (args[0], args[1])
        if lhs is not c:
            raise _Refused(f"x reaches {aten} as its right-hand side")
        bias = args[0] if op == "addmm" else None
        if op == "addmm" and (len(node.args) > 3 or kwargs):
            raise _Refused(f"{aten} with beta/alpha")
        if isinstance(rhs, _ParamView):
            return _append_linear(c, rhs.tensor, bias, "linear" if rhs.transposed else "transposed", x_dtype)
        if isinstance(rhs, torch.Tensor) and rhs.dim() == 1 and op == "matmul":
            return _Chain(_append_linear(c, rhs, None, "row", x_dtype).layers, 1, True)
        return _append_linear(c, rhs, bias, "transposed", x_dtype)

    act_op = op[:-1] if op.endswith("_") and op[:-1] in _ATEN_ACTIVATIONS else op
    if act_op in _ATEN_ACTIVATIONS:
        kind, param_fn = _ATEN_ACTIVATIONS[act_op]
        if callable(kind):
            kind = kind(node.args, kwargs)
        params = param_fn(node.args, kwargs)
        if not c.layers:
            raise _Refused(f"forward applies {aten} to x before any Linear")
        if c.reduced or c.scale != 1.0 or c.offset != 0.0:
            raise _Refused(f"forward applies {aten} after scaling, shifting or summing a layer")
        w, b, prev, _, layout = c.layers[-1]
        if prev != "identity":
            raise _Refused(f"forward applies two activations in a row ({prev}, then {kind})")
        if kind == "softplus" and not params[0] > 0:
            raise _Refused(f"softplus with beta = {params[0]} (the kernels take beta > 0)")
        if kind in ("elu", "celu") and params[0] == 0:
            raise _Refused(f"{kind} with alpha = 0")
        last = (w, b, kind, params, layout)
        return _Chain(c.layers[:-1] + (last,), c.width, c.reduced, c.scale, c.offset)

    if op in _DROPOUT_OPS:
        p = _number(_arg(node.args, kwargs, 1, "p", 0.5))
        train = bool(_arg(node.args, kwargs, 2, "train", True))
        if train and p != 0.0:
            raise _Refused("dropout in training mode (call model.eval(), or p = 0)")
        return c

    if op in ("detach", "detach_"):
        raise _Refused("forward detaches a value computed from x (its gradient would be 0)")

    if op in _SHAPE_OPS or op in ("sum", "mean"):
        if op in ("_to_copy", "to") and val is not None and val.dtype != x_dtype:
            raise _Refused(f"forward casts to {val.dtype} (mixed dtypes)")
        in_shape = tuple(node.args[0].meta["val"].shape)
        if op in ("sum", "mean"):
            dims = _arg(node.args, kwargs, 1, "dim", None)
            dims = [dims] if isinstance(dims, int) else list(dims or [])
            if len(in_shape) != 2 or [d % 2 for d in dims] != [1] or c.reduced:
                raise _Refused(
                    f"forward takes {aten} over dims {dims} of a {_describe_shape(in_shape, batch)} value "
                    "(expected the feature dimension of [B, width])"
                )
            scale = c.scale / c.width if op == "mean" else c.scale
            return _Chain(c.layers, 1, True, scale, c.offset * (1 if op == "mean" else c.width))
        # A reshape-like op: keeps [B, w], or maps [B, 1] to [B] (the energy).
        same = out_shape is not None and len(out_shape) == len(in_shape) and all(
            str(a) == str(b) for a, b in zip(out_shape, in_shape)
        )
        if same:
            return c
        if (
            out_shape is not None
            and len(in_shape) == 2
            and len(out_shape) == 1
            and c.width == 1
            and str(out_shape[0]) == str(batch)
        ):
            return _Chain(c.layers, 1, True, c.scale, c.offset)
        raise _Refused(
            f"forward reshapes a {_describe_shape(in_shape, batch)} value to "
            f"{_describe_shape(out_shape or (), batch)} with {aten}"
        )

    if op == "add" and any(isinstance(a, torch.Tensor) for a in args[:2]):
        # h @ M + b: the bias of the layer just added.
        bias = next(a for a in args[:2] if isinstance(a, torch.Tensor))
        if kwargs.get("alpha", 1) != 1:
            raise _Refused(f"{aten} with alpha")
        if not c.layers or c.reduced or c.scale != 1.0 or c.offset != 0.0:
            raise _Refused(f"forward adds a tensor with {aten} where no Linear bias can go")
        w, b, act, params, layout = c.layers[-1]
        if b is not None or act != "identity" or layout == "row":
            raise _Refused(f"forward adds a tensor with {aten} where no Linear bias can go")
        if bias.dim() != 1 or bias.shape[0] != c.width or bias.dtype != x_dtype:
            raise _Refused(f"forward adds a tensor of shape {list(bias.shape)} to a layer of width {c.width}")
        return _Chain(c.layers[:-1] + ((w, bias, act, params, layout),), c.width)

    if op in ("neg", "mul", "div", "add", "sub", "rsub"):
        other = [a for a in node.args[:2] if not isinstance(values.get(a, a), _Chain)]
        num = _number(other[0]) if other else None
        if num is None:
            raise _Refused(f"forward computes {aten} with a tensor (only Python-number scalars)")
        if op == "neg":
            return _Chain(c.layers, c.width, c.reduced, -c.scale, -c.offset)
        if op == "mul":
            return _Chain(c.layers, c.width, c.reduced, c.scale * num, c.offset * num)
        if op == "div":
            if first is not c:
                raise _Refused("forward divides by a value computed from x")
            return _Chain(c.layers, c.width, c.reduced, c.scale / num, c.offset / num)
        alpha = float(kwargs.get("alpha", 1.0))
        if op == "add":
            return _Chain(c.layers, c.width, c.reduced, c.scale, c.offset + alpha * num) if (
                first is c
            ) else _Chain(c.layers, c.width, c.reduced, c.scale * alpha, c.offset * alpha + num)
        if op == "sub":
            if first is c:
                return _Chain(c.layers, c.width, c.reduced, c.scale, c.offset - alpha * num)
            return _Chain(c.layers, c.width, c.reduced, -alpha * c.scale, num - alpha * c.offset)
        # rsub(c, num) = num - alpha * c
        return _Chain(c.layers, c.width, c.reduced, -alpha * c.scale, num - alpha * c.offset)

    raise _Refused(f"forward calls {aten} (not a Linear/activation chain)")


def _unwrap(model: nn.Module) -> nn.Module:
    # A torch.compile'd module traces as its original module.
    dynamo = sys.modules.get("torch._dynamo.eval_frame")
    if dynamo is not None and isinstance(model, getattr(dynamo, "OptimizedModule", ())):
        return model._orig_mod
    return model


def _inspect(model: nn.Module, x: torch.Tensor) -> tuple[Optional[str], Optional[tuple]]:
    """``(reason, key)`` from one walk over the modules, at every call: the reason found without
    tracing that the kernels cannot take ``model`` (else None), and the key its trace is cached
    under (None when refused): the model's type and ``forward``, every module's training flag,
    the identities, shapes, dtypes and devices of the parameters and buffers, and x's ``d``,
    dtype and device."""
    if not isinstance(model, nn.Module):
        return f"the model is a {type(model).__name__}, not an nn.Module", None
    if x.dim() != 2:
        return f"x has shape {list(x.shape)}; the MLP kernels take states [B, d]", None
    if x.dtype not in (torch.float32, torch.float64):
        return f"x is {x.dtype}; the MLP kernels take float32 or float64", None
    if getattr(model, "use_mixed_precision", False):
        return "mixed precision (autocast) is on", None
    from torchebm.core.base_model import BaseModel

    grad_fn = getattr(type(model), "gradient", None)
    if grad_fn is not None and grad_fn is not BaseModel.gradient:
        return f"{type(model).__name__} overrides gradient() (not autograd of forward)", None
    training, params, buffers = [], [], []
    for name, m in model.named_modules():
        if m._backward_hooks or m._backward_pre_hooks:
            return f"module {name or type(m).__name__} has backward hooks", None
        if (
            type(m).__module__.startswith("torch.nn")
            and not m._modules  # a leaf (no child modules)
            and not isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict))
        ):
            if not isinstance(m, _ALLOWED_LEAVES) or type(m).__module__.startswith(
                "torch.nn.utils.parametriz"
            ):
                where = f" ({name})" if name else ""
                return f"model contains {type(m).__name__}{where}, not a Linear/activation chain", None
        if getattr(m, "parametrizations", None):
            return f"module {name or type(m).__name__} has parametrised weights", None
        training.append(m.training)
        params += [p for p in m._parameters.values() if p is not None]
        buffers += [b for b in m._buffers.values() if b is not None]
    dtensor = getattr(sys.modules.get("torch.distributed.tensor"), "DTensor", None)
    if dtensor is not None and any(isinstance(p, dtensor) for p in params):
        return "parameters are sharded DTensors (FSDP2 or tensor parallel), gathered per forward", None
    dtypes = {p.dtype for p in params}
    if len(dtypes) > 1:
        return f"parameters have mixed dtypes {sorted(str(d) for d in dtypes)}", None
    if dtypes and next(iter(dtypes)) != x.dtype:
        return f"parameters are {next(iter(dtypes))} but x is {x.dtype}", None
    devices = {p.device for p in params}
    if devices and devices != {x.device}:
        return f"parameters are on {sorted(str(d) for d in devices)} but x is on {x.device}", None
    key = (
        type(model),
        model.__dict__.get("forward"),
        tuple(training),
        tuple((id(p), p.shape, p.dtype, p.device) for p in params),
        tuple((id(b), b.shape, b.dtype) for b in buffers),
        x.shape[1],
        x.dtype,
        x.device,
    )
    return None, key


def _trace(model: nn.Module, x: torch.Tensor) -> MLPSpec:
    from torch.export import Dim

    example = torch.zeros((_EXAMPLE_BATCH, x.shape[1]), dtype=x.dtype, device=x.device)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False):
            warnings.simplefilter("ignore")
            ep = torch.export.export(
                model, (example,), dynamic_shapes=({0: Dim.DYNAMIC},), strict=False
            )
    except Exception as exc:  # any failure to trace is a refusal, with its first line
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise _Refused(f"torch.export could not trace forward ({type(exc).__name__}: {first})")
    for sym, vr in ep.range_constraints.items():
        upper_open = not math.isfinite(float(vr.upper)) if _is_number(vr.upper) else True
        if float(vr.lower) > 2 or not upper_open:
            raise _Refused(f"forward depends on the batch size (traced for B in [{vr.lower}, {vr.upper}])")
    return _walk(ep, model, x.dtype)


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


# Per model: {key: (spec, reason)}, at most _CACHE_PER_MODEL keys (most recent last).
_cache: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_CACHE_PER_MODEL = 4


def _probe_mismatch(model: nn.Module, spec: MLPSpec, x: torch.Tensor) -> Optional[str]:
    """Checks the spec against forward() on a few of the states (a constant baked into the
    trace may have changed since)."""
    probe = x[: min(4, x.shape[0])].detach()
    if probe.shape[0] == 0:
        return None
    with torch.no_grad():
        want = model(probe)
        got = spec.energy(probe)
    if want.numel() != got.numel():
        return f"forward returned shape {list(want.shape)} on {probe.shape[0]} states"
    tol = 1e-9 if x.dtype == torch.float64 else 1e-4
    error = _mismatch(want.reshape(-1).tolist(), got.reshape(-1).tolist(), tol)
    if error is not None:
        return f"the recognised chain differs from forward() by {error:.3g} on the states"
    return None


def _mismatch(want: list[float], got: list[float], tol: float) -> Optional[float]:
    """The largest error among pairs that are not close, else None; close as in
    ``torch.allclose(want, got, rtol=tol, atol=tol * scale, equal_nan=True)`` with
    ``scale = max(1, largest finite |want|)``: equal (infinities included), both NaN, or a
    finite ``|w - g| <= tol * scale + tol * |g|``. The probe's few numbers are compared on
    the host: allclose's kernels would cost more than the probe's forward."""
    scale = max([1.0] + [abs(w) for w in want if math.isfinite(w)])
    errors = [
        abs(w - g) for w, g in zip(want, got)
        if not (w == g or (math.isnan(w) and math.isnan(g)))
        and not (math.isfinite(w - g) and abs(w - g) <= tol * scale + tol * abs(g))
    ]
    return max(errors) if errors else None


def recognise_mlp(model: nn.Module, x: torch.Tensor) -> tuple[Optional[MLPSpec], Optional[str]]:
    """Whether ``model``'s energy of states ``x [B, d]`` is an MLP chain the kernels run.

    Returns ``(spec, None)`` or ``(None, reason)``, reason a sentence starting ``"mlp: "``.
    ``forward`` is traced with ``torch.export`` (batch dimension dynamic) once per (model,
    type, training flags, parameter and buffer identities and shapes, d, dtype, device); the
    trace, or the refusal, is cached. A trace bakes in the Python values ``forward`` read, so
    the spec is checked against ``forward`` on up to 4 of the states (the probe; retraced once
    if they differ) after a trace and at every later call, except one where the model's
    fingerprint (:mod:`torchebm.kernels.forward_fingerprint`: every value its code can read,
    for models whose code is known) equals the one of the last probe that passed. The spec
    reads the parameters' current values at each op call. ``model_kwargs`` (conditioning) are
    not supported: callers refuse them first.
    """
    model = _unwrap(model)
    reason, key = _inspect(model, x)
    if reason is not None:
        return None, f"mlp: {reason}"
    # entries[key]: (spec, reason, the fingerprint of the last probe that passed, or None)
    entries = _cache.setdefault(model, {})
    if key in entries:
        spec, reason, probed = entries.pop(key)
        entries[key] = (spec, reason, probed)
        if spec is None:
            return None, reason
        fprint = fingerprint(model, x.device.type)
        if fprint is not None and fprint == probed:
            return spec, None
        if _probe_mismatch(model, spec, x) is None:
            entries[key] = (spec, None, fprint)
            return spec, None
        entries.pop(key)
    try:
        spec, reason = _trace(model, x), None
    except _Refused as exc:
        spec, reason = None, f"mlp: {exc}"
    fprint = None
    if spec is not None:
        fprint = fingerprint(model, x.device.type)
        mismatch = _probe_mismatch(model, spec, x)
        if mismatch is not None:
            spec, reason, fprint = None, f"mlp: {mismatch}", None
    entries[key] = (spec, reason, fprint)
    while len(entries) > _CACHE_PER_MODEL:
        entries.pop(next(iter(entries)))
    return spec, reason


# ---- ops --------------------------------------------------------------------------------------


def _schedule(values: Any) -> torch.Tensor:
    """A schedule as the ops take it: float64, ``[n_steps]`` or ``[n_steps, B]``; a
    ``[n_steps, B]`` view constant over the steps (stride 0, per-chain step sizes expanded over
    the steps) stays such a view, converted row by row, so the kernels read its one row."""
    if isinstance(values, torch.Tensor) and values.dim() == 2 and values.shape[0] > 0 \
            and values.stride(0) == 0:
        return values[0].to(torch.float64).expand(values.shape)
    return torch.as_tensor(values, dtype=torch.float64)


def _net(weights, biases, activations, act_params) -> tuple[list, list, list[int], list[float]]:
    return (
        list(weights),
        list(biases),
        [int(a) for a in activations],
        [float(p) for p in act_params],
    )


def mlp_energy_grad(
    x: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    activations: Sequence[int],
    act_params: Sequence[float],
    out_scale: float = 1.0,
    out_offset: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(E(x) [B], grad E(x) [B, d])`` of the network, forward and backward fused (no
    autograd). ``x`` is ``[B, d]``, float32/float64; the network arguments are
    :meth:`MLPSpec.op_args`'s (weights ``[n_out, n_in]`` and biases in x's dtype and device)."""
    w, b, a, p = _net(weights, biases, activations, act_params)
    return torch.ops.torchebm.mlp_energy_grad(x, w, b, a, p, float(out_scale), float(out_offset))


if _LOADED:

    @torch.library.register_fake("torchebm::mlp_energy_grad")
    def _(x, weights, biases, activations, act_params, out_scale, out_offset):
        check_same_device("mlp_energy_grad", {"x": x, "weights": weights, "biases": biases})
        return x.new_empty(x.shape[:1]), x.new_empty(x.shape)


def _check_chain_devices(op, x0, weights, biases, inv_mass=None, **schedules):
    # A meta tensor among real ones reaches the fake kernel: refuse rather than return empties.
    tensors = {"x0": x0, "weights": weights, "biases": biases, "inv_mass": inv_mass, **schedules}
    check_same_device(op, tensors, host_ok=tuple(schedules))


def mlp_langevin_chain(
    x0: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    activations: Sequence[int],
    act_params: Sequence[float],
    out_scale: float,
    out_offset: float,
    a: Any,
    b: Any,
    clamp_min: Optional[float] = None,
    clamp_max: Optional[float] = None,
    grad_clip: Optional[float] = None,
    seed: int = 0,
    thin: int = 1,
    record_trajectory: bool = False,
    record_energy: bool = False,
    first_step: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n_steps = len(a)`` Langevin steps of the network's energy in one call; step t is
    ``x = langevin_update(x, grad E(x), None, a[t], b[t], clamp_min, clamp_max, grad_clip,
    seed, first_step + t)`` (noise: Philox stream 0 at ``(seed, first_step + t)``, exactly that
    op's; ``first_step`` as in ``ops.langevin_chain``).

    ``a``, ``b``: per-step tensors ``[n_steps]`` (a number is taken as one step), or
    ``[n_steps, B]`` for per-chain values (chain ``i`` takes ``a[t, i]``, as in
    ``ops.langevin_chain``; a view constant over the steps, stride 0, is read as its one row).
    Chain ``i`` of a per-chain call equals, bit for bit, chain ``i`` of a call with the
    ``[n_steps]`` schedules ``a[:, i]``, ``b[:, i]``. Returns
    ``(x, trajectory [B, n_steps // thin, d] or empty, energy_mean [n_steps] or empty)``:
    ``trajectory[:, k]`` is the state after step ``(k + 1) thin - 1``, ``energy_mean[t]`` the
    mean energy after step t."""
    w, bs, acts, p = _net(weights, biases, activations, act_params)
    a = _schedule(a)
    check_trajectory_size("mlp_langevin_chain", x0, a.shape[0] if a.dim() in (1, 2) else 0, int(thin),
                          bool(record_trajectory))
    return torch.ops.torchebm.mlp_langevin_chain(
        x0, w, bs, acts, p, float(out_scale), float(out_offset), a, _schedule(b),
        float_or_none(clamp_min), float_or_none(clamp_max), float_or_none(grad_clip),
        seed64(seed), int(thin), bool(record_trajectory), bool(record_energy), int(first_step),
    )


if _LOADED:

    @torch.library.register_fake("torchebm::mlp_langevin_chain")
    def _(x0, weights, biases, activations, act_params, out_scale, out_offset, a, b, clamp_min,
          clamp_max, grad_clip, seed, thin, record_trajectory, record_energy, first_step=0):
        _check_chain_devices("mlp_langevin_chain", x0, weights, biases, a=a, b=b)
        check_first_step("mlp_langevin_chain", first_step, a.shape[0])
        return chain_outputs_fake(x0, a.shape[0], thin, record_trajectory, record_energy, False)


def mlp_mala_chain(
    x0: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    activations: Sequence[int],
    act_params: Sequence[float],
    out_scale: float,
    out_offset: float,
    a: Any,
    b: Any,
    seed: int = 0,
    thin: int = 1,
    record_trajectory: bool = False,
    record_energy: bool = False,
    first_step: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``len(a)`` MALA steps in one call, step t as ``mala_chain``'s: proposal
    ``y = langevin_update(x, g_x, None, a[t], b[t], seed=seed, step=first_step + t)``, then
    ``mala_select(x, y, g_x, g_y, E_x, E_y, a[t], b[t], None, seed, first_step + t)`` (b > 0).
    ``a``, ``b``: ``[n_steps]`` or per-chain ``[n_steps, B]``, as in :func:`mlp_langevin_chain`.

    Returns ``(x, trajectory, energy_mean, acceptance_rate [n_steps])``."""
    w, bs, acts, p = _net(weights, biases, activations, act_params)
    a = _schedule(a)
    check_trajectory_size("mlp_mala_chain", x0, a.shape[0] if a.dim() in (1, 2) else 0, int(thin),
                          bool(record_trajectory))
    return torch.ops.torchebm.mlp_mala_chain(
        x0, w, bs, acts, p, float(out_scale), float(out_offset), a, _schedule(b),
        seed64(seed), int(thin), bool(record_trajectory), bool(record_energy), int(first_step),
    )


if _LOADED:

    @torch.library.register_fake("torchebm::mlp_mala_chain")
    def _(x0, weights, biases, activations, act_params, out_scale, out_offset, a, b, seed, thin,
          record_trajectory, record_energy, first_step=0):
        _check_chain_devices("mlp_mala_chain", x0, weights, biases, a=a, b=b)
        check_first_step("mlp_mala_chain", first_step, a.shape[0])
        return chain_outputs_fake(x0, a.shape[0], thin, record_trajectory, record_energy, True)


def mlp_hmc_chain(
    x0: torch.Tensor,
    weights: Sequence[torch.Tensor],
    biases: Sequence[torch.Tensor],
    activations: Sequence[int],
    act_params: Sequence[float],
    out_scale: float,
    out_offset: float,
    step_size: Any,
    n_leapfrog: int,
    inv_mass: Optional[torch.Tensor] = None,
    seed: int = 0,
    thin: int = 1,
    record_trajectory: bool = False,
    record_energy: bool = False,
    first_step: int = 0,
    leapfrog_steps: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``len(step_size)`` HMC transitions of ``n_leapfrog`` leapfrog steps in one call,
    transition t as ``hmc_chain``'s (momentum from stream 0, acceptance uniforms from stream 1
    at ``(seed, first_step + t)``; L gradients per transition, plus one at the start).
    ``step_size``: ``[n_steps]`` or per-chain ``[n_steps, B]`` (chain ``i``'s leapfrog steps
    have size ``step_size[t, i]``), as in :func:`mlp_langevin_chain`. ``inv_mass``: None, 0-d
    or ``[d]``. ``leapfrog_steps`` (int64 ``[n_steps]``, shared by the chains, each in
    ``[1, 2^31 - 1]``), when given, replaces ``n_leapfrog``: transition t takes
    ``leapfrog_steps[t]`` leapfrog steps (jittered trajectories, as ``ops.hmc_chain``).

    Returns ``(x, trajectory, energy_mean, acceptance_rate [n_steps])``."""
    w, bs, acts, p = _net(weights, biases, activations, act_params)
    step_size = _schedule(step_size)
    check_trajectory_size("mlp_hmc_chain", x0,
                          step_size.shape[0] if step_size.dim() in (1, 2) else 0, int(thin),
                          bool(record_trajectory))
    return torch.ops.torchebm.mlp_hmc_chain(
        x0, w, bs, acts, p, float(out_scale), float(out_offset), step_size,
        int(n_leapfrog), inv_mass, seed64(seed), int(thin), bool(record_trajectory),
        bool(record_energy), int(first_step), leapfrog_steps,
    )


if _LOADED:

    @torch.library.register_fake("torchebm::mlp_hmc_chain")
    def _(x0, weights, biases, activations, act_params, out_scale, out_offset, step_size,
          n_leapfrog, inv_mass, seed, thin, record_trajectory, record_energy, first_step=0,
          leapfrog_steps=None):
        _check_chain_devices("mlp_hmc_chain", x0, weights, biases, inv_mass, step_size=step_size,
                             leapfrog_steps=leapfrog_steps)
        check_first_step("mlp_hmc_chain", first_step, step_size.shape[0])
        return chain_outputs_fake(x0, step_size.shape[0], thin, record_trajectory, record_energy, True)


# ---- pure-PyTorch references ------------------------------------------------------------------
# The same contracts as the ops, with autograd for the gradient and the reference Philox
# streams (reference.philox_normal / philox_uniform, in float64 then rounded): slow, for tests.

_CODE_NAMES = {v: k for k, v in ACTIVATIONS.items()}


def _reference_energy(x, weights, biases, activations, act_params, out_scale, out_offset):
    h = x
    for l, (w, b) in enumerate(zip(weights, biases)):
        p = act_params[ACT_PARAMS * l : ACT_PARAMS * (l + 1)]
        h = _act_value(_CODE_NAMES[int(activations[l])], p, F.linear(h, w, b))
    return out_scale * h.sum(-1) + out_offset


def mlp_energy_grad_reference(
    x, weights, biases, activations, act_params, out_scale=1.0, out_offset=0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference of :func:`mlp_energy_grad`: torch's functions and autograd."""
    with torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        e = _reference_energy(xr, weights, biases, activations, act_params, out_scale, out_offset)
        (g,) = torch.autograd.grad(e.sum(), xr)
    return e.detach(), g


def _normal(shape, seed, t, dtype, device):
    return reference.philox_normal(shape, seed, t, dtype).to(device)


def _uniform(n, seed, t, dtype, device):
    return reference.philox_uniform([n], seed, t, dtype).to(device)


def _step_values(schedule, x, scale=1.0) -> list:
    """A schedule's values step by step as the kernels take them: a float per step for
    ``[n_steps]``, a per-chain tensor ``[B]`` in ``x``'s dtype per step for ``[n_steps, B]``
    (``scale`` times the float64 value, then rounded, as the kernels round ``0.5 eps``)."""
    s = _schedule(schedule)
    if s.dim() == 1:
        return [scale * v for v in s.tolist()]
    return [(scale * row).to(dtype=x.dtype, device=x.device) for row in s]


def _record(traj, energies, x, e, t, thin):
    if traj is not None and (t + 1) % thin == 0:
        traj.append(x)
    if energies is not None:
        energies.append(e.mean() if x.shape[0] else e.new_zeros(()))


def _chain_result(x0, x, traj, energies, acc=None):
    if traj is None:
        trajectory = x0.new_empty((0,))
    elif traj:
        trajectory = torch.stack(traj, 1)
    else:
        trajectory = x0.new_empty((x0.shape[0], 0, x0.shape[1]))
    out = [x, trajectory, torch.stack(energies) if energies else x0.new_zeros((0,))]
    if acc is not None:
        out.append(torch.stack(acc) if acc else x0.new_zeros((0,)))
    return tuple(out)


def mlp_langevin_chain_reference(
    x0, weights, biases, activations, act_params, out_scale, out_offset, a, b, clamp_min=None,
    clamp_max=None, grad_clip=None, seed=0, thin=1, record_trajectory=False, record_energy=False,
):
    """Reference of :func:`mlp_langevin_chain`: the per-step loop with autograd gradients."""
    net = (weights, biases, activations, act_params, out_scale, out_offset)
    a, b = _step_values(a, x0), _step_values(b, x0)
    x = x0.clone()
    traj = [] if record_trajectory else None
    energies = [] if record_energy else None
    for t in range(len(a)):
        _, g = mlp_energy_grad_reference(x, *net)
        xi = _normal(x.shape, seed, t, x.dtype, x.device)
        x = reference.langevin_update(x, g, xi, a[t], b[t], clamp_min, clamp_max, grad_clip)
        e = _reference_energy(x, *net) if record_energy else None
        _record(traj, energies, x, e, t, thin)
    return _chain_result(x0, x, traj, energies)


def mlp_mala_chain_reference(
    x0, weights, biases, activations, act_params, out_scale, out_offset, a, b, seed=0, thin=1,
    record_trajectory=False, record_energy=False,
):
    """Reference of :func:`mlp_mala_chain`."""
    net = (weights, biases, activations, act_params, out_scale, out_offset)
    a, b = _step_values(a, x0), _step_values(b, x0)
    x = x0.clone()
    ex, gx = mlp_energy_grad_reference(x, *net)
    traj = [] if record_trajectory else None
    energies = [] if record_energy else None
    acc = []
    for t in range(len(a)):
        xi = _normal(x.shape, seed, t, x.dtype, x.device)
        y = reference.langevin_update(x, gx, xi, a[t], b[t])
        ey, gy = mlp_energy_grad_reference(y, *net)
        u = _uniform(x.shape[0], seed, t, x.dtype, x.device)
        x, gx, ex, accepted = reference.mala_select(x, y, gx, gy, ex, ey, a[t], b[t], u)
        acc.append(accepted.to(x.dtype).mean() if x.shape[0] else x.new_zeros(()))
        _record(traj, energies, x, ex, t, thin)
    return _chain_result(x0, x, traj, energies, acc)


def mlp_hmc_chain_reference(
    x0, weights, biases, activations, act_params, out_scale, out_offset, step_size, n_leapfrog,
    inv_mass=None, seed=0, thin=1, record_trajectory=False, record_energy=False,
    leapfrog_steps=None,
):
    """Reference of :func:`mlp_hmc_chain` (the loop of docs/kernels.md's hmc_chain)."""
    net = (weights, biases, activations, act_params, out_scale, out_offset)
    eps, halves = _step_values(step_size, x0), _step_values(step_size, x0, 0.5)
    m = None if inv_mass is None else inv_mass.to(x0.dtype).expand(x0.shape[1])
    x = x0.clone()
    e, g = mlp_energy_grad_reference(x, *net)
    traj = [] if record_trajectory else None
    energies = [] if record_energy else None
    acc = []
    for t, (h, half) in enumerate(zip(eps, halves)):
        if leapfrog_steps is not None:
            n_leapfrog = int(leapfrog_steps[t])
        p = _normal(x.shape, seed, t, x.dtype, x.device)
        if m is not None:
            p = p / torch.sqrt(m)
        mm = m if m is not None else torch.ones((), dtype=x.dtype, device=x.device)
        h0 = e + 0.5 * (mm * p * p).sum(-1)
        y, p = reference.leapfrog_kick_drift(x, p, g, half, h, m)
        for l in range(1, n_leapfrog + 1):
            ey, gy = mlp_energy_grad_reference(y, *net)
            if l < n_leapfrog:
                y, p = reference.leapfrog_kick_drift(y, p, gy, h, h, m)
        p = p - reference.rows(half, p) * gy
        h1 = ey + 0.5 * (mm * p * p).sum(-1)
        u = _uniform(x.shape[0], seed, t, x.dtype, x.device)
        x, accepted = reference.metropolis_select(h0 - h1, x, y, u)
        sel = accepted.view(-1, 1)
        g = torch.where(sel, gy, g)
        e = torch.where(accepted, ey, e)
        acc.append(accepted.to(x.dtype).mean() if x.shape[0] else x.new_zeros(()))
        _record(traj, energies, x, e, t, thin)
    return _chain_result(x0, x, traj, energies, acc)


__all__ = [
    "ACTIVATIONS",
    "ACT_PARAMS",
    "MLPLayer",
    "MLPSpec",
    "recognise_mlp",
    "mlp_energy_grad",
    "mlp_langevin_chain",
    "mlp_mala_chain",
    "mlp_hmc_chain",
    "mlp_energy_grad_reference",
    "mlp_langevin_chain_reference",
    "mlp_mala_chain_reference",
    "mlp_hmc_chain_reference",
]
