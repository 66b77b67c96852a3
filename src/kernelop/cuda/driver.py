"""The CUDA driver: per-device module load, parameter layout, and the raw launch.

Modules are loaded into each device's primary context (the one PyTorch uses), because a
function handle is only valid in the context that loaded it.
"""
from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from cuda.bindings import driver as cu

from ..counters import Counter
from ..settings import SETTINGS
from . import launch_shim
from .packing import buffers_for


STICKY_ERRORS = frozenset(
    {
        "CUDA_ERROR_ILLEGAL_ADDRESS",
        "CUDA_ERROR_LAUNCH_FAILED",
        "CUDA_ERROR_HARDWARE_STACK_ERROR",
        "CUDA_ERROR_ILLEGAL_INSTRUCTION",
        "CUDA_ERROR_MISALIGNED_ADDRESS",
        "CUDA_ERROR_INVALID_ADDRESS_SPACE",
        "CUDA_ERROR_INVALID_PC",
        "CUDA_ERROR_ASSERT",
    }
)
"""Faults after which the context, and so the process's CUDA state, cannot be used again."""


class DriverError(RuntimeError):
    """A CUDA driver call failed; ``code`` is the CUresult name."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code

    @property
    def sticky(self) -> bool:
        return self.code in STICKY_ERRORS


MODULE_LOAD_COUNTER = Counter()
log = logging.getLogger("kernelop")

_SUCCESS = cu.CUresult.CUDA_SUCCESS
_lock = threading.Lock()
_contexts: dict[int, int] = {}


def error_name(result: Any) -> str:
    err, name = cu.cuGetErrorName(cu.CUresult(int(result)))
    return name.decode() if err == _SUCCESS and name else str(result)


def check(out: Any, what: str) -> Any:
    """Unwrap a cuda-bindings ``(CUresult, *values)`` tuple, raising ``DriverError`` on failure."""
    result, *values = out if isinstance(out, tuple) else (out,)
    if result != _SUCCESS:
        name = error_name(result)
        raise DriverError(f"{what} failed: {name}", name)
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def primary_context(device_index: int) -> int:
    """The primary context of a device as an int handle (retained once, kept for the process)."""
    ctx = _contexts.get(device_index)
    if ctx is None:
        with _lock:
            ctx = _contexts.get(device_index)
            if ctx is None:
                check(cu.cuInit(0), "cuInit")
                device = check(cu.cuDeviceGet(device_index), f"cuDeviceGet({device_index})")
                ctx = int(check(cu.cuDevicePrimaryCtxRetain(device), f"cuDevicePrimaryCtxRetain({device_index})"))
                _contexts[device_index] = ctx
    return ctx


class in_context:
    """Make ``ctx`` current for a block if it is not already, restoring the caller's afterwards."""

    __slots__ = ("ctx", "pushed")

    def __init__(self, ctx: int):
        self.ctx = ctx
        self.pushed = False

    def __enter__(self) -> None:
        current = int(check(cu.cuCtxGetCurrent(), "cuCtxGetCurrent"))
        if current != self.ctx:
            check(cu.cuCtxPushCurrent(cu.CUcontext(self.ctx)), "cuCtxPushCurrent")
            self.pushed = True

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self.pushed:
            popped = cu.cuCtxPopCurrent()
            if exc_type is None:  # a failed pop never hides the launch's own error
                check(popped, "cuCtxPopCurrent")


DEFAULT_SHARED_PER_BLOCK = 48 * 1024
"""Static plus dynamic shared memory a block may use without the opt-in attribute."""


@dataclass(frozen=True)
class LoadedFunction:
    device_index: int
    context: int
    module: Any
    handle: int  # the CUfunction, as the int both launch paths take
    param_layout: tuple[tuple[int, int], ...] | None  # (offset, size) per kernel parameter
    max_threads: int  # threads per block this kernel can launch with (its registers permitting)
    max_dynamic_shared: int  # bytes of dynamic shared memory per block it may ask for


def load_function(device_index: int, cubin: bytes, lowered_name: str, shared_opt_in: bool = False) -> LoadedFunction:
    """Load into the device's primary context; with ``shared_opt_in``, allow all the dynamic
    shared memory the device has (beyond 48 KB), as ``cudaFuncSetAttribute`` would."""
    ctx = primary_context(device_index)
    with in_context(ctx):
        module = check(cu.cuModuleLoadData(cubin), "cuModuleLoadData")
        MODULE_LOAD_COUNTER.increment()
        function = check(cu.cuModuleGetFunction(module, lowered_name.encode()), f"cuModuleGetFunction({lowered_name})")
        layout = param_layout(function)
        attribute = cu.CUfunction_attribute
        max_threads = check(cu.cuFuncGetAttribute(attribute.CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, function), "cuFuncGetAttribute")
        static = check(cu.cuFuncGetAttribute(attribute.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, function), "cuFuncGetAttribute")
        dynamic = DEFAULT_SHARED_PER_BLOCK - static
        if shared_opt_in:
            device = check(cu.cuDeviceGet(device_index), f"cuDeviceGet({device_index})")
            optin = check(
                cu.cuDeviceGetAttribute(cu.CUdevice_attribute.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device),
                "cuDeviceGetAttribute",
            )
            dynamic = max(dynamic, optin - static)
            check(cu.cuFuncSetAttribute(function, attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, dynamic), "cuFuncSetAttribute")
    return LoadedFunction(device_index, ctx, module, int(function), layout, int(max_threads), int(dynamic))


