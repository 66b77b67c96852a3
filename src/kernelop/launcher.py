"""The eager CUDA path: check inputs, allocate outputs, pack arguments, launch on the current stream.

Per call it only reads shapes, evaluates one closure compiled per tuple of ranks, packs the
parameters with one ``struct`` call into a per-thread buffer, and calls the driver. Everything
else (argument layout, dtype rules, limits) is decided at registration. Problems are detected
with cheap predicates; the slow path that explains them runs only when one fails.
"""
from __future__ import annotations

import ctypes
import struct
import threading
from typing import Any, Callable, Optional

import torch

from . import driver
from .expr import OUTPUT, Dim, Expr, compile_int, substitute
from .kernel import KernelBinaries
from .plan import CTYPE_SIZES, LaunchPlan, describe_slot
from .settings import SETTINGS
from .signature import dtypes_of_size
from .torchop import check_tensors
from .validate import Where

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
MAX_GRID = (2**31 - 1, 65535, 65535)
_FORMATS = {"ptr": "Q", "float": "f", "int": "i", "bool": "?"}
_raw_stream = torch._C._cuda_getCurrentRawStream if hasattr(torch._C, "_cuda_getCurrentRawStream") else None


def struct_format(ctypes_names: list[str]) -> str:
    """A ``struct`` format laying parameters out with C alignment (each aligned to its size)."""
    fmt, offset = "<", 0
    for name in ctypes_names:
        size = CTYPE_SIZES[name]
        padding = -offset % size
        fmt += "x" * padding + _FORMATS[name]
        offset += padding + size
    return fmt


class ArgumentBuffer:
    """The packed parameters plus the ``void*`` array pointing into them that the driver reads."""

    def __init__(self, packer: struct.Struct, offsets: list[int]):
        self.data = ctypes.create_string_buffer(max(packer.size, 1))
        base = ctypes.addressof(self.data)
        self.pointers = (ctypes.c_void_p * max(len(offsets), 1))(*[base + o for o in offsets])
        self.address = ctypes.addressof(self.pointers)


def _offsets(ctypes_names: list[str]) -> list[int]:
    offsets, offset = [], 0
    for name in ctypes_names:
        size = CTYPE_SIZES[name]
        offset += -offset % size
        offsets.append(offset)
        offset += size
    return offsets


