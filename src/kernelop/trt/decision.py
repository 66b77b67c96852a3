"""What kind of TensorRT plugin an op gets (AOT or JIT), and what keeps an op from being one."""
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence

from ..dsl.spec import Custom
from ..dsl.validate_options import check_flag, is_identifier
from ..errors import Where
from ..plan.launch_plan import LaunchPlan

RESERVED_NAMES = frozenset({"outputs", "stream", "tactic"})
"""Parameter names the plugin functions use themselves (TensorRT refuses them as attributes)."""


@dataclass(frozen=True)
class PluginPath:
    """``aot``: an ahead-of-time kernel launch in the engine; else TensorRT's JIT (Python) plugin.

    ``source`` says where the AOT launch comes from: ``"aot_fn"``, ``"Custom.fn"`` or ``"plan"``
    (the launch plan lowered to ShapeExprs); ``"jit"`` for the JIT plugin.
    """

    aot: bool
    source: str
    why: str


def plugin_path(geometry: Any, scalars: Sequence[str], aot_fn: Optional[Callable[..., Any]]) -> PluginPath:
    """The decision table of the README's TensorRT section, as code.

    ``geometry`` is the spec's (None for ``ptx_op``); ``scalars`` names its scalar inputs.
    """
    if aot_fn is not None:
        return PluginPath(True, "aot_fn", "aot_fn is the AOT launch")
    if isinstance(geometry, Custom):
        return PluginPath(True, "Custom.fn", "geometry Custom(fn): fn is the AOT launch")
    if scalars:
        return PluginPath(
            False,
            "jit",
            f"it has scalar inputs {list(scalars)}, which an AOT launch cannot pass (its extra arguments are "
            "32-bit integer shape expressions)",
        )
    return PluginPath(True, "plan", "the launch plan lowers to ShapeExprs")


AOT_EXTRA_CTYPES = frozenset({"i32", "u32", "x32"})
"""Extras an AOT plugin can pass: TensorRT's extra kernel arguments are 32-bit integers."""


def aot_layout_problem(plan: LaunchPlan) -> Optional[str]:
    """Why TensorRT's AOT launch (input pointers, 32-bit extras, output pointers) cannot call this
    kernel, or None; known once the plan is bound to the compiled kernel."""
    if not plan.seed_order:
        return "its param_order differs from the order a TensorRT AOT launch passes (inputs, extras, outputs)"
    wide = [plan.extras[s.index].label for s in plan.arg_layout if s.kind == "extra" and s.ctype not in AOT_EXTRA_CTYPES]
    if wide:
        return f"extras {wide} are 64-bit kernel parameters, and a TensorRT AOT launch passes 32-bit integers"
    return None


def plan_problems(plan: LaunchPlan) -> List[str]:
    """What a TensorRT plugin cannot do that the plan asks for: outputs set before the launch
    (TensorRT hands the kernel uninitialised buffers)."""
    initialised = [r.name for r in plan.outputs or () if r.init is not None or r.copy_of is not None]
    if initialised:
        return [f"outputs {initialised} are initialised before the launch (init=), which TensorRT's output buffers are not"]
    return []


def check_require_aot(where: Where, path: PluginPath, require_aot: object) -> None:
    """``require_aot=True`` refuses a spec whose TensorRT plugin would be JIT, with or without TensorRT."""
    check_flag(where, "require_aot", require_aot)
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
    if not schema.returns:
        problems.append("it returns nothing (it only writes its arguments in place); a TensorRT plugin returns its outputs")
    scalars = [a for a in arguments if str(a.type) != "Tensor"]
    defaulted = [a.name for a in scalars if a.default_value is not None]
    if defaulted and len(defaulted) != len(scalars):
        problems.append(
            f"scalar arguments {defaulted} have defaults and others do not; Torch-TensorRT's converter then passes "
            "them out of order. Give every scalar argument a default or none"
        )
    return problems
