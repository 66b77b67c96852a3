"""The TensorRT side, proven without TensorRT.

Two kinds of evidence:

1. Lowering. ``trt.lowering.lower_launch`` is the one function the TensorRT ``aot_impl`` calls; it
   interprets the launch plan with an algebra. Hypothesis checks, for random specs and shapes,
   that it gives the eager launch's grid, block, shared memory, extras and output shapes, both
   with sympy and with the ``ShapeExpr`` stand-in through the whole plugin (descriptor, then
   ``aot_impl``, then the build step that turns symbolic launch parameters into numbers).
2. Plugin functions. The descriptor, ``aot_impl`` and JIT impl kernelop builds are registered
   with ``StandInTrtp``, which stands for ``tensorrt.plugin`` (TensorRT 10.9-11.x) and applies
   its rules strictly: where TensorRT fails late or silently (a list shape, an ``np.int64``, an
   ``int`` extra), the stand-in fails at once. ``StandInTorchTensorRT`` stands for Torch-TensorRT's
   ``generate_plugin_converter`` (2.13 and later).

Tests that need the real TensorRT are marked ``tensorrt`` and skip without it.
"""
import ast
import enum
import inspect
import logging
import re
import typing
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import numpy.typing as npt
import pytest
import sympy
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernelop as ttk
from kernelop.compiler.target import DEFAULT_ARCH
from kernelop.dsl.validate import check_spec, scalar_names
from kernelop.errors import Where
from kernelop.plan.expr import INPUT, OUTPUT, SympyAlgebra, compile_int
from kernelop.plan.build import build_plan
from kernelop.pytorch.launcher import EagerLauncher
from kernelop.pytorch.schema import derive_schema, parse_schema
from kernelop.trt import builder as trt_builder
from kernelop.trt import registration as trt_registration
from kernelop.trt.backend import Backend, PluginRequest
from kernelop.trt.decision import RESERVED_NAMES, plugin_path, schema_problems
from kernelop.trt.functions import attribute_style
from kernelop.trt.lowering import ShapeExprAlgebra, UnsupportedShape, from_sympy, lower_launch
from kernelop.trt.ptx import PTX_ISA_FIRST_DRIVER, driver_cuda_version, max_ptx_isa, ptx_driver_problem, ptx_isa_version
from kernelop.trt.registration import prepare_tensorrt
from kernelop.trt.status import OnceNotice, probe_tensorrt, tensorrt_status, tensorrt_version_problem

from conftest import op_packet

SOURCE = 'extern "C" __global__ void k() {}\n'  # plans and plugins are built without compiling
PTX = b"//\n.version 8.0\n.target sm_80\n.address_size 64\n.visible .entry k()\n{\n\tret;\n}\n"
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SRC = Path(__file__).resolve().parents[1] / "src" / "kernelop"


def _has_tensorrt() -> bool:
    return tensorrt_status().available


# =============================================================================================
# Stand-ins
# =============================================================================================


class _Builder:
    """Stands for TensorRT's expression builder: active only inside the shape and launch callbacks."""

    active = False


class SymExpr:
    """Stands for ``trtp.SymExpr``."""


class _Comparison:
    """What ``==`` and ``<`` of expressions return: an expression, never a Python bool (10.16 rules)."""

    def __bool__(self) -> bool:
        raise RuntimeError("stand-in: the truth value of a symbolic comparison is unknown at build time")


class SymIntExpr(SymExpr):
    """Stands for ``trtp.SymIntExpr``; ``value`` is a sympy expression, or None for a fake/empty one.

    Only real Python ints make constants (TensorRT silently makes an empty expression of an
    ``np.int64``; the stand-in raises). No reflected operators, no ``/``, ``%``, unary ``-``,
    ``__int__`` or ``__index__``; unhashable.
    """

    def __init__(self, value: Any = None):
        if value is None:
            self.value = None
        elif type(value) is int:
            self.value = sympy.Integer(value) if _Builder.active else None
        elif isinstance(value, SymIntExpr):
            self.value = value.value
        elif isinstance(value, sympy.Basic):  # stands for trt.IDimensionExpr
            self.value = value
        else:
            raise TypeError(f"stand-in: {type(value).__name__} is not an int, IDimensionExpr or SymIntExpr")

    def _result(self, value: Any) -> "SymIntExpr":
        return SymIntExpr(value)  # operations on SymInt32 give the base class, as in TensorRT

    def _op(self, fn: Any, other: Any) -> "SymIntExpr":
        if type(other) is int:
            other = SymIntExpr(other)
        elif not isinstance(other, SymIntExpr):
            raise TypeError(f"stand-in: cannot combine an expression with {type(other).__name__}")
        if self.value is None or other.value is None:
            raise RuntimeError("stand-in: arithmetic on an empty expression (outside a shape callback)")
        return self._result(fn(self.value, other.value))

    def __add__(self, other: Any) -> "SymIntExpr":
        return self._op(lambda a, b: a + b, other)

    def __sub__(self, other: Any) -> "SymIntExpr":
        return self._op(lambda a, b: a - b, other)

    def __mul__(self, other: Any) -> "SymIntExpr":
        return self._op(lambda a, b: a * b, other)

    def __floordiv__(self, other: Any) -> "SymIntExpr":
        return self._op(lambda a, b: sympy.floor(a / b), other)

    def _reflected(self, other: Any) -> Any:
        raise TypeError("stand-in: ShapeExpr has no reflected operators; write N * 2, not 2 * N")

    __radd__ = __rsub__ = __rmul__ = __rfloordiv__ = _reflected

    def __eq__(self, other: Any) -> Any:  # type: ignore[override]
        return _Comparison()

    def __lt__(self, other: Any) -> Any:
        return _Comparison()

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        raise RuntimeError("stand-in: the truth value of a symbolic expression is unknown at build time")


class SymInt32(SymIntExpr):
    """Stands for ``trtp.SymInt32``."""


class ShapeExpr(SymInt32):
    """Stands for ``trtp.ShapeExpr``: operations give ShapeExprs; a fake one stays fake."""

    def __init__(self, value: Any = None):
        super().__init__(value)
        self.is_fake = self.value is None

    def _op(self, fn: Any, other: Any) -> "ShapeExpr":
        if self.is_fake:
            return ShapeExpr()
        return ShapeExpr(super()._op(fn, other))


def _unsimplified(kind: Any, a: Any, b: Any) -> Any:
    """Min/Max left unevaluated over symbols (sympy simplifies some wrongly; see SympyAlgebra)."""
    return kind(a, b, evaluate=not (sympy.sympify(a).free_symbols or sympy.sympify(b).free_symbols))


def _helper(fn: Any) -> Any:
    """Stands for ``trtp.cdiv`` / ``max`` / ``min``: not both ints; the result is a ShapeExpr."""

    def helper(first: Any, second: Any) -> ShapeExpr:
        if isinstance(first, int) and isinstance(second, int):
            raise ValueError("Both arguments cannot be 'int's")
        if isinstance(first, int):
            first = ShapeExpr(first)
        if not isinstance(first, ShapeExpr):
            raise TypeError(f"stand-in: expected int or ShapeExpr (got {type(first).__name__})")
        return first._op(fn, second)

    return helper


class SymExprs:
    """Stands for ``trtp.SymExprs``: ints become SymInt32, anything else that is no SymExpr raises."""

    def __init__(self, length: int):
        self._length = length
        self._exprs: List[Any] = [None] * length

    def __len__(self) -> int:
        return self._length

    def __iter__(self):
        return iter(self._exprs)

    def __getitem__(self, index: int) -> Any:
        return self._exprs[index]

    def __setitem__(self, index: int, value: Any) -> None:
        if index >= self._length:
            raise IndexError("Index out of range")
        if not isinstance(value, SymExpr):
            if type(value) is not int:
                raise ValueError(f"stand-in: {type(value).__name__} is not a symbolic integer")
            value = SymInt32(value)
        self._exprs[index] = value


class ShapeExprs(SymExprs):
    """Stands for ``trtp.ShapeExprs``: slots take ints or ShapeExprs; an input's are frozen."""

    def __init__(self, length: int, _is_dummy: bool = False):
        super().__init__(length)
        self.frozen = False
        if _is_dummy:
            self._exprs = [ShapeExpr() for _ in range(length)]

    @classmethod
    def from_tuple(cls, exprs: tuple) -> "ShapeExprs":
        inst = cls(len(exprs))
        for i, e in enumerate(exprs):
            inst[i] = e
        return inst

    def __setitem__(self, index: int, value: Any) -> None:
        if self.frozen:
            raise ValueError("stand-in: an input's shape expressions are immutable (like() may share them)")
        if index >= self._length:
            raise IndexError("Index out of range")
        if not isinstance(value, ShapeExpr):
            if type(value) is not int:
                raise ValueError(f"Value should be int or ShapeExpr. Got '{type(value)}'")
            value = ShapeExpr(value)
        self._exprs[index] = value

    def numel(self) -> ShapeExpr:
        result = ShapeExpr(1)
        for e in self._exprs:
            result = result * e
        return result


class SymIntExprs(SymExprs):
    """Stands for ``trtp.SymIntExprs``: an int is stored as a base SymIntExpr, which the build refuses."""

    def __setitem__(self, index: int, value: Any) -> None:
        if index >= self._length:
            raise IndexError("Index out of range")
        if not isinstance(value, SymIntExpr):
            if type(value) is not int:
                raise ValueError(f"Value should be int or SymIntExpr. Got '{type(value)}'")
            value = SymIntExpr(value)
        self._exprs[index] = value


class KernelLaunchParams:
    """Stands for ``trtp.KernelLaunchParams``: seven fields stored as SymInt32, nothing else settable."""

    FIELDS = ("grid_x", "grid_y", "grid_z", "block_x", "block_y", "block_z", "shared_mem")

    def __init__(self, grid_x=1, grid_y=1, grid_z=1, block_x=1, block_y=1, block_z=1, shared_mem=0):
        for name, value in zip(self.FIELDS, (grid_x, grid_y, grid_z, block_x, block_y, block_z, shared_mem)):
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.FIELDS:
            raise AttributeError(f"KernelLaunchParams object has no attribute '{name}'")
        object.__setattr__(self, name, SymInt32(value))


class TensorDesc:
    """Stands for ``trtp.TensorDesc`` as a descriptor sees it (no concrete shape).

    ``like()`` shares the shape expressions, as TensorRT 10.6-10.7 do, so an output built by
    mutating them would write into the (frozen) input.
    """

    def __init__(self, shape_expr: Any = None, dtype: Any = None):
        object.__setattr__(self, "_immutable", False)
        self.shape_expr = shape_expr
        self.dtype = dtype

    def __setattr__(self, name: str, value: Any) -> None:
        if self._immutable:
            raise ValueError("Cannot modify immutable TensorDesc properties")
        object.__setattr__(self, name, value)

    def freeze(self) -> "TensorDesc":
        object.__setattr__(self, "_immutable", True)
        if isinstance(self.shape_expr, ShapeExprs):
            self.shape_expr.frozen = True
        return self

    @property
    def ndim(self) -> int:
        return len(self.shape_expr)

    @property
    def has_shape(self) -> bool:
        return False

    @property
    def shape(self) -> Any:
        raise ValueError("TensorDesc has no shape information available at this stage")

    def like(self) -> "TensorDesc":
        return TensorDesc(self.shape_expr, self.dtype)


