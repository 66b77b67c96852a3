"""The op's torch schema: given, derived from the declared inputs and outputs, or inferred."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

import torch

from ..dsl.spec import KernelSpec
from ..errors import Where
from ..plan.launch_plan import LaunchPlan, Param


def derive_schema(where: Where, spec: Optional[KernelSpec], plan_params: tuple[Param, ...], meta_fn: Optional[Callable[..., Any]], schema: Optional[str]) -> str:
    """The given schema, else one from the declared inputs/outputs, else from meta_fn's hints."""
    if schema is not None:
        return schema.strip()
    if spec is not None and spec.inputs is not None and spec.outputs is not None:
        mutated = [p.name for p in plan_params if p.mutates]
        args = ", ".join(_argument(p, mutated) for p in plan_params)
        returns = "Tensor" if len(spec.outputs) == 1 else "(" + ", ".join("Tensor" for _ in spec.outputs) + ")"
        return f"({args}) -> {returns}"
    if meta_fn is not None:
        return _infer_from_hints(where, meta_fn)
    where.fail("cannot derive a schema: pass schema=, declare inputs and outputs, or annotate meta_fn")


def _kind(param: Param) -> str:
    """``Tensor``, ``Tensor(a!)`` (written in place), ``Tensor?`` (may be None), ``float``."""
    return f"{param.schema_type}{'(a!)' if param.mutates else ''}{'?' if param.optional else ''}"


def _argument(param: Param, mutated: list[str]) -> str:
    """The argument in the schema; each mutated argument gets its own alias set."""
    kind = _kind(param).replace("(a!)", f"(a{mutated.index(param.name)}!)" if param.mutates else "")
    return f"{kind} {param.name}"


def _infer_from_hints(where: Where, meta_fn: Callable[..., Any]) -> str:
    infer = getattr(torch.library, "infer_schema", None)
    if infer is None:  # torch < 2.5
        from torch._library.infer_schema import infer_schema as infer
    try:
        return infer(_tensors_where_unannotated(meta_fn), mutates_args=())
    except Exception as exc:
        where.fail(
            f"cannot infer a schema from meta_fn's type hints ({exc}). "
            "Annotate every parameter and the return (e.g. 'def meta(x: torch.Tensor) -> torch.Tensor') or pass schema="
        )


def _tensors_where_unannotated(meta_fn: Callable[..., Any]) -> Callable[..., Any]:
    """A stand-in with ``meta_fn``'s signature in which a parameter without a type hint is a
    ``Tensor``, as ``torch_tensorrt.kernels`` infers it; string hints are resolved in
    ``meta_fn``'s own module."""
    try:
        signature = inspect.signature(meta_fn, eval_str=True)
    except (NameError, SyntaxError, TypeError, ValueError):
        signature = inspect.signature(meta_fn)
    empty = inspect.Parameter.empty
    parameters = [p.replace(annotation=torch.Tensor) if p.annotation is empty else p for p in signature.parameters.values()]

    def prototype(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("only its signature is read")

    prototype.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return prototype


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


def check_schema_against_plan(where: Where, parsed: Any, plan: LaunchPlan) -> None:
    """A given or inferred schema must agree with the declared inputs and outputs."""
    if plan.declares_inputs:
        got = [_declared(a) for a in parsed.arguments]
        want = [_kind(p) for p in plan.params]
        if got != want:
            where.fail(f"schema arguments {got} do not match the declared inputs {want} (schema: {parsed})")
    if plan.outputs is not None and len(parsed.returns) != len(plan.outputs):
        where.fail(f"schema returns {len(parsed.returns)} values but {len(plan.outputs)} outputs are declared (schema: {parsed})")
    check_returns_tensors(where, parsed)


def _declared(argument: Any) -> str:
    """An argument's type as kernelop declares it: ``Tensor``, ``Tensor(a!)``, ``Tensor?``, ``float``."""
    kind = str(argument.type)
    optional = kind.startswith("Optional[")
    kind = kind[len("Optional["):-1] if optional else kind
    alias = argument.alias_info
    annotation = "" if alias is None else "(a!)" if alias.is_write else "(a)"
    return f"{kind}{annotation}{'?' if optional else ''}"


def mutates_arguments(parsed: Any) -> bool:
    return any(a.alias_info is not None and a.alias_info.is_write for a in parsed.arguments)


def check_returns_tensors(where: Where, parsed: Any) -> None:
    if not parsed.returns and not mutates_arguments(parsed):
        where.fail(f"schema must return at least one Tensor or mutate an argument; a kernel writes its outputs (schema: {parsed})")
    aliased = [str(r.type) for r in parsed.returns if r.alias_info is not None]
    if aliased:
        where.fail(f"schema returns an alias of an argument; a kernelop op returns new tensors its kernel writes (schema: {parsed})")
    if any(str(r.type) != "Tensor" for r in parsed.returns):
        where.fail(f"schema must return only Tensors (schema: {parsed})")
