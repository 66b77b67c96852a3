"""The TensorRT side of kernelop, minus TensorRT itself.

Everything here imports without TensorRT: whether TensorRT is usable (``tensorrt_status``),
which plugin implementation a spec gets (AOT or JIT), the lowering of the launch plan through a
``ShapeExpr`` algebra, and the plugin functions TensorRT's validators inspect. Each piece that
touches ``tensorrt.plugin`` takes the module as an argument (a ``Backend``), so tests drive the
same code with strict stand-ins; ``trt.py`` hands in the real modules.

This module builds functions whose annotations TensorRT reads as objects, so it must not use
``from __future__ import annotations``.
"""
import importlib
import logging
import re
import threading
import warnings
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from .expr import INPUT, OUTPUT, evaluate
from .plan import LaunchDims, LaunchPlan
from .settings import DEFAULT_ARCH
from .spec import Custom, KernelSpec, ScalarInput
from .validate import Where, check_flag, is_identifier

log = logging.getLogger("kernelop")

MIN_TENSORRT = (10, 7)
"""The first TensorRT whose Quick Deployable Plugins Torch-TensorRT supports."""
EXCLUDED_TENSORRT = ((10, 14),)
"""Release series on which Torch-TensorRT turns Quick Deployable Plugins off."""

RESERVED_NAMES = frozenset({"outputs", "stream", "tactic"})
"""Parameter names the plugin functions use themselves (TensorRT refuses them as attributes)."""
_BODY = "_kernelop_body"

PTX_ISA_FIRST_DRIVER: Tuple[Tuple[Tuple[int, int], Tuple[int, int]], ...] = (
    ((7, 0), (11, 0)), ((7, 1), (11, 1)), ((7, 2), (11, 2)), ((7, 3), (11, 3)), ((7, 4), (11, 4)),
    ((7, 5), (11, 5)), ((7, 6), (11, 6)), ((7, 7), (11, 7)), ((7, 8), (11, 8)),
    ((8, 0), (12, 0)), ((8, 1), (12, 1)), ((8, 2), (12, 2)), ((8, 3), (12, 3)), ((8, 4), (12, 4)),
    ((8, 5), (12, 5)), ((8, 6), (12, 7)), ((8, 7), (12, 8)), ((8, 8), (12, 9)),
    ((9, 0), (13, 0)), ((9, 1), (13, 1)), ((9, 2), (13, 2)), ((9, 3), (13, 3)), ((9, 4), (13, 4)),
    ((9, 5), (13, 5)),
)
"""(PTX ISA version, first CUDA driver that loads it), from NVIDIA's PTX ISA release history
(the table ``cuda.bindings.utils.get_minimal_required_cuda_ver_from_ptx_ver`` also encodes).
CUDA 12.6 added no ISA, so a 12.6 driver loads up to 8.5."""

TRT_DTYPE_NAMES: Mapping[torch.dtype, str] = MappingProxyType(
    {
        torch.float32: "FLOAT",
        torch.float16: "HALF",
        torch.bfloat16: "BF16",
        torch.int8: "INT8",
        torch.int32: "INT32",
        torch.int64: "INT64",
        torch.bool: "BOOL",
        torch.uint8: "UINT8",
        torch.float8_e4m3fn: "FP8",
    }
)
"""torch dtype -> name of the ``tensorrt.DataType`` member of the same element type."""
_TORCH_DTYPES = {name: dtype for dtype, name in TRT_DTYPE_NAMES.items()}


# -- is TensorRT usable here ------------------------------------------------------------------


@dataclass(frozen=True)
class TensorRTStatus:
    """Whether kernelop registers TensorRT plugins in this process, and why not.

    ``versions`` maps ``"tensorrt"`` / ``"torch_tensorrt"`` to the versions found, when found.
    """

    available: bool
    reason: str
    versions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def tensorrt_version_problem(version: str, package_name: Optional[str] = None) -> Optional[str]:
    """Why this TensorRT cannot host kernelop's plugins, or None when it can."""
    if package_name == "tensorrt_rtx":
        return f"TensorRT-RTX {version} has no Quick Deployable Plugins"
    match = re.match(r"(\d+)\.(\d+)", version or "")
    if match is None:
        return f"the TensorRT version is not understood (got {version!r})"
    series = (int(match.group(1)), int(match.group(2)))
    if series < MIN_TENSORRT:
        return f"TensorRT {version} is older than {MIN_TENSORRT[0]}.{MIN_TENSORRT[1]}, the first with Quick Deployable Plugins"
    if series in EXCLUDED_TENSORRT:
        return f"TensorRT {version} is a {series[0]}.{series[1]}.x release, on which Torch-TensorRT disables Quick Deployable Plugins"
    return None


