"""One registered kernel's binaries: compiled per architecture (and per template instantiation),
loaded per device, checked once."""
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
    use all the dynamic shared memory the device has. A templated plan's instantiations are
    keyed by their dtypes (``TemplatePlan.key_of``); ``request`` is the default one's.
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
        self.template = plan.template if plan is not None else None
        self.default_key: tuple = self.template.default_key if self.template is not None else ()
        self._binaries: dict[tuple, CompiledKernel] = {(request.arch, self.default_key): compiled} if compiled is not None else {}
        self._functions: dict[tuple, LoadedFunction] = {}
        self._refusals: dict[tuple, ValueError] = {}  # per instantiation: a signature mismatch holds on every device
        self._lock = threading.Lock()

    @property
    def kernel_label(self) -> str:
        """The kernel's name in messages: a template's own name, not one instantiation's."""
        return self.template.kernel_name if self.template is not None else self.request.kernel_name

    def request_for(self, arch: str, key: Optional[tuple] = None) -> CompileRequest:
        """The compile request for an architecture and an instantiation (default: the registered one)."""
        key = self.default_key if key is None else key
        name = self.template.name_for(key) if self.template is not None else self.request.kernel_name
        if arch == self.request.arch and name == self.request.kernel_name:
            return self.request
        return dataclasses.replace(self.request, arch=arch, kernel_name=name)

    def for_arch(self, arch: str, key: Optional[tuple] = None) -> CompiledKernel:
        key = self.default_key if key is None else key
        binary = self._binaries.get((arch, key))
        if binary is None:
            binary = compile_cached(self.request_for(arch, key), self.cache, op_name=self.op_name)
            self._binaries[(arch, key)] = binary
        return binary

    def function(self, device_index: int, key: Optional[tuple] = None) -> LoadedFunction:
        key = self.default_key if key is None else key
        fn = self._functions.get((device_index, key))
        if fn is None:
            with self._lock:
                if key in self._refusals:
                    raise self._refusals[key]
                fn = self._functions.get((device_index, key))
                if fn is None:
                    arch = device_arch(device_index)
                    binary = self.for_arch(arch, key)
                    fn = load_function(device_index, binary.cubin, binary.lowered_name, self.shared_opt_in)
                    if self.plan is not None:
                        try:
                            check_param_layout(Where("call", self.op_name), self.request_for(arch, key).kernel_name, fn, self.plan)
                        except ValueError as exc:
                            self._refusals[key] = exc
                            raise
                    self._functions[(device_index, key)] = fn
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
