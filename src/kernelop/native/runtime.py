"""The native runtime in this process: built and loaded once, and ops attached to it.

An attached op's CUDA (and CPU) impl is the runtime's, registered with the dispatcher from C++:
no Python runs per call. Kernels reach the runtime on first need per device architecture and
template instantiation, through a callback into kernelop's binaries (compiled and cached as for
the Python path), so registration compiles no more than before.
"""
from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from .. import settings
from ..cuda.binaries import KernelBinaries
from ..plan.launch_plan import LaunchPlan
from . import build
from .program import header, op_program, program_problem

log = logging.getLogger("kernelop")
# The error buffer arrives as an address: as ``c_char_p`` ctypes would hand over a bytes copy
# (for an empty buffer, the interpreter's shared ``b""``), and writing the message into that
# would corrupt the interpreter instead of reaching the runtime.
_PROVIDER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t)
_ERROR_SIZE = 4096


class NativeRuntime:
    """The loaded runtime library, its C functions typed."""

    def __init__(self, library: ctypes.CDLL, path: Path, reason: str):
        self.library = library
        self.path = path
        self.reason = reason
        self.binaries: dict[str, KernelBinaries] = {}
        for name, restype, argtypes in (
            ("kernelop_native_define", ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]),
            ("kernelop_native_remove", ctypes.c_int, [ctypes.c_char_p]),
            ("kernelop_native_add_kernel", ctypes.c_int, [ctypes.c_char_p] * 3 + [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p]),
            ("kernelop_native_set_provider", None, [_PROVIDER]),
            ("kernelop_native_calls", ctypes.c_uint64, []),
            ("kernelop_native_module_loads", ctypes.c_uint64, []),
            ("kernelop_native_launch_values", ctypes.c_int64, [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int64),
                                                                 ctypes.POINTER(ctypes.c_int64), ctypes.POINTER(ctypes.c_int64),
                                                                 ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]),
        ):
            function = getattr(library, name)
            function.restype, function.argtypes = restype, argtypes
        self._provider = _PROVIDER(self._provide)  # kept alive as long as the runtime
        library.kernelop_native_set_provider(self._provider)

    def define(self, program: str) -> None:
        error = ctypes.create_string_buffer(_ERROR_SIZE)
        if self.library.kernelop_native_define(program.encode(), error, _ERROR_SIZE):
            raise RuntimeError(f"the native runtime refused the program: {error.value.decode(errors='replace')}")

    def remove(self, op_name: str) -> None:
        self.binaries.pop(op_name, None)
        self.library.kernelop_native_remove(op_name.encode())

    @property
    def calls(self) -> int:
        """Calls of attached ops so far (refused ones included)."""
        return int(self.library.kernelop_native_calls())

    @property
    def module_loads(self) -> int:
        return int(self.library.kernelop_native_module_loads())

    def launch_values(self, op_name: str, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        """Grid, block, shared memory, extras and output shapes, as a call computes them before
        the device's limits; ``ValueError``/``TypeError`` with the call's message. No GPU needed."""
        ranks = (ctypes.c_int64 * max(len(in_shapes), 1))(*(len(s) for s in in_shapes))
        flat = [size for shape in in_shapes for size in shape]
        sizes = (ctypes.c_int64 * max(len(flat), 1))(*flat)
        out = (ctypes.c_int64 * 256)()
        error = ctypes.create_string_buffer(_ERROR_SIZE)
        count = self.library.kernelop_native_launch_values(op_name.encode(), len(in_shapes), ranks, sizes, out, 256, error, _ERROR_SIZE)
        if count < 0:
            raise {-1: ValueError, -2: TypeError}.get(count, RuntimeError)(error.value.decode())
        return tuple(out[:count])

    def _provide(self, op: bytes, key: bytes, arch: bytes, error: int, size: int) -> int:
        """The runtime asks for a kernel: compile (or read from the cache) and hand it over."""
        try:
            binaries = self.binaries.get(op.decode())
            if binaries is None:
                raise LookupError(f"{op.decode()}: the native runtime asked for a kernel of an op kernelop did not attach")
            dtypes = tuple(getattr(torch, name) for name in key.decode().split(",")) if key else None
            compiled = binaries.for_arch(arch.decode(), dtypes)
            self.library.kernelop_native_add_kernel(op, key, arch, compiled.cubin, len(compiled.cubin), compiled.lowered_name.encode())
            return 0
        except Exception as exc:  # noqa: BLE001 - reported to the caller through the runtime's error
            message = str(exc).encode()[: size - 1] + b"\0"
            ctypes.memmove(error, message, len(message))
            return 1


@dataclass(frozen=True)
class NativeOp:
    """An op attached to the runtime; ``remove`` takes its impls back off the dispatcher."""

    runtime: NativeRuntime
    op_name: str

    def remove(self) -> None:
        self.runtime.remove(self.op_name)


_runtime: Optional[NativeRuntime] = None
_unavailable: Optional[str] = None
_lock = threading.Lock()


def runtime() -> Optional[NativeRuntime]:
    """The runtime, built on first need; None (and one INFO line per process) where it cannot be."""
    global _runtime, _unavailable
    with _lock:
        if _runtime is None and _unavailable is None:
            loaded = build.load(settings.SETTINGS.cache_dir if settings.SETTINGS.cache_enabled else None)
            try:
                _runtime = NativeRuntime(loaded.library, loaded.path, loaded.reason) if loaded.library is not None else None
            except AttributeError as exc:  # a library without the runtime's functions
                loaded = build.RuntimeLoad(None, None, str(exc))
            if _runtime is None:
                _unavailable = loaded.reason
                log.info("kernelop: ops are called through Python: the native runtime is unavailable (%s)", loaded.reason)
        return _runtime


def unavailable_reason() -> Optional[str]:
    """Why the runtime could not be built or loaded in this process, or None."""
    return _unavailable


def attach(plan: LaunchPlan, binaries: KernelBinaries, kernel_label: str) -> Optional[NativeOp]:
    """Register the op's CUDA and CPU impls from the runtime; None where the op stays on Python
    (the runtime disabled or unavailable, or an op it cannot run)."""
    if not settings.SETTINGS.native_runtime or program_problem(plan) is not None:
        return None
    loaded = runtime()
    if loaded is None:
        return None
    loaded.binaries[plan.op_name] = binaries
    try:
        loaded.define("\n".join(header() + op_program(plan, kernel_label, binaries.shared_opt_in)) + "\n")
    except Exception:
        loaded.binaries.pop(plan.op_name, None)
        raise
    return NativeOp(loaded, plan.op_name)