def probe_tensorrt(import_module: Callable[[str], Any] = importlib.import_module) -> TensorRTStatus:
    """Import TensorRT, its plugin package and Torch-TensorRT's plugin helpers, and say what was found."""
    versions: Dict[str, str] = {}

    def result(available: bool, reason: str) -> TensorRTStatus:
        return TensorRTStatus(available, reason, MappingProxyType(dict(versions)))

    try:
        trt = import_module("tensorrt")
    except Exception as exc:  # a missing package, or a stub whose libraries cannot load
        return result(False, f"tensorrt is not importable ({type(exc).__name__}: {exc})")
    version = str(getattr(trt, "__version__", ""))
    versions["tensorrt"] = version
    problem = tensorrt_version_problem(version, getattr(trt, "_package_name", None))
    if problem is not None:
        return result(False, problem)
    for module in ("tensorrt.plugin", "tensorrt.plugin._lib"):
        try:
            import_module(module)
        except Exception as exc:
            return result(False, f"{module} is not importable ({type(exc).__name__}: {exc})")
    try:
        torch_tensorrt = import_module("torch_tensorrt")
        versions["torch_tensorrt"] = str(getattr(torch_tensorrt, "__version__", "unknown"))
        plugins = import_module("torch_tensorrt.dynamo.conversion.plugins")
    except Exception as exc:
        return result(False, f"Torch-TensorRT is not importable ({type(exc).__name__}: {exc})")
    if not callable(getattr(plugins, "generate_plugin_converter", None)):
        return result(False, "torch_tensorrt.dynamo.conversion.plugins has no generate_plugin_converter")
    return result(True, f"TensorRT {version} with Torch-TensorRT {versions['torch_tensorrt']}")


_status_lock = threading.Lock()
_status: Optional[TensorRTStatus] = None


def tensorrt_status() -> TensorRTStatus:
    """Whether kernelop registers TensorRT plugins in this process (probed once, then remembered)."""
    global _status
    with _status_lock:
        if _status is None:
            _status = probe_tensorrt()
        return _status


class OnceNotice:
    """Logs its message the first time only: one line per process says the TensorRT side is off."""

    def __init__(self) -> None:
        self._done = False
        self._lock = threading.Lock()

    def emit(self, status: TensorRTStatus) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done = True
        log.info(
            "kernelop: TensorRT plugins are not registered in this process (%s); the PyTorch ops are complete. "
            "kernelop.tensorrt_status() says why.",
            status.reason,
        )
        return True


_skip_notice = OnceNotice()


# -- which plugin implementation a spec gets --------------------------------------------------


@dataclass(frozen=True)
class PluginPath:
    """``aot``: an ahead-of-time kernel launch in the engine; else TensorRT's JIT (Python) plugin.

    ``source`` says where the AOT launch comes from: ``"aot_fn"``, ``"Custom.fn"`` or ``"plan"``
    (the launch plan lowered to ShapeExprs); ``"jit"`` for the JIT plugin.
    """

    aot: bool
    source: str
    why: str


def plugin_path(spec: Optional[KernelSpec], aot_fn: Optional[Callable[..., Any]]) -> PluginPath:
    """The decision table of the README's TensorRT section, as code."""
    if aot_fn is not None:
        return PluginPath(True, "aot_fn", "aot_fn is the AOT launch")
    geometry = spec.geometry if spec is not None else None
    if isinstance(geometry, Custom):
        return PluginPath(True, "Custom.fn", "geometry Custom(fn): fn is the AOT launch")
    scalars = [d.name for d in (spec.inputs or ()) if isinstance(d, ScalarInput)] if spec is not None else []
    if scalars:
        return PluginPath(
            False,
            "jit",
            f"it has scalar inputs {scalars}, which an AOT launch cannot pass (its extra arguments are "
            "32-bit integer shape expressions)",
        )
    return PluginPath(True, "plan", "the launch plan lowers to ShapeExprs")


def check_require_aot(where: Where, spec: Optional[KernelSpec], aot_fn: Optional[Callable[..., Any]], require_aot: object) -> None:
    """``require_aot=True`` refuses a spec whose TensorRT plugin would be JIT, with or without TensorRT."""
    check_flag(where, "require_aot", require_aot)
    path = plugin_path(spec, aot_fn)
    if require_aot and not path.aot:
        where.fail(
            f"require_aot=True but its TensorRT plugin would use the JIT path: {path.why}. "
            "Pass aot_fn= (or geometry=Custom(fn)) with a launch that needs no scalar inputs, or drop require_aot."
        )


def schema_problems(schema: Any) -> List[str]:
    """What keeps an op with this torch schema from being a TensorRT plugin with a Torch-TensorRT converter."""
    problems = []
    arguments = list(schema.arguments)
    tensors = [a for a in arguments if str(a.type) == "Tensor"]
    if not tensors:
        problems.append("it has no Tensor argument; a TensorRT plugin needs at least one tensor input")
    seen_scalar = None
    for arg in arguments:
        kind = str(arg.type)
        if kind not in ("Tensor", "float", "int", "bool"):
            problems.append(f"argument {arg.name!r} has type {kind}; TensorRT plugins take Tensor, float, int and bool")
        if kind == "Tensor" and seen_scalar is not None:
            problems.append(
                f"tensor argument {arg.name!r} follows scalar argument {seen_scalar!r}; TensorRT plugins and "
                "Torch-TensorRT's converter take every tensor first. Declare tensor inputs before scalar inputs"
            )
        if kind != "Tensor" and seen_scalar is None:
            seen_scalar = arg.name
        if arg.name in RESERVED_NAMES or arg.name.startswith("_kernelop") or not is_identifier(arg.name):
            problems.append(f"argument name {arg.name!r} is reserved by TensorRT's plugin functions (outputs, stream, tactic) or not an identifier; rename it")
        if getattr(arg, "alias_info", None) is not None:
            problems.append(f"argument {arg.name!r} is mutated or aliased; kernelop's TensorRT plugins only write their outputs")
    scalars = [a for a in arguments if str(a.type) != "Tensor"]
    defaulted = [a.name for a in scalars if a.default_value is not None]
    if defaulted and len(defaulted) != len(scalars):
        problems.append(
            f"scalar arguments {defaulted} have defaults and others do not; Torch-TensorRT's converter then passes "
            "them out of order. Give every scalar argument a default or none"
        )
    return problems


