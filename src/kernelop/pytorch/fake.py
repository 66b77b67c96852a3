"""The fake impl (``torch.compile``, ``torch.export``) and the tensor checks it shares with eager."""
from __future__ import annotations

from typing import Any, Callable

import torch

from ..errors import Where
from ..plan.expr import ShapeAlgebra, evaluate
from ..plan.launch_plan import LaunchPlan
from .launch_checks import divides_by_zero, failure, holds, negative_output, output_divides_by_zero


def check_tensors(where: Where, plan: LaunchPlan, tensors: tuple) -> None:
    """Declared dtypes (a ``TypeParam``: one of its dtypes, the same for every input it types)
    and a common device; shared by the fake impl and the eager launch. Optional inputs may be None."""
    for param, tensor in zip(plan.tensor_params, tensors):
        if not (isinstance(tensor, torch.Tensor) or tensor is None and param.optional):
            where.fail(f"argument {param.name!r} must be a Tensor (got {type(tensor).__name__})", TypeError)
    first = plan.first_required
    device = tensors[first].device
    problem = plan.dtype_problem(tuple(None if t is None else t.dtype for t in tensors))
    if problem is not None:
        where.fail(problem, TypeError)
    for param, tensor in zip(plan.tensor_params, tensors):
        if tensor is None:
            continue
        if tensor.device != device:
            where.fail(
                f"argument {param.name!r} is on {tensor.device} but {plan.tensor_params[first].name!r} is on {device}; "
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
            where.fail(divides_by_zero("a requirement", shapes))
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
        in_shapes = [() if t is None else t.shape for t in tensors]
        check_requirements(where, plan, in_shapes)
        shapes = plan.output_shapes(tuple(len(s) for s in in_shapes))
        algebra = ShapeAlgebra(in_shapes)
        like = tensors[plan.first_required]
        outs = []
        for rule, shape in zip(rules, shapes):
            try:
                sizes = [evaluate(e, algebra) for e in shape]
            except ZeroDivisionError:
                where.fail(output_divides_by_zero(in_shapes))
            for size in sizes:  # on symbolic sizes: a guard torch.export records
                torch._check_value(size >= 0, lambda: f"kernelop.{where.api}({where.op}): {negative_output(rule.name, sizes, in_shapes)}")
            outs.append(like.new_empty(sizes, dtype=tensors[rule.dtype_source].dtype))
        return None if not outs else outs[0] if len(outs) == 1 else tuple(outs)

    return fake


def with_input_checks(where: Where, plan: LaunchPlan, fn: Callable[..., Any]) -> Callable[..., Any]:
    """The user's ``meta_fn`` or ``eager_fn``, after the dtype, device and requirement checks of
    kernelop's own launch."""
    positions = tuple(p.position for p in plan.tensor_params)

    def fake(*args: Any) -> Any:
        tensors = tuple(args[i] for i in positions)
        check_tensors(where, plan, tensors)
        check_requirements(where, plan, [() if t is None else t.shape for t in tensors])
        return fn(*args)

    return fake
