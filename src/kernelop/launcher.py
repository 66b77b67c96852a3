"""The eager CUDA path: check inputs, allocate outputs, pack arguments, launch on the current stream.

Per call it only reads shapes, evaluates the plan's few integers through closures compiled once
per tuple of ranks, and calls the driver; everything else is decided at registration.
"""
from __future__ import annotations

import ctypes
import threading
from typing import Any, Callable, Optional

import torch

from . import driver
from .expr import compile_int
from .kernel import KernelBinaries
from .plan import LaunchPlan
from .settings import SETTINGS
from .torchop import check_tensors
from .validate import Where

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_CTYPES = {"ptr": ctypes.c_uint64, "float": ctypes.c_float, "int": ctypes.c_int32, "bool": ctypes.c_bool}


class ArgumentBuffer:
    """A kernel's parameters as one C struct plus the ``void**`` array the driver reads.

    One per thread, so concurrent launches never share mutable memory.
    """

    def __init__(self, ctypes_fields: list[tuple[str, Any]]):
        struct_type = type("KernelArgs", (ctypes.Structure,), {"_fields_": ctypes_fields})
        self.values = struct_type()
        base = ctypes.addressof(self.values)
        offsets = [getattr(struct_type, name).offset for name, _ in ctypes_fields]
        self.pointers = (ctypes.c_void_p * max(len(offsets), 1))(*[base + o for o in offsets])
        self.address = ctypes.addressof(self.pointers)


class EagerLauncher:
    """The CUDA impl of a declarative op (or of one whose outputs come from ``meta_fn``)."""

    def __init__(self, plan: LaunchPlan, binaries: KernelBinaries, meta_fn: Optional[Callable[..., Any]]):
        self.plan = plan
        self.binaries = binaries
        self.meta_fn = meta_fn
        self.where = Where("call", plan.op_name)
        self.positions = tuple(p.position for p in plan.tensor_params)
        self.fields = [(f"a{i}", _CTYPES[s.ctype]) for i, s in enumerate(plan.arg_layout)]
        self.scalar_slots = tuple(
            (f"a{i}", s.index, plan.params[s.index]) for i, s in enumerate(plan.arg_layout) if s.kind == "scalar"
        )
        self.extra_names = tuple(f"a{i}" for i, s in enumerate(plan.arg_layout) if s.kind == "extra")
        self.tensor_names = tuple(f"a{i}" for i, s in enumerate(plan.arg_layout) if s.kind == "tensor")
        self.output_names = tuple(f"a{i}" for i, s in enumerate(plan.arg_layout) if s.kind == "output")
        self.local = threading.local()
        self.shape_fns: dict[tuple, Callable] = {}
        self.launch_fns: dict[tuple, Callable] = {}

    def __call__(self, *args: Any) -> Any:
        tensors = tuple(args[i] for i in self.positions)
        check_tensors(self.where, self.plan, tensors)
        device = tensors[0].device
        if device.type != "cuda":
            self.where.fail(f"argument {self.plan.tensor_params[0].name!r} must be a CUDA tensor (got device {device})")
        tensors = tuple(t.contiguous() for t in tensors)
        in_shapes = tuple(t.shape for t in tensors)
        in_ranks = tuple(len(s) for s in in_shapes)
        outputs = self._allocate(args, tensors, in_shapes, in_ranks)
        out_shapes = tuple(o.shape for o in outputs)
        values = self._launch_values(in_ranks, tuple(len(s) for s in out_shapes))(in_shapes, out_shapes)
        grid, block, shared_mem, extras = values[0:3], values[3:6], values[6], values[7:]
        if grid[0] and grid[1] and grid[2]:
            self._launch(args, tensors, outputs, grid, block, shared_mem, extras, device.index)
        return outputs[0] if len(outputs) == 1 else outputs

    def _allocate(self, args: tuple, tensors: tuple, in_shapes: tuple, in_ranks: tuple) -> tuple:
        if self.meta_fn is not None:
            result = self.meta_fn(*args)
            outputs = result if isinstance(result, (tuple, list)) else (result,)
            if len(outputs) != self.plan.num_outputs:
                self.where.fail(f"meta_fn returned {len(outputs)} tensors; the schema declares {self.plan.num_outputs}")
            return tuple(outputs)
        shape_fn = self.shape_fns.get(in_ranks)
        if shape_fn is None:
            shapes = self.plan.output_shapes(in_ranks)
            flat = compile_int([e for shape in shapes for e in shape])
            splits = [len(s) for s in shapes]
            shape_fn = self.shape_fns[in_ranks] = _splitter(flat, splits)
        device = tensors[0].device
        return tuple(
            torch.empty(shape, dtype=tensors[rule.dtype_source].dtype, device=device)
            for rule, shape in zip(self.plan.outputs, shape_fn(in_shapes))  # type: ignore[arg-type]
        )

    def _launch_values(self, in_ranks: tuple, out_ranks: tuple) -> Callable:
        key = (in_ranks, out_ranks)
        fn = self.launch_fns.get(key)
        if fn is None:
            fn = self.launch_fns[key] = compile_int(self.plan.launch_dims(in_ranks, out_ranks).all_exprs())
        return fn

    def _buffer(self) -> ArgumentBuffer:
        buffer = getattr(self.local, "buffer", None)
        if buffer is None:
            buffer = self.local.buffer = ArgumentBuffer(self.fields)
        return buffer

    def _launch(self, args: tuple, tensors: tuple, outputs: tuple, grid: tuple, block: tuple, shared_mem: int, extras: tuple, device_index: int) -> None:
        fn = self.binaries.function(device_index)
        values = self._buffer().values
        for name, tensor in zip(self.tensor_names, tensors):
            setattr(values, name, tensor.data_ptr())
        for name, position, param in self.scalar_slots:
            setattr(values, name, self._scalar(param, args[position]))
        for name, value, rule in zip(self.extra_names, extras, self.plan.extras):
            if not INT32_MIN <= value <= INT32_MAX:
                self.where.fail(
                    f"extra {rule.describe(self.plan.params)} = {value} does not fit the kernel's 32-bit int parameter"
                )
            setattr(values, name, value)
        for name, tensor in zip(self.output_names, outputs):
            setattr(values, name, tensor.data_ptr())
        stream = torch._C._cuda_getCurrentRawStream(device_index)
        try:
            driver.launch(fn, grid, block, shared_mem, stream, self._buffer().address)
            if SETTINGS.sync_after_launch:
                driver.synchronize(stream)
        except driver.DriverError as exc:
            self.where.fail(f"kernel {self.binaries.request.kernel_name!r} failed: {exc}", RuntimeError)

    def _scalar(self, param: Any, value: Any) -> Any:
        if param.py_type is int:
            if not INT32_MIN <= value <= INT32_MAX:
                self.where.fail(f"argument {param.name!r} = {value} does not fit the kernel's 32-bit int parameter")
        return value


def _splitter(flat: Callable, splits: list[int]) -> Callable:
    def shapes(in_shapes: tuple) -> list[tuple]:
        values = flat(in_shapes, ())
        out, start = [], 0
        for n in splits:
            out.append(values[start : start + n])
            start += n
        return out

    return shapes
