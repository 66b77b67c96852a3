"""``CudaKernel``: a kernel compiled once and launched with kernelop's checks, for ``eager_fn``s.

An override (``eager_fn``) owns its launch: grid, block, shared memory and arguments. This gives
it the compile cache, per-device loading, the kernel's own parameter types and every guard of the
declarative path (argument kinds and ranges, CUDA's and the kernel's limits, the current stream,
``KERNELOP_SYNC``), without cuda-bindings.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

import torch

from ..compiler.cache import KernelCache, compile_cached
from ..compiler.nvrtc import CompiledKernel
from ..compiler.signature import KernelSignature, read_signature
from ..compiler.target import DEFAULT_ARCH
from ..cuda import driver
from ..cuda.binaries import KernelBinaries
from ..cuda.packing import PACK_ERRORS, layout_of
from ..dsl.spec import KernelSpec
from ..dsl.validate import check_source
from ..errors import Where
from ..plan.binding import kernel_ctype
from ..plan.ctypes import C_NAMES, CTYPE_SIZES, INT_RANGES
from ..pytorch.launch_checks import check_geometry, launch_failure
from ..settings import SETTINGS
from .cuda_kernel_op import check_cache, compile_request

POINTER_OR_INT = "ptr|x64"
"""An 8-byte integer parameter whose declaration could not be read: a pointer or a 64-bit size."""


class CudaKernel:
    """CUDA C++ ``source`` compiled now (NVRTC and the disk cache; no GPU needed), its kernel
    ``name`` (``extern "C"`` name or C++ name expression) loaded on first launch on a device.

    ``params`` lists the kernel's parameter C types as read from its PTX and source.
    """

    def __init__(
        self,
        source: str,
        name: str,
        *,
        include_paths: Optional[Sequence[str]] = None,
        compile_std: str = "c++17",
        arch_override: Optional[str] = None,
        defines: Optional[Mapping[str, Union[str, int, None]]] = None,
        options: Sequence[str] = (),
        host_shims: bool = True,
        cache: Optional[KernelCache] = None,
    ):
        self.where = Where("CudaKernel", name if isinstance(name, str) else repr(name))
        spec = KernelSpec(source, name, include_paths=list(include_paths) if include_paths else None, compile_std=compile_std,
                          arch_override=arch_override, defines=defines, options=tuple(options), host_shims=host_shims)
        check_source(self.where, spec)
        check_cache(self.where, cache)
        request = compile_request(f"kernel::{_program_stem(name)}", spec)
        cache = cache or KernelCache.from_settings()
        compiled = compile_cached(request, cache, op_name=name)
        self.name = name
        self._read_params(read_signature(source, name, compiled.ptx, compiled.lowered_name))
        self._binaries = KernelBinaries(name, request, cache, None, arch_override, compiled, shared_opt_in=True)

    @classmethod
    def from_ptx(cls, ptx: Union[bytes, str], name: str) -> "CudaKernel":
        """A kernel from PTX text (the driver compiles it on load); ``name`` is its ``.entry``."""
        kernel = cls.__new__(cls)
        kernel.where = Where("CudaKernel", name)
        data = ptx.encode() if isinstance(ptx, str) else bytes(ptx)
        compiled = CompiledKernel(data + b"\0", data, name, DEFAULT_ARCH, (), "", (0, 0))
        kernel.name = name
        kernel._read_params(read_signature("", name, data, name))
        kernel._binaries = _PtxBinaries(compiled)
        return kernel

    def _read_params(self, signature: KernelSignature) -> None:
        self.params, self.element_sizes = kernel_params(self.where, signature)
        self.layout = layout_of(["ptr" if c == POINTER_OR_INT else c for c in self.params])

    def launch(self, grid: Sequence[int], block: Sequence[int], args: Sequence[Any], *, shared_mem: int = 0, stream: Any = None) -> None:
        """Launch on ``stream`` (default: PyTorch's current stream of the tensors' device).

        ``args`` follow the kernel's parameters: a contiguous CUDA tensor (or None, for NULL)
        for a pointer, a Python int, float or bool for a value. Everything is checked before
        the launch; a launch the driver refuses raises ``RuntimeError`` naming the kernel.
        """
        dims = (*_three(self.where, "grid", grid, 0), *_three(self.where, "block", block, 1), _count(self.where, "shared_mem", shared_mem, 0))
        values, device = self._values(args)
        fn = self._binaries.function(device)
        if not (dims[0] and dims[1] and dims[2]):
            return
        check_geometry(self.where, dims, fn.max_threads, fn.max_dynamic_shared, self.name)
        raw = torch._C._cuda_getCurrentRawStream(device) if stream is None else int(getattr(stream, "cuda_stream", stream))
        try:
            result = driver.launch_backend().launch(fn.handle, dims, raw, self.layout, *values)
        except PACK_ERRORS as exc:
            self.where.fail(f"an argument does not fit its kernel parameter ({exc})")
        if result or SETTINGS.sync_after_launch:
            try:
                driver.finish_launch(fn, result, dims, raw, self.layout, tuple(values), SETTINGS.sync_after_launch)
            except driver.DriverError as exc:
                self.where.fail(launch_failure(self.name, exc), RuntimeError)

    __call__ = launch

    def _values(self, args: Sequence[Any]) -> tuple[list, int]:
        """The packed values, and the device of the tensor arguments (else the current device)."""
        if not isinstance(args, (tuple, list)) or len(args) != len(self.params):
            got = len(args) if isinstance(args, (tuple, list)) else type(args).__name__
            self.where.fail(f"kernel {self.name!r} takes {len(self.params)} arguments ({', '.join(C_NAMES.get(c, c) for c in self.params)}) (got {got})", TypeError)
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        for i, arg in enumerate(args):
            if isinstance(arg, torch.Tensor) and not arg.is_cuda:
                self.where.fail(f"argument {i} must be a CUDA tensor (got a tensor on {arg.device})")
        device = tensors[0].get_device() if tensors else None
        values = [self._value(i, ctype, arg, device) for i, (ctype, arg) in enumerate(zip(self.params, args))]
        return values, torch.cuda.current_device() if device is None else device

    def _value(self, i: int, ctype: str, arg: Any, device: Optional[int]) -> Any:
        pointer = ctype in ("ptr", POINTER_OR_INT)
        if isinstance(arg, torch.Tensor):
            if not pointer:
                self.where.fail(f"argument {i} is a tensor, but parameter {i} is a {C_NAMES[ctype]}", TypeError)
            if arg.get_device() != device:
                self.where.fail(f"argument {i} is on {arg.device}, but the kernel runs on cuda:{device}")
            if not arg.is_contiguous():
                self.where.fail(f"argument {i} is not contiguous; pass .contiguous() (the kernel reads dense memory)")
            size = self.element_sizes[i]
            if size is not None and arg.element_size() != size:
                self.where.fail(f"argument {i} has dtype {arg.dtype} ({arg.element_size()}-byte elements), but parameter {i} "
                                f"points to {size}-byte elements", TypeError)
            return arg.data_ptr()
        if arg is None and pointer:
            return 0
        if ctype == "ptr":
            self.where.fail(f"argument {i} must be a CUDA tensor or None for a pointer parameter (got {type(arg).__name__})", TypeError)
        if ctype == "bool":
            if not isinstance(arg, bool):
                self.where.fail(f"argument {i} must be a bool (got {type(arg).__name__})", TypeError)
            return arg
        if ctype in ("f32", "f64"):
            if isinstance(arg, bool) or not isinstance(arg, (int, float)):
                self.where.fail(f"argument {i} must be a float for a {C_NAMES[ctype]} parameter (got {type(arg).__name__})", TypeError)
            return float(arg)
        if isinstance(arg, bool) or not isinstance(arg, int):
            self.where.fail(f"argument {i} must be an int for a {C_NAMES.get(ctype, '64-bit')} parameter (got {type(arg).__name__})", TypeError)
        low, high = INT_RANGES["x64" if ctype == POINTER_OR_INT else ctype]
        if not low <= arg <= high:
            bits = 64 if ctype == POINTER_OR_INT else CTYPE_SIZES[ctype] * 8
            self.where.fail(f"argument {i} = {arg} does not fit the kernel's {bits}-bit parameter ({low}..{high})")
        return arg


class _PtxBinaries:
    """The one binary of a kernel given as PTX, loaded per device (the driver JIT-compiles it)."""

    def __init__(self, compiled: CompiledKernel):
        self.compiled = compiled
        self._functions: dict[int, driver.LoadedFunction] = {}

    def function(self, device_index: int) -> driver.LoadedFunction:
        fn = self._functions.get(device_index)
        if fn is None:
            fn = self._functions[device_index] = driver.load_function(device_index, self.compiled.cubin, self.compiled.lowered_name, True)
        return fn


def kernel_params(where: Where, signature: KernelSignature) -> tuple[tuple[str, ...], tuple[Optional[int], ...]]:
    """Each parameter's C type (the source's declaration where it can be read, else the PTX's)
    and, for pointers of a known type, the element size."""
    if signature.ptx is None:
        where.fail("the kernel's entry is not in its PTX; check the kernel name")
    source = signature.source if signature.source is not None and len(signature.source) == len(signature.ptx) else None
    types, sizes = [], []
    for i, compiled in enumerate(signature.ptx):
        declared = source[i] if source is not None else None
        if compiled.kind == "bytes":
            where.fail(f"parameter {i} is a {compiled.size}-byte aggregate passed by value, which CudaKernel cannot pass")
        sizes.append(declared.pointee_size if declared is not None else None)
        ctype = kernel_ctype(declared, compiled)
        if declared is not None and declared.is_pointer:
            types.append("ptr")
        elif ctype == "x64":  # an 8-byte integer of unreadable type: a pointer, or a size
            types.append(POINTER_OR_INT)
        elif ctype is not None:
            types.append(ctype)
        else:
            where.fail(f"parameter {i} has {compiled.size} bytes, which CudaKernel cannot pass")
    return tuple(types), tuple(sizes)


def _three(where: Where, what: str, dims: Any, least: int) -> tuple[int, int, int]:
    if isinstance(dims, int):
        dims = (dims,)
    if not isinstance(dims, (tuple, list)) or not 1 <= len(dims) <= 3:
        where.fail(f"{what} must be an int or a tuple of 1 to 3 ints (got {dims!r})", TypeError)
    values = tuple(_count(where, f"{what}[{i}]", d, least) for i, d in enumerate(dims))
    return values + (1,) * (3 - len(values))  # type: ignore[return-value]


def _count(where: Where, what: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        where.fail(f"{what} must be an int (got {value!r})", TypeError)
    if value < least:
        where.fail(f"{what} must be >= {least} (got {value})")
    return value


def _program_stem(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)