def param_layout(function: Any) -> tuple[tuple[int, int], ...] | None:
    """Offsets and sizes of the kernel's parameters; None where the driver cannot tell (< 12.4)."""
    layout: list[tuple[int, int]] = []
    while True:
        try:
            result, offset, size = cu.cuFuncGetParamInfo(function, len(layout))
        except RuntimeError:  # the installed driver lacks the entry point
            return None
        if result == cu.CUresult.CUDA_ERROR_INVALID_VALUE:
            return tuple(layout)
        if result != _SUCCESS:
            return None
        layout.append((int(offset), int(size)))


launch_kernel = cu.cuLaunchKernel
"""``cuLaunchKernel`` through cuda-bindings."""

CONTEXT_ERRORS = frozenset({int(cu.CUresult.CUDA_ERROR_INVALID_CONTEXT), int(cu.CUresult.CUDA_ERROR_INVALID_HANDLE)})
"""What a launch returns when the function's context is not current (none on a fresh thread):
the launch did not happen, and is retried with the context pushed."""


def bindings_launch(function: int, dims: tuple, stream: int, layout: bytes, *values: Any) -> Any:
    """The native launch, through ``struct`` and cuda-bindings: where the shim cannot be built."""
    params = buffers_for(layout).pack(values)
    return launch_kernel(function, dims[0], dims[1], dims[2], dims[3], dims[4], dims[5], dims[6], stream, params, 0)[0]


@dataclass(frozen=True)
class LaunchBackend:
    """How eager calls pack their parameters and reach ``cuLaunchKernel``."""

    name: str  # "native" or "cuda-bindings"
    launch: Callable[..., Any]  # (function, dims, stream, layout, *values) -> CUresult
    reason: str


_backend: Optional[LaunchBackend] = None


def launch_backend() -> LaunchBackend:
    """The process's launch path, chosen on first use: the native shim where it builds."""
    global _backend
    if _backend is None:
        with _lock:
            if _backend is None:
                _backend = _choose_backend()
    return _backend


def _choose_backend() -> LaunchBackend:
    if not SETTINGS.native_launch:
        return LaunchBackend("cuda-bindings", bindings_launch, "KERNELOP_NATIVE_LAUNCH=0")
    problem = launch_shim.folder_problem(SETTINGS.cache_dir) if SETTINGS.cache_enabled else "KERNELOP_CACHE=0"
    if problem is None:
        loaded = launch_shim.load(SETTINGS.cache_dir)
    else:  # built for this process only; a loaded shared object outlives its file
        if SETTINGS.cache_enabled:
            log.warning("kernelop: the native launch is built for this process only: %s", problem)
        with tempfile.TemporaryDirectory(prefix="kernelop-", ignore_cleanup_errors=True) as directory:
            loaded = launch_shim.load(Path(directory))
    if loaded.module is None:
        return LaunchBackend("cuda-bindings", bindings_launch, loaded.reason)
    check(cu.cuInit(0), "cuInit")
    version = check(cu.cuDriverGetVersion(), "cuDriverGetVersion")
    entry, _status = check(
        cu.cuGetProcAddress(b"cuLaunchKernel", version, cu.CUdriverProcAddress_flags.CU_GET_PROC_ADDRESS_DEFAULT),
        "cuGetProcAddress(cuLaunchKernel)",
    )
    if not int(entry):
        return LaunchBackend("cuda-bindings", bindings_launch, "the driver has no cuLaunchKernel entry point")
    loaded.module.set_entry(int(entry))
    return LaunchBackend("native", loaded.module.launch, loaded.reason)


def launch_in_context(fn: LoadedFunction, dims: tuple, stream: int, layout: bytes, values: tuple, synchronize: bool) -> None:
    """Launch with the function's context pushed, and check it (synchronising with
    ``synchronize``) before that context is popped again.

    Needed on a thread where no context, or another device's, is current (a fresh thread, say).
    """
    with in_context(fn.context):
        check_launch(int(bindings_launch(fn.handle, dims, stream, layout, *values)), stream, synchronize)


def finish_launch(fn: LoadedFunction, result: Any, dims: tuple, stream: int, layout: bytes, values: tuple, synchronize: bool) -> None:
    """After a launch that did not plainly succeed (or to synchronise): retry a launch refused
    for want of the function's context with that context pushed, then check the result."""
    if int(result) in CONTEXT_ERRORS:
        launch_in_context(fn, dims, stream, layout, values, synchronize)
    else:
        check_launch(result, stream, synchronize)


def check_launch(result: Any, stream: int, synchronize: bool) -> None:
    """Raise ``DriverError`` for a failed launch, or (with ``synchronize``) a fault while it ran."""
    if int(result) != _SUCCESS:
        name = error_name(result)
        raise DriverError(f"cuLaunchKernel failed: {name}", name)
    if synchronize and not capturing(stream):
        check(cu.cuStreamSynchronize(stream), "cuStreamSynchronize")


def capturing(stream: int) -> bool:
    """A stream being captured into a CUDA graph cannot be synchronised (the capture would be
    invalidated), and its launches only record: ``KERNELOP_SYNC`` has nothing to check there."""
    err, status = cu.cuStreamIsCapturing(stream)
    if err == cu.CUresult.CUDA_ERROR_STREAM_CAPTURE_IMPLICIT:  # the legacy stream, while another captures
        return True
    return err == _SUCCESS and status != cu.CUstreamCaptureStatus.CU_STREAM_CAPTURE_STATUS_NONE
