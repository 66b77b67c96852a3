"""A launch plan as the native runtime's program: plain lines of tokens that ``runtime.cpp`` reads.

The C++ side interprets the spec-level sizes for each call's ranks, as ``LaunchPlan`` does per
tuple of ranks, so it needs them unresolved: axes as written (negative ones included), reduced
dims, the geometry's kind. Everything op-specific in a message (names, what a size belongs to,
how the kernel reads a pointer) is rendered here by the functions the Python path uses, with
placeholders (``{rank}``, ``{value}``, ``{other}``, ``{shape}``, ``{shapes}``) for what only a
call knows; the C++ side fills them in. Strings are percent-encoded, so a token never holds a
space.

    kernelop-native-program 2
    limits <max threads> <max shared bytes> <grid x y z> <block x y z>
    ndhint <text>
    sticky <CUresult name>...                faults after which the CUDA context is unusable
    op <name> <kernel label, quoted> <first required> <outputs> <shared opt-in> <nd layout>
    schema <schema> <not built for message>  only in bundles: the op is defined from it; a GPU it has no kernels for
    tensor <name> <position> <optional> <mutates> <declared> <allowed> <pointer note>
    scalar <name> <position> <float|int|bool>
    group <tensor index>...                  template type parameter: its tensors, key first
    slot <tensor|scalar|extra|output> <index> <ctype> <low|-> <high|-> <float max|-> <misfit message>
    extra <label> <tree>
    output <name> <dtype source> <none|fill:V|copy:I> like <source> | sizes <n> <tree>... | reduce ...
    geometry elementwise|reduction|launch ...
    check <rule> <tree> <i:N | t <tree>> <where> <text> <other text> <argument|-> <axis> <failure>
    end
    kernel <op> <instantiation> <arch> <symbol> <file>   only in bundles, after the ops

A tree is prefix: ``c V`` | ``a SIDE INDEX AXIS MESSAGE`` | ``n SIDE INDEX`` | ``OP A B``.
"""
from __future__ import annotations

from typing import Any, Optional
from urllib.parse import quote

from ..compiler.signature import dtypes_of_size
from ..cuda.driver import STICKY_ERRORS
from ..dsl.sizes import AxisSize, BinarySize, ConstSize, NumelSize, SizeLike
from ..dsl.spec import Elementwise, Launch, Reduction, TypeParam
from ..dsl.validate_sizes import MAX_SHARED_MEM_BYTES, MAX_THREADS_PER_BLOCK
from ..plan.ctypes import FLOAT_MAX, INT_RANGES
from ..plan.describe import describe_slot
from ..plan.launch_plan import (
    ArgSlot, LaunchPlan, OutputRule, axis_out_of_range, requirement_check, requirement_parts, same_axis_twice,
)
from ..pytorch.launch_checks import MAX_BLOCK, MAX_GRID, extra_misfit, failure, negative_output, scalar_misfit
from ..pytorch.launcher import ND_GRID_HINT

FORMAT = 2  # the runtime is built for this one (build.py passes it to the compiler)
_OPS = {"+": "add", "-": "sub", "*": "mul", "//": "floordiv", "cdiv": "cdiv", "min": "min", "max": "max"}


def program_problem(plan: Optional[LaunchPlan]) -> Optional[str]:
    """Why the native runtime cannot run this plan's op (its Python path does), or None."""
    if plan is None or not plan.declares_inputs:
        return "it has no declared inputs (its eager path is eager_fn)"
    if plan.outputs is None:
        return "its outputs come from meta_fn, a Python function"
    if not isinstance(plan.geometry, (Elementwise, Reduction, Launch)):
        return f"its geometry is {type(plan.geometry).__name__}, not one kernelop launches"
    return None


def header() -> list[str]:
    """CUDA's limits as the Python path checks them, the hint of an ``nd`` grid over them, and
    the faults that leave the context unusable."""
    return [f"kernelop-native-program {FORMAT}",
            f"limits {MAX_THREADS_PER_BLOCK} {MAX_SHARED_MEM_BYTES} {_ints(MAX_GRID)} {_ints(MAX_BLOCK)}",
            f"ndhint {_s(ND_GRID_HINT)}",
            "sticky " + " ".join(sorted(STICKY_ERRORS))]