class Tensor:
    """Stands for ``trtp.Tensor`` in a JIT enqueue: a device pointer and a concrete shape."""

    def __init__(self, data_ptr: int, shape: tuple, dtype: Any):
        self.data_ptr, self.shape, self.dtype = data_ptr, tuple(shape), dtype


DataType = enum.Enum("DataType", "FLOAT HALF BF16 INT8 INT32 INT64 BOOL UINT8 FP8")
"""Stands for ``tensorrt.DataType``."""

_SERIALIZABLE = (int, float, bytes, bool, str)
_NP_DTYPES = (np.int8, np.int16, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_)
_EMPTY = inspect.Parameter.empty


def _is_class(annotation: Any, base: type) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, base)


def _ndarray_dtype(annotation: Any) -> Any:
    """The dtype of an ``NDArray[dt]`` annotation in both NumPy spellings (TensorRT 11.4 reads both):
    before NumPy 2.5 its origin is ``np.ndarray``; from 2.5 ``NDArray`` is a type alias."""
    origin = typing.get_origin(annotation)
    if origin is np.ndarray:
        return typing.get_args(typing.get_args(annotation)[1])[0]
    if origin is not None and origin is npt.NDArray:
        return typing.get_args(annotation)[0]
    return None


def converter_takes_array(annotation: Any) -> bool:
    """Torch-TensorRT's converter's own test (2.13+) of whether it passes an attribute as a 0-d array."""
    return annotation is np.ndarray or typing.get_origin(annotation) is np.ndarray


def _tuple_of(annotation: Any, base: type, what: str) -> int:
    if typing.get_origin(annotation) is not tuple:
        raise ValueError(f"'{what}' should be of type Tuple[{base.__name__}]. Received {annotation}.")
    args = typing.get_args(annotation)
    for arg in args:
        if arg is Ellipsis:
            raise TypeError("issubclass() arg 1 must be a class")  # what TensorRT's check does with `...`
        if not _is_class(arg, base):
            raise ValueError(f"'{what}' contains {arg}; it should be a Tuple[{base.__name__}]")
    return len(args)



class PluginDef:
    """Stands for ``tensorrt.plugin._lib.PluginDef``: what the registry keeps per plugin id."""

    def __init__(self, plugin_id: str, register_func: Any, tensor_names: List[str], attrs: Dict[str, Any], num_outputs: int):
        self.plugin_id = plugin_id
        self.register_func = register_func
        self.input_tensor_names = tensor_names
        self.input_attrs = attrs
        self.num_outputs = num_outputs
        self.impl_func = None
        self.impl_attr_names: List[str] = []
        self.expects_tactic = False
        self.aot_impl_func = None


class Launch(typing.NamedTuple):
    kernel_name: Any
    code: Any
    grid: Tuple[int, int, int]
    block: Tuple[int, int, int]
    shared_mem: int
    extras: Tuple[int, ...]


class Built(typing.NamedTuple):
    out_dtypes: List[Any]
    out_shapes: List[Tuple[int, ...]]
    launch: Optional[Launch]


def _concrete(expr: Any, env: Dict[Any, int]) -> int:
    assert isinstance(expr, SymIntExpr) and expr.value is not None, f"not a real expression: {expr!r}"
    value = sympy.sympify(sympy.sympify(expr.value).xreplace(env)).doit()  # all at once: sympy simplifies partial Max wrongly
    assert value.is_Integer, f"{expr.value} is not an integer for {env}"
    return int(value)


class StandInTrtp:
    """Stands for the ``tensorrt.plugin`` module: registration with its validation, plus the build
    and enqueue steps TensorRT runs later (``build``, ``enqueue``) and ``trtp.op.<ns>.<name>(...)``
    (``op_call``). ``events`` records the order of registrations."""

    ShapeExpr, ShapeExprs, SymExpr, SymExprs = ShapeExpr, ShapeExprs, SymExpr, SymExprs
    SymIntExpr, SymInt32, SymIntExprs = SymIntExpr, SymInt32, SymIntExprs
    KernelLaunchParams, TensorDesc, Tensor = KernelLaunchParams, TensorDesc, Tensor
    cdiv = staticmethod(_helper(lambda a, b: sympy.ceiling(a / b)))
    max = staticmethod(_helper(lambda a, b: _unsimplified(sympy.Max, a, b)))
    min = staticmethod(_helper(lambda a, b: _unsimplified(sympy.Min, a, b)))

    def __init__(self) -> None:
        self.registry: Dict[str, PluginDef] = {}
        self.events: List[Tuple[str, str]] = []

    @staticmethod
    def from_shape_expr(shape: Any, dtype: Any) -> TensorDesc:
        if isinstance(shape, tuple):
            shape = ShapeExprs.from_tuple(shape)
        elif not isinstance(shape, ShapeExprs):
            raise TypeError("stand-in: shape must be a tuple or ShapeExprs (TensorRT keeps a list and fails later)")
        return TensorDesc(shape, dtype)

    # -- registration (TENSORRT_QDP_API.md sections 1-3) ---------------------------------------

    def register(self, plugin_id: str, lazy_register: bool = False) -> Any:
        namespace, name = plugin_id.split("::")
        if "." in namespace or "." in name or namespace in ("", "trt", "tensorrt", "std"):
            raise ValueError(f"invalid plugin id {plugin_id}")

        def decorator(fn: Any) -> Any:
            if plugin_id in self.registry:
                raise ValueError(f"'{plugin_id}' already has a definition")
            signature = inspect.signature(fn)
            tensors: List[str] = []
            attrs: Dict[str, Any] = {}
            for index, (pname, param) in enumerate(signature.parameters.items()):
                if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
                    raise ValueError(f"Argument {pname} is not a positional-or-keyword or keyword-only arg")
                if param.annotation is _EMPTY:
                    raise ValueError(f"Argument {pname} does not have a type annotation")
                if param.default is not _EMPTY:
                    raise ValueError(f"Argument {pname} has a default value")
                if isinstance(param.annotation, str):
                    raise ValueError(f"stand-in: argument {pname} has the string annotation {param.annotation!r}")
                if _is_class(param.annotation, TensorDesc):
                    if attrs:
                        raise ValueError("TensorDescs args and attribute args cannot be interspersed")
                    tensors.append(pname)
                    continue
                if index == 0:
                    raise ValueError("TensorDescs args should come first, followed by attributes")
                if pname in RESERVED_NAMES:
                    raise ValueError(f"'{pname}' is not allowed as a plugin attribute name.")
                if param.annotation is np.ndarray:
                    raise ValueError("annotate numpy array attributes using 'numpy.typing.NDArray[dtype]'")
                if param.annotation not in _SERIALIZABLE and _ndarray_dtype(param.annotation) not in _NP_DTYPES:
                    raise ValueError(f"Attribute '{pname}' of type {param.annotation} is not a supported serializable type")
                attrs[pname] = param.annotation
            ret = signature.return_annotation
            if ret is _EMPTY:
                raise ValueError("No return annotation found for register function")
            if typing.get_origin(ret) is tuple:
                num_outputs = _tuple_of(ret, TensorDesc, "return")
            elif _is_class(ret, TensorDesc):
                num_outputs = 1
            else:
                raise ValueError(f"Return argument is of type {ret}. Return types can only be TensorDesc or Tuple[TensorDesc].")
            self.registry[plugin_id] = PluginDef(plugin_id, fn, tensors, attrs, num_outputs)
            self.events.append(("register", plugin_id))
            return fn

        return decorator

    def _attr_subset(self, fn: Any, plugin: PluginDef, tensor_class: type, special: Dict[str, Any]) -> Tuple[List[str], List[str]]:
        names = list(inspect.signature(fn).parameters)
        attr_names = []
        for pname, param in inspect.signature(fn).parameters.items():
            annotation = param.annotation
            if annotation is _EMPTY:
                if pname in plugin.input_attrs:
                    attr_names.append(pname)
                continue
            if isinstance(annotation, str):
                raise ValueError(f"stand-in: argument {pname} has the string annotation {annotation!r}")
            if pname in special:
                special[pname](annotation)
            elif _is_class(annotation, tensor_class):
                if pname not in plugin.input_tensor_names:
                    raise ValueError(f"Unexpected tensor '{pname}'")
            else:
                if pname not in plugin.input_attrs:
                    raise ValueError(f"Unexpected attribute '{pname}'")
                if annotation != plugin.input_attrs[pname]:
                    raise ValueError(f"Attribute '{pname}' has a type annotation different from the one specified at registration")
                attr_names.append(pname)
        ordered = [n for n in plugin.input_attrs if n in attr_names]
        return names, ordered

    @staticmethod
    def _int_annotation(what: str) -> Any:
        def check(annotation: Any) -> None:
            if not _is_class(annotation, int):
                raise ValueError(f"'{what}' input argument should be an int")

        return check

    def impl(self, plugin_id: str) -> Any:
        def decorator(fn: Any) -> Any:
            if plugin_id not in self.registry:
                raise ValueError(f"Plugin {plugin_id} is not registered")
            plugin = self.registry[plugin_id]
            special = {
                "outputs": lambda a: _tuple_of(a, Tensor, "outputs"),
                "stream": self._int_annotation("stream"),
                "tactic": self._int_annotation("tactic"),
            }
            names, attr_names = self._attr_subset(fn, plugin, Tensor, special)
            expected = plugin.input_tensor_names + attr_names + ["outputs", "stream"] + (["tactic"] if "tactic" in names else [])
            if names != expected:
                raise ValueError(f"Signature of the impl function {names} does not match the expected {expected}")
            ret = inspect.signature(fn).return_annotation
            if ret is not _EMPTY and ret is not None:
                raise ValueError("Return annotation should be None.")
            plugin.impl_func, plugin.impl_attr_names, plugin.expects_tactic = fn, attr_names, "tactic" in names
            self.events.append(("impl", plugin_id))
            return fn

        return decorator

    def aot_impl(self, plugin_id: str) -> Any:
        def decorator(fn: Any) -> Any:
            if plugin_id not in self.registry:
                raise ValueError(f"Plugin {plugin_id} is not registered")
            plugin = self.registry[plugin_id]
            special = {"outputs": lambda a: _tuple_of(a, TensorDesc, "outputs"), "tactic": self._int_annotation("tactic")}
            names, attr_names = self._attr_subset(fn, plugin, TensorDesc, special)
            expected = plugin.input_tensor_names + attr_names + ["outputs", "tactic"]
            if names != expected:
                raise ValueError(f"Signature of the aot_impl function {names} does not match the expected {expected}")
            ret = inspect.signature(fn).return_annotation
            if ret is _EMPTY:
                raise ValueError("No return annotation found for aot_impl function.")
            args = typing.get_args(ret)
            if typing.get_origin(ret) is not tuple or len(args) != 4:
                raise ValueError(f"Return annotation is {ret}. Expected a 4-tuple.")
            for index in (0, 1):
                parts = typing.get_args(args[index]) if typing.get_origin(args[index]) is Union else (args[index],)
                if any(p is not str and p is not bytes for p in parts):
                    raise ValueError(f"Return annotation for argument at {index} is '{args[index]}'. Expected 'str' or 'bytes'.")
            if not _is_class(args[2], KernelLaunchParams):
                raise ValueError("Argument at index 2 of return annotation must be KernelLaunchParams")
            if not _is_class(args[3], SymExprs):
                raise ValueError("Argument at index 3 of return annotation must be a SymExprs")
            plugin.aot_impl_func = fn
            self.events.append(("aot_impl", plugin_id))
            return fn

        return decorator

    # -- what TensorRT does later --------------------------------------------------------------

    @staticmethod
    def _deliver(annotation: Any, value: Any) -> Any:
        """An attribute as TensorRT's plugin creator hands it to the functions."""
        dtype = _ndarray_dtype(annotation)
        if dtype is not None:
            return np.array([value]).astype(dtype)
        return annotation(value)

    @staticmethod
    def _outputs(plugin: PluginDef, result: Any) -> List[TensorDesc]:
        outputs = list(result) if isinstance(result, tuple) else [result]
        assert len(outputs) == plugin.num_outputs, (len(outputs), plugin.num_outputs)
        assert all(isinstance(o, TensorDesc) for o in outputs), outputs
        return outputs

    def build(self, plugin_id: str, shapes: List[Tuple[int, ...]], dtypes: List[Any], attrs: Dict[str, Any], tactic: int = 0) -> Built:
        """The engine build: descriptor with fake then real expressions, then the AOT launch parameters."""
        plugin = self.registry[plugin_id]
        values = {name: self._deliver(plugin.input_attrs[name], attrs[name]) for name in plugin.input_attrs}
        assert not _Builder.active
        fakes = [TensorDesc(ShapeExprs(len(s), _is_dummy=True), dt).freeze() for s, dt in zip(shapes, dtypes)]
        out_dtypes = [o.dtype for o in self._outputs(plugin, plugin.register_func(*fakes, **values))]
        _Builder.active = True
        try:
            symbols = [[sympy.Symbol(f"in{i}_{a}", integer=True, nonnegative=True) for a in range(len(s))] for i, s in enumerate(shapes)]
            env = {sym: size for syms, shape in zip(symbols, shapes) for sym, size in zip(syms, shape)}
            inputs = [TensorDesc(ShapeExprs.from_tuple(tuple(ShapeExpr(s) for s in syms)), dt).freeze() for syms, dt in zip(symbols, dtypes)]
            outputs = self._outputs(plugin, plugin.register_func(*inputs, **values))
            for out, dtype in zip(outputs, out_dtypes):
                assert out.dtype == dtype, "the two descriptor passes disagree on a dtype"
                assert isinstance(out.shape_expr, ShapeExprs), type(out.shape_expr)
                assert all(isinstance(e, ShapeExpr) and not e.is_fake for e in out.shape_expr), "an output slot is unset or fake"
                out.freeze()
            out_shapes = [tuple(_concrete(e, env) for e in out.shape_expr) for out in outputs]
            launch = None
            if plugin.aot_impl_func is not None:  # every attribute, positionally (get_launch_params)
                result = plugin.aot_impl_func(*inputs, *[values[n] for n in plugin.input_attrs], tuple(outputs), tactic)
                name, code, params, extras = result
                if not isinstance(name, (str, bytes)) or not isinstance(code, (str, bytes)):
                    raise TypeError("PTX/CUBIN must be a 'str' or 'bytes'")
                if not isinstance(params, KernelLaunchParams):
                    raise TypeError("Launch params must be a 'tensorrt.plugin.KernelLaunchParams'")
                if not isinstance(extras, SymExprs):
                    raise TypeError("Extra args must be a 'tensorrt.plugin.SymIntExprs'")
                for arg in extras:
                    if not isinstance(arg, SymInt32):
                        raise TypeError(f"Extra args must be a 'tensorrt.plugin.SymInt32'. Got: {type(arg)}.")
                field = lambda f: _concrete(getattr(params, f), env)  # noqa: E731
                launch = Launch(
                    name, code,
                    (field("grid_x"), field("grid_y"), field("grid_z")),
                    (field("block_x"), field("block_y"), field("block_z")),
                    field("shared_mem"),
                    tuple(_concrete(e, env) for e in extras),
                )
        finally:
            _Builder.active = False
        return Built(out_dtypes, out_shapes, launch)

    def enqueue(self, plugin_id: str, inputs: List[Tensor], attrs: Dict[str, Any], outputs: List[Tensor], stream: int) -> None:
        """A JIT plugin's enqueue: impl(*inputs, *attrs it declared, outputs, stream=stream)."""
        plugin = self.registry[plugin_id]
        values = [self._deliver(plugin.input_attrs[n], attrs[n]) for n in plugin.impl_attr_names]
        plugin.impl_func(*inputs, *values, outputs, stream=stream)

    def op_call(self, plugin_id: str, **kwargs: Any) -> None:
        """``trtp.op.<ns>.<name>(*itensors, **attrs)``: every attribute, in order, of the annotated type."""
        plugin = self.registry[plugin_id]
        for key, value in kwargs.items():
            annotation = plugin.input_attrs[key]
            if isinstance(value, np.ndarray):
                if typing.get_origin(annotation) == np.ndarray and np.dtype(_ndarray_dtype(annotation)) != value.dtype:
                    raise ValueError(f"Unexpected dtype '{value.dtype}' for attribute '{key}'")
            elif annotation is not type(value):
                raise ValueError(f"Unexpected type '{type(value)}' for attribute '{key}'")
        if list(kwargs) != list(plugin.input_attrs):
            raise ValueError(f"Unexpected schema {list(kwargs)} received. Expected {list(plugin.input_attrs)}.")


