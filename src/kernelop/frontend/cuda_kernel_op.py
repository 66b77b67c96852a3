"""``cuda_kernel_op``: CUDA C++ source and a ``KernelSpec`` as a PyTorch op (and TensorRT plugin).

Registration is a list of small steps; any failure before the last leaves nothing behind (no
schema, no impl, no fake impl, no registry entry). Only this frontend reads the spec: it turns it
into the launch plan and the compile request, and every layer below reads those alone.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Sequence

from ..compiler.cache import KernelCache, compile_cached
from ..compiler.nvrtc import CompileRequest
from ..compiler.signature import first_kernel_name, plain_kernel_names, read_signature
from ..compiler.target import target_arch
from ..cuda.binaries import KernelBinaries
from ..dsl.spec import ConverterPriority, Custom, KernelSpec, snapshot
from ..dsl.validate import check_spec, scalar_names
from ..dsl.validate_options import check_converter_options, check_op_name, check_overrides
from ..errors import Where
from ..native import runtime as native_runtime
from ..plan.binding import bind_kernel
from ..plan.build import build_plan, params_of
from ..plan.launch_plan import LaunchPlan
from ..pytorch import fake, library, schema as schemas
from ..pytorch.autograd import autograd_functions, check_backward
from ..pytorch.launcher import EagerLauncher
from ..trt import decision, registration as trt_registration
from ..trt.backend import PluginRequest
from .registry import Registration, already_registered, one_at_a_time, record

log = logging.getLogger("kernelop")


@one_at_a_time
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
    backward: Optional[Callable[..., Any]] = None,
    save: Sequence[str] = (),
) -> None:
    """Register a CUDA C++ kernel as ``torch.ops.<ns>.<name>``, compiled with NVRTC now.

    ``cache`` (additive) overrides the compile cache taken from the environment.
    ``require_aot`` (additive) refuses a spec whose TensorRT plugin would be JIT, on every machine.
    ``backward`` and ``save`` (additive) make the op differentiable: ``backward(saved, *grads)``
    reads the inputs and outputs named in ``save`` as attributes of ``saved``.
    """
    where = Where("cuda_kernel_op", op_name)
    namespace, name = check_op_name(where, op_name)
    check_overrides(where, meta_fn, eager_fn, aot_fn, schema, capability_validator)
    check_converter_options(where, supports_dynamic_shapes, requires_output_allocator, priority)
    check_cache(where, cache)
    save = check_backward(where, backward, save)
    spec = snapshot(spec) if isinstance(spec, KernelSpec) else spec  # the user's spec may change later
    check_spec(where, spec, has_meta_fn=meta_fn is not None, has_eager_fn=eager_fn is not None, has_aot_fn=aot_fn is not None)
    plugin_path = decision.plugin_path(spec.geometry, scalar_names(spec), aot_fn)
    decision.check_require_aot(where, plugin_path, require_aot)
    fingerprint = ("cuda", spec, meta_fn, eager_fn, aot_fn, schema, supports_dynamic_shapes, requires_output_allocator, priority,
                   capability_validator, backward, save)
    if already_registered(where, op_name, fingerprint):
        return

    schema_text = schemas.derive_schema(where, spec, params_of(spec), meta_fn, schema)
    parsed = schemas.parse_schema(where, op_name, schema_text)
    plan = build_plan(op_name, spec, len(parsed.returns))
    schemas.check_schema_against_plan(where, parsed, plan)
    request = compile_request(op_name, spec, plan)
    cache = cache or KernelCache.from_settings()
    compiled = compile_cached(request, cache, op_name=op_name)  # now: compile errors surface here, GPU or not
    launched_from_plan = _launches_from_plan(plan)
    if launched_from_plan:
        plan = bind_kernel(where, plan, request.kernel_name, read_signature(request.source, request.kernel_name, compiled.ptx, compiled.lowered_name))
    binaries = KernelBinaries(op_name, request, cache, plan if launched_from_plan else None, spec.arch_override, compiled)
    fake_impl = _fake_impl(plan, meta_fn)
    autograd = autograd_functions(where, plan, parsed, backward, save) if backward is not None else None
    plugin = trt_registration.prepare_tensorrt(where, PluginRequest(
        op_name, parsed, plugin_path, plan, binaries, None, request.kernel_name, meta_fn, aot_fn, supports_dynamic_shapes,
        requires_output_allocator, priority, capability_validator, require_aot))
    plan_launch = launched_from_plan and eager_fn is None and meta_fn is None
    native_op = _attach_native(plan, binaries) if plan_launch else None
    impls = _cuda_impls(plan, binaries, meta_fn, eager_fn) if native_op is None else {}  # else the runtime's serve CUDA and CPU
    try:
        torch_library = library.register(where, namespace, name, schema_text, impls, fake_impl, autograd)
        trt_registration.register_tensorrt(where, plugin, torch_library)
    except Exception:
        if native_op is not None:
            native_op.remove()
        raise
    call_path = "native" if native_op is not None else "python"
    record(Registration(op_name, fingerprint, schema_text, torch_library, plan, binaries, None, plan_launch, call_path))
    log.debug("registered %s%s", op_name, schema_text)


def check_cache(where: Where, cache: object) -> None:
    if cache is not None and not isinstance(cache, KernelCache):
        where.fail(f"cache must be a kernelop KernelCache or None (got {type(cache).__name__}: {cache!r})", TypeError)


def compile_request(op_name: str, spec: KernelSpec, plan: Optional[LaunchPlan] = None) -> CompileRequest:
    """The source and its compile options, for the current GPU, else ``arch_override``, else the
    default; a template's first instantiation (its first dtype per ``TypeParam``). The program
    is named after the source's first kernel, so that every op of one source shares its compile."""
    template = plan.template if plan is not None else None
    return CompileRequest(
        source=spec.kernel_source,
        kernel_name=template.name_for(template.default_key) if template is not None else spec.kernel_name,
        arch=target_arch(spec.arch_override),
        std=spec.compile_std,
        include_paths=tuple(spec.include_paths or ()),
        program_name=f"{first_kernel_name(spec.kernel_source) or op_name.replace('::', '_')}.cu",
        extra_options=tuple(spec.options),
        defines=tuple((spec.defines or {}).items()),
        host_shims=spec.host_shims,
        companions=plain_kernel_names(spec.kernel_source),
    )


