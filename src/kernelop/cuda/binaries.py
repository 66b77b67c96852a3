"""One registered kernel's binaries: compiled per architecture, loaded per device, checked once."""
from __future__ import annotations

import dataclasses
import threading
from typing import Optional

from ..compiler.cache import KernelCache, compile_cached
from ..compiler.nvrtc import CompiledKernel, CompileRequest
from ..compiler.target import device_arch
from ..errors import Where
from ..plan.ctypes import CTYPE_SIZES
from ..plan.describe import describe_slot
from ..plan.launch_plan import LaunchPlan
from .driver import LoadedFunction, load_function


class KernelBinaries:
    """Compiles on first need for an architecture and loads on first use on a device.

    ``request`` is compiled for its ``arch`` (the registration target; ``compiled`` when that
    is done already); ``arch_override`` is the spec's, kept for the TensorRT engine's PTX. With a
    ``plan``, a loaded kernel's parameter list is checked against the plan's layout.
    ``shared_opt_in`` (default: whether the plan asks for dynamic shared memory) lets the kernel
    use all the dynamic shared memory the device has.
    """

    def __init__(
        self,
        op_name: str,
        request: CompileRequest,
        cache: KernelCache,
        plan: Optional[LaunchPlan],
        arch_override: Optional[str] = None,
        compiled: Optional[CompiledKernel] = None,
        shared_opt_in: Optional[bool] = None,
    ):
        self.op_name = op_name
        self.request = request
        self.cache = cache
        self.plan = plan
        self.arch_override = arch_override
        self.shared_opt_in = plan is not None and plan.uses_dynamic_shared if shared_opt_in is None else shared_opt_in
        self._binaries: dict[str, CompiledKernel] = {request.arch: compiled} if compiled is not None else {}
        self._functions: dict[int, LoadedFunction] = {}
        self._refusal: Optional[ValueError] = None  # a signature mismatch holds on every device
        self._lock = threading.Lock()

    def for_arch(self, arch: str) -> CompiledKernel:
        binary = self._binaries.get(arch)
        if binary is None:
            request = self.request if arch == self.request.arch else dataclasses.replace(self.request, arch=arch)
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
                    fn = load_function(device_index, binary.cubin, binary.lowered_name, self.shared_opt_in)
                    if self.plan is not None:
                        try:
                            check_param_layout(Where("call", self.op_name), self.request.kernel_name, fn, self.plan)
                        except ValueError as exc:
                            self._refusal = exc
                            raise
                    self._functions[device_index] = fn
        return fn


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
        f"kernel {kernel_name!r} has parameters of {actual} bytes, where the spec's are {expected} bytes.\n"
        f"  spec, in the kernel's order:\n{spec_side}\n"
        f"  kernel, as the driver reports it:\n{kernel_side}\n"
        "Fix the kernel signature or the KernelSpec inputs/extras/outputs."
    )
