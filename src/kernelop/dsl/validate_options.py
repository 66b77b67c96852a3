"""Registration-time checks of what an op gets besides its spec: its name, architecture
strings, the converter's options and the user's functions."""
from __future__ import annotations

import keyword
import re
from typing import Any, Callable, Optional, Union

from ..errors import Where
from .spec import ConverterPriority

RESERVED_NAMESPACES = frozenset({"aten", "prim", "prims", "trt", "tensorrt", "std"})
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_ARCH = re.compile(r"sm_\d{2,3}[af]?\Z")


def is_identifier(name: object) -> bool:
    return isinstance(name, str) and bool(_IDENTIFIER.match(name)) and not keyword.iskeyword(name)


def check_op_name(where: Where, op_name: object) -> tuple[str, str]:
    """``namespace::name`` with identifier parts; returns ``(namespace, name)``."""
    if not isinstance(op_name, str):
        where.fail(f"op_name must be a str like 'myns::relu' (got {type(op_name).__name__})", TypeError)
    parts = op_name.split("::")
    if len(parts) != 2 or not all(is_identifier(p) for p in parts):
        where.fail(
            f"op_name must be 'namespace::name' with identifier parts (got {op_name!r}). "
            "Example: 'myns::relu'."
        )
    if any(p.startswith("_") for p in parts):
        where.fail(
            f"op_name parts must not start with '_' (got {op_name!r}): torch.ops looks names such as "
            "'__doc__' up as Python attributes. Example: 'myns::relu'."
        )
    if parts[0] in RESERVED_NAMESPACES:
        where.fail(
            f"op_name namespace {parts[0]!r} is reserved by PyTorch or TensorRT (got {op_name!r}). "
            "Choose your own namespace."
        )
    return parts[0], parts[1]


def check_arch(where: Where, field_name: str, arch: object) -> None:
    if arch is not None and not (isinstance(arch, str) and _ARCH.match(arch)):
        where.fail(f"{field_name} must look like 'sm_90' (got {arch!r})")


def check_callable(where: Where, field_name: str, fn: object) -> None:
    if fn is not None and not callable(fn):
        where.fail(f"{field_name} must be callable (got {type(fn).__name__})", TypeError)


def check_flag(where: Where, field_name: str, value: object) -> None:
    if not isinstance(value, bool):
        where.fail(f"{field_name} must be a bool (got {value!r})", TypeError)


def check_priority(where: Where, priority: object) -> None:
    if not isinstance(priority, ConverterPriority):
        where.fail(f"priority must be a ConverterPriority (got {priority!r})", TypeError)


def check_converter_options(where: Where, dynamic: object, output_allocator: object, priority: object) -> None:
    """The options both registration APIs hand to Torch-TensorRT's converter."""
    check_flag(where, "supports_dynamic_shapes", dynamic)
    check_flag(where, "requires_output_allocator", output_allocator)
    check_priority(where, priority)


def check_overrides(
    where: Where,
    meta_fn: Optional[Callable[..., Any]],
    eager_fn: Optional[Callable[..., Any]],
    aot_fn: Optional[Callable[..., Any]],
    schema: Union[str, None],
    capability_validator: Optional[Callable[..., Any]],
) -> None:
    for field_name, fn in (
        ("meta_fn", meta_fn),
        ("eager_fn", eager_fn),
        ("aot_fn", aot_fn),
        ("capability_validator", capability_validator),
    ):
        check_callable(where, field_name, fn)
    if schema is not None and not isinstance(schema, str):
        where.fail(f"schema must be a str like '(Tensor x) -> Tensor' (got {schema!r})", TypeError)
