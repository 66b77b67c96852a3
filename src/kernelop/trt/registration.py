"""An op's TensorRT plugin: built and checked before anything is registered, then registered."""
import logging
from types import MappingProxyType
from typing import Any, Optional

from ..errors import Where
from .backend import Backend, PluginRequest, PreparedPlugin
from .builder import PluginBuilder
from .decision import PluginPath, aot_layout_problem, plan_problems, schema_problems
from .status import skip_notice, tensorrt_status

log = logging.getLogger("kernelop")


def load_backend() -> Optional[Backend]:
    """The real TensorRT backend, or None (logged once per process) when TensorRT is not usable."""
    status = tensorrt_status()
    if not status.available:
        skip_notice.emit(status)
        return None
    from . import installed

    return installed.backend()


def prepare_tensorrt(where: Where, request: PluginRequest, backend: Optional[Backend] = None) -> Optional[PreparedPlugin]:
    """Build and check the op's plugin functions before anything is registered anywhere.

    Returns None where TensorRT is not usable, or where the op is one no TensorRT plugin can
    express (it writes an argument in place, takes an optional tensor, ...): then only the
    TensorRT side is skipped, with a log line saying why, and the PyTorch op still registers.
    ``require_aot=True`` refuses both. Any other problem raises ``ValueError`` naming the op.
    """
    problems = schema_problems(request.schema) + (plan_problems(request.plan) if request.plan is not None else [])
    path = request.path
    layout_problem = aot_layout_problem(request.plan) if path.source == "plan" and request.plan is not None else None
    if layout_problem is not None:
        if request.require_aot:
            where.fail(f"require_aot=True but its TensorRT plugin would use the JIT path: {layout_problem}.")
        path = PluginPath(False, "jit", layout_problem)
    if backend is None:
        backend = load_backend()
    if backend is None:
        if request.require_aot and problems:
            where.fail(f"require_aot=True but it cannot be a TensorRT plugin: {'; '.join(problems)}.")
        return None
    if problems:
        if request.require_aot:
            where.fail(f"require_aot=True but it cannot be a TensorRT plugin: {'; '.join(problems)}.")
        log.warning("kernelop.%s(%s): no TensorRT plugin for this op, the PyTorch op is registered alone: %s.",
                    where.api, where.op, "; ".join(problems))
        return None
    if request.op_name in backend.registry:
        where.fail(
            f"a TensorRT plugin named {request.op_name} is already registered in this process; TensorRT cannot "
            "remove it. Register the kernel under a new name (or restart the process)."
        )
    if path.aot and not backend.aot_supported:
        if path.source != "plan" or request.require_aot:
            where.fail(
                f"its TensorRT plugin needs an AOT launch ({path.why}), which this TensorRT lacks "
                "(AOT plugins need TensorRT >= 10.9). Upgrade TensorRT."
            )
        path = PluginPath(False, "jit", "this TensorRT has no AOT plugins (they need TensorRT >= 10.9)")
    builder = PluginBuilder(where, request, backend)
    descriptor = builder.descriptor()
    impl = builder.aot_impl() if path.aot else builder.jit_impl()
    if backend.prevalidate is not None:
        try:
            backend.prevalidate(request.op_name, descriptor, impl, path.aot)
        except Exception as exc:
            where.fail(f"TensorRT refuses its plugin functions ({type(exc).__name__}: {exc})")
    options = dict(
        capability_validator=request.capability_validator,
        priority=request.priority,
        supports_dynamic_shapes=request.supports_dynamic_shapes,
        requires_output_allocator=request.requires_output_allocator,
    )
    return PreparedPlugin(request.op_name, backend, path, descriptor, impl, MappingProxyType(options))


def register_tensorrt(where: Where, prepared: Optional[PreparedPlugin], library: Any) -> None:
    """Register a prepared plugin; if TensorRT refuses, the PyTorch op (``library``) is removed too."""
    if prepared is None:
        return
    try:
        prepared.register()
    except Exception as exc:
        library._destroy()
        where.fail(
            f"TensorRT refused its plugin ({type(exc).__name__}: {exc}); the PyTorch op was removed again. "
            "TensorRT keeps plugin names it has seen: fix the spec and register under a new name."
        )
    log.debug("registered TensorRT plugin %s (%s)", prepared.op_name, "AOT: " + prepared.path.source if prepared.path.aot else "JIT")
