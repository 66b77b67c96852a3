"""Autograd for a kernelop op: the user's backward, fed what the forward saved, by name.

``save`` names the inputs (tensors or scalars) and outputs the backward reads; ``backward(saved,
*grads)`` gets them as attributes of ``saved`` and one gradient per output, and returns the
inputs' gradients as a dict by name (missing: None) or one entry per input. Both are usually
other kernelop ops, so a compiled training step stays on the kernels.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from ..errors import Where
from ..plan.launch_plan import LaunchPlan


@dataclass(frozen=True)
class AutogradFunctions:
    """The pair ``torch.library.register_autograd`` takes."""

    backward: Callable[..., Any]
    setup_context: Callable[..., Any]


def check_backward(where: Where, backward: object, save: object) -> tuple[str, ...]:
    """``backward`` callable (or None with nothing saved); ``save`` a sequence of names."""
    if backward is not None and not callable(backward):
        where.fail(f"backward must be callable as backward(saved, *grads) (got {type(backward).__name__})", TypeError)
    if isinstance(save, str) or not isinstance(save, Sequence) or not all(isinstance(n, str) for n in save):
        where.fail(f"save must be a list of input and output names (got {save!r})", TypeError)
    if save and backward is None:
        where.fail(f"save={list(save)} is given without backward=; pass the backward that reads them")
    return tuple(save)


def autograd_functions(where: Where, plan: LaunchPlan, schema: Any, backward: Callable[..., Any], save: tuple[str, ...]) -> AutogradFunctions:
    """The backward and setup_context for an op with these parameters and outputs."""
    if plan.mutated:
        where.fail(f"backward= is given but the op writes {[p.name for p in plan.mutated]} in place; "
                   "autograd needs an op that only returns its results")
    input_names = [a.name for a in schema.arguments]
    outputs = [r.name for r in plan.outputs] if plan.outputs is not None else [f"out{k}" for k in range(len(schema.returns))]
    known = input_names + outputs
    unknown = [n for n in save if n not in known]
    if unknown:
        where.fail(f"save names {unknown}, which are not inputs or outputs of the op (they are {known})")

    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:  # torch passes these by keyword
        values = dict(zip(input_names, inputs))
        values.update(zip(outputs, output if isinstance(output, tuple) else (output,)))
        tensors = [n for n in save if isinstance(values[n], torch.Tensor)]
        ctx.save_for_backward(*(values[n] for n in tensors))
        ctx.kernelop_saved = (tensors, {n: values[n] for n in save if n not in tensors})

    def backward_impl(ctx: Any, *grads: Any) -> tuple:
        tensors, others = ctx.kernelop_saved
        saved = SimpleNamespace(**others, **dict(zip(tensors, ctx.saved_tensors)))
        return _gradients(Where("call", where.op), input_names, backward(saved, *grads))

    return AutogradFunctions(backward_impl, setup_context)


def _gradients(where: Where, inputs: list[str], result: Any) -> tuple:
    """The backward's result as one gradient (or None) per input, in the schema's order."""
    if isinstance(result, Mapping):
        unknown = [n for n in result if n not in inputs]
        if unknown:
            where.fail(f"backward returned gradients for {unknown}, which are not inputs (inputs are {inputs})")
        return tuple(result.get(n) for n in inputs)
    grads: Optional[tuple] = tuple(result) if isinstance(result, (tuple, list)) else (result,) if len(inputs) == 1 else None
    if grads is None or len(grads) != len(inputs):
        where.fail(f"backward must return a dict by input name or one gradient per input {inputs} (got {result!r:.200})")
    return grads  # type: ignore[return-value]