# -- the ShapeExpr algebra and the lowering ---------------------------------------------------


class ShapeExprAlgebra:
    """Dimension expressions as TensorRT ``ShapeExpr``s, read from plugin tensor descriptors.

    ``ShapeExpr`` has no reflected operators (``2 * N`` raises) and ``trtp.cdiv`` refuses two
    ints, so constants are folded in Python and an expression always sits on the left.
    """

    def __init__(self, trtp: Any, inputs: Sequence[Any], outputs: Sequence[Any] = ()):
        self.trtp = trtp
        self.shapes = {INPUT: [d.shape_expr for d in inputs], OUTPUT: [d.shape_expr for d in outputs]}

    def const(self, value: int) -> Any:
        return int(value)

    def dim(self, side: str, index: int, axis: int) -> Any:
        return self.shapes[side][index][axis]

    def add(self, a: Any, b: Any) -> Any:
        if isinstance(a, int):
            if isinstance(b, int):
                return a + b
            a, b = b, a
        return a + b

    def mul(self, a: Any, b: Any) -> Any:
        if isinstance(a, int):
            if isinstance(b, int):
                return a * b
            a, b = b, a
        return a * b

    def sub(self, a: Any, b: Any) -> Any:
        if isinstance(a, int):
            if isinstance(b, int):
                return a - b
            a = self.trtp.ShapeExpr(a)
        return a - b

    def floordiv(self, a: Any, b: Any) -> Any:
        if isinstance(a, int):
            if isinstance(b, int):
                return a // b
            a = self.trtp.ShapeExpr(a)
        return a // b

    def cdiv(self, a: Any, b: Any) -> Any:
        if isinstance(a, int) and isinstance(b, int):
            return -(-a // b)
        return self.trtp.cdiv(a, b)

    def max(self, a: Any, b: Any) -> Any:
        if isinstance(a, int) and isinstance(b, int):
            return a if a >= b else b
        return self.trtp.max(a, b)

    def min(self, a: Any, b: Any) -> Any:
        if isinstance(a, int) and isinstance(b, int):
            return a if a <= b else b
        return self.trtp.min(a, b)


def lower_launch(plan: LaunchPlan, in_ranks: Tuple[int, ...], out_ranks: Tuple[int, ...], algebra: Any) -> LaunchDims:
    """The plan's launch, interpreted by ``algebra``: one code path for ShapeExprs, sympy and ints."""
    dims = plan.launch_dims(in_ranks, out_ranks)
    value = lambda e: evaluate(e, algebra)  # noqa: E731
    return LaunchDims(
        tuple(value(e) for e in dims.grid),  # type: ignore[arg-type]
        tuple(value(e) for e in dims.block),  # type: ignore[arg-type]
        value(dims.shared_mem),
        tuple(value(e) for e in dims.extras),
    )


def lower_output_shapes(plan: LaunchPlan, in_ranks: Tuple[int, ...], algebra: Any) -> Tuple[Tuple[Any, ...], ...]:
    """Each declared output's shape, interpreted by ``algebra``."""
    return tuple(tuple(evaluate(e, algebra) for e in shape) for shape in plan.output_shapes(in_ranks))


def sym_int32(trtp: Any, value: Any) -> Any:
    """An extra kernel argument as ``SymInt32``: TensorRT's build refuses ints and base ``SymIntExpr``s."""
    if isinstance(value, int):
        return trtp.SymInt32(int(value))
    if isinstance(value, trtp.SymInt32):
        return value
    return trtp.SymInt32(value)


def launch_params(trtp: Any, lowered: LaunchDims) -> Tuple[Any, Any]:
    """``(KernelLaunchParams, SymIntExprs)`` for an AOT plugin from a lowered launch."""
    params = trtp.KernelLaunchParams()
    params.grid_x, params.grid_y, params.grid_z = lowered.grid
    params.block_x, params.block_y, params.block_z = lowered.block
    params.shared_mem = lowered.shared_mem
    extras = trtp.SymIntExprs(len(lowered.extras))
    for i, value in enumerate(lowered.extras):
        extras[i] = sym_int32(trtp, value)
    return params, extras


class UnsupportedShape(ValueError):
    """A symbolic output size with an operation TensorRT shape expressions do not have."""


def from_sympy(expr: Any, leaf: Callable[[Any], Any], algebra: Any) -> Any:
    """A sympy size expression (as torch's symbolic shapes print it) through ``algebra``.

    Handles integers, symbols (``leaf``), sums, integer multiples and products, natural powers,
    ``FloorDiv``, ``CeilDiv`` (also written ``-((-a)//b)``), ``Max`` and ``Min``.
    """
    import sympy
    from torch.utils._sympy import functions as tf

    def kinds(*names: str) -> tuple:
        """torch's sympy classes that this torch has (older ones lack some)."""
        return tuple(c for c in (getattr(tf, n, None) for n in names) if isinstance(c, type))

    floordiv, ceildiv, power = kinds("FloorDiv"), kinds("CeilDiv"), (sympy.Pow,) + kinds("PowByNatural")
    maximum, minimum = (sympy.Max,) + kinds("Max"), (sympy.Min,) + kinds("Min")

    def fold(op: Callable[[Any, Any], Any], items: Sequence[Any]) -> Any:
        acc = convert(items[0])
        for item in items[1:]:
            acc = op(acc, convert(item))
        return acc

    def convert(e: Any) -> Any:
        if isinstance(e, int):
            return algebra.const(e)
        if getattr(e, "is_Integer", False):
            return algebra.const(int(e))
        if getattr(e, "is_Symbol", False):
            return leaf(e)
        if isinstance(e, sympy.Add):
            plus = [t for t in e.args if t.as_coeff_Mul()[0] >= 0]
            minus = [-t for t in e.args if t.as_coeff_Mul()[0] < 0]
            acc = fold(algebra.add, plus) if plus else algebra.const(0)
            for term in minus:
                acc = algebra.sub(acc, convert(term))
            return acc
        if isinstance(e, sympy.Mul):
            coeff, rest = e.as_coeff_Mul()
            if coeff == -1 and isinstance(rest, floordiv):
                return algebra.cdiv(convert(-rest.args[0]), convert(rest.args[1]))
            if coeff.is_Integer and coeff < 0:
                return algebra.sub(algebra.const(0), convert(-e))
            if not coeff.is_Integer:
                raise UnsupportedShape(f"{e} has the non-integer factor {coeff}")
            return fold(algebra.mul, e.args)
        if isinstance(e, power):
            base, exponent = e.args
            if getattr(exponent, "is_Integer", False) and int(exponent) >= 1:
                return fold(algebra.mul, [base] * int(exponent))
        if isinstance(e, floordiv):
            return algebra.floordiv(convert(e.args[0]), convert(e.args[1]))
        if isinstance(e, ceildiv):
            return algebra.cdiv(convert(e.args[0]), convert(e.args[1]))
        if isinstance(e, maximum):
            return fold(algebra.max, list(e.args))
        if isinstance(e, minimum):
            return fold(algebra.min, list(e.args))
        raise UnsupportedShape(f"{e} ({type(e).__name__}) has no TensorRT shape expression")

    return convert(expr)


# -- output shapes of ops described by meta_fn ------------------------------------------------

META_HINT = 8
"""The size every traced input axis is assumed to have (>= 2, so no axis specializes to 0 or 1)."""


@dataclass(frozen=True)
class TracedOutput:
    dtype: torch.dtype
    shape: Tuple[Any, ...]  # ints and sympy expressions over the traced symbols


class MetaTracer:
    """Output shapes and dtypes of a registered op, traced once per input ranks, dtypes and scalars.

    Each input axis becomes its own symbol, so a size formula (``2*s0``, ``s0 + s1``) comes out
    whole; the op's fake impl (its ``meta_fn``) runs under ``FakeTensorMode``.
    """

    def __init__(self, where: Where, op_name: str):
        self.where = where
        self.op_name = op_name
        self._memo: Dict[tuple, Tuple[Tuple[TracedOutput, ...], Dict[Any, Tuple[int, int]]]] = {}
        self._lock = threading.Lock()

    def trace(self, ranks: Tuple[int, ...], dtypes: Tuple[torch.dtype, ...], scalars: Tuple[Any, ...]):
        key = (ranks, dtypes, scalars)
        with self._lock:
            if key not in self._memo:
                self._memo[key] = self._trace(ranks, dtypes, scalars)
            return self._memo[key]

    def _trace(self, ranks: Tuple[int, ...], dtypes: Tuple[torch.dtype, ...], scalars: Tuple[Any, ...]):
        import sympy
        from torch._dynamo.source import LocalSource
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv

        namespace, name = self.op_name.split("::")
        op = getattr(getattr(torch.ops, namespace), name).default
        env = ShapeEnv(duck_shape=False)
        leaves: Dict[Any, Tuple[int, int]] = {}
        sizes = []
        for index, rank in enumerate(ranks):
            dims = []
            for axis in range(rank):
                source = LocalSource(f"in{index}_{axis}")
                symbol = env.create_symbol(META_HINT, source=source, dynamic_dim=DimDynamic.DYNAMIC)
                leaves[symbol] = (index, axis)
                dims.append(env.create_symintnode(symbol, hint=META_HINT, source=source))
            sizes.append(dims)
        with FakeTensorMode(shape_env=env):
            fakes = [torch.empty(dims, dtype=dtype, device="cuda") for dims, dtype in zip(sizes, dtypes)]
            result = op(*fakes, *scalars)
        outputs = list(result) if isinstance(result, (tuple, list)) else [result]
        traced = []
        for k, out in enumerate(outputs):
            shape = []
            for axis, size in enumerate(out.shape):
                if isinstance(size, torch.SymInt):
                    expr = env.replace(size.node.expr)
                    unknown = [s for s in expr.free_symbols if s not in leaves]
                    if unknown:
                        self.where.fail(
                            f"output {k} axis {axis} has the data-dependent size {expr}; TensorRT plugins built by "
                            "kernelop need sizes computed from the input sizes"
                        )
                    shape.append(expr)
                else:
                    shape.append(int(size))
            traced.append(TracedOutput(out.dtype, tuple(shape)))
        branches = [str(g.expr) for g in env.guards if not isinstance(g.expr, sympy.Eq)]
        if branches:
            log.warning(
                "kernelop.call(%s): meta_fn compared input sizes (%s) while its output shapes were traced for "
                "TensorRT; the shape formulas hold where those comparisons do.",
                self.op_name,
                ", ".join(branches),
            )
        return tuple(traced), leaves


# -- the plugin functions ---------------------------------------------------------------------


def make_function(name: str, params: Sequence[str], body: Callable[[tuple], Any], annotations: Mapping[str, Any]) -> Callable[..., Any]:
    """A function with exactly ``params`` (TensorRT reads names, order and annotations) calling ``body(args)``."""
    arglist = ", ".join(params)
    source = f"def {name}({arglist}):\n    return {_BODY}(({arglist},))\n"
    namespace: Dict[str, Any] = {_BODY: body}
    exec(compile(source, f"<kernelop {name}>", "exec"), namespace)  # noqa: S102 - names are checked identifiers
    fn = namespace[name]
    fn.__annotations__ = dict(annotations)
    return fn


def attribute_annotation(kind: str, style: str = "ndarray") -> Any:
    """A scalar argument's plugin attribute annotation, in one of two styles (see ``attribute_style``).

    ``"ndarray"``: ``NDArray[float64 | int64 | bool_]``, the form Torch-TensorRT's own generated
    plugins use; its converter passes such attributes as 0-d arrays of that dtype.
    ``"builtin"``: ``float``, ``int``, ``bool``; the converter passes Python values of the schema type.
    """
    if style == "builtin":
        return {"float": float, "int": int, "bool": bool}[kind]
    import numpy as np
    import numpy.typing as npt

    return {"float": npt.NDArray[np.float64], "int": npt.NDArray[np.int64], "bool": npt.NDArray[np.bool_]}[kind]


def attribute_style(converter_takes_array: Optional[Callable[[Any], bool]]) -> str:
    """``"ndarray"`` when the installed converter turns scalars for an ``NDArray`` annotation into arrays.

    ``converter_takes_array`` is the converter's own test of an annotation (None where it has none,
    as in converters that pass FX values through). NumPy 2.5 made ``NDArray`` a type alias that
    this test does not recognise; then TensorRT would get a Python float for an array attribute
    and refuse it, so the attributes are annotated with the builtin types instead.
    """
    if converter_takes_array is None:
        return "builtin"
    try:
        return "ndarray" if converter_takes_array(attribute_annotation("float", "ndarray")) else "builtin"
    except Exception:
        return "builtin"


def scalar_value(value: Any, py_type: type) -> Any:
    """A plugin attribute (a one-element array, a NumPy scalar or a Python scalar) as ``py_type``."""
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"kernelop: a scalar plugin attribute must have one element (got shape {value.shape})")
        value = value.reshape(()).item()
    elif isinstance(value, np.generic):
        value = value.item()
    return py_type(value)