class StandInTorchTensorRT:
    """Stands for Torch-TensorRT's ``generate_plugin_converter`` (2.13+): it fixes AOT vs JIT when
    it is called, from whether an ``aot_impl`` is registered; ``convert`` does what its converter
    does with the FX node's scalar arguments before calling the plugin."""

    def __init__(self, trtp: StandInTrtp):
        self.trtp = trtp
        self.converters: Dict[str, Dict[str, Any]] = {}

    def generate_plugin_converter(self, plugin_id: str, capability_validator=None, priority=None,
                                  supports_dynamic_shapes=False, requires_output_allocator=False, use_aot_if_available=True) -> None:
        assert plugin_id in self.trtp.registry, f"Could not find a tensorrt plugin registered for op {plugin_id}"
        plugin = self.trtp.registry[plugin_id]
        self.converters[plugin_id] = dict(
            aot=use_aot_if_available and plugin.aot_impl_func is not None,
            capability_validator=capability_validator,
            priority=priority,
            supports_dynamic_shapes=supports_dynamic_shapes,
            requires_output_allocator=requires_output_allocator,
        )
        self.trtp.events.append(("converter", plugin_id))

    def convert(self, plugin_id: str, schema: Any, scalar_args: List[Any]) -> Dict[str, Any]:
        plugin = self.trtp.registry[plugin_id]
        kwargs = {a.name: a.default_value for a in schema.arguments if a.default_value is not None}
        kwargs.update(zip(plugin.input_attrs, scalar_args))
        kinds = {a.name: str(a.type) for a in schema.arguments}
        for key, value in list(kwargs.items()):
            value = {"float": float, "int": int, "bool": bool}[kinds[key]](value)
            annotation = plugin.input_attrs[key]
            kwargs[key] = np.asarray(value, dtype=_ndarray_dtype(annotation)) if converter_takes_array(annotation) else value
        self.trtp.op_call(plugin_id, **kwargs)
        return kwargs


class FakeBinaries:
    """Stands for ``KernelBinaries``: records the architectures asked for, returns fixed PTX."""

    def __init__(self, ptx: bytes = PTX, name: str = "k_lowered", arch_override: Optional[str] = None):
        self.ptx, self.name, self.requested, self.arch_override = ptx, name, [], arch_override

    def for_arch(self, arch: str, key: Optional[tuple] = None) -> Any:
        self.requested.append(arch)
        return SimpleNamespace(ptx=self.ptx, lowered_name=self.name)


def standin_backend(**fields: Any) -> Tuple[Backend, StandInTrtp, StandInTorchTensorRT]:
    trtp = StandInTrtp()
    torch_tensorrt = StandInTorchTensorRT(trtp)
    fields.setdefault("aot_supported", True)
    backend = Backend(trtp=trtp, data_type=DataType, registry=trtp.registry,
                         generate_converter=torch_tensorrt.generate_plugin_converter, **fields)
    return backend, trtp, torch_tensorrt


# =============================================================================================
# Helpers
# =============================================================================================

OP = "kotrt::op"


def spec_of(inputs, outputs, geometry, extras=(), **fields) -> ttk.KernelSpec:
    return ttk.KernelSpec(SOURCE, "k", inputs=list(inputs), outputs=list(outputs) if outputs is not None else None,
                          extras=list(extras), geometry=geometry, **fields)


def request_for(spec: ttk.KernelSpec, *, op: str = OP, aot_fn=None, meta_fn=None, schema=None, binaries=None,
                require_aot: bool = False, **options: Any) -> PluginRequest:
    """The request ``cuda_kernel_op`` builds, without compiling or registering anything in torch."""
    where = Where("cuda_kernel_op", op)
    check_spec(where, spec, has_meta_fn=meta_fn is not None, has_eager_fn=aot_fn is not None, has_aot_fn=aot_fn is not None)
    plan = build_plan(op, spec, num_outputs=1)
    parsed = parse_schema(where, op, derive_schema(where, spec, plan.params, meta_fn, schema))
    plan = build_plan(op, spec, len(parsed.returns))
    options.setdefault("supports_dynamic_shapes", True)
    options.setdefault("requires_output_allocator", False)
    options.setdefault("priority", ttk.ConverterPriority.STANDARD)
    options.setdefault("capability_validator", None)
    path = plugin_path(spec.geometry, scalar_names(spec), aot_fn)
    binaries = binaries or FakeBinaries(arch_override=spec.arch_override)
    return PluginRequest(op, parsed, path, plan, binaries, None, spec.kernel_name, meta_fn, aot_fn,
                         require_aot=require_aot, **options)


def deploy(request: PluginRequest, **backend_fields: Any):
    """Prepare and register the plugin with stand-ins; returns (prepared, trtp, torch_tensorrt)."""
    backend, trtp, torch_tensorrt = standin_backend(**backend_fields)
    prepared = prepare_tensorrt(Where("cuda_kernel_op", request.op_name), request, backend)
    prepared.register()
    return prepared, trtp, torch_tensorrt


