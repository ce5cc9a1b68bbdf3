"""The Python values a model's ``forward`` can read, fingerprinted, for models whose code says
which: what lets :func:`torchebm.kernels.mlp.recognise_mlp` skip its probe.

``recognise_mlp`` traces ``forward`` once and caches the network it finds. The trace bakes in
the Python values that ``forward`` read (a ``self.temperature``, a module-level constant), so
on every later call it evaluates ``forward`` and the cached network on 4 states and compares
them (the probe): a forward pass per call, and on a GPU a wait for the device. When the code
that ``forward`` runs is known, so is every value it can read: the fingerprint collects them,
and a probe that passed with a fingerprint holds for every later call with the same one.

Known code, module by module of the model (all of them must be known, or there is no
fingerprint and every call probes):

- the exact classes of :func:`trusted_classes` (torch.nn's activations and ``Linear``,
  ``nn.Sequential``, this package's ``EnergyModel`` and ``MLP``): their ``forward`` reads the
  module's own attributes and submodules only. Fingerprinted: every entry of the module's
  ``__dict__`` that is not one of ``nn.Module``'s own (each must be a plain value: a number, a
  string, a bool, None or a dtype).
- any other class whose ``forward`` is straight-line code: only the instructions of
  :data:`STRAIGHT_LINE_OPS` (no branch, loop, closure, subscript or attribute store), loading
  globals that are ``torch`` modules or plain values. Fingerprinted: the globals it loads, and
  for every attribute name it loads, what the module gives for it: a submodule, parameter or
  buffer by identity, a plain value by value; a method or property of a class that is not
  torch's or this package's makes the module unknown.

Also in the fingerprint: each module's identity, class and ``forward`` function (with its
code and defaults), so that a replaced submodule or a patched class is seen. There is none
while a forward hook is set (on a module or globally), a class overrides ``__call__`` or
autocast is on. Not seen: torch's own functions replaced between calls.
"""

from __future__ import annotations

import builtins
import dis
import functools
import sys
import types
from typing import Any, Optional

import torch
from torch import nn

_PLAIN = (bool, int, float, str, type(None), torch.dtype)
_MODULE_INTERNALS = frozenset(nn.Module().__dict__)
_MISSING = object()

STRAIGHT_LINE_OPS = frozenset({
    "RESUME", "NOP", "CACHE", "LOAD_FAST", "LOAD_CONST", "LOAD_ATTR", "LOAD_METHOD",
    "LOAD_GLOBAL", "PRECALL", "CALL", "KW_NAMES", "PUSH_NULL", "UNARY_NEGATIVE", "BINARY_OP",
    "STORE_FAST", "POP_TOP", "COPY", "SWAP", "BUILD_TUPLE", "RETURN_VALUE", "RETURN_CONST",
})
"""The bytecode instructions of a straight-line ``forward`` (CPython 3.11 and later; an
instruction outside this set makes the code unknown)."""


def _library_class(cls: type) -> bool:
    module = cls.__module__ or ""
    return module.split(".")[0] in ("torch", "torchebm")


@functools.lru_cache(maxsize=None)
def trusted_classes() -> frozenset:
    """The classes whose ``forward`` reads only the module's own attributes and submodules."""
    from torchebm.core.neural_models import MLP, EnergyModel
    from torchebm.kernels.mlp import _ALLOWED_LEAVES

    return frozenset((*_ALLOWED_LEAVES, nn.Sequential, EnergyModel, MLP))


class _Code:
    """What a straight-line ``forward`` loads: global names and attribute names (in order)."""

    __slots__ = ("globals", "attributes")

    def __init__(self, globals_: tuple, attributes: tuple):
        self.globals = globals_
        self.attributes = attributes


_code_cache: dict = {}  # forward's code object -> _Code, or None when not straight-line


def _straight_line(fn: Any) -> Optional[_Code]:
    code = getattr(fn, "__code__", None)
    if code is None or code.co_freevars or code.co_cellvars:
        return None
    if code in _code_cache:
        return _code_cache[code]
    found: Optional[_Code] = _Code((), ())
    globals_, attributes = [], []
    for ins in dis.get_instructions(code):
        if ins.opname not in STRAIGHT_LINE_OPS:
            found = None
            break
        if ins.opname == "LOAD_GLOBAL":
            globals_.append(ins.argval)
        elif ins.opname in ("LOAD_ATTR", "LOAD_METHOD"):
            attributes.append(ins.argval)
    if found is not None:
        found = _Code(tuple(dict.fromkeys(globals_)), tuple(dict.fromkeys(attributes)))
    _code_cache[code] = found
    return found


def _global_value(fn: Any, name: str) -> Any:
    value = fn.__globals__.get(name, _MISSING)
    if value is _MISSING:
        value = getattr(builtins, name, _MISSING)
    if isinstance(value, types.ModuleType) and value.__name__.split(".")[0] == "torch":
        return ("module", id(value))
    if type(value) in _PLAIN:
        return ("value", type(value), value)
    return _MISSING  # a function, a class, a user module...: unknown code


def _attribute_value(m: nn.Module, name: str) -> Any:
    """What ``m.<name>`` gives, fingerprinted; None when ``m`` has no such attribute (the name
    is one of a tensor's or a torch module's); _MISSING when it is something whose effect this
    cannot see (a plain tensor, a list, a callable, a method of a user class)."""
    value = m.__dict__.get(name, _MISSING)
    if value is not _MISSING:
        return ("value", type(value), value) if type(value) in _PLAIN else _MISSING
    for table in (m._modules, m._parameters, m._buffers):
        value = table.get(name, _MISSING)
        if value is not _MISSING:
            # A submodule has its own fingerprint; the spec reads parameters and buffers live.
            return ("object", id(value))
    for cls in type(m).__mro__:
        if name in cls.__dict__:
            value = cls.__dict__[name]
            if type(value) in _PLAIN:
                return ("value", type(value), value)
            return ("library", id(value)) if _library_class(cls) else _MISSING
    return None


def fingerprint(model: nn.Module, device_type: str) -> Optional[tuple]:
    """The fingerprint of ``model`` (see the module's docstring), or None when its code is not
    all known, a forward hook is set or autocast is on for ``device_type``."""
    hooks = sys.modules["torch.nn.modules.module"]
    if getattr(hooks, "_global_forward_hooks", None) or getattr(hooks, "_global_forward_pre_hooks", None):
        return None
    if torch.is_autocast_enabled(device_type):
        return None
    trusted = trusted_classes()
    parts: list = []
    for m in model.modules():
        cls = type(m)
        if m._forward_hooks or m._forward_pre_hooks or cls.__call__ is not nn.Module.__call__:
            return None
        fn = cls.forward
        if cls in trusted:
            values = []
            for name, value in m.__dict__.items():
                if name in _MODULE_INTERNALS:
                    continue
                if type(value) not in _PLAIN:
                    return None
                values.append((name, type(value), value))
            parts.append((id(m), cls, fn, tuple(values)))
            continue
        if "forward" in m.__dict__:
            return None
        code = _straight_line(fn)
        if code is None:
            return None
        values = []
        for name in code.globals:
            value = _global_value(fn, name)
            if value is _MISSING:
                return None
            values.append((name, value))
        for name in code.attributes:
            value = _attribute_value(m, name)
            if value is _MISSING:
                return None
            values.append((name, value))
        parts.append((id(m), cls, fn, fn.__code__, fn.__defaults__, fn.__kwdefaults__, tuple(values)))
    return tuple(parts)