@dataclass(frozen=True)
class Backend:
    """The TensorRT-facing modules a plugin registers through; ``trt.py`` builds the real one.

    ``trtp`` is ``tensorrt.plugin``; ``data_type`` is ``tensorrt.DataType``; ``registry`` is
    ``tensorrt.plugin._lib.QDP_REGISTRY``; ``generate_converter`` is Torch-TensorRT's
    ``generate_plugin_converter``; ``prevalidate(plugin_id, descriptor, impl, aot)`` runs
    TensorRT's own checks on the functions before anything is registered, where it can;
    ``attribute_style`` is how scalar attributes are annotated (``attribute_style()``).
    """

    trtp: Any
    data_type: Any
    registry: Mapping[str, Any]
    generate_converter: Callable[..., Any]
    aot_supported: bool
    gpu_arch: Optional[str] = None
    driver_version: Optional[int] = None
    prevalidate: Optional[Callable[[str, Callable[..., Any], Callable[..., Any], bool], None]] = None
    attribute_style: str = "ndarray"


@dataclass(frozen=True)
class PluginRequest:
    """What ``cuda_kernel_op`` / ``ptx_op`` know about an op that its plugin is derived from."""

    op_name: str
    schema: Any  # the parsed torch FunctionSchema
    spec: Optional[KernelSpec]  # None for ptx_op
    plan: Optional[LaunchPlan]
    binaries: Any  # KernelBinaries, None for ptx_op
    ptx: Optional[bytes]  # ptx_op's PTX
    kernel_name: str
    meta_fn: Optional[Callable[..., Any]]
    aot_fn: Optional[Callable[..., Any]]
    supports_dynamic_shapes: bool
    requires_output_allocator: bool
    priority: Any
    capability_validator: Optional[Callable[..., Any]]
    require_aot: bool = False


