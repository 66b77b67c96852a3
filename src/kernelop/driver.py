"""The CUDA driver: per-device module load, parameter layout, and the raw launch.

Modules are loaded into each device's primary context (the one PyTorch uses), because a
function handle is only valid in the context that loaded it.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from cuda.bindings import driver as cu

from .counters import Counter


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

_SUCCESS = cu.CUresult.CUDA_SUCCESS
_lock = threading.Lock()
_contexts: dict[int, int] = {}


def error_name(result: Any) -> str:
    err, name = cu.cuGetErrorName(result)
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

    def __exit__(self, *exc: Any) -> None:
        if self.pushed:
            check(cu.cuCtxPopCurrent(), "cuCtxPopCurrent")


@dataclass(frozen=True)
class LoadedFunction:
    device_index: int
    context: int
    module: Any
    function: Any
    param_layout: tuple[tuple[int, int], ...] | None  # (offset, size) per kernel parameter


def load_function(device_index: int, cubin: bytes, lowered_name: str) -> LoadedFunction:
    ctx = primary_context(device_index)
    with in_context(ctx):
        module = check(cu.cuModuleLoadData(cubin), "cuModuleLoadData")
        MODULE_LOAD_COUNTER.increment()
        function = check(cu.cuModuleGetFunction(module, lowered_name.encode()), f"cuModuleGetFunction({lowered_name})")
        layout = param_layout(function)
    return LoadedFunction(device_index, ctx, module, function, layout)


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
"""The raw ``cuLaunchKernel``: tried first, with whatever context is current on the thread."""

SUCCESS = _SUCCESS
CONTEXT_ERRORS = frozenset({cu.CUresult.CUDA_ERROR_INVALID_CONTEXT, cu.CUresult.CUDA_ERROR_INVALID_HANDLE})
"""What a launch returns when the function's context is not current (none on a fresh thread):
the launch did not happen, and is retried with the context pushed."""


def launch_in_context(
    fn: LoadedFunction, gx: int, gy: int, gz: int, bx: int, by: int, bz: int, shared_mem: int, stream: int, params_address: int
) -> Any:
    """``cuLaunchKernel`` with the function's context pushed for the call; returns the CUresult.

    Needed on a thread where no context, or another device's, is current (a fresh thread, say).
    """
    with in_context(fn.context):
        return launch_kernel(fn.function, gx, gy, gz, bx, by, bz, shared_mem, stream, params_address, 0)[0]


def finish_launch(
    fn: LoadedFunction, result: Any, dims: tuple, stream: int, params_address: int, synchronize: bool
) -> None:
    """After a ``launch_kernel`` that did not plainly succeed (or to synchronise): retry a launch
    refused for want of the function's context with that context pushed, then check the result."""
    if result in CONTEXT_ERRORS:
        result = launch_in_context(fn, *dims, stream, params_address)
    check_launch(result, stream, synchronize)


def check_launch(result: Any, stream: int, synchronize: bool) -> None:
    """Raise ``DriverError`` for a failed launch, or (with ``synchronize``) a fault while it ran."""
    if result != _SUCCESS:
        name = error_name(result)
        raise DriverError(f"cuLaunchKernel failed: {name}", name)
    if synchronize:
        check(cu.cuStreamSynchronize(stream), "cuStreamSynchronize")