def eager_launch(plan, in_shapes):
    """Grid, block, shared memory, extras and output shapes exactly as the eager launcher computes them."""
    in_ranks = tuple(len(s) for s in in_shapes)
    values = EagerLauncher(plan, None, None).launch_values(list(in_shapes))
    n = len(plan.extras)
    out_exprs = [e for shape in plan.output_shapes(in_ranks) for e in shape]
    flat = list(compile_int(out_exprs)(list(in_shapes), ())) if out_exprs else []
    out_shapes, i = [], 0
    for shape in plan.output_shapes(in_ranks):
        out_shapes.append(tuple(flat[i:i + len(shape)]))
        i += len(shape)
    return tuple(values[0:3]), tuple(values[3:6]), values[6], tuple(values[7:7 + n]), out_shapes


def sympy_launch(plan, in_shapes, out_shapes):
    """The same lowering as the TensorRT aot_impl, interpreted by sympy, then evaluated."""
    algebra = SympyAlgebra()
    in_ranks = tuple(len(s) for s in in_shapes)
    lowered = lower_launch(plan, in_ranks, tuple(len(s) for s in out_shapes), algebra)
    env = {algebra.symbol(INPUT, i, a): n for i, s in enumerate(in_shapes) for a, n in enumerate(s)}
    env.update({algebra.symbol(OUTPUT, i, a): n for i, s in enumerate(out_shapes) for a, n in enumerate(s)})
    value = lambda e: int(sympy.sympify(sympy.sympify(e).xreplace(env)).doit())  # noqa: E731 - all at once, see _concrete
    return (tuple(value(e) for e in lowered.grid), tuple(value(e) for e in lowered.block), value(lowered.shared_mem),
            tuple(value(e) for e in lowered.extras))


# =============================================================================================
# 1. Lowering: every geometry, random shapes, against the eager launch
# =============================================================================================

sizes = st.one_of(st.integers(0, 12), st.integers(13, 3000))


@st.composite
def declarative_cases(draw):
    """A declarative spec (flat, nd with 1-3 block dims, or reduction), input shapes and dtypes."""
    kind = draw(st.sampled_from(["flat", "nd", "reduction"]))
    shared = draw(st.sampled_from([0, 0, 1024, 49152]))
    if kind == "flat":
        rank0 = draw(st.integers(0, 4))
        geometry = ttk.Elementwise(block=(draw(st.integers(1, 1024)),), layout="flat", shared_mem_bytes=shared)
    elif kind == "nd":
        tiled = draw(st.integers(1, 3))
        block = tuple(draw(st.lists(st.integers(1, 10), min_size=tiled, max_size=tiled)))
        rank0 = draw(st.integers(tiled, 5))
        geometry = ttk.Elementwise(block=block, layout="nd", shared_mem_bytes=shared)
    else:
        rank0 = draw(st.integers(1, 4))
        axes = draw(st.lists(st.integers(0, rank0 - 1), min_size=1, max_size=rank0, unique=True))
        dims = tuple(a - rank0 if draw(st.booleans()) else a for a in axes)
        geometry = ttk.Reduction(reduce_dims=dims, block_size=draw(st.integers(1, 1024)), shared_mem_bytes=shared)
    shapes = [tuple(draw(st.lists(sizes, min_size=rank0, max_size=rank0)))]
    inputs = [ttk.InputDecl("x")]
    if kind == "reduction":
        outputs = [ttk.OutputDecl("y", shape=ttk.ReduceDims("x", geometry.reduce_dims, keepdim=draw(st.booleans())))]
    else:
        outputs = [ttk.OutputDecl("y", shape=ttk.SameAs("x"))]
    dtypes = [draw(st.sampled_from([DataType.FLOAT, DataType.HALF]))]
    if draw(st.booleans()):
        rank1 = draw(st.integers(0, 3))
        shapes.append(tuple(draw(st.lists(sizes, min_size=rank1, max_size=rank1))))
        inputs.append(ttk.InputDecl("w"))
        dtypes.append(draw(st.sampled_from([DataType.FLOAT, DataType.INT32])))
        if draw(st.booleans()):
            outputs.append(ttk.OutputDecl("z", shape=ttk.SameAs("w"), dtype_from=draw(st.sampled_from(["x", "w"]))))
    extras = []
    for _ in range(draw(st.integers(0, 3))):
        index = draw(st.integers(0, len(inputs) - 1))
        rank = len(shapes[index])
        if rank and draw(st.booleans()):
            extras.append(ttk.DimSize(inputs[index].name, draw(st.integers(-rank, rank - 1))))
        else:
            extras.append(ttk.Numel(inputs[index].name))
    return spec_of(inputs, outputs, geometry, extras), shapes, dtypes


@PROPERTY
@given(declarative_cases())
def test_lowering_through_shape_exprs_and_sympy_equals_the_eager_launch(case):
    assert_lowering_equals_the_eager_launch(*case)


def assert_lowering_equals_the_eager_launch(spec: ttk.KernelSpec, shapes: List[Tuple[int, ...]], dtypes: List[Any]) -> None:
    """Through the whole plugin (descriptor, aot_impl, build) and through sympy: the eager values."""
    request = request_for(spec)
    _, trtp, _ = deploy(request)
    built = trtp.build(OP, shapes, dtypes, attrs={})
    grid, block, shared, extras, out_shapes = eager_launch(request.plan, shapes)
    assert built.out_shapes == out_shapes
    assert built.launch.grid == grid and built.launch.block == block
    assert built.launch.shared_mem == shared and built.launch.extras == extras
    assert sympy_launch(request.plan, shapes, out_shapes) == (grid, block, shared, extras)
    assert built.out_dtypes == [dtypes[rule.dtype_source] for rule in request.plan.outputs]


@st.composite
def size_expressions(draw, names: Dict[str, int], depth: int = 2):
    """A size expression over tensors ``names`` (name -> rank) with every operator kernelop has;
    divisors are >= 1 and differences are clamped at 0, as launch sizes must be."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        name = draw(st.sampled_from(sorted(names)))
        rank = names[name]
        choice = draw(st.integers(0, 2))
        if choice == 0 and rank:
            return ttk.dim(name, draw(st.integers(-rank, rank - 1)))
        if choice == 1:
            return ttk.numel(name)
        return ttk.maximum(draw(st.integers(0, 300)), 0)
    a = draw(size_expressions(names, depth - 1))
    b = draw(size_expressions(names, depth - 1))
    op = draw(st.sampled_from(["+", "*", "//", "cdiv", "-", "min", "max"]))
    if op == "+":
        return a + b
    if op == "*":
        return a * b
    if op == "//":
        return a // ttk.maximum(b, 1)
    if op == "cdiv":
        return ttk.cdiv(a, b + 1)
    if op == "-":
        return ttk.maximum(a - b, 0)
    return ttk.minimum(a, b) if op == "min" else ttk.maximum(a, b)


@st.composite
def launch_cases(draw):
    """A ``Launch`` geometry, ``SizeArg`` extras and an output shaped by sizes, all random expressions."""
    ranks = {"x": draw(st.integers(0, 3))}
    inputs = [ttk.InputDecl("x")]
    if draw(st.booleans()):
        ranks["w"] = draw(st.integers(0, 3))
        inputs.append(ttk.InputDecl("w"))
    shapes = [tuple(draw(st.lists(st.integers(0, 40), min_size=r, max_size=r))) for r in ranks.values()]
    out_shape = tuple(draw(st.lists(size_expressions(ranks, 1), min_size=0, max_size=3)))
    outputs = [ttk.OutputDecl("y", shape=out_shape), ttk.OutputDecl("z", shape=ttk.SameAs("x"))]
    sized = {**ranks, "y": len(out_shape), "z": ranks["x"]}
    grid = tuple(draw(st.lists(size_expressions(sized), min_size=1, max_size=3)))
    block = tuple(ttk.minimum(ttk.maximum(e, 1), 64) for e in draw(st.lists(size_expressions(sized), min_size=1, max_size=3)))
    shared = draw(size_expressions(sized))
    extras = [ttk.SizeArg(f"e{i}", draw(size_expressions(sized))) for i in range(draw(st.integers(0, 3)))]
    return spec_of(inputs, outputs, ttk.Launch(grid, block, shared), extras), shapes, [DataType.FLOAT] * len(shapes)


@PROPERTY
@given(launch_cases())
def test_launch_geometry_from_sizes_lowers_like_the_eager_launch(case):
    """Grid, block, shared memory, extras and output shapes written as size expressions: TensorRT's
    ShapeExpr lowering (through the whole plugin), sympy and the eager closure agree."""
    assert_lowering_equals_the_eager_launch(*case)


@pytest.mark.parametrize(
    "geometry, shape, grid, block",
    [
        (ttk.Elementwise(block=(256,)), (4, 1000), (16, 1, 1), (256, 1, 1)),
        (ttk.Elementwise(block=(32,), layout="nd"), (2, 3, 70), (3, 1, 6), (32, 1, 1)),
        (ttk.Elementwise(block=(32, 8), layout="nd"), (2, 3, 45, 70), (3, 6, 6), (32, 8, 1)),
        (ttk.Elementwise(block=(8, 4, 2), layout="nd"), (5, 3, 9, 17), (3, 3, 10), (8, 4, 2)),
        (ttk.Reduction(reduce_dims=(-1,), block_size=128), (6, 5000), (6, 1, 1), (128, 1, 1)),
        (ttk.Reduction(reduce_dims=(0, 2)), (3, 4, 5, 6), (24, 1, 1), (256, 1, 1)),
    ],
)
def test_lowered_launch_of_each_geometry_has_the_documented_numbers(geometry, shape, grid, block):
    """flat: cdiv(numel, bx); nd: trailing axes tiled, block[0] innermost, leading axes folded into z;
    reduction: one block per kept element."""
    if isinstance(geometry, ttk.Reduction):
        outputs = [ttk.OutputDecl("y", shape=ttk.ReduceDims("x", geometry.reduce_dims))]
    else:
        outputs = [ttk.OutputDecl("y", shape=ttk.SameAs("x"))]
    request = request_for(spec_of([ttk.InputDecl("x")], outputs, geometry, [ttk.Numel("x")]))
    _, trtp, _ = deploy(request)
    launch = trtp.build(OP, [shape], [DataType.FLOAT], {}).launch
    assert (launch.grid, launch.block) == (grid, block)
    assert launch.extras == (int(np.prod(shape)),)


def test_shape_expr_algebra_keeps_expressions_on_the_left():
    """``2 * N`` raises on TensorRT's ShapeExpr; the algebra must write ``N * 2`` and fold int pairs."""
    _Builder.active = True
    try:
        n = ShapeExpr(sympy.Symbol("n", positive=True, integer=True))
        with pytest.raises(TypeError, match="reflected"):
            2 * n  # the stand-in has TensorRT's gap
        with pytest.raises(ValueError, match="Both arguments"):
            StandInTrtp.cdiv(6, 4)
        algebra = ShapeExprAlgebra(StandInTrtp, [])
        assert algebra.mul(2, n).value == 2 * n.value
        assert algebra.add(1, n).value == n.value + 1
        assert algebra.sub(10, n).value == 10 - n.value
        assert algebra.cdiv(6, 4) == 2 and algebra.mul(3, 4) == 12 and algebra.floordiv(7, 2) == 3
        assert isinstance(algebra.cdiv(n, 4), ShapeExpr) and isinstance(algebra.max(4, n), ShapeExpr)
    finally:
        _Builder.active = False