@dataclass
class PreparedPlugin:
    """A plugin whose functions are built and checked; ``register`` hands them to TensorRT."""

    op_name: str
    backend: Backend
    path: PluginPath
    descriptor: Callable[..., Any]
    impl: Callable[..., Any]  # the aot_impl or the JIT impl
    converter_options: Mapping[str, Any]

    def register(self) -> None:
        """Descriptor, then the implementation, then the converter (which fixes AOT/JIT when generated)."""
        trtp = self.backend.trtp
        trtp.register(self.op_name)(self.descriptor)
        if self.path.aot:
            trtp.aot_impl(self.op_name)(self.impl)
        else:
            trtp.impl(self.op_name)(self.impl)
        self.backend.generate_converter(self.op_name, **self.converter_options)


def load_backend() -> Optional[Backend]:
    """The real TensorRT backend, or None (logged once per process) when TensorRT is not usable."""
    status = tensorrt_status()
    if not status.available:
        _skip_notice.emit(status)
        return None
    from . import trt

    return trt.backend()


def prepare_tensorrt(where: Where, request: PluginRequest, backend: Optional[Backend] = None) -> Optional[PreparedPlugin]:
    """Build and check the op's plugin functions before anything is registered anywhere.

    Returns None where TensorRT is not usable; ``require_aot=True`` still refuses what no
    TensorRT could deploy. A problem raises ``ValueError`` naming the op.
    """
    problems = schema_problems(request.schema)
    if backend is None:
        backend = load_backend()
    if backend is None:
        if request.require_aot and problems:
            where.fail(f"require_aot=True but it cannot be a TensorRT plugin: {'; '.join(problems)}.")
        return None
    if problems:
        where.fail(f"cannot be registered as a TensorRT plugin: {'; '.join(problems)}.")
    if request.op_name in backend.registry:
        where.fail(
            f"a TensorRT plugin named {request.op_name} is already registered in this process; TensorRT cannot "
            "remove it. Register the kernel under a new name (or restart the process)."
        )
    path = plugin_path(request.spec, request.aot_fn)
    if path.aot and not backend.aot_supported:
        if path.source != "plan" or request.require_aot:
            where.fail(
                f"its TensorRT plugin needs an AOT launch ({path.why}), which this TensorRT lacks "
                "(AOT plugins need TensorRT >= 10.9). Upgrade TensorRT."
            )
        path = PluginPath(False, "jit", "this TensorRT has no AOT plugins (they need TensorRT >= 10.9)")
    builder = _PluginBuilder(where, request, backend)
    descriptor = builder.descriptor()
    impl = builder.aot_impl() if path.aot else builder.jit_impl()
    if backend.prevalidate is not None:
        try:
            backend.prevalidate(request.op_name, descriptor, impl, path.aot)
        except Exception as exc:
            where.fail(f"TensorRT refuses its plugin functions ({type(exc).__name__}: {exc})")
    options = dict(
        capability_validator=request.capability_validator,
        priority=request.priority,
        supports_dynamic_shapes=request.supports_dynamic_shapes,
        requires_output_allocator=request.requires_output_allocator,
    )
    return PreparedPlugin(request.op_name, backend, path, descriptor, impl, MappingProxyType(options))