def _launches_from_plan(plan: LaunchPlan) -> bool:
    """Whether kernelop launches the kernel with the plan's parameters (eagerly or in TensorRT).

    Not for a ``Custom`` geometry or none: then ``eager_fn`` and ``aot_fn``/``Custom.fn`` launch it.
    """
    return plan.declares_inputs and plan.geometry is not None and not isinstance(plan.geometry, Custom)


def _cuda_impls(plan: LaunchPlan, binaries: KernelBinaries, meta_fn: Optional[Callable[..., Any]], eager_fn: Optional[Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """``eager_fn`` for CUDA, else kernelop's launcher for CUDA and for CPU (where it explains what it needs)."""
    if eager_fn is not None:  # behind the declared dtypes and requirements, as its fake impl is
        return {"CUDA": fake.with_input_checks(Where("call", plan.op_name), plan, eager_fn) if plan.declares_inputs else eager_fn}
    launcher = EagerLauncher(plan, binaries, meta_fn)
    return {"CUDA": launcher.call, "CPU": launcher.call}


def _attach_native(plan: LaunchPlan, binaries: KernelBinaries) -> Optional[native_runtime.NativeOp]:
    """The op on the native runtime, or None: it stays on the Python launcher (the runtime is
    off or cannot be built: one INFO line per process; or it refused this op: a warning)."""
    try:
        return native_runtime.attach(plan, binaries, binaries.kernel_label)
    except RuntimeError as exc:
        log.warning("kernelop: %s is called through Python: %s", plan.op_name, exc)
        return None


def _fake_impl(plan: LaunchPlan, meta_fn: Optional[Callable[..., Any]]) -> Callable[..., Any]:
    """Shapes from the plan, or ``meta_fn`` behind the same input checks as the eager launch."""
    if meta_fn is None:
        return fake.make_fake_impl(plan)
    if not plan.declares_inputs:
        return meta_fn
    return fake.with_input_checks(Where("call", plan.op_name), plan, meta_fn)
