"""The fake impl (``torch.compile``, ``torch.export``) and the tensor checks it shares with eager."""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..errors import Where
from ..plan.expr import ShapeAlgebra, evaluate
from ..plan.launch_plan import LaunchPlan
from .launch_checks import failure, holds


def check_tensors(where: Where, plan: LaunchPlan, tensors: tuple) -> None:
    """Declared dtypes and a common device; shared by the fake impl and the eager launch."""
    device = tensors[0].device
    for param, tensor in zip(plan.tensor_params, tensors):
        if not isinstance(tensor, torch.Tensor):
            where.fail(f"argument {param.name!r} must be a Tensor (got {type(tensor).__name__})", TypeError)
        if param.dtype is not None and tensor.dtype != param.dtype:
            where.fail(f"argument {param.name!r} must have dtype {param.dtype} (got {tensor.dtype})", TypeError)
        if tensor.device != device:
            where.fail(
                f"argument {param.name!r} is on {tensor.device} but {plan.tensor_params[0].name!r} is on {device}; "
                "all tensor inputs must be on one device"
            )


def check_requirements(where: Where, plan: LaunchPlan, shapes: list) -> None:
    """The spec's requirements through ``torch._check_value``: on symbolic sizes they become
    guards that ``torch.export`` records (a divisible dynamic dim must be declared a multiple)."""
    if not plan.requires:
        return
    algebra = ShapeAlgebra(shapes)
    for check in plan.checks(tuple(len(s) for s in shapes)):
        try:
            value = evaluate(check.value, algebra)
            other = check.other if isinstance(check.other, int) else evaluate(check.other, algebra)
        except ZeroDivisionError:
            where.fail(f"a requirement divides by zero for input shapes {[tuple(s) for s in shapes]}")
        torch._check_value(holds(check, value, other), lambda: f"kernelop.{where.api}({where.op}): {failure(check, value, other, shapes)}")


def make_fake_impl(plan: LaunchPlan) -> Callable[..., Any]:
    """Output shapes from the plan through the SymInt algebra: dynamic dims stay symbolic."""
    where = Where("call", plan.op_name)
    positions = tuple(p.position for p in plan.tensor_params)
    rules = plan.outputs
    assert rules is not None

    def fake(*args: Any) -> Any:
        tensors = tuple(args[i] for i in positions)
        check_tensors(where, plan, tensors)
        in_shapes = [t.shape for t in tensors]
        check_requirements(where, plan, in_shapes)
        shapes = plan.output_shapes(tuple(len(s) for s in in_shapes))
        algebra = ShapeAlgebra(in_shapes)
        outs = tuple(
            tensors[0].new_empty([evaluate(e, algebra) for e in shape], dtype=tensors[rule.dtype_source].dtype)
            for rule, shape in zip(rules, shapes)
        )
        return outs[0] if len(outs) == 1 else outs

    return fake


def with_input_checks(where: Where, plan: LaunchPlan, fn: Callable[..., Any]) -> Callable[..., Any]:
    """The user's ``meta_fn`` or ``eager_fn``, after the dtype, device and requirement checks of
    kernelop's own launch."""
    positions = tuple(p.position for p in plan.tensor_params)

    def fake(*args: Any) -> Any:
        tensors = tuple(args[i] for i in positions)
        check_tensors(where, plan, tensors)
        check_requirements(where, plan, [t.shape for t in tensors])
        return fn(*args)

    return fake