def register_tensorrt(where: Where, prepared: Optional[PreparedPlugin], library: Any) -> None:
    """Register a prepared plugin; if TensorRT refuses, the PyTorch op (``library``) is removed too."""
    if prepared is None:
        return
    try:
        prepared.register()
    except Exception as exc:
        library._destroy()
        where.fail(
            f"TensorRT refused its plugin ({type(exc).__name__}: {exc}); the PyTorch op was removed again. "
            "TensorRT keeps plugin names it has seen: fix the spec and register under a new name."
        )
    log.debug("registered TensorRT plugin %s (%s)", prepared.op_name, "AOT: " + prepared.path.source if prepared.path.aot else "JIT")


class _PluginBuilder:
    """Builds the descriptor, aot_impl and JIT impl of one op from its plan and schema."""

    def __init__(self, where: Where, request: PluginRequest, backend: Backend):
        self.where = where
        self.request = request
        self.backend = backend
        self.trtp = backend.trtp
        args = list(request.schema.arguments)
        self.tensor_names = [a.name for a in args if str(a.type) == "Tensor"]
        self.attr_kinds = [(a.name, str(a.type)) for a in args if str(a.type) != "Tensor"]
        self.num_outputs = len(request.schema.returns)
        self.stem = "kernelop_" + request.op_name.replace("::", "_")
        self.attr_annotations = {name: attribute_annotation(kind, backend.attribute_style) for name, kind in self.attr_kinds}

    # descriptor ---------------------------------------------------------------------------

    def descriptor(self) -> Callable[..., Any]:
        trtp = self.trtp
        n = len(self.tensor_names)
        plan = self.request.plan
        describe = self._declared_outputs if plan is not None and plan.outputs is not None else self._traced_outputs()
        single = self.num_outputs == 1

        def body(args: tuple) -> Any:
            outputs = describe(args[:n], args[n:])
            return outputs[0] if single else tuple(outputs)

        annotations: Dict[str, Any] = {name: trtp.TensorDesc for name in self.tensor_names}
        annotations.update(self.attr_annotations)
        annotations["return"] = trtp.TensorDesc if single else Tuple[(trtp.TensorDesc,) * self.num_outputs]
        return make_function(f"{self.stem}_descriptor", self.tensor_names + [a for a, _ in self.attr_kinds], body, annotations)

    def _declared_outputs(self, inputs: Sequence[Any], attrs: Sequence[Any]) -> List[Any]:
        plan = self.request.plan
        assert plan is not None and plan.outputs is not None
        self._check_input_dtypes(inputs)
        ranks = tuple(len(d.shape_expr) for d in inputs)
        shapes = lower_output_shapes(plan, ranks, ShapeExprAlgebra(self.trtp, inputs))
        outputs = []
        for rule, shape in zip(plan.outputs, shapes):
            out = inputs[rule.dtype_source].like()  # dtype_from: the dtype of that input
            exprs = self.trtp.ShapeExprs(len(shape))  # replaced, never mutated: like() may share it
            for axis, size in enumerate(shape):
                exprs[axis] = size
            out.shape_expr = exprs
            outputs.append(out)
        return outputs

    def _traced_outputs(self) -> Callable[[Sequence[Any], Sequence[Any]], List[Any]]:
        tracer = MetaTracer(self.where, self.request.op_name)
        kinds = [kind for _, kind in self.attr_kinds]
        py_types = {"float": float, "int": int, "bool": bool}

        def describe(inputs: Sequence[Any], attrs: Sequence[Any]) -> List[Any]:
            self._check_input_dtypes(inputs)
            ranks = tuple(len(d.shape_expr) for d in inputs)
            dtypes = tuple(self._torch_dtype(d.dtype) for d in inputs)
            scalars = tuple(scalar_value(v, py_types[k]) for v, k in zip(attrs, kinds))
            traced, leaves = tracer.trace(ranks, dtypes, scalars)
            if len(traced) != self.num_outputs:
                self.where.fail(f"meta_fn returned {len(traced)} tensors; the schema declares {self.num_outputs}")
            algebra = ShapeExprAlgebra(self.trtp, inputs)
            leaf = lambda symbol: algebra.dim(INPUT, *leaves[symbol])  # noqa: E731
            outputs = []
            for k, out in enumerate(traced):
                try:
                    shape = tuple(from_sympy(size, leaf, algebra) for size in out.shape)
                except UnsupportedShape as exc:
                    self.where.fail(f"output {k} of meta_fn has a size TensorRT cannot express: {exc}")
                outputs.append(self.trtp.from_shape_expr(shape, self._trt_dtype(out.dtype)))
            return outputs

        return describe

    def _torch_dtype(self, trt_dtype: Any) -> torch.dtype:
        name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
        if name not in _TORCH_DTYPES:
            self.where.fail(f"TensorRT data type {name} has no torch equivalent kernelop knows")
        return _TORCH_DTYPES[name]

    def _trt_dtype(self, dtype: torch.dtype) -> Any:
        if dtype not in TRT_DTYPE_NAMES:
            self.where.fail(f"output dtype {dtype} has no TensorRT data type")
        return getattr(self.backend.data_type, TRT_DTYPE_NAMES[dtype])

    def _check_input_dtypes(self, inputs: Sequence[Any]) -> None:
        """Declared ``InputDecl.dtype``s, as the eager launch checks them (the JIT launch does not)."""
        plan = self.request.plan
        if plan is None:
            return
        for param, desc in zip(plan.tensor_params, inputs):
            if param.dtype is None:
                continue
            got = self._torch_dtype(desc.dtype)
            if got != param.dtype:
                self.where.fail(f"input {param.name!r} must have dtype {param.dtype} (TensorRT gives it {got})", TypeError)

    # AOT ----------------------------------------------------------------------------------

    def aot_impl(self) -> Callable[..., Any]:
        trtp = self.trtp
        n = len(self.tensor_names)
        kernel_name, ptx = self._kernel()
        launch = self._user_launch() or self._plan_launch()

        def body(args: tuple) -> Any:
            inputs, outputs, tactic = args[:n], args[-2], args[-1]
            params, extras = launch(inputs, outputs, tactic)
            return kernel_name, ptx, params, extras

        annotations: Dict[str, Any] = {name: trtp.TensorDesc for name in self.tensor_names}
        annotations.update(self.attr_annotations)
        annotations["outputs"] = Tuple[(trtp.TensorDesc,) * self.num_outputs]
        annotations["tactic"] = int
        annotations["return"] = Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymIntExprs]
        params = self.tensor_names + [a for a, _ in self.attr_kinds] + ["outputs", "tactic"]
        return make_function(f"{self.stem}_aot_impl", params, body, annotations)

    def _plan_launch(self) -> Callable[[Sequence[Any], Sequence[Any], int], Tuple[Any, Any]]:
        plan = self.request.plan
        assert plan is not None
        trtp = self.trtp

        def launch(inputs: Sequence[Any], outputs: Sequence[Any], tactic: int) -> Tuple[Any, Any]:
            in_ranks = tuple(len(d.shape_expr) for d in inputs)
            out_ranks = tuple(len(d.shape_expr) for d in outputs)
            lowered = lower_launch(plan, in_ranks, out_ranks, ShapeExprAlgebra(trtp, inputs, outputs))
            return launch_params(trtp, lowered)

        return launch

    def _user_launch(self) -> Optional[Callable[[Sequence[Any], Sequence[Any], int], Tuple[Any, Any]]]:
        request = self.request
        fn = request.aot_fn
        label = "aot_fn"
        if fn is None and request.spec is not None and isinstance(request.spec.geometry, Custom):
            fn, label = request.spec.geometry.fn, "geometry Custom.fn"
        if fn is None:
            return None
        trtp, where = self.trtp, self.where

        def launch(inputs: Sequence[Any], outputs: Sequence[Any], tactic: int) -> Tuple[Any, Any]:
            result = fn(list(inputs), outputs, tactic)
            params, extras = result if isinstance(result, tuple) and len(result) == 2 else (result, None)
            if not isinstance(params, trtp.KernelLaunchParams):
                where.fail(f"{label} must return (KernelLaunchParams, SymExprs or None) (got {type(params).__name__} first)", TypeError)
            if extras is None:
                extras = trtp.SymIntExprs(0)
            if not isinstance(extras, trtp.SymExprs):
                where.fail(f"{label} must return (KernelLaunchParams, SymExprs or None) (got {type(extras).__name__} second)", TypeError)
            return params, extras

        return launch

    def _kernel(self) -> Tuple[str, bytes]:
        """The kernel's entry name and PTX for the engine, warning when this driver cannot load the PTX."""
        request = self.request
        if request.ptx is not None:
            name, ptx = request.kernel_name, bytes(request.ptx)
        else:
            override = request.spec.arch_override if request.spec is not None else None
            compiled = request.binaries.for_arch(aot_arch(override, self.backend.gpu_arch))
            name, ptx = compiled.lowered_name, compiled.ptx
        problem = ptx_driver_problem(ptx, self.backend.driver_version)
        if problem is not None:
            warnings.warn(f"kernelop.{self.where.api}({self.where.op}): {problem}", RuntimeWarning, stacklevel=2)
        return name, ptx

    # JIT ----------------------------------------------------------------------------------

    def jit_impl(self) -> Callable[..., Any]:
        trtp = self.trtp
        request = self.request
        plan = request.plan
        assert plan is not None and request.spec is not None
        from .launcher import EagerLauncher
        from .signature import pointer_element_sizes

        launcher = EagerLauncher(
            plan,
            request.binaries,
            request.meta_fn if plan.outputs is None else None,
            pointer_element_sizes(request.spec.kernel_source, request.spec.kernel_name),
        )
        n = len(self.tensor_names)
        py_types = [{"float": float, "int": int, "bool": bool}[kind] for _, kind in self.attr_kinds]

        def body(args: tuple) -> None:
            tensors, attrs, outputs, stream = args[:n], args[n:-2], args[-2], args[-1]
            launcher.launch_into(
                current_device(),
                inputs=[(t.data_ptr, tuple(t.shape)) for t in tensors],
                scalars=[scalar_value(v, t) for v, t in zip(attrs, py_types)],
                outputs=[(o.data_ptr, tuple(o.shape)) for o in outputs],
                stream=stream,
            )

        annotations: Dict[str, Any] = {name: trtp.Tensor for name in self.tensor_names}
        annotations.update(self.attr_annotations)
        annotations["outputs"] = Tuple[(trtp.Tensor,) * self.num_outputs]
        annotations["stream"] = int
        annotations["return"] = None
        params = self.tensor_names + [a for a, _ in self.attr_kinds] + ["outputs", "stream"]
        fn = make_function(f"{self.stem}_impl", params, body, annotations)
        fn.launcher = launcher  # type: ignore[attr-defined]
        return fn