def op_program(plan: LaunchPlan, kernel_label: str, shared_opt_in: bool, bundled: Optional[tuple[str, str]] = None) -> list[str]:
    """The lines of one op, ``op`` to ``end``; with ``bundled`` (its schema, and the message of a
    GPU its bundle has no kernels for), a process without kernelop can define it."""
    assert program_problem(plan) is None, program_problem(plan)
    nd = int(getattr(plan.geometry, "layout", "") == "nd")
    lines = [f"op {_s(plan.op_name)} {_s(repr(kernel_label))} {plan.first_required} {plan.num_outputs} {int(shared_opt_in)} {nd}"]
    if bundled is not None:
        lines.append(f"schema {_s(bundled[0])} {_s(bundled[1])}")
    pointee = {s.index: s for s in plan.arg_layout if s.kind == "tensor"}
    for param in plan.params:
        if not param.is_tensor:
            lines.append(f"scalar {_s(param.name)} {param.position} {param.py_type.__name__}")  # type: ignore[union-attr]
            continue
        slot = pointee[param.tensor_index]
        allowed = param.allowed_dtypes
        if allowed is None and slot.pointee_size is not None:
            allowed = dtypes_of_size(slot.pointee_size)
        note = ""
        if slot.pointee_size is not None:
            note = (f"but kernel {kernel_label!r} reads it through a pointer to {slot.pointee_size}-byte elements "
                    f"({describe_slot(plan, slot)}). Pass a tensor of a matching dtype or declare InputDecl(dtype=...).")
        lines.append(f"tensor {_s(param.name)} {param.position} {int(param.optional)} {int(param.mutates)} "
                     f"{_declared(param.dtype)} {_dtypes(allowed)} {_s(note)}")
    for group in plan.template.type_tensors if plan.template is not None else ():
        lines.append("group " + _ints(group))
    for slot in plan.arg_layout:
        lines.append(_slot(plan, slot))
    for rule in plan.extras:
        lines.append(f"extra {_s(rule.label)} {_tree(plan, rule.value, f'extra {rule.label}:')}")
    for rule in plan.outputs or ():
        lines.append(_output(plan, rule))
    lines.append(_geometry(plan))
    for i, requirement in enumerate(plan.requires):
        lines.extend(_check(plan, *part) for part in requirement_parts(i, requirement))
    lines.append("end")
    return lines


def _slot(plan: LaunchPlan, slot: ArgSlot) -> str:
    """A kernel parameter with the range a value must fit (integers; a finite float32) and the
    message of a value that does not."""
    low, high = INT_RANGES.get(slot.ctype, ("-", "-"))
    float_max = FLOAT_MAX.get(slot.ctype, float("inf"))
    bounded = slot.ctype in INT_RANGES or float_max != float("inf")
    message = ""
    if slot.kind == "scalar" and bounded:
        message = scalar_misfit(plan.params[slot.index].name, slot.ctype, "{value}")
    elif slot.kind == "extra":
        message = extra_misfit(plan.extras[slot.index].label, slot.ctype, "{value}")
    shown_max = repr(float_max) if float_max != float("inf") else "-"
    return f"slot {slot.kind} {slot.index} {slot.ctype} {low} {high} {shown_max} {_s(message)}"


def _output(plan: LaunchPlan, rule: OutputRule) -> str:
    init = "none"
    if rule.copy_of is not None:
        init = f"copy:{rule.copy_of}"
    elif rule.init is not None:
        init = f"fill:{'i' if isinstance(rule.init, int) else 'f'}{rule.init!r}"
    head = f"output {_s(rule.name)} {rule.dtype_source} {init} {_s(negative_output(rule.name, '{shape}', '{shapes}'))}"
    if rule.sizes is not None:
        trees = " ".join(_tree(plan, s, f"output {rule.name!r} shape:") for s in rule.sizes)
        return f"{head} sizes {len(rule.sizes)} {trees}"
    if rule.reduce_dims is None:
        return f"{head} like {rule.source} {int(rule.like_input)}"
    return f"{head} reduce {rule.source} {int(rule.keepdim)} {_reduce_dims(plan.reduce_dims_what(rule), rule.reduce_dims)}"


