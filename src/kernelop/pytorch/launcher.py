"""The eager CUDA path: check inputs, allocate outputs, pack arguments, launch on the current stream.

Per call it only reads shapes, looks their launch values up (computed and checked against the
device limits once per distinct shape, from a closure compiled per tuple of ranks), allocates
the outputs and makes one call to the native launch (``launch_shim``), which packs the
parameters and calls the driver. Everything else (argument layout, dtype rules) is decided at
registration. Problems are detected with cheap predicates; the slow path that explains them
runs only when one fails.

A CUDA fault inside a kernel (illegal address, trap) poisons the process's CUDA context: every
later CUDA call fails. With ``KERNELOP_SYNC=1`` each launch is followed by a stream
synchronisation, so the fault is reported by the op whose kernel caused it.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import torch

from ..compiler.signature import dtypes_of_size
from ..cuda import driver
from ..cuda.binaries import KernelBinaries
from ..cuda.packing import PACK_ERRORS, layout_of
from ..errors import Where
from ..plan.describe import describe_slot
from ..plan.expr import OUTPUT, Dim, Expr, compile_int, substitute
from ..plan.launch_plan import LaunchPlan
from ..settings import SETTINGS
from .fake import check_tensors
from .launcher_source import launcher_source
from .launch_checks import (
    RequirementChecks,
    check_geometry,
    check_integer_values,
    divides_by_zero,
    launch_failure,
    negative_output,
    output_divides_by_zero,
    scalar_problem,
)

ND_GRID_HINT = " With layout='nd' the leading axes fold into grid z; reshape the input or use layout='flat'."

MAX_REMEMBERED_SHAPES = 4096
"""Launch values kept per op; past this many distinct shapes the memo starts over."""
_raw_stream = torch._C._cuda_getCurrentRawStream if hasattr(torch._C, "_cuda_getCurrentRawStream") else None


class EagerLauncher:
    """The CUDA impl of a declarative op (or of one whose outputs come from ``meta_fn``).

    ``call`` is generated once per op from the plan (``launcher_source``; ``source`` holds its
    text) and runs in a namespace of this launcher's memos, checks and launch functions.
    """

    def __init__(self, plan: LaunchPlan, binaries: KernelBinaries, meta_fn: Optional[Callable[..., Any]]):
        self.plan = plan
        self.binaries = binaries
        self.meta_fn = meta_fn
        self.where = Where("call", plan.op_name)
        self.tensor_rules = self._tensor_rules()
        self.layout = layout_of([s.ctype for s in plan.arg_layout])
        self.programs: dict[tuple, Callable[..., tuple]] = {}
        self.requirements: dict[tuple, RequirementChecks] = {}
        self.extra_ctypes = [s.ctype for s in sorted((s for s in plan.arg_layout if s.kind == "extra"), key=lambda s: s.index)]
        self.dims: dict[Optional[int], dict[Any, tuple]] = {}  # per device: the limits checked are that device's
        self.functions: dict[int, driver.LoadedFunction] = {}
        self.handles: dict[int, int] = {}  # the same functions as ints, for the launch call
        self.sync = SETTINGS.sync_after_launch
        self.source = launcher_source(plan, self.tensor_rules, meta_fn is not None, self.sync)
        self.namespace: dict[str, Any] = {
            **{f"allowed{i}": allowed for i, allowed in self.tensor_rules},
            "memos": self.dims,
            "memo_for": self._memo_for,
            "dims_for": self._dims_for,
            "meta_outputs": self._meta_outputs,
            "empty_like": torch.empty_like,
            "full_like": torch.full_like,
            **{f"fill{k}": rule.init for k, rule in enumerate(plan.outputs or ())},
            "functions": self.functions,
            "handles": self.handles,
            "load": self._load,
            "layout": self.layout,
            "pack_errors": PACK_ERRORS,
            "raw_stream": _raw_stream,
            "launch": None,  # bound by ``_load``, before the first launch
            "finish_launch": driver.finish_launch,
            "DriverError": driver.DriverError,
            "refuse_tensors": self._refuse_tensors,
            "overlaps": torch._debug_has_internal_overlap,  # 1: certainly overlaps (2: cannot tell, e.g. strided)
            "refuse_overlap": self._refuse_overlap,
            "refuse_values": self._refuse_values,
            "launch_failed": self._launch_failed,
        }
        exec(compile(self.source, f"<kernelop launcher for {plan.op_name}>", "exec"), self.namespace)  # noqa: S102
        self.call: Callable[..., Any] = self.namespace["call"]

    @property
    def kernel_label(self) -> str:
        """The kernel's name in messages: a template's own name, not one instantiation's."""
        return self.binaries.kernel_label if self.binaries is not None else "?"

    def __call__(self, *args: Any) -> Any:
        return self.call(*args)

    def _tensor_rules(self) -> tuple:
        """Per tensor input: (index, allowed dtypes or None): the declared dtype (or ``TypeParam``),
        else every dtype whose element size matches the kernel's pointer parameter, else anything."""
        sizes = {s.index: s.pointee_size for s in self.plan.arg_layout if s.kind == "tensor"}
        rules = []
        for index, param in enumerate(self.plan.tensor_params):
            allowed = param.allowed_dtypes
            if allowed is None and sizes[index] is not None:
                allowed = dtypes_of_size(sizes[index])  # type: ignore[arg-type]
            rules.append((index, allowed))
        return tuple(rules)

    def _load(self, k: Any) -> int:
        """Load on first use on a device (of an instantiation, for a template); returns the handle."""
        self.namespace["launch"] = driver.launch_backend().launch
        device, type_key = _split(k)
        fn = self.functions[k] = self.binaries.function(device, type_key)
        self.handles[k] = fn.handle
        return fn.handle

    def _launch_failed(self, exc: driver.DriverError) -> None:
        self.where.fail(launch_failure(self.kernel_label, exc), RuntimeError)

    # -- launching into buffers someone else owns (TensorRT's JIT plugin) ---------------------

    def launch_into(
        self,
        device_index: int,
        inputs: Sequence[tuple[int, tuple[int, ...]]],
        scalars: Sequence[Any],
        outputs: Sequence[tuple[int, tuple[int, ...]]],
        stream: int,
        dtypes: Sequence[torch.dtype] = (),
    ) -> None:
        """Launch on ``stream`` with given ``(pointer, shape)`` inputs and outputs, no allocation.

        ``scalars`` are the scalar inputs' values in declaration order; ``dtypes`` the inputs'
        (they choose a template's instantiation). Same plan, packing and checks as a PyTorch
        call; used where the caller (a TensorRT engine) owns the memory.
        """
        in_shapes = tuple(tuple(shape) for _, shape in inputs)
        out_shapes = tuple(tuple(shape) for _, shape in outputs)
        key = (in_shapes, out_shapes)
        k: Any = device_index
        if self.plan.template is not None:
            k = (device_index, *self.plan.template.key_of(tuple(dtypes)))
        v = self._memo_for(k).get(key) or self._dims_for(key, in_shapes, out_shapes, k)
        if not v[0]:
            return
        scalar_params = [p for p in self.plan.params if not p.is_tensor]
        args_by_position = {p.position: value for p, value in zip(scalar_params, scalars)}
        by_kind = {
            "tensor": lambda i: inputs[i][0],
            "scalar": lambda i: args_by_position[i],
            "extra": lambda i: v[7 + i],
            "output": lambda i: outputs[i][0],
        }
        values = tuple(by_kind[s.kind](s.index) for s in self.plan.arg_layout)
        self._refuse_values(args_by_position)
        if k not in self.functions:
            self._load(k)
        fn = self.functions[k]
        try:
            driver.launch_in_context(fn, v, stream, self.layout, values, self.sync)
        except PACK_ERRORS:
            self._refuse_values(args_by_position)
            raise
        except driver.DriverError as exc:
            self._launch_failed(exc)

    # -- launch values: the plan's expressions compiled per tuple of ranks, memoized per shapes --

    def _memo_for(self, device: Any) -> dict[Any, tuple]:
        return self.dims.setdefault(device, {})

    def _dims_for(self, key: Any, in_shapes: tuple, out_shapes: Optional[tuple], device: Any = None) -> tuple:
        """``launch_values`` after the spec's requirements, checked against the limits of CUDA
        and (given ``device``: a device index, or for a template ``(index, *dtypes)``) of the
        kernel there and the ranges of the integer parameters; remembered under ``key`` in that
        device's memo.

        A grid with a zero dimension is stored with grid x = 0, so a call tests one value to
        skip the launch. Values that would be refused are never stored.
        """
        in_ranks = tuple(len(s) for s in in_shapes)
        if self.plan.requires:
            checks = self.requirements.get(in_ranks) or self.requirements.setdefault(in_ranks, RequirementChecks(self.plan, in_ranks))
            checks.check(self.where, in_shapes)
        try:
            v = self.launch_values(in_shapes, out_shapes)
        except ZeroDivisionError:
            v = self._empty_launch(in_shapes, out_shapes)
        if out_shapes is None:
            self._refuse_negative_outputs(v[7 + len(self.plan.extras):], in_shapes)
        if not (v[0] and v[1] and v[2]):
            v = (0, *v[1:])
        else:
            fn = self.binaries.function(*_split(device)) if device is not None else None
            kernel = self.kernel_label
            hint = ND_GRID_HINT if getattr(self.plan.geometry, "layout", "") == "nd" else ""
            check_geometry(self.where, v, fn and fn.max_threads, fn and fn.max_dynamic_shared, kernel, hint)
            check_integer_values(self.where, [r.label for r in self.plan.extras], self.extra_ctypes, v[7:7 + len(self.plan.extras)])
        memo = self._memo_for(device)
        if len(memo) >= MAX_REMEMBERED_SHAPES:
            memo.clear()
        memo[key] = v
        return v

    def launch_values(self, in_shapes: Sequence[Sequence[int]], out_shapes: Optional[Sequence[Sequence[int]]] = None) -> tuple:
        """Grid (3), block (3), shared memory, the extras, then the shape of each output not
        allocated like an input. ``out_shapes`` is given when ``meta_fn`` decides them."""
        in_ranks = tuple(len(s) for s in in_shapes)
        if out_shapes is None:
            program = self.programs.get(in_ranks) or self._declared_program(in_ranks)
            return program(in_shapes, ())
        key = in_ranks + tuple(len(s) for s in out_shapes)
        program = self.programs.get(key) or self._meta_program(key)
        return program(in_shapes, out_shapes)

    def _declared_program(self, in_ranks: tuple) -> Callable[..., tuple]:
        shapes = self.plan.output_shapes(in_ranks)
        dims = self.plan.launch_dims(in_ranks, tuple(len(s) for s in shapes))

        def through_outputs(dim: Dim) -> Expr:
            return shapes[dim.index][dim.axis] if dim.side == OUTPUT else dim

        exprs = [substitute(e, through_outputs) for e in dims.all_exprs()]
        head, bounds = len(exprs), []
        for rule, shape in zip(self.plan.outputs, shapes):  # type: ignore[arg-type]
            if not rule.like_input:
                bounds.append((len(exprs), len(exprs) + len(shape)))
                exprs.extend(shape)
        flat = compile_int(exprs)

        def program(ins: Sequence, outs: Sequence) -> tuple:
            values = flat(ins, outs)
            return values[:head] + tuple(values[a:b] for a, b in bounds)

        self.programs[in_ranks] = program
        return program

    def _refuse_negative_outputs(self, shapes: tuple, in_shapes: tuple) -> None:
        """Output shapes (of the outputs not allocated like an input) with no negative size."""
        sized = [rule for rule in self.plan.outputs or () if not rule.like_input]
        for rule, shape in zip(sized, shapes):
            if any(size < 0 for size in shape):
                self.where.fail(negative_output(rule.name, shape, in_shapes))

    def _empty_launch(self, in_shapes: tuple, out_shapes: Optional[tuple]) -> tuple:
        """Launch values for inputs where a size expression divided by zero: an empty launch
        when some input is empty (outputs still get their shapes), else a refusal."""
        if all(_numel(s) for s in in_shapes):
            self.where.fail(divides_by_zero("a launch size", in_shapes))
        shapes = ()
        if out_shapes is None:
            in_ranks = tuple(len(s) for s in in_shapes)
            rules = self.plan.outputs or ()
            exprs = [shape for rule, shape in zip(rules, self.plan.output_shapes(in_ranks)) if not rule.like_input]
            try:
                shapes = tuple(compile_int(shape)(in_shapes, ()) for shape in exprs)
            except ZeroDivisionError:
                self.where.fail(output_divides_by_zero(in_shapes))
        return (0, 1, 1, 1, 1, 1, 0, *(0,) * len(self.plan.extras), *shapes)

    def _meta_program(self, key: tuple) -> Callable[..., tuple]:
        n = len(self.plan.tensor_params)
        program = self.programs[key] = compile_int(self.plan.launch_dims(key[:n], key[n:]).all_exprs())
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

    def _refuse_tensors(self, tensors: list) -> None:
        self._refuse_devices(tensors)  # devices, then declared dtypes, explain themselves
        index, allowed = next((i, a) for i, a in self.tensor_rules if a is not None and tensors[i] is not None and tensors[i].dtype not in a)
        param, tensor = self.plan.tensor_params[index], tensors[index]
        slot = next(s for s in self.plan.arg_layout if s.kind == "tensor" and s.index == index)
        size = next(iter(allowed)).itemsize
        self.where.fail(
            f"argument {param.name!r} has dtype {tensor.dtype} ({tensor.dtype.itemsize}-byte elements) but kernel "
            f"{self.kernel_label!r} reads it through a pointer to {size}-byte elements "
            f"({describe_slot(self.plan, slot)}). Pass a tensor of a matching dtype or declare InputDecl(dtype=...).",
            TypeError,
        )

    def _refuse_overlap(self, index: int) -> None:
        self.where.fail(
            f"argument {self.plan.tensor_params[index].name!r} is written in place, but some of its elements share "
            "memory (an expanded or broadcast view); pass a tensor whose elements are distinct, e.g. .clone()"
        )

    def _refuse_devices(self, tensors: list) -> None:
        names = [p.name for p in self.plan.tensor_params]
        for name, tensor in zip(names, tensors):
            if isinstance(tensor, torch.Tensor) and not tensor.is_cuda:
                self.where.fail(f"argument {name!r} must be a CUDA tensor (got a tensor on {tensor.device})")
        check_tensors(self.where, self.plan, tuple(tensors))

    def _refuse_values(self, args: Any) -> None:
        """Name the scalar that does not fit its kernel parameter (``args`` indexed by position)."""
        for slot in self.plan.arg_layout:
            if slot.kind == "scalar":
                problem = scalar_problem(self.plan.params[slot.index].name, slot.ctype, args[slot.index])
                if problem is not None:
                    self.where.fail(problem)


def _split(k: Any) -> tuple[int, Optional[tuple]]:
    """A memo key as (device, template instantiation or None)."""
    return (k, None) if isinstance(k, int) else (k[0], k[1:])


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for size in shape:
        n *= size
    return n


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor on {value.device}, contiguous={value.is_contiguous()}"
    return type(value).__name__