def current_device() -> int:
    """The CUDA device TensorRT enqueues on (the calling thread's current device)."""
    return torch.cuda.current_device()


# -- PTX the driver can load --------------------------------------------------------------------


def aot_arch(arch_override: Optional[str], gpu_arch: Optional[str]) -> str:
    """The architecture the engine's PTX is compiled for: the override, else this GPU's, else the default."""
    return arch_override or gpu_arch or DEFAULT_ARCH


def ptx_isa_version(ptx: bytes) -> Optional[Tuple[int, int]]:
    """The ``.version X.Y`` directive of PTX text."""
    match = re.search(rb"^\s*\.version\s+(\d+)\.(\d+)", ptx, re.M)
    return (int(match.group(1)), int(match.group(2))) if match else None


def driver_cuda_version(version: int) -> Tuple[int, int]:
    """``cuDriverGetVersion``'s integer (12080) as (12, 8)."""
    return version // 1000, (version % 1000) // 10


def max_ptx_isa(driver: Tuple[int, int]) -> Optional[Tuple[int, int]]:
    """The newest PTX ISA a CUDA driver of this version loads (None: older than the table)."""
    loadable = [isa for isa, first in PTX_ISA_FIRST_DRIVER if first <= driver]
    return max(loadable) if loadable else None


def ptx_driver_problem(ptx: bytes, driver_version: Optional[int]) -> Optional[str]:
    """A sentence when this driver cannot load the PTX (its ISA is too new), else None."""
    isa = ptx_isa_version(ptx)
    if isa is None or driver_version is None:
        return None
    driver = driver_cuda_version(driver_version)
    newest_known_isa, newest_known_driver = PTX_ISA_FIRST_DRIVER[-1]
    if isa > newest_known_isa and driver > newest_known_driver:
        return None  # both newer than the table: nothing to say
    supported = max_ptx_isa(driver)
    if supported is not None and isa <= supported:
        return None
    can = f"loads PTX ISA up to {supported[0]}.{supported[1]}" if supported else "predates the PTX ISA table"
    return (
        f"the PTX for TensorRT has ISA version {isa[0]}.{isa[1]} but this CUDA driver is version "
        f"{driver[0]}.{driver[1]} and {can}, so an engine built here cannot load the kernel. "
        "Update the driver, or install an NVRTC wheel no newer than the driver (nvidia-cuda-nvrtc)."
    )