class EagerLauncher:
    """The CUDA impl of a declarative op (or of one whose outputs come from ``meta_fn``)."""

    def __init__(
        self,
        plan: LaunchPlan,
        binaries: KernelBinaries,
        meta_fn: Optional[Callable[..., Any]],
        element_sizes: Optional[tuple[Optional[int], ...]] = None,
    ):
        self.plan = plan
        self.binaries = binaries
        self.meta_fn = meta_fn
        self.where = Where("call", plan.op_name)
        self.positions = tuple(p.position for p in plan.tensor_params)
        self.head = tuple((p.is_tensor, p.tensor_index if p.is_tensor else p.position) for p in plan.params)
        self.tensor_rules = self._tensor_rules(element_sizes)
        ctypes_names = [s.ctype for s in plan.arg_layout]
        self.packer = struct.Struct(struct_format(ctypes_names))
        self.offsets = _offsets(ctypes_names)
        self.local = threading.local()
        self.programs: dict[tuple, Callable] = {}
        self.functions: dict[int, driver.LoadedFunction] = {}
        self.sync = SETTINGS.sync_after_launch

    def _tensor_rules(self, element_sizes: Optional[tuple[Optional[int], ...]]) -> tuple:
        """Per tensor input: (index, allowed dtypes or None): the declared dtype, else every dtype
        whose element size matches the kernel's pointer parameter, else anything."""
        rules = []
        for index, param in enumerate(self.plan.tensor_params):
            size = self._pointee_size(element_sizes, "tensor", index)
            if param.dtype is not None:
                rules.append((index, frozenset({param.dtype})))
            else:
                rules.append((index, None if size is None else dtypes_of_size(size)))
        return tuple(rules)

    def _pointee_size(self, element_sizes: Optional[tuple], kind: str, index: int) -> Optional[int]:
        if element_sizes is None or len(element_sizes) != len(self.plan.arg_layout):
            return None
        position = next(i for i, s in enumerate(self.plan.arg_layout) if s.kind == kind and s.index == index)
        return element_sizes[position]

    # -- the hot path -------------------------------------------------------------------------

    def __call__(self, *args: Any) -> Any:
        tensors = [args[i] for i in self.positions]
        device_index = tensors[0].get_device()
        if device_index < 0:
            self._refuse_devices(tensors)
        for i, allowed in self.tensor_rules:
            tensor = tensors[i]
            if tensor.get_device() != device_index or (allowed is not None and tensor.dtype not in allowed):
                self._refuse_tensors(tensors)
            if not tensor.is_contiguous():
                tensors[i] = tensor.contiguous()
        in_shapes = [t.shape for t in tensors]
        key = tuple([len(s) for s in in_shapes])
        if self.meta_fn is None:
            evaluate, allocations, launch_start = self.programs.get(key) or self._declared_program(key)
            values = evaluate(in_shapes, ())
            outputs = [
                torch.empty_like(tensors[source]) if like else tensors[0].new_empty(values[start:stop], dtype=tensors[source].dtype)
                for like, source, start, stop in allocations
            ]
            launch = values[launch_start:]
        else:
            outputs = self._meta_outputs(args)
            out_ranks = tuple([o.dim() for o in outputs])
            program = self.programs.get((key, out_ranks)) or self._meta_program(key, out_ranks)
            launch = program(in_shapes, [o.shape for o in outputs])
        if launch[0] and launch[1] and launch[2]:
            if launch[0] > MAX_GRID[0] or launch[1] > MAX_GRID[1] or launch[2] > MAX_GRID[2]:
                self._refuse_grid(launch[0:3])
            fn = self.functions.get(device_index) or self._load(device_index)
            buffer = getattr(self.local, "buffer", None) or self._new_buffer()
            try:
                self.packer.pack_into(
                    buffer.data,
                    0,
                    *[tensors[i].data_ptr() if is_tensor else args[i] for is_tensor, i in self.head],
                    *launch[7:],
                    *[o.data_ptr() for o in outputs],
                )
            except (struct.error, OverflowError):
                self._refuse_values(args, launch[7:])
                raise
            stream = _raw_stream(device_index)
            try:
                driver.launch(fn, launch[0], launch[1], launch[2], launch[3], launch[4], launch[5], launch[6], stream, buffer.address)
                if self.sync:
                    driver.synchronize(stream)
            except driver.DriverError as exc:
                self._launch_failed(exc)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _load(self, device_index: int) -> driver.LoadedFunction:
        fn = self.functions[device_index] = self.binaries.function(device_index)
        return fn

    def _new_buffer(self) -> ArgumentBuffer:
        buffer = self.local.buffer = ArgumentBuffer(self.packer, self.offsets)
        return buffer

    def _launch_failed(self, exc: driver.DriverError) -> None:
        fault = " The CUDA context is now unusable: restart the process." if exc.sticky else ""
        self.where.fail(f"kernel {self.binaries.request.kernel_name!r} failed: {exc}.{fault}", RuntimeError)

    # -- programs: the plan's expressions compiled per tuple of ranks -------------------------

    def _declared_program(self, key: tuple) -> tuple[Callable, tuple, int]:
        """For one tuple of input ranks: the closure and how to read its values.

        The closure returns the shapes of outputs that must be built from sizes, then grid,
        block, shared memory and extras. An output with an input's shape and dtype is allocated
        with ``empty_like``, the cheapest allocation PyTorch offers; the others use
        ``(like, dtype source, start, stop)`` slices of the values.
        """
        shapes = self.plan.output_shapes(key)
        dims = self.plan.launch_dims(key, tuple(len(s) for s in shapes))

        def through_outputs(dim: Dim) -> Expr:
            return shapes[dim.index][dim.axis] if dim.side == OUTPUT else dim

        allocations, sized = [], []
        for rule, shape in zip(self.plan.outputs, shapes):  # type: ignore[arg-type]
            if rule.reduce_dims is None and rule.dtype_source == rule.source:
                allocations.append((True, rule.source, 0, 0))
            else:
                allocations.append((False, rule.dtype_source, len(sized), len(sized) + len(shape)))
                sized.extend(shape)
        evaluate = compile_int(sized + [substitute(e, through_outputs) for e in dims.all_exprs()])
        program = self.programs[key] = (evaluate, tuple(allocations), len(sized))
        return program

    def _meta_program(self, key: tuple, out_ranks: tuple) -> Callable:
        program = compile_int(self.plan.launch_dims(key, out_ranks).all_exprs())
        self.programs[(key, out_ranks)] = program
        return program

    def _meta_outputs(self, args: tuple) -> list:
        result = self.meta_fn(*args)  # type: ignore[misc]
        outputs = list(result) if isinstance(result, (tuple, list)) else [result]
        if len(outputs) != self.plan.num_outputs:
            self.where.fail(f"meta_fn returned {len(outputs)} tensors; the schema declares {self.plan.num_outputs}")
        for i, out in enumerate(outputs):
            if not (isinstance(out, torch.Tensor) and out.is_cuda and out.is_contiguous()):
                self.where.fail(f"meta_fn output {i} must be a contiguous CUDA tensor to launch into (got {_describe(out)})")
        return outputs

    # -- the slow path: say precisely what is wrong ------------------------------------------

    def _refuse_devices(self, tensors: list) -> None:
        names = [p.name for p in self.plan.tensor_params]
        for name, tensor in zip(names, tensors):
            if not tensor.is_cuda:
                self.where.fail(f"argument {name!r} must be a CUDA tensor (got a tensor on {tensor.device})")
        check_tensors(self.where, self.plan, tuple(tensors))

    def _refuse_tensors(self, tensors: list) -> None:
        self._refuse_devices(tensors)  # devices, then declared dtypes, explain themselves
        index, allowed = next((i, a) for i, a in self.tensor_rules if a is not None and tensors[i].dtype not in a)
        param, tensor = self.plan.tensor_params[index], tensors[index]
        slot = next(s for s in self.plan.arg_layout if s.kind == "tensor" and s.index == index)
        size = next(iter(allowed)).itemsize
        self.where.fail(
            f"argument {param.name!r} has dtype {tensor.dtype} ({tensor.dtype.itemsize}-byte elements) but kernel "
            f"{self.binaries.request.kernel_name!r} reads it through a pointer to {size}-byte elements "
            f"({describe_slot(self.plan, slot)}). Pass a tensor of a matching dtype or declare InputDecl(dtype=...).",
            TypeError,
        )

    def _refuse_grid(self, grid: tuple) -> None:
        self.where.fail(
            f"launch grid {tuple(grid)} exceeds the CUDA limits {MAX_GRID} (x, y, z). "
            "With layout='nd' the leading axes fold into grid z; reshape the input or use layout='flat'."
        )

    def _refuse_values(self, args: tuple, extras: tuple) -> None:
        for param in self.plan.params:
            value = args[param.position]
            if param.py_type is int and not INT32_MIN <= value <= INT32_MAX:
                self.where.fail(f"argument {param.name!r} = {value} does not fit the kernel's 32-bit int parameter")
            if param.py_type is float and abs(value) > 3.4028234663852886e38 and value == value and abs(value) != float("inf"):
                self.where.fail(f"argument {param.name!r} = {value} does not fit the kernel's 32-bit float parameter")
        for rule, value in zip(self.plan.extras, extras):
            if not INT32_MIN <= value <= INT32_MAX:
                self.where.fail(
                    f"extra {rule.describe(self.plan.params)} = {value} does not fit the kernel's 32-bit int parameter; "
                    "the kernel would index with a wrapped size"
                )


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor on {value.device}, contiguous={value.is_contiguous()}"
    return type(value).__name__