def test_extras_are_sym_int32_even_when_constant():
    """Numel of a 0-d input is the constant 1: it must still reach TensorRT as SymInt32."""
    request = request_for(spec_of([ttk.InputDecl("x"), ttk.InputDecl("s")], [ttk.OutputDecl("y", shape=ttk.SameAs("x"))],
                                  ttk.Elementwise(), [ttk.Numel("s"), ttk.Numel("x")]))
    prepared, trtp, _ = deploy(request)
    _Builder.active = True
    try:
        inputs = [TensorDesc(ShapeExprs.from_tuple((ShapeExpr(sympy.Symbol("a", positive=True)),))).freeze(),
                  TensorDesc(ShapeExprs(0)).freeze()]
        outputs = (TensorDesc(ShapeExprs.from_tuple((ShapeExpr(sympy.Symbol("a", positive=True)),))).freeze(),)
        _, _, params, extras = prepared.impl(*inputs, outputs, 0)
    finally:
        _Builder.active = False
    assert [type(e) for e in extras] == [SymInt32, ShapeExpr]
    assert extras[0].value == 1
    assert trtp.build(OP, [(7,), ()], [DataType.FLOAT, DataType.FLOAT], {}).launch.extras == (1, 7)


def test_the_build_refuses_int_extras_stored_by_sym_int_exprs():
    """Teeth of the stand-in: ``SymIntExprs[i] = 5`` stores a base SymIntExpr, which the build refuses."""
    trtp = StandInTrtp()

    @trtp.register("kotrt::bad")
    def desc(x: TensorDesc) -> TensorDesc:
        return x.like()

    @trtp.aot_impl("kotrt::bad")
    def aot(x: TensorDesc, outputs: Tuple[TensorDesc], tactic: int) -> Tuple[Union[str, bytes], Union[str, bytes], KernelLaunchParams, SymIntExprs]:
        extras = SymIntExprs(1)
        extras[0] = 5
        return "k", PTX, KernelLaunchParams(), extras

    with pytest.raises(TypeError, match="SymInt32"):
        trtp.build("kotrt::bad", [(3,)], [DataType.FLOAT], {})


# =============================================================================================
# 2. The plugin functions TensorRT validates
# =============================================================================================

AXPY_SPEC = spec_of(
    [ttk.InputDecl("x"), ttk.InputDecl("y"), ttk.ScalarInput("alpha", float), ttk.ScalarInput("k", int), ttk.ScalarInput("flag", bool)],
    [ttk.OutputDecl("out", shape=ttk.SameAs("x"))],
    ttk.Elementwise(block=(128,)),
    [ttk.Numel("x")],
)
TWO_OUT_SPEC = spec_of(
    [ttk.InputDecl("x"), ttk.InputDecl("w")],
    [ttk.OutputDecl("s", shape=ttk.SameAs("x"), dtype_from="w"), ttk.OutputDecl("r", shape=ttk.ReduceDims("x", (-1,), keepdim=True))],
    ttk.Elementwise(block=(64,)),
    [ttk.Numel("x")],
)


def _annotations(fn: Any) -> Dict[str, Any]:
    return {name: p.annotation for name, p in inspect.signature(fn).parameters.items()}


def test_descriptor_takes_tensor_descs_then_attributes_and_returns_an_exact_tuple():
    prepared, _, _ = deploy(request_for(TWO_OUT_SPEC))
    assert _annotations(prepared.descriptor) == {"x": TensorDesc, "w": TensorDesc}
    ret = inspect.signature(prepared.descriptor).return_annotation
    assert typing.get_origin(ret) is tuple and typing.get_args(ret) == (TensorDesc, TensorDesc)  # never `...`

    for style, float_, int_, bool_ in [("ndarray", npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.bool_]),
                                       ("builtin", float, int, bool)]:
        single, _, _ = deploy(request_for(AXPY_SPEC), attribute_style=style)
        assert _annotations(single.descriptor) == {"x": TensorDesc, "y": TensorDesc, "alpha": float_, "k": int_, "flag": bool_}
        assert inspect.signature(single.descriptor).return_annotation is TensorDesc


def test_aot_impl_declares_every_attribute_in_order_and_ends_with_tactic():
    def aot_fn(inputs, outputs, tactic):
        return KernelLaunchParams(grid_x=inputs[0].shape_expr[0]), None

    prepared, trtp, _ = deploy(request_for(AXPY_SPEC, aot_fn=aot_fn))
    assert prepared.path.aot and prepared.path.source == "aot_fn"
    assert list(inspect.signature(prepared.impl).parameters) == ["x", "y", "alpha", "k", "flag", "outputs", "tactic"]
    annotations = _annotations(prepared.impl)
    assert annotations["outputs"] == Tuple[TensorDesc] and annotations["tactic"] is int
    assert annotations["alpha"] is prepared.descriptor.__annotations__["alpha"]
    ret = inspect.signature(prepared.impl).return_annotation
    assert typing.get_args(ret) == (Union[str, bytes], Union[str, bytes], KernelLaunchParams, SymIntExprs)
    launch = trtp.build(OP, [(5, 3), (5, 3)], [DataType.FLOAT] * 2, {"alpha": 2.0, "k": 3, "flag": True}).launch
    assert launch.grid == (5, 1, 1) and launch.extras == ()  # None extras became SymIntExprs(0)


