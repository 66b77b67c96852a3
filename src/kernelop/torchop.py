"""PyTorch op registration: schema, CUDA impl and fake impl, all or nothing.

Registration goes straight through ``torch.library.Library`` (define + impl): the
``torch.library.custom_op`` decorator wraps every call in Python layers that cost several
microseconds, which a kernel launch path cannot afford.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from .expr import ShapeAlgebra, evaluate
from .plan import LaunchPlan
from .spec import KernelSpec
from .validate import Where


def derive_schema(where: Where, spec: Optional[KernelSpec], plan_params: tuple, meta_fn: Optional[Callable[..., Any]], schema: Optional[str]) -> str:
    """The given schema, else one from the declared inputs/outputs, else from meta_fn's hints."""
    if schema is not None:
        return schema.strip()
    if spec is not None and spec.inputs is not None and spec.outputs is not None:
        args = ", ".join(f"{p.schema_type} {p.name}" for p in plan_params)
        returns = "Tensor" if len(spec.outputs) == 1 else "(" + ", ".join("Tensor" for _ in spec.outputs) + ")"
        return f"({args}) -> {returns}"
    if meta_fn is not None:
        return _infer_from_hints(where, meta_fn)
    where.fail("cannot derive a schema: pass schema=, declare inputs and outputs, or annotate meta_fn")


def _infer_from_hints(where: Where, meta_fn: Callable[..., Any]) -> str:
    infer = getattr(torch.library, "infer_schema", None)
    if infer is None:  # torch < 2.5
        from torch._library.infer_schema import infer_schema as infer
    try:
        return infer(meta_fn, mutates_args=())
    except Exception as exc:
        where.fail(
            f"cannot infer a schema from meta_fn's type hints ({exc}). "
            "Annotate every parameter and the return (e.g. 'def meta(x: torch.Tensor) -> torch.Tensor') or pass schema="
        )


def parse_schema(where: Where, op_name: str, schema: str) -> Any:
    """Parse the signature; kernelop passes arguments positionally, so keyword-only ones are refused."""
    if not schema.startswith("("):
        where.fail(f"schema must be the signature alone, like '(Tensor x, float alpha) -> Tensor' (got {schema!r})")
    try:
        parsed = torch._C.parse_schema(f"{op_name}{schema}")
    except RuntimeError as exc:
        where.fail(f"schema {schema!r} does not parse: {str(exc).splitlines()[0]}")
    keyword_only = [a.name for a in parsed.arguments if a.kwarg_only]
    if keyword_only:
        where.fail(f"schema has keyword-only arguments {keyword_only}; declare every argument positionally (got {schema!r})")
    return parsed


def check_schema_against_plan(where: Where, parsed: Any, plan: LaunchPlan, spec: KernelSpec) -> None:
    """A given or inferred schema must agree with the declared inputs and outputs."""
    if spec.inputs is not None:
        got = [str(a.type) for a in parsed.arguments]
        want = [p.schema_type for p in plan.params]
        if got != want:
            where.fail(f"schema arguments {got} do not match the declared inputs {want} (schema: {parsed})")
    if spec.outputs is not None and len(parsed.returns) != len(spec.outputs):
        where.fail(f"schema returns {len(parsed.returns)} values but {len(spec.outputs)} outputs are declared (schema: {parsed})")
    check_returns_tensors(where, parsed)


def check_returns_tensors(where: Where, parsed: Any) -> None:
    if any(str(r.type) != "Tensor" for r in parsed.returns):
        where.fail(f"schema must return only Tensors (schema: {parsed})")


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
        shapes = plan.output_shapes(tuple(len(s) for s in in_shapes))
        algebra = ShapeAlgebra(in_shapes)
        outs = tuple(
            tensors[0].new_empty([evaluate(e, algebra) for e in shape], dtype=tensors[rule.dtype_source].dtype)
            for rule, shape in zip(rules, shapes)
        )
        return outs[0] if len(outs) == 1 else outs

    return fake


def with_input_checks(where: Where, plan: LaunchPlan, meta_fn: Callable[..., Any]) -> Callable[..., Any]:
    """The user's meta_fn, after the same dtype and device checks the eager launch makes."""
    positions = tuple(p.position for p in plan.tensor_params)

    def fake(*args: Any) -> Any:
        check_tensors(where, plan, tuple(args[i] for i in positions))
        return meta_fn(*args)

    return fake


def register(where: Where, namespace: str, name: str, schema: str, impls: dict[str, Callable[..., Any]], fake_impl: Callable[..., Any]) -> torch.library.Library:
    """Define the op and attach its impls (by dispatch key) and fake impl; all or nothing."""
    if torch._C._jit_get_schemas_for_operator(f"{namespace}::{name}"):
        where.fail(f"an op named {namespace}::{name} is already defined outside kernelop. Choose another name.")
    lib = torch.library.Library(namespace, "FRAGMENT")
    try:
        lib.define(f"{name}{schema}")
        for dispatch_key, impl in impls.items():
            lib.impl(name, impl, dispatch_key)
        torch.library.register_fake(f"{namespace}::{name}", fake_impl, lib=lib)
    except Exception:
        lib._destroy()
        raise
    return lib
