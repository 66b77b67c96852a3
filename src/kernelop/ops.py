"""``cuda_kernel_op`` and ``ptx_op``: orchestration only.

Each registration is a list of small steps; any failure before the last leaves nothing behind
(no schema, no impl, no fake impl, no registry entry).

Re-registration: the same arguments under the same op name again is a no-op; different
arguments under a name kernelop already registered raise ``ValueError`` naming the op, because
silently keeping the old kernel (or swapping it under live compiled graphs) gives wrong results.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from . import torchop, trt_lowering
from .cache import KernelCache
from .kernel import KernelBinaries, compile_request_for, target_arch
from .launcher import EagerLauncher
from .plan import LaunchPlan, build_plan, params_of
from .signature import pointer_element_sizes
from .spec import ConverterPriority, KernelSpec
from .validate import Where, check_flag, check_op_name, check_overrides, check_priority, check_spec

log = logging.getLogger("kernelop")


@dataclass(frozen=True)
class Registration:
    """What kernelop keeps per registered op."""

    op_name: str
    fingerprint: tuple
    schema: str
    library: torch.library.Library
    plan: Optional[LaunchPlan]
    binaries: Optional[KernelBinaries]
    ptx: Optional[bytes]


_registry: dict[str, Registration] = {}


def registered_ops() -> dict[str, Registration]:
    """A snapshot of kernelop's registrations, by op name."""
    return dict(_registry)


def cuda_kernel_op(
    op_name: str,
    spec: KernelSpec,
    *,
    meta_fn: Optional[Callable[..., Any]] = None,
    eager_fn: Optional[Callable[..., Any]] = None,
    aot_fn: Optional[Callable[..., Any]] = None,
    schema: Optional[str] = None,
    supports_dynamic_shapes: bool = True,
    requires_output_allocator: bool = False,
    priority: ConverterPriority = ConverterPriority.STANDARD,
    capability_validator: Optional[Callable[..., Any]] = None,
    require_aot: bool = False,
    cache: Optional[KernelCache] = None,
) -> None:
    """Register a CUDA C++ kernel as ``torch.ops.<ns>.<name>``, compiled with NVRTC now.

    ``cache`` (additive) overrides the compile cache taken from the environment.
    ``require_aot`` (additive) refuses a spec whose TensorRT plugin would be JIT, on every machine.
    """
    where = Where("cuda_kernel_op", op_name)
    namespace, name = check_op_name(where, op_name)
    check_overrides(where, meta_fn, eager_fn, aot_fn, schema, capability_validator)
    _check_converter_options(where, supports_dynamic_shapes, requires_output_allocator, priority)
    check_spec(where, spec, has_meta_fn=meta_fn is not None, has_eager_fn=eager_fn is not None, has_aot_fn=aot_fn is not None)
    trt_lowering.check_require_aot(where, spec, aot_fn, require_aot)
    fingerprint = ("cuda", spec, meta_fn, eager_fn, aot_fn, schema, supports_dynamic_shapes, requires_output_allocator, priority, capability_validator)
    if _already_registered(where, op_name, fingerprint):
        return

    schema_text = torchop.derive_schema(where, spec, params_of(spec), meta_fn, schema)
    parsed = torchop.parse_schema(where, op_name, schema_text)
    plan = build_plan(op_name, spec, num_outputs=len(parsed.returns))
    torchop.check_schema_against_plan(where, parsed, plan, spec)
    binaries = _compile(op_name, spec, plan, cache or KernelCache.from_settings())
    impls = _cuda_impls(spec, plan, binaries, meta_fn, eager_fn)
    fake_impl = _fake_impl(op_name, spec, plan, meta_fn)
    plugin = trt_lowering.prepare_tensorrt(where, trt_lowering.PluginRequest(
        op_name, parsed, spec, plan, binaries, None, spec.kernel_name, meta_fn, aot_fn, supports_dynamic_shapes,
        requires_output_allocator, priority, capability_validator, require_aot))
    library = torchop.register(where, namespace, name, schema_text, impls, fake_impl)
    trt_lowering.register_tensorrt(where, plugin, library)
    _registry[op_name] = Registration(op_name, fingerprint, schema_text, library, plan, binaries, None)
    log.debug("registered %s%s", op_name, schema_text)


def _compile(op_name: str, spec: KernelSpec, plan: LaunchPlan, cache: KernelCache) -> KernelBinaries:
    """Compile now, so a compile error surfaces at registration, with or without a GPU."""
    arch = target_arch(spec.arch_override)
    request = compile_request_for(op_name, spec.kernel_source, spec.kernel_name, arch, spec.compile_std, spec.include_paths)
    binaries = KernelBinaries(op_name, request, cache, plan if spec.inputs is not None else None)
    binaries.for_arch(arch)
    return binaries