def test_an_aot_impl_declaring_an_attribute_subset_passes_validation_but_fails_the_build():
    """Why every attribute is declared: the build passes them all positionally."""
    trtp = StandInTrtp()

    @trtp.register("kotrt::subset")
    def desc(x: TensorDesc, a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> TensorDesc:
        return x.like()

    @trtp.aot_impl("kotrt::subset")
    def aot(x: TensorDesc, b: npt.NDArray[np.int64], outputs: Tuple[TensorDesc], tactic: int) -> Tuple[str, bytes, KernelLaunchParams, SymExprs]:
        return "k", PTX, KernelLaunchParams(), SymIntExprs(0)

    with pytest.raises(TypeError):
        trtp.build("kotrt::subset", [(3,)], [DataType.FLOAT], {"a": 1, "b": 2})


@pytest.mark.parametrize(
    "annotations, error",
    [
        (dict(outputs=Tuple[TensorDesc, ...]), TypeError),  # `...`: issubclass(Ellipsis, ...)
        (dict(outputs=List[TensorDesc]), ValueError),
        (dict(ret=Tuple[str, bytes, KernelLaunchParams]), ValueError),  # not a 4-tuple
        (dict(ret=_EMPTY), ValueError),  # the return annotation is mandatory
        (dict(tactic="int"), ValueError),  # a string annotation
    ],
)
def test_the_stand_in_refuses_what_tensorrt_refuses(annotations, error):
    trtp = StandInTrtp()

    @trtp.register("kotrt::bad")
    def desc(x: TensorDesc) -> TensorDesc:
        return x.like()

    def aot(x, outputs, tactic):
        return None

    aot.__annotations__ = {"x": TensorDesc, "outputs": Tuple[TensorDesc], "tactic": int,
                           "return": Tuple[str, bytes, KernelLaunchParams, SymExprs]}
    ret = annotations.pop("ret", aot.__annotations__["return"])
    aot.__annotations__.update(annotations)
    if ret is _EMPTY:
        del aot.__annotations__["return"]
    else:
        aot.__annotations__["return"] = ret
    with pytest.raises(error):
        trtp.aot_impl("kotrt::bad")(aot)

    def without_tactic(x, outputs):
        return None

    without_tactic.__annotations__ = {"return": Tuple[str, bytes, KernelLaunchParams, SymExprs]}
    with pytest.raises(ValueError, match="does not match"):
        trtp.aot_impl("kotrt::bad")(without_tactic)


def test_jit_impl_signature_and_what_it_launches(monkeypatch):
    """The JIT impl forwards pointers, shapes, unwrapped scalar attributes and TensorRT's stream."""
    prepared, trtp, torch_tensorrt = deploy(request_for(AXPY_SPEC))
    assert not prepared.path.aot and prepared.path.source == "jit"
    assert list(inspect.signature(prepared.impl).parameters) == ["x", "y", "alpha", "k", "flag", "outputs", "stream"]
    annotations = _annotations(prepared.impl)
    assert annotations["x"] is Tensor and annotations["outputs"] == Tuple[Tensor] and annotations["stream"] is int
    assert inspect.signature(prepared.impl).return_annotation is None
    calls = []
    monkeypatch.setattr(trt_builder, "current_device", lambda: 3)
    prepared.impl.launcher.launch_into = lambda *args, **kwargs: calls.append((args, kwargs))
    trtp.enqueue(OP, [Tensor(0x1000, (4, 5), DataType.FLOAT), Tensor(0x2000, (4, 5), DataType.FLOAT)],
                 {"alpha": 1.5, "k": 7, "flag": True}, [Tensor(0x3000, (4, 5), DataType.FLOAT)], stream=0xABC)
    ((args, kwargs),) = calls
    assert args == (3,)
    assert kwargs == dict(inputs=[(0x1000, (4, 5)), (0x2000, (4, 5))], scalars=[1.5, 7, True],
                          outputs=[(0x3000, (4, 5))], stream=0xABC, dtypes=(torch.float32, torch.float32))
    assert [type(v) for v in kwargs["scalars"]] == [float, int, bool]


def test_converter_is_generated_after_the_implementation_with_the_options_forwarded():
    def validator(node, settings):
        return True

    prepared, trtp, torch_tensorrt = deploy(request_for(
        TWO_OUT_SPEC, capability_validator=validator, priority=ttk.ConverterPriority.HIGH,
        supports_dynamic_shapes=False, requires_output_allocator=True))
    assert trtp.events == [("register", OP), ("aot_impl", OP), ("converter", OP)]
    assert torch_tensorrt.converters[OP] == dict(aot=True, capability_validator=validator, priority=ttk.ConverterPriority.HIGH,
                                                 supports_dynamic_shapes=False, requires_output_allocator=True)
    _, trtp, torch_tensorrt = deploy(request_for(AXPY_SPEC))
    assert trtp.events == [("register", OP), ("impl", OP), ("converter", OP)]
    assert torch_tensorrt.converters[OP]["aot"] is False


def test_attribute_style_follows_what_the_converter_turns_into_arrays():
    assert attribute_style(None) == "builtin"  # a converter that passes FX values through
    assert attribute_style(lambda annotation: True) == "ndarray"
    assert attribute_style(lambda annotation: False) == "builtin"
    assert attribute_style(lambda annotation: 1 / 0) == "builtin"
    recognised = converter_takes_array(npt.NDArray[np.float64])  # False from NumPy 2.5 on
    assert attribute_style(converter_takes_array) == ("ndarray" if recognised else "builtin")


def test_converter_scalars_reach_the_plugin_in_the_chosen_style(monkeypatch):
    """Torch-TensorRT's converter coerces to the schema type, then (for an annotation it recognises
    as NDArray) to a 0-d array of that dtype; ``trtp.op`` then checks types and the order, and the
    plugin creator hands the values to the functions."""
    request = request_for(AXPY_SPEC)
    style = attribute_style(converter_takes_array)
    prepared, trtp, torch_tensorrt = deploy(request, attribute_style=style)
    kwargs = torch_tensorrt.convert(OP, request.schema, [2, 3, 1])  # an int for the float alpha, too
    if style == "ndarray":
        assert [(k, v.dtype, v.shape) for k, v in kwargs.items()] == [
            ("alpha", np.float64, ()), ("k", np.int64, ()), ("flag", np.bool_, ())]
        with pytest.raises(ValueError, match="dtype"):
            trtp.op_call(OP, alpha=np.asarray(2.0, dtype=np.float32), k=np.asarray(3), flag=np.asarray(True))
    else:
        assert kwargs == {"alpha": 2.0, "k": 3, "flag": True} and [type(v) for v in kwargs.values()] == [float, int, bool]
    calls = []
    monkeypatch.setattr(trt_builder, "current_device", lambda: 0)
    prepared.impl.launcher.launch_into = lambda *args, **kw: calls.append(kw["scalars"])
    trtp.enqueue(OP, [Tensor(1, (2,), DataType.FLOAT)] * 2, {k: v.item() if isinstance(v, np.ndarray) else v for k, v in kwargs.items()},
                 [Tensor(2, (2,), DataType.FLOAT)], stream=0)
    assert calls == [[2.0, 3, True]] and [type(v) for v in calls[0]] == [float, int, bool]
    if not converter_takes_array(npt.NDArray[np.float64]):  # NumPy >= 2.5: why the style matters
        _, trtp, torch_tensorrt = deploy(request, attribute_style="ndarray")
        with pytest.raises(ValueError, match="Unexpected type"):
            torch_tensorrt.convert(OP, request.schema, [2.0, 3, True])


def test_descriptor_output_dtype_follows_dtype_from_and_shapes_follow_the_plan():
    """Torch-TensorRT's generated descriptor would give every output the first input's dtype."""
    _, trtp, _ = deploy(request_for(TWO_OUT_SPEC))
    built = trtp.build(OP, [(3, 4), (2,)], [DataType.FLOAT, DataType.HALF], {})
    assert built.out_dtypes == [DataType.HALF, DataType.FLOAT]
    assert built.out_shapes == [(3, 4), (3, 1)]


def test_outputs_never_mutate_an_inputs_shape_expressions():
    """Teeth: the stand-in's like() shares the input's (frozen) ShapeExprs, as TensorRT 10.6-10.7 do."""
    _Builder.active = True
    try:
        desc = TensorDesc(ShapeExprs.from_tuple((ShapeExpr(sympy.Symbol("a")),)), DataType.FLOAT).freeze()
        with pytest.raises(ValueError, match="immutable"):
            desc.like().shape_expr[0] = 3
    finally:
        _Builder.active = False
    keepdim = spec_of([ttk.InputDecl("x")], [ttk.OutputDecl("y", shape=ttk.ReduceDims("x", (1,), keepdim=True))],
                      ttk.Reduction(reduce_dims=(1,)))
    _, trtp, _ = deploy(request_for(keepdim))
    assert trtp.build(OP, [(3, 4)], [DataType.FLOAT], {}).out_shapes == [(3, 1)]


def test_declared_input_dtype_is_checked_by_the_descriptor():
    spec = spec_of([ttk.InputDecl("x", dtype=torch.float32)], [ttk.OutputDecl("y", shape=ttk.SameAs("x"))], ttk.Elementwise())
    _, trtp, _ = deploy(request_for(spec))
    assert trtp.build(OP, [(3,)], [DataType.FLOAT], {}).out_dtypes == [DataType.FLOAT]
    with pytest.raises(TypeError, match=r"kernelop.cuda_kernel_op\(kotrt::op\): argument 'x' must have dtype torch.float32 \(got torch.float16\) \(as TensorRT gives it\)"):
        trtp.build(OP, [(3,)], [DataType.HALF], {})


def test_custom_geometry_is_the_aot_launch_and_bad_returns_name_the_op():
    seen = []

    def launch(inputs, outputs, tactic):
        seen.append((type(inputs), type(outputs), tactic))
        extras = SymIntExprs(1)
        extras[0] = SymInt32(inputs[0].shape_expr.numel())
        return KernelLaunchParams(grid_x=StandInTrtp.cdiv(inputs[0].shape_expr[0], 32), block_x=32), extras

    spec = spec_of([ttk.InputDecl("x")], [ttk.OutputDecl("y", shape=ttk.SameAs("x"))], ttk.Custom(launch))
    prepared, trtp, _ = deploy(_custom_request(spec))
    assert prepared.path.source == "Custom.fn"
    launch_values = trtp.build(OP, [(100, 3)], [DataType.FLOAT], {}, tactic=5).launch
    assert launch_values.grid == (4, 1, 1) and launch_values.block == (32, 1, 1) and launch_values.extras == (300,)
    assert seen == [(list, tuple, 5)]

    bad = spec_of([ttk.InputDecl("x")], [ttk.OutputDecl("y", shape=ttk.SameAs("x"))], ttk.Custom(lambda i, o, t: (3, None)))
    _, trtp, _ = deploy(_custom_request(bad))
    with pytest.raises(TypeError, match=r"kernelop.cuda_kernel_op\(kotrt::op\): geometry Custom.fn must return"):
        trtp.build(OP, [(3,)], [DataType.FLOAT], {})


def _custom_request(spec: ttk.KernelSpec) -> PluginRequest:
    """A Custom geometry needs eager_fn= at registration; the plugin request is the same."""
    where = Where("cuda_kernel_op", OP)
    check_spec(where, spec, has_meta_fn=False, has_eager_fn=True, has_aot_fn=False)
    plan = build_plan(OP, spec, num_outputs=len(spec.outputs))
    parsed = parse_schema(where, OP, derive_schema(where, spec, plan.params, None, None))
    return PluginRequest(OP, parsed, plugin_path(spec.geometry, scalar_names(spec), None), plan, FakeBinaries(), None, "k",
                         None, None, True, False, ttk.ConverterPriority.STANDARD, None)


def test_aot_ptx_comes_unchanged_from_the_binaries_of_the_right_arch():
    spec = TWO_OUT_SPEC
    for override, gpu, expected in [("sm_90", "sm_86", "sm_90"), (None, "sm_86", "sm_86"), (None, None, DEFAULT_ARCH)]:
        binaries = FakeBinaries(ptx=PTX + b"// marker\n", arch_override=override)
        request = request_for(ttk.KernelSpec(**{**spec.__dict__, "arch_override": override}), binaries=binaries)
        _, trtp, _ = deploy(request, gpu_arch=gpu)
        launch = trtp.build(OP, [(2, 2), (1,)], [DataType.FLOAT] * 2, {}).launch
        assert binaries.requested == [expected]
        assert launch.code == binaries.ptx and launch.kernel_name == "k_lowered"


def test_no_future_annotations_in_modules_defining_tensorrt_functions():
    for module in sorted((SRC / "trt").glob("*.py")):
        tree = ast.parse(module.read_text())
        futures = [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "__future__" for a in node.names]
        assert "annotations" not in futures, module
    prepared, _, _ = deploy(request_for(AXPY_SPEC))
    assert not any(isinstance(a, str) for a in prepared.descriptor.__annotations__.values())
    assert not any(isinstance(a, str) for a in prepared.impl.__annotations__.values())


def test_prevalidate_runs_before_registration_and_its_refusal_names_the_op():
    calls = []
    backend, trtp, _ = standin_backend(prevalidate=lambda *args: calls.append(args))
    prepared = prepare_tensorrt(Where("cuda_kernel_op", OP), request_for(TWO_OUT_SPEC), backend)
    assert [(c[0], c[1], c[2], c[3]) for c in calls] == [(OP, prepared.descriptor, prepared.impl, True)]
    assert trtp.events == []

    def refuse(*args):
        raise ValueError("bad signature")

    backend, trtp, _ = standin_backend(prevalidate=refuse)
    with pytest.raises(ValueError, match=r"kernelop.cuda_kernel_op\(kotrt::op\): TensorRT refuses its plugin functions .*bad signature"):
        prepare_tensorrt(Where("cuda_kernel_op", OP), request_for(TWO_OUT_SPEC), backend)


def test_tensorrt_without_aot_plugins_falls_back_to_jit_for_plans_only():
    plain = request_for(TWO_OUT_SPEC)
    prepared, trtp, _ = deploy(plain, aot_supported=False)
    assert not prepared.path.aot and ("impl", OP) in trtp.events
    with pytest.raises(ValueError, match="AOT plugins need TensorRT >= 10.9"):
        deploy(request_for(TWO_OUT_SPEC, require_aot=True), aot_supported=False)
    with pytest.raises(ValueError, match="AOT plugins need TensorRT >= 10.9"):
        deploy(request_for(TWO_OUT_SPEC, aot_fn=lambda i, o, t: KernelLaunchParams()), aot_supported=False)


def test_a_plugin_name_tensorrt_already_knows_is_refused_before_anything_is_registered():
    backend, trtp, _ = standin_backend()
    trtp.registry[OP] = PluginDef(OP, None, ["x"], {}, 1)
    with pytest.raises(ValueError, match="already registered in this process"):
        prepare_tensorrt(Where("cuda_kernel_op", OP), request_for(TWO_OUT_SPEC), backend)


# =============================================================================================
# 3. Output shapes of ops described by meta_fn (ptx_op and shape-changing kernels)
# =============================================================================================


@pytest.mark.parametrize(
    "make",
    [
        lambda a, b, F: 2 * a + 3,
        lambda a, b, F: a * b,
        lambda a, b, F: a - 1,
        lambda a, b, F: F.FloorDiv(a + 1, 2),
        lambda a, b, F: -F.FloorDiv(-a, 4),  # how torch prints a ceiling division
        lambda a, b, F: F.CeilDiv(a, 3),
        lambda a, b, F: F.Max(a, 4),
        lambda a, b, F: F.Min(a, b),
        lambda a, b, F: a ** 2,
        lambda a, b, F: 7 - a * b,
    ],
)
def test_sympy_sizes_translate_to_shape_exprs(make):
    from torch.utils._sympy import functions as F

    a, b = sympy.Symbol("a", integer=True, positive=True), sympy.Symbol("b", integer=True, positive=True)
    expr = make(a, b, F)
    _Builder.active = True
    try:
        sa, sb = ShapeExpr(sympy.Symbol("A", integer=True, positive=True)), ShapeExpr(sympy.Symbol("B", integer=True, positive=True))
        leaves = {a: sa, b: sb}
        result = from_sympy(expr, leaves.__getitem__, ShapeExprAlgebra(StandInTrtp, []))
    finally:
        _Builder.active = False
    for va, vb in [(1, 1), (2, 9), (13, 5), (40, 3)]:
        want = expr.subs({a: va, b: vb})
        got = result if isinstance(result, int) else sympy.sympify(result.value).subs({sa.value: va, sb.value: vb})
        assert int(got) == int(want), (expr, va, vb)


def test_sympy_sizes_without_a_shape_expr_are_refused():
    a = sympy.Symbol("a", integer=True, positive=True)
    with pytest.raises(UnsupportedShape, match="non-integer"):
        from_sympy(a / 2, lambda s: s, SympyAlgebra())


def _ptx_op_request(name: str, meta_fn: Any) -> PluginRequest:
    """Registers the torch side of a ptx_op (no TensorRT here) and returns its plugin request."""

    def aot_fn(inputs, outputs, tactic):
        return KernelLaunchParams(grid_x=outputs[0].shape_expr[0]), None

    ttk.ptx_op(name, PTX, "k", meta_fn, lambda *a: None, aot_fn)
    where = Where("ptx_op", name)
    parsed = parse_schema(where, name, derive_schema(where, None, (), meta_fn, None))
    return PluginRequest(name, parsed, plugin_path(None, (), aot_fn), None, None, PTX, "k", meta_fn, aot_fn, False, False,
                         ttk.ConverterPriority.STANDARD, None)


def _cat_meta(x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    return x.new_empty((x.shape[0] + y.shape[0], (x.shape[1] + 1) // 2)), x.new_empty((x.shape[1] * 2,), dtype=torch.float16)


def test_ptx_op_descriptor_traces_meta_fn_symbolically(op_name):
    name = op_name("ptxmeta")
    _, trtp, _ = deploy(_ptx_op_request(name, _cat_meta))
    for shapes in [[(3, 5), (4, 5)], [(1, 2), (9, 2)], [(100, 7), (0, 7)]]:
        built = trtp.build(name, shapes, [DataType.FLOAT, DataType.FLOAT], {})
        want = _cat_meta(*(torch.empty(s, device="meta") for s in shapes))
        assert built.out_shapes == [tuple(t.shape) for t in want]
        assert built.out_dtypes == [DataType.FLOAT, DataType.HALF]
        assert built.launch.grid[0] == want[0].shape[0] and built.launch.code == PTX and built.launch.kernel_name == "k"


def test_meta_fn_outputs_of_a_declarative_geometry_lower_through_the_traced_shapes(op_name, register):
    """repeat2: outputs from meta_fn, grid from the output's numel through the same plan."""
    from kernelop.cli.examples import EXAMPLES

    example = next(e for e in EXAMPLES if e.op_name.endswith("repeat2"))
    request = request_for(example.spec, op=op_name("repeat2"), meta_fn=example.meta_fn)
    register(request.op_name, example.spec, meta_fn=example.meta_fn)
    request = PluginRequest(**{**request.__dict__, "plan": ttk.registered_ops()[request.op_name].plan})
    _, trtp, _ = deploy(request)
    launch = trtp.build(request.op_name, [(1001,)], [DataType.FLOAT], {}).launch
    assert launch.grid == (-(-2002 // 256), 1, 1) and launch.extras == (1001,)


# =============================================================================================
# 4. Which path, require_aot, schema problems
# =============================================================================================


@pytest.mark.parametrize(
    "spec, aot_fn, aot, source",
    [
        (TWO_OUT_SPEC, None, True, "plan"),
        (AXPY_SPEC, None, False, "jit"),
        (AXPY_SPEC, lambda i, o, t: None, True, "aot_fn"),
        (spec_of([ttk.InputDecl("x"), ttk.ScalarInput("a", float)], [ttk.OutputDecl("y", shape=ttk.SameAs("x"))], ttk.Custom(lambda i, o, t: None)),
         None, True, "Custom.fn"),
        (None, lambda i, o, t: None, True, "aot_fn"),  # ptx_op
    ],
)
def test_plugin_path_decision_table(spec, aot_fn, aot, source):
    path = plugin_path(spec.geometry, scalar_names(spec), aot_fn) if spec is not None else plugin_path(None, (), aot_fn)
    assert (path.aot, path.source) == (aot, source)


def test_require_aot_refuses_a_jit_spec_without_tensorrt(op_name, register, assert_left_nothing):
    name = op_name("reqaot")
    spec = ttk.KernelSpec(**{**AXPY_SPEC.__dict__, "kernel_source": 'extern "C" __global__ void k(const float* x, const float* y, float alpha, int k, bool flag, int n, float* out) {}'})
    with pytest.raises(ValueError, match=rf"kernelop.cuda_kernel_op\({name}\): require_aot=True but its TensorRT plugin would use the JIT path: it has scalar inputs \['alpha', 'k', 'flag'\]"):
        register(name, spec, require_aot=True)
    assert_left_nothing(name)
    with pytest.raises(TypeError, match="require_aot must be a bool"):
        register(name, spec, require_aot="yes")
    register(name, spec)  # without require_aot the JIT plugin is fine
    register(op_name("reqaot_fn"), spec, require_aot=True, aot_fn=lambda i, o, t: None, eager_fn=lambda *a: None)


def test_require_aot_refuses_a_schema_tensorrt_cannot_take_even_without_tensorrt(op_name, register, relu_source, assert_left_nothing):
    if _has_tensorrt():
        pytest.skip("checks the behaviour without TensorRT")
    source = 'extern "C" __global__ void k(const float* x, float a, const float* y, int n, float* out) {}'
    spec = spec_of([ttk.InputDecl("x"), ttk.ScalarInput("a", float), ttk.InputDecl("y")], [ttk.OutputDecl("o", shape=ttk.SameAs("x"))],
                   ttk.Elementwise(), [ttk.Numel("x")])
    spec = ttk.KernelSpec(**{**spec.__dict__, "kernel_source": source})
    name = op_name("order")
    with pytest.raises(ValueError, match=r"require_aot=True but it cannot be a TensorRT plugin: tensor argument 'y' follows scalar argument 'a'"):
        register(name, spec, require_aot=True, aot_fn=lambda i, o, t: None)
    assert_left_nothing(name)
    register(name, spec)  # the PyTorch side alone takes it


def test_schema_problems():
    parse = lambda text: torch._C.parse_schema(f"kotrt::p{text}")  # noqa: E731
    assert schema_problems(parse("(Tensor x, Tensor y, float a, int b, bool c) -> Tensor")) == []
    cases = {
        "(float a) -> Tensor": "no Tensor argument",
        "(Tensor x, float a, Tensor y) -> Tensor": "follows scalar argument 'a'",
        "(Tensor x, int[] k) -> Tensor": "has type List[int]",
        "(Tensor x, Tensor? y) -> Tensor": "'y' has type Optional[Tensor]",
        "(Tensor stream) -> Tensor": "'stream' is reserved",
        "(Tensor x, float tactic) -> Tensor": "'tactic' is reserved",
        "(Tensor(a!) x) -> Tensor": "mutated or aliased",
        "(Tensor x, float a=1.0, int b=2) -> Tensor": None,
    }
    for text, problem in cases.items():
        problems = schema_problems(parse(text))
        if problem is None:
            assert problems == [], text
        else:
            assert any(problem in p for p in problems), (text, problems)
    with_defaults = parse("(Tensor x, float a, int b=2) -> Tensor")
    assert any("have defaults and others do not" in p for p in schema_problems(with_defaults))


# =============================================================================================
# 5. TensorRT present or not: status, the log line, atomic registration
# =============================================================================================


def _importer(modules: Dict[str, Any]):
    def import_module(name: str) -> Any:
        value = modules.get(name, ImportError(f"No module named {name!r}"))
        if isinstance(value, Exception):
            raise value
        return value

    return import_module


_PLUGINS = SimpleNamespace(generate_plugin_converter=lambda *a, **k: None)


@pytest.mark.parametrize(
    "modules, available, reason",
    [
        ({}, False, "tensorrt is not importable (ImportError"),
        ({"tensorrt": OSError("libnvinfer.so.10: cannot open shared object file")}, False, "OSError: libnvinfer"),
        ({"tensorrt": SimpleNamespace(__version__="10.13.0", _package_name="tensorrt_rtx")}, False, "TensorRT-RTX"),
        ({"tensorrt": SimpleNamespace(__version__="10.6.0.26")}, False, "older than 10.7"),
        ({"tensorrt": SimpleNamespace(__version__="10.14.1.48")}, False, "10.14.x release"),
        ({"tensorrt": SimpleNamespace(__version__="10.13.0")}, False, "tensorrt.plugin is not importable"),
        ({"tensorrt": SimpleNamespace(__version__="10.13.0"), "tensorrt.plugin": object(), "tensorrt.plugin._lib": object()},
         False, "Torch-TensorRT is not importable"),
        ({"tensorrt": SimpleNamespace(__version__="11.4.0"), "tensorrt.plugin": object(), "tensorrt.plugin._lib": object(),
          "torch_tensorrt": SimpleNamespace(__version__="2.13.0"), "torch_tensorrt.dynamo.conversion.plugins": _PLUGINS},
         True, "TensorRT 11.4.0 with Torch-TensorRT 2.13.0"),
    ],
)
def test_probe_tensorrt(modules, available, reason):
    status = probe_tensorrt(_importer(modules))
    assert status.available is available
    assert reason in status.reason
    if available:
        assert dict(status.versions) == {"tensorrt": "11.4.0", "torch_tensorrt": "2.13.0"}
    with pytest.raises(Exception):
        status.available = True  # frozen


@pytest.mark.parametrize(
    "version, package, ok",
    [("10.7.0", None, True), ("10.9.0.34", "tensorrt", True), ("10.15.1", None, True), ("11.1.0", None, True),
     ("10.6.0", None, False), ("10.14.0.1", None, False), ("9.3.0", None, False), ("10.13.0", "tensorrt_rtx", False), ("", None, False)],
)
def test_tensorrt_version_gate(version, package, ok):
    assert (tensorrt_version_problem(version, package) is None) is ok


def test_tensorrt_status_here_and_its_public_name():
    status = ttk.tensorrt_status()
    assert isinstance(status, ttk.TensorRTStatus) and status is ttk.tensorrt_status()
    if not status.available:
        assert status.reason


def test_one_info_line_per_process_says_the_tensorrt_side_was_skipped(monkeypatch, caplog, op_name, register, relu_spec):
    if _has_tensorrt():
        pytest.skip("checks the behaviour without TensorRT")
    monkeypatch.setattr(trt_registration, "skip_notice", OnceNotice())  # as in a fresh process
    with caplog.at_level(logging.INFO, logger="kernelop"):
        register(op_name("skip"), relu_spec())
        register(op_name("skip"), relu_spec())
    lines = [r for r in caplog.records if r.name == "kernelop" and r.levelno == logging.INFO]
    assert len(lines) == 1
    assert "TensorRT plugins are not registered in this process" in lines[0].getMessage()
    assert "tensorrt_status()" in lines[0].getMessage()


def test_registration_with_tensorrt_registers_the_plugin_after_the_torch_op(monkeypatch, op_name, register, relu_spec):
    backend, trtp, torch_tensorrt = standin_backend()
    seen_torch_op = []
    generate = backend.generate_converter

    def converter(plugin_id, **options):
        seen_torch_op.append(hasattr(op_packet(plugin_id), "default"))  # Torch-TensorRT needs torch.ops.<ns>.<name>
        generate(plugin_id, **options)

    monkeypatch.setattr(trt_registration, "load_backend", lambda: Backend(**{**backend.__dict__, "generate_converter": converter}))
    name = op_name("withtrt")
    register(name, relu_spec())
    assert trtp.events == [("register", name), ("aot_impl", name), ("converter", name)]
    assert seen_torch_op == [True] and name in ttk.registered_ops()
    built = trtp.build(name, [(4, 1000)], [DataType.FLOAT], {})
    assert built.launch.grid == (16, 1, 1) and built.launch.extras == (4000,)
    binary = ttk.registered_ops()[name].binaries.for_arch(DEFAULT_ARCH)  # the stand-in backend has no GPU
    assert (built.launch.kernel_name, built.launch.code) == (binary.lowered_name, binary.ptx)


def test_a_refused_plugin_leaves_no_torch_op_behind(monkeypatch, op_name, register, relu_spec, assert_left_nothing):
    backend, trtp, _ = standin_backend()

    def broken_converter(plugin_id, **options):
        raise RuntimeError("converter registry is broken")

    monkeypatch.setattr(trt_registration, "load_backend", lambda: Backend(**{**backend.__dict__, "generate_converter": broken_converter}))
    name = op_name("refused")
    with pytest.raises(ValueError, match=rf"kernelop.cuda_kernel_op\({name}\): TensorRT refused its plugin \(RuntimeError: converter registry is broken\); the PyTorch op was removed again"):
        register(name, relu_spec())
    assert_left_nothing(name)



def test_an_op_no_plugin_can_express_registers_for_pytorch_alone_and_says_why(monkeypatch, op_name, register, relu_spec, caplog, assert_left_nothing):
    backend, trtp, _ = standin_backend()
    monkeypatch.setattr(trt_registration, "load_backend", lambda: backend)
    source = 'extern "C" __global__ void k(float* x, int n) {}'
    spec = relu_spec(kernel_source=source, kernel_name="k", inputs=[ttk.InputDecl("x", mutates=True)], outputs=[],
                     extras=[ttk.Numel("x")])
    name = op_name("inplace")
    with pytest.raises(ValueError, match=rf"kernelop.cuda_kernel_op\({name}\): require_aot=True but it cannot be a TensorRT plugin: argument 'x' is mutated"):
        register(name, spec, require_aot=True)
    assert_left_nothing(name)
    with caplog.at_level(logging.WARNING, logger="kernelop"):
        register(name, spec)
    assert name not in trtp.registry and name in ttk.registered_ops()
    assert re.search(rf"kernelop.cuda_kernel_op\({name}\): no TensorRT plugin for this op, the PyTorch op is registered alone: "
                     r"argument 'x' is mutated or aliased.*; it returns nothing", caplog.text)

    source = 'extern "C" __global__ void k(const float* x, float a, const float* w, int n, float* y) {}'
    spec = relu_spec(kernel_source=source, kernel_name="k", inputs=[ttk.InputDecl("x"), ttk.ScalarInput("a", float), ttk.InputDecl("w")])
    name = op_name("unplugged")
    with caplog.at_level(logging.WARNING, logger="kernelop"):
        register(name, spec)
    assert name not in trtp.registry and name in ttk.registered_ops()
    assert f"{name}): no TensorRT plugin for this op" in caplog.text and "tensor argument 'w' follows scalar argument 'a'" in caplog.text


# =============================================================================================
# 6. PTX the driver can load
# =============================================================================================


def test_ptx_isa_table_is_ordered_and_maps_drivers_to_isas():
    isas = [isa for isa, _ in PTX_ISA_FIRST_DRIVER]
    drivers = [d for _, d in PTX_ISA_FIRST_DRIVER]
    assert isas == sorted(isas) and drivers == sorted(drivers)
    expected = {(12, 0): (8, 0), (12, 1): (8, 1), (12, 4): (8, 4), (12, 5): (8, 5), (12, 6): (8, 5), (12, 8): (8, 7),
                (12, 9): (8, 8), (13, 0): (9, 0), (13, 1): (9, 1), (11, 8): (7, 8), (10, 2): None}
    assert {d: max_ptx_isa(d) for d in expected} == expected
    assert driver_cuda_version(12080) == (12, 8) and driver_cuda_version(13010) == (13, 1)


@pytest.mark.parametrize(
    "isa, driver, problem",
    [
        ("9.5", 12080, "ISA version 9.5 but this CUDA driver is version 12.8 and loads PTX ISA up to 8.7"),
        ("8.8", 12080, "ISA version 8.8 but this CUDA driver is version 12.8"),
        ("8.7", 12080, None),
        ("8.5", 12060, None),
        ("8.6", 12060, "version 12.6 and loads PTX ISA up to 8.5"),
        ("9.0", 13000, None),
        ("9.9", 14000, None),  # both newer than the table
        ("9.9", 13050, "ISA version 9.9"),
        ("8.0", None, None),  # no GPU: no driver to compare with
    ],
)
def test_ptx_driver_problem(isa, driver, problem):
    ptx = f"//\n// Generated by NVIDIA NVVM Compiler\n.version {isa}\n.target sm_80\n".encode()
    result = ptx_driver_problem(ptx, driver)
    if problem is None:
        assert result is None
    else:
        assert problem in result and "Update the driver" in result


def test_registration_warns_when_the_driver_cannot_load_the_engine_ptx():
    request = request_for(TWO_OUT_SPEC, binaries=FakeBinaries(ptx=PTX.replace(b".version 8.0", b".version 9.5")))
    with pytest.warns(RuntimeWarning, match=r"kernelop.cuda_kernel_op\(kotrt::op\): the PTX for TensorRT has ISA version 9.5 but this CUDA driver is version 12.2"):
        deploy(request, driver_version=12020)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        deploy(request_for(TWO_OUT_SPEC), driver_version=12020)  # ISA 8.0 loads on 12.2


def test_nvrtc_ptx_carries_the_isa_version(relu_source):
    from kernelop.compiler.nvrtc import CompileRequest, compile_kernel

    kernel = compile_kernel(CompileRequest(relu_source, "my_relu", "sm_80"))
    assert ptx_isa_version(kernel.ptx) is not None


# =============================================================================================
# 7. With a GPU: the JIT plugin's launch really runs the kernel
# =============================================================================================


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_jit_impl_launches_into_tensorrt_owned_buffers(op_name, register):
    from kernelop.cli.examples import EXAMPLES

    example = next(e for e in EXAMPLES if e.op_name.endswith("axpy"))
    name = op_name("jitgpu")
    register(name, example.spec)
    registration = ttk.registered_ops()[name]
    request = request_for(example.spec, op=name, binaries=registration.binaries)
    prepared, trtp, _ = deploy(request)
    x, y = torch.randn(3, 333, device="cuda"), torch.randn(3, 333, device="cuda")
    out = torch.full_like(x, float("nan"))
    wrap = lambda t: Tensor(t.data_ptr(), tuple(t.shape), DataType.FLOAT)  # noqa: E731
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        trtp.enqueue(name, [wrap(x), wrap(y)], {"alpha": 1.5}, [wrap(out)], stream=stream.cuda_stream)
    stream.synchronize()
    torch.testing.assert_close(out, 1.5 * x + y)


# =============================================================================================
# 8. With TensorRT: the real registration
# =============================================================================================


@pytest.mark.tensorrt
@pytest.mark.skipif(not _has_tensorrt(), reason="needs TensorRT and Torch-TensorRT")
def test_real_tensorrt_registers_an_aot_plugin_and_a_converter(op_name, register, relu_spec):
    from tensorrt.plugin._lib import QDP_REGISTRY
    from torch_tensorrt.dynamo.conversion._ConverterRegistry import DYNAMO_CONVERTERS

    name = op_name("realaot")
    register(name, relu_spec())
    plugin = QDP_REGISTRY[name]
    assert plugin.aot_impl_func is not None and plugin.impl_func is None
    assert plugin.input_tensor_names == ["x"] and plugin.num_outputs == 1
    assert op_packet(name).default in DYNAMO_CONVERTERS


@pytest.mark.tensorrt
@pytest.mark.skipif(not _has_tensorrt(), reason="needs TensorRT and Torch-TensorRT")
def test_real_tensorrt_registers_scalar_specs_as_jit_plugins(op_name, register):
    from kernelop.cli.examples import EXAMPLES
    from tensorrt.plugin._lib import QDP_REGISTRY

    example = next(e for e in EXAMPLES if e.op_name.endswith("axpy"))
    name = op_name("realjit")
    register(name, example.spec)
    plugin = QDP_REGISTRY[name]
    assert plugin.impl_func is not None and plugin.aot_impl_func is None
    assert list(plugin.input_attrs) == ["alpha"]


def test_a_templated_kernel_s_aot_plugin_takes_the_instantiation_of_the_engine_s_dtypes(monkeypatch, op_name, register):
    backend, trtp, _ = standin_backend()
    monkeypatch.setattr(trt_registration, "load_backend", lambda: backend)
    T = ttk.TypeParam("T", (torch.float32, torch.float16))
    source = ("#include <cuda_fp16.h>\n"
              "template <typename T> __global__ void copy_t(const T* x, int n, T* y) {\n"
              "  int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) y[i] = x[i]; }\n")
    name = op_name("templated")
    register(name, ttk.KernelSpec(source, "copy_t", template_args=(T,), inputs=[ttk.InputDecl("x", T)],
                                  outputs=[ttk.OutputDecl("y", ttk.SameAs("x"))], extras=[ttk.Numel("x")], geometry=ttk.Elementwise()))
    binaries = ttk.registered_ops()[name].binaries
    for dtype, trt_dtype in ((torch.float32, DataType.FLOAT), (torch.float16, DataType.HALF)):
        built = trtp.build(name, [(4, 100)], [trt_dtype], {})
        binary = binaries.for_arch(DEFAULT_ARCH, (dtype,))
        assert (built.launch.kernel_name, built.launch.code) == (binary.lowered_name, binary.ptx)
        assert built.out_dtypes == [trt_dtype] and built.launch.grid == (2, 1, 1)
    with pytest.raises(TypeError, match=rf"kernelop.cuda_kernel_op\({name}\): argument 'x' has dtype torch.int32; the kernel's template parameter T is instantiated for float32, float16 \(as TensorRT gives it\)"):
        trtp.build(name, [(4, 100)], [DataType.INT32], {})
