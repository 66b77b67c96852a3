"""Readable launch plans, for the command line, the demo and error messages."""
from __future__ import annotations

import re
from typing import Optional

from ..dsl.spec import Elementwise, Launch, Reduction
from .ctypes import C_NAMES, CTYPE_SIZES
from .expr import INPUT, OUTPUT, Dim, Expr, substitute
from .launch_plan import ArgSlot, LaunchPlan


_RULE_TEXT = {"divisible": "{value} % {other} == 0", "min": "{value} >= {other}", "max": "{value} <= {other}", "equal": "{value} == {other}"}


def slot_name(plan: LaunchPlan, slot: ArgSlot) -> str:
    """The spec's name for a kernel parameter (an extra's label, ``output0`` for meta_fn outputs)."""
    if slot.kind == "tensor":
        return plan.tensor_params[slot.index].name
    if slot.kind == "scalar":
        return plan.params[slot.index].name
    if slot.kind == "extra":
        return plan.extras[slot.index].label
    return plan.outputs[slot.index].name if plan.outputs else f"output{slot.index}"


def describe_slot(plan: LaunchPlan, slot: ArgSlot) -> str:
    return f"{slot_name(plan, slot)}: {C_NAMES[slot.ctype]} ({CTYPE_SIZES[slot.ctype]} bytes)"


def describe(plan: LaunchPlan, in_ranks: tuple[int, ...], out_ranks: Optional[tuple[int, ...]] = None) -> str:
    """A readable launch plan for one tuple of ranks (the CLI and the demo print it).

    Output dimensions are shown through the output shapes where the plan declares them.
    """
    names = [p.name for p in plan.tensor_params]
    lines = [f"op {plan.op_name}", "  kernel args: " + "; ".join(describe_slot(plan, s) for s in plan.arg_layout)]
    shapes: tuple[tuple[Expr, ...], ...] = ()
    if plan.outputs is not None:
        shapes = plan.output_shapes(in_ranks)
        out_ranks = tuple(len(s) for s in shapes)
        for rule, shape in zip(plan.outputs, shapes):
            lines.append(f"  output {rule.name}: shape ({', '.join(_readable(e, names) for e in shape)}) dtype of {names[rule.dtype_source]}")
    else:
        lines.append("  outputs: shapes and dtypes from meta_fn")
    for check in plan.checks(in_ranks):
        other = check.other if isinstance(check.other, int) else _readable(check.other, names)
        lines.append(f"  requires ({check.where}): " + _RULE_TEXT[check.rule].format(value=_readable(check.value, names), other=other))

    def through_outputs(dim: Dim) -> Expr:
        return shapes[dim.index][dim.axis] if dim.side == OUTPUT and shapes else dim

    if out_ranks is not None and isinstance(plan.geometry, (Elementwise, Reduction, Launch)):
        dims = plan.launch_dims(in_ranks, out_ranks)
        show = lambda e: _readable(substitute(e, through_outputs), names)  # noqa: E731
        lines.append(f"  grid:  ({', '.join(show(e) for e in dims.grid)})")
        lines.append(f"  block: ({', '.join(show(e) for e in dims.block)})")
        lines.append(f"  dynamic shared memory: {show(dims.shared_mem)} bytes")
        for rule, e in zip(plan.extras, dims.extras):
            lines.append(f"  extra {rule.label} = {show(e)}")
    return "\n".join(lines)


def _readable(e: Expr, names: list[str]) -> str:
    text = str(e)
    for i, name in enumerate(names):
        text = text.replace(f"{INPUT}{i}.", f"{name}.")
    return re.sub(rf"{OUTPUT}(\d+)\.", r"out\1.", text)