def _cuda_impls(spec: KernelSpec, plan: LaunchPlan, binaries: KernelBinaries, meta_fn: Optional[Callable[..., Any]], eager_fn: Optional[Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """``eager_fn`` for CUDA, else kernelop's launcher for CUDA and for CPU (where it explains what it needs)."""
    if eager_fn is not None:
        return {"CUDA": eager_fn}
    launcher = EagerLauncher(plan, binaries, meta_fn, pointer_element_sizes(spec.kernel_source, spec.kernel_name))
    return {"CUDA": launcher.call, "CPU": launcher.call}


def _fake_impl(op_name: str, spec: KernelSpec, plan: LaunchPlan, meta_fn: Optional[Callable[..., Any]]) -> Callable[..., Any]:
    """Shapes from the plan, or ``meta_fn`` behind the same input checks as the eager launch."""
    if meta_fn is None:
        return torchop.make_fake_impl(plan)
    if spec.inputs is None:
        return meta_fn
    return torchop.with_input_checks(Where("call", op_name), plan, meta_fn)


def ptx_op(
    op_name: str,
    ptx: bytes,
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
    """Register a kernel from pre-compiled PTX; NVRTC is skipped and the three functions are yours."""
    where = Where("ptx_op", op_name)
    namespace, name = check_op_name(where, op_name)
    for field_name, fn in (("meta_fn", meta_fn), ("eager_fn", eager_fn), ("aot_fn", aot_fn)):
        if fn is None:
            where.fail(f"{field_name} is required for ptx_op", TypeError)
    check_overrides(where, meta_fn, eager_fn, aot_fn, schema, capability_validator)
    _check_converter_options(where, supports_dynamic_shapes, requires_output_allocator, priority)
    _check_ptx(where, ptx, kernel_name)
    fingerprint = ("ptx", bytes(ptx), kernel_name, meta_fn, eager_fn, aot_fn, schema, supports_dynamic_shapes, requires_output_allocator, priority, capability_validator)
    if _already_registered(where, op_name, fingerprint):
        return
    schema_text = torchop.derive_schema(where, None, (), meta_fn, schema)
    parsed = torchop.parse_schema(where, op_name, schema_text)
    torchop.check_returns_tensors(where, parsed)
    plugin = trt_lowering.prepare_tensorrt(where, trt_lowering.PluginRequest(
        op_name, parsed, None, None, None, bytes(ptx), kernel_name, meta_fn, aot_fn, supports_dynamic_shapes,
        requires_output_allocator, priority, capability_validator))
    library = torchop.register(where, namespace, name, schema_text, {"CUDA": eager_fn}, meta_fn)
    trt_lowering.register_tensorrt(where, plugin, library)
    _registry[op_name] = Registration(op_name, fingerprint, schema_text, library, None, None, bytes(ptx))


def _check_converter_options(where: Where, dynamic: object, output_allocator: object, priority: object) -> None:
    check_flag(where, "supports_dynamic_shapes", dynamic)
    check_flag(where, "requires_output_allocator", output_allocator)
    check_priority(where, priority)


def _check_ptx(where: Where, ptx: object, kernel_name: object) -> None:
    if not isinstance(ptx, (bytes, bytearray)):
        where.fail(f"ptx must be bytes (got {type(ptx).__name__})", TypeError)
    if not isinstance(kernel_name, str) or not kernel_name:
        where.fail(f"kernel_name must be a non-empty str (got {kernel_name!r})", TypeError)
    text = bytes(ptx).decode("utf-8", errors="replace")
    if not re.search(r"^\s*\.version\s+\d+\.\d+", text, re.M):
        where.fail("ptx has no '.version' directive; pass PTX text as bytes (e.g. from nvrtcGetPTX)")
    entries = re.findall(r"\.entry\s+([A-Za-z_$][\w$]*)", text)
    if kernel_name not in entries:
        where.fail(f"ptx defines no kernel named {kernel_name!r} (it defines {entries})")


def _already_registered(where: Where, op_name: str, fingerprint: tuple) -> bool:
    existing = _registry.get(op_name)
    if existing is None:
        return False
    if existing.fingerprint == fingerprint:
        return True
    where.fail(
        f"op {op_name} is already registered with a different kernel or spec; kernelop never replaces a "
        "registered op, since compiled graphs may still call it. Register the new kernel under a new name."
    )
