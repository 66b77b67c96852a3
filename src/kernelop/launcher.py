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
        self.dtype_rules = self._dtype_rules(element_sizes)
        ctypes_names = [s.ctype for s in plan.arg_layout]
        self.packer = struct.Struct(struct_format(ctypes_names))
        self.offsets = _offsets(ctypes_names)
        self.local = threading.local()
        self.programs: dict[tuple, tuple[tuple[int, ...], Callable]] = {}
        self.sync = SETTINGS.sync_after_launch

    def _dtype_rules(self, element_sizes: Optional[tuple[Optional[int], ...]]) -> tuple:
        """Per tensor input with a known constraint: (index, allowed dtypes)."""
        rules = []
        for slot_index, param in enumerate(self.plan.tensor_params):
            if param.dtype is not None:
                rules.append((slot_index, frozenset({param.dtype})))
                continue
            size = self._pointee_size(element_sizes, "tensor", slot_index)
            if size is not None:
                rules.append((slot_index, dtypes_of_size(size)))
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
        if device_index < 0 or any(t.get_device() != device_index for t in tensors):
            self._refuse_devices(tensors)
        for index, allowed in self.dtype_rules:
            if tensors[index].dtype not in allowed:
                self._refuse_dtype(tensors, index)
        for i, tensor in enumerate(tensors):
            if not tensor.is_contiguous():
                tensors[i] = tensor.contiguous()
        in_shapes = [t.shape for t in tensors]
        key = tuple([len(s) for s in in_shapes])
        program = self.programs.get(key)
        if self.meta_fn is None:
            if program is None:
                program = self._declared_program(key)
            splits, evaluate = program
            values = evaluate(in_shapes, ())
            outputs, start = [], 0
            first = tensors[0]
            for rule, n in zip(self.plan.outputs, splits):  # type: ignore[arg-type]
                outputs.append(first.new_empty(values[start : start + n], dtype=tensors[rule.dtype_source].dtype))
                start += n
            launch = values[start:]
        else:
            outputs = self._meta_outputs(args)
            out_ranks = tuple([o.dim() for o in outputs])
            program = self.programs.get((key, out_ranks)) or self._meta_program(key, out_ranks)
            launch = program[1](in_shapes, [o.shape for o in outputs])
        gx, gy, gz = launch[0], launch[1], launch[2]
        if gx and gy and gz:
            if gx > MAX_GRID[0] or gy > MAX_GRID[1] or gz > MAX_GRID[2]:
                self._refuse_grid(launch[0:3])
            self._launch(args, tensors, outputs, launch, device_index)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _launch(self, args: tuple, tensors: list, outputs: list, launch: tuple, device_index: int) -> None:
        fn = self.binaries.function(device_index)
        buffer = getattr(self.local, "buffer", None)
        if buffer is None:
            buffer = self.local.buffer = ArgumentBuffer(self.packer, self.offsets)
        head = [tensors[i].data_ptr() if is_tensor else args[i] for is_tensor, i in self.head]
        try:
            self.packer.pack_into(buffer.data, 0, *head, *launch[7:], *[o.data_ptr() for o in outputs])
        except (struct.error, OverflowError):
            self._refuse_values(args, launch[7:])
            raise
        stream = _raw_stream(device_index)
        try:
            driver.launch(fn, launch[0], launch[1], launch[2], launch[3], launch[4], launch[5], launch[6], stream, buffer.address)
            if self.sync:
                driver.synchronize(stream)
        except driver.DriverError as exc:
            fault = " The CUDA context is now unusable: restart the process." if exc.sticky else ""
            self.where.fail(f"kernel {self.binaries.request.kernel_name!r} failed: {exc}.{fault}", RuntimeError)

    # -- programs: the plan's expressions compiled per tuple of ranks -------------------------

    def _declared_program(self, key: tuple) -> tuple[tuple[int, ...], Callable]:
        shapes = self.plan.output_shapes(key)
        dims = self.plan.launch_dims(key, tuple(len(s) for s in shapes))

        def through_outputs(dim: Dim) -> Expr:
            return shapes[dim.index][dim.axis] if dim.side == OUTPUT else dim

        exprs = [e for shape in shapes for e in shape] + [substitute(e, through_outputs) for e in dims.all_exprs()]
        program = (tuple(len(s) for s in shapes), compile_int(exprs))
        self.programs[key] = program
        return program

    def _meta_program(self, key: tuple, out_ranks: tuple) -> tuple[tuple[int, ...], Callable]:
        program = ((), compile_int(self.plan.launch_dims(key, out_ranks).all_exprs()))
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

    def _refuse_dtype(self, tensors: list, index: int) -> None:
        check_tensors(self.where, self.plan, tuple(tensors))  # a declared dtype explains itself
        param, tensor = self.plan.tensor_params[index], tensors[index]
        slot = next(s for s in self.plan.arg_layout if s.kind == "tensor" and s.index == index)
        size = next(iter(dict(self.dtype_rules)[index])).itemsize
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
