"""``ptx_op``: pre-compiled PTX as a PyTorch op (and TensorRT plugin); the three functions are the user's."""
from __future__ import annotations

import re
from typing import Any, Callable, Optional, Union

from ..dsl.spec import ConverterPriority
from ..dsl.validate_options import check_converter_options, check_op_name, check_overrides
from ..errors import Where
from ..pytorch import library, schema as schemas
from ..trt import decision, registration as trt_registration
from ..trt.backend import PluginRequest
from .registry import Registration, already_registered, one_at_a_time, record


@one_at_a_time
def ptx_op(
    op_name: str,
    ptx: Union[bytes, str],
    kernel_name: str,
    meta_fn: Callable[..., Any],
    eager_fn: Callable[..., Any],
    aot_fn: Callable[..., Any],
    *,
    supports_dynamic_shapes: bool = False,
    requires_output_allocator: bool = False,
    priority: ConverterPriority = ConverterPriority.STANDARD,
    capability_validator: Optional[Callable[..., Any]] = None,
    schema: Optional[str] = None,
) -> None:
    """Register a kernel from pre-compiled PTX (bytes or str); NVRTC is skipped and the three functions are yours."""
    where = Where("ptx_op", op_name)
    namespace, name = check_op_name(where, op_name)
    for field_name, fn in (("meta_fn", meta_fn), ("eager_fn", eager_fn), ("aot_fn", aot_fn)):
        if fn is None:
            where.fail(f"{field_name} is required for ptx_op", TypeError)
    check_overrides(where, meta_fn, eager_fn, aot_fn, schema, capability_validator)
    check_converter_options(where, supports_dynamic_shapes, requires_output_allocator, priority)
    if isinstance(ptx, str):  # PTX is text; torch_tensorrt.kernels takes it either way
        ptx = ptx.encode()
    _check_ptx(where, ptx, kernel_name)
    fingerprint = ("ptx", bytes(ptx), kernel_name, meta_fn, eager_fn, aot_fn, schema, supports_dynamic_shapes, requires_output_allocator, priority, capability_validator)
    if already_registered(where, op_name, fingerprint):
        return
    schema_text = schemas.derive_schema(where, None, (), meta_fn, schema)
    parsed = schemas.parse_schema(where, op_name, schema_text)
    schemas.check_returns_tensors(where, parsed)
    plugin = trt_registration.prepare_tensorrt(where, PluginRequest(
        op_name, parsed, decision.plugin_path(None, (), aot_fn), None, None, bytes(ptx), kernel_name, meta_fn, aot_fn,
        supports_dynamic_shapes, requires_output_allocator, priority, capability_validator))
    torch_library = library.register(where, namespace, name, schema_text, {"CUDA": eager_fn}, meta_fn)
    trt_registration.register_tensorrt(where, plugin, torch_library)
    record(Registration(op_name, fingerprint, schema_text, torch_library, None, None, bytes(ptx)))


def _check_ptx(where: Where, ptx: object, kernel_name: object) -> None:
    if not isinstance(ptx, (bytes, bytearray)):
        where.fail(f"ptx must be bytes or str (got {type(ptx).__name__})", TypeError)
    if not isinstance(kernel_name, str) or not kernel_name:
        where.fail(f"kernel_name must be a non-empty str (got {kernel_name!r})", TypeError)
    text = bytes(ptx).decode("utf-8", errors="replace")
    if not re.search(r"^\s*\.version\s+\d+\.\d+", text, re.M):
        where.fail("ptx has no '.version' directive; pass PTX text as bytes (e.g. from nvrtcGetPTX)")
    entries = re.findall(r"\.entry\s+([A-Za-z_$][\w$]*)", text)
    if kernel_name not in entries:
        where.fail(f"ptx defines no kernel named {kernel_name!r} (it defines {entries})")
