"""One registered kernel's binaries: compiled per architecture, loaded per device, checked once."""
from __future__ import annotations

import dataclasses
import threading
from typing import Optional

import torch

from .cache import KernelCache, compile_cached
from .driver import LoadedFunction, load_function
from .nvrtc import CompiledKernel, CompileRequest
from .plan import CTYPE_SIZES, LaunchPlan, describe_slot
from .settings import DEFAULT_ARCH
from .validate import Where


def device_arch(device_index: int) -> str:
    major, minor = torch.cuda.get_device_capability(device_index)
    return f"sm_{major}{minor}"


def target_arch(arch_override: Optional[str]) -> str:
    """The current GPU's architecture, else ``arch_override``, else ``DEFAULT_ARCH``."""
    if torch.cuda.is_available():
        return device_arch(torch.cuda.current_device())
    return arch_override or DEFAULT_ARCH


class KernelBinaries:
    """Compiles on first need for an architecture and loads on first use on a device."""

    def __init__(self, op_name: str, request: CompileRequest, cache: KernelCache, plan: Optional[LaunchPlan]):
        self.op_name = op_name
        self.request = request  # its ``arch`` is the registration target
        self.cache = cache
        self.plan = plan
        self._binaries: dict[str, CompiledKernel] = {}
        self._functions: dict[int, LoadedFunction] = {}
        self._refusal: Optional[ValueError] = None  # a signature mismatch holds on every device
        self._lock = threading.Lock()

    def for_arch(self, arch: str) -> CompiledKernel:
        binary = self._binaries.get(arch)
        if binary is None:
            request = self.request if arch == self.request.arch else _with_arch(self.request, arch)
            binary = compile_cached(request, self.cache, op_name=self.op_name)
            self._binaries[arch] = binary
        return binary

    def function(self, device_index: int) -> LoadedFunction:
        fn = self._functions.get(device_index)
        if fn is None:
            with self._lock:
                if self._refusal is not None:
                    raise self._refusal
                fn = self._functions.get(device_index)
                if fn is None:
                    binary = self.for_arch(device_arch(device_index))
                    fn = load_function(device_index, binary.cubin, binary.lowered_name)
                    if self.plan is not None:
                        try:
                            check_param_layout(Where("call", self.op_name), self.request.kernel_name, fn, self.plan)
                        except ValueError as exc:
                            self._refusal = exc
                            raise
                    self._functions[device_index] = fn
        return fn


def _with_arch(request: CompileRequest, arch: str) -> CompileRequest:
    return dataclasses.replace(request, arch=arch)


def check_param_layout(where: Where, kernel_name: str, fn: LoadedFunction, plan: LaunchPlan) -> None:
    """Refuse a kernel whose parameter list disagrees with the spec's calling convention."""
    if fn.param_layout is None:
        return
    expected = [CTYPE_SIZES[s.ctype] for s in plan.arg_layout]
    actual = [size for _, size in fn.param_layout]
    if expected == actual:
        return
    spec_side = "\n".join(f"    {i}: {describe_slot(plan, s)}" for i, s in enumerate(plan.arg_layout))
    kernel_side = "\n".join(f"    {i}: {size} bytes at offset {off}" for i, (off, size) in enumerate(fn.param_layout))
    where.fail(
        f"kernel {kernel_name!r} has {len(actual)} parameters that do not match the spec's {len(expected)}.\n"
        f"  spec (inputs..., extras..., outputs...):\n{spec_side}\n"
        f"  kernel, as the driver reports it:\n{kernel_side}\n"
        "Fix the kernel signature or the KernelSpec inputs/extras/outputs."
    )


def compile_request_for(op_name: str, source: str, kernel_name: str, arch: str, std: str, include_paths: Optional[list]) -> CompileRequest:
    return CompileRequest(
        source=source,
        kernel_name=kernel_name,
        arch=arch,
        std=std,
        include_paths=tuple(include_paths or ()),
        program_name=op_name.replace("::", "_") + ".cu",
    )