def _reduce_dims(what: str, dims: tuple[int, ...]) -> str:
    """Reduced dims with their messages: each dim out of range, and a dim named twice."""
    out = [str(len(dims))]
    for d in dims:
        out += [str(d), _s(axis_out_of_range(what, d, "{rank}"))]
    return " ".join(out + [_s(same_axis_twice(what, dims, "{rank}"))])


def _geometry(plan: LaunchPlan) -> str:
    geometry = plan.geometry
    if isinstance(geometry, Elementwise):
        side, index = plan.elementwise_target
        block = tuple(geometry.block) + (1,) * (3 - len(geometry.block))
        return (f"geometry elementwise {geometry.layout} {side} {index} {len(geometry.block)} {_ints(block)} "
                f"{geometry.shared_mem_bytes} {_s(plan.nd_rank_problem(geometry, '{rank}'))}")
    if isinstance(geometry, Reduction):
        return (f"geometry reduction {plan.reduced_input} {geometry.block_size} {geometry.shared_mem_bytes} "
                f"{_reduce_dims(plan.reduction_what(), geometry.reduce_dims)}")
    three = lambda sizes, what: [_tree(plan, s, f"{what}[{i}]") for i, s in enumerate(sizes)] + ["c 1"] * (3 - len(sizes))  # noqa: E731
    trees = three(geometry.grid, "geometry.grid") + three(geometry.block, "geometry.block")
    return "geometry launch " + " ".join(trees + [_tree(plan, geometry.shared_mem_bytes, "geometry.shared_mem_bytes")])


def _check(plan: LaunchPlan, kind: str, value: SizeLike, other: SizeLike, where: str) -> str:
    """One requirement; its message rendered by the Python path's ``failure`` with placeholders."""
    check = requirement_check(kind, value, None, other, where, "" if isinstance(other, int) else str(other))  # type: ignore[arg-type]
    other_tree = f"i {other}" if isinstance(other, int) else f"t {_tree(plan, other, f'{where}:')}"
    message = failure(check, "{value}", "{other}", "{shapes}")
    return f"check {kind} {_tree(plan, value, f'{where}:')} {other_tree} {_s(message)}"


def _tree(plan: LaunchPlan, size: SizeLike, what: str) -> str:
    """A spec size in prefix form; axis leaves carry their out-of-range message."""
    if isinstance(size, int):
        return f"c {size}"
    if isinstance(size, ConstSize):
        return f"c {size.value}"
    if isinstance(size, BinarySize):
        return f"{_OPS[size.op]} {_tree(plan, size.a, what)} {_tree(plan, size.b, what)}"
    side, index = plan.resolve_name(size.name)  # type: ignore[union-attr]
    if isinstance(size, NumelSize):
        return f"n {side} {index}"
    assert isinstance(size, AxisSize)
    return f"a {side} {index} {size.axis} {_s(axis_out_of_range(f'{what} {size.name!r}', size.axis, '{rank}'))}"


def _declared(dtype: Any) -> str:
    """``any``, ``fixed:float32`` or ``type:T:float32,float16``."""
    if dtype is None:
        return "any"
    if isinstance(dtype, TypeParam):
        return f"type:{_s(dtype.name)}:{','.join(_name(d) for d in dtype.dtypes)}"
    return f"fixed:{_name(dtype)}"


def _dtypes(dtypes: Any) -> str:
    return "-" if dtypes is None else ",".join(sorted(_name(d) for d in dtypes))


def _name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def _ints(values: Any) -> str:
    return " ".join(str(v) for v in values)


def _s(text: str) -> str:
    """A string as one token (``%`` alone for the empty string)."""
    return quote(text, safe="") or "%"
