"""KernelSpec -> LaunchPlan: the single derivation of arguments, shapes, dtypes and geometry.

Everything rank-dependent (which axes a reduction drops, which axes an nd block tiles) is
resolved per tuple of ranks into plain dimension expressions and memoised, so the eager launch,
the fake impl and the TensorRT lowering all read the same expressions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import torch

from ..dsl.spec import Custom, DimSize, Elementwise, InputDecl, KernelSpec, ReduceDims, Reduction, ScalarInput
from ..dsl.validate import resolve_tensor
from ..errors import Where
from .expr import INPUT, OUTPUT, CeilDiv, Const, Dim, Expr, product

SCALAR_CTYPES = {float: "float", int: "int", bool: "bool"}
SCHEMA_TYPES = {float: "float", int: "int", bool: "bool"}
CTYPE_SIZES = {"ptr": 8, "float": 4, "int": 4, "bool": 1}


@dataclass(frozen=True)
class Param:
    """One argument of the op, in declaration order."""

    name: str
    position: int
    tensor_index: Optional[int]  # position among tensor inputs; None for scalars
    dtype: Optional[torch.dtype] = None
    py_type: Optional[type] = None

    @property
    def is_tensor(self) -> bool:
        return self.tensor_index is not None

    @property
    def schema_type(self) -> str:
        return "Tensor" if self.is_tensor else SCHEMA_TYPES[self.py_type]  # type: ignore[index]


@dataclass(frozen=True)
class OutputRule:
    name: str
    source: int  # tensor input whose shape it derives from
    reduce_dims: Optional[tuple[int, ...]]  # None: same shape
    keepdim: bool
    dtype_source: int  # tensor input whose dtype it takes


@dataclass(frozen=True)
class ExtraRule:
    source: int  # tensor input
    dim: Optional[int]  # None: numel

    def describe(self, params: Sequence[Param]) -> str:
        name = next(p.name for p in params if p.tensor_index == self.source)
        return f"numel({name})" if self.dim is None else f"{name}.shape[{self.dim}]"


@dataclass(frozen=True)
class ArgSlot:
    """One kernel parameter: ``kind`` is tensor, scalar, extra or output; ``ctype`` its C type.

    ``pointee_size`` is the element size of a pointer parameter as the kernel's source declares
    it (``const float*``: 4), None where it could not be read.
    """

    kind: str
    index: int
    ctype: str
    pointee_size: Optional[int] = None


@dataclass(frozen=True)
class LaunchDims:
    """Grid, block, dynamic shared memory and extras of one launch, for fixed ranks: as the
    plan's expressions, or as their values under one algebra (``trt.lowering.lower_launch``)."""

    grid: tuple[Any, Any, Any]
    block: tuple[Any, Any, Any]
    shared_mem: Any
    extras: tuple[Any, ...]

    def all_exprs(self) -> tuple[Expr, ...]:
        return (*self.grid, *self.block, self.shared_mem, *self.extras)


@dataclass(frozen=True)
class LaunchPlan:
    op_name: str
    params: tuple[Param, ...]
    outputs: Optional[tuple[OutputRule, ...]]  # None: shapes come from meta_fn
    num_outputs: int
    extras: tuple[ExtraRule, ...]
    geometry: Any  # Elementwise | Reduction | Custom | None
    arg_layout: tuple[ArgSlot, ...]
    reduced_input: Optional[int] = None  # Reduction only: the tensor index of geometry.input_idx
    _memo: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    @property
    def tensor_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.is_tensor)

    @property
    def declares_inputs(self) -> bool:
        """False for a spec without inputs (its eager path is ``eager_fn``): the plan has no params."""
        return bool(self.params)

    def output_shapes(self, in_ranks: tuple[int, ...]) -> tuple[tuple[Expr, ...], ...]:
        """Each declared output's shape as expressions over input dimensions."""
        key = ("shapes", in_ranks)
        if key not in self._memo:
            assert self.outputs is not None, "output shapes come from meta_fn"
            self._memo[key] = tuple(self._output_shape(rule, in_ranks) for rule in self.outputs)
        return self._memo[key]

    def launch_dims(self, in_ranks: tuple[int, ...], out_ranks: tuple[int, ...]) -> LaunchDims:
        """Launch geometry and extras; grid dims may reference output dimensions."""
        key = ("launch", in_ranks, out_ranks)
        if key not in self._memo:
            self._memo[key] = self._launch_dims(in_ranks, out_ranks)
        return self._memo[key]

    # -- derivations -------------------------------------------------------------------------

    def _where(self) -> Where:
        return Where("call", self.op_name)

    def _tensor_name(self, index: int) -> str:
        return self.tensor_params[index].name

    def _normalize(self, axis: int, rank: int, what: str) -> int:
        if not -max(rank, 1) <= axis < max(rank, 1):
            self._where().fail(f"{what} axis {axis} is out of range for a tensor of rank {rank}")
        return axis % max(rank, 1)

    def _reduced_axes(self, dims: tuple[int, ...], rank: int, what: str) -> set[int]:
        """``dims`` as non-negative axes of a tensor of ``rank``, each named once."""
        reduced = {self._normalize(d, rank, what) for d in dims}
        if len(reduced) != len(dims):
            self._where().fail(f"{what} {tuple(dims)} name the same axis twice at rank {rank}")
        return reduced

    def _output_shape(self, rule: OutputRule, in_ranks: tuple[int, ...]) -> tuple[Expr, ...]:
        rank = in_ranks[rule.source]
        dims = [Dim(INPUT, rule.source, a) for a in range(rank)]
        if rule.reduce_dims is None:
            return tuple(dims)
        what = f"output {rule.name!r} ReduceDims of input {self._tensor_name(rule.source)!r}: dims"
        reduced = self._reduced_axes(rule.reduce_dims, rank, what)
        if rule.keepdim:
            return tuple(Const(1) if a in reduced else d for a, d in enumerate(dims))
        return tuple(d for a, d in enumerate(dims) if a not in reduced)

    def _extra(self, rule: ExtraRule, in_ranks: tuple[int, ...]) -> Expr:
        rank = in_ranks[rule.source]
        if rule.dim is None:
            return product([Dim(INPUT, rule.source, a) for a in range(rank)])
        what = f"extra DimSize({self._tensor_name(rule.source)!r}, {rule.dim}):"
        return Dim(INPUT, rule.source, self._normalize(rule.dim, rank, what))

    def _launch_dims(self, in_ranks: tuple[int, ...], out_ranks: tuple[int, ...]) -> LaunchDims:
        extras = tuple(self._extra(rule, in_ranks) for rule in self.extras)
        geometry = self.geometry
        if isinstance(geometry, Elementwise):
            grid, block = self._elementwise(geometry, out_ranks)
        elif isinstance(geometry, Reduction):
            grid, block = self._reduction(geometry, in_ranks)
        elif isinstance(geometry, Custom):
            self._where().fail(
                "geometry is Custom, which only describes the TensorRT launch; "
                "pass eager_fn= to run this op in PyTorch eager",
                NotImplementedError,
            )
        else:
            self._where().fail("has no geometry; its eager path is the eager_fn override", NotImplementedError)
        return LaunchDims(grid, block, Const(geometry.shared_mem_bytes), extras)

    def _elementwise(self, geometry: Elementwise, out_ranks: tuple[int, ...]):
        block = tuple(Const(b) for b in geometry.block) + (Const(1),) * (3 - len(geometry.block))
        rank = out_ranks[0]
        dims = [Dim(OUTPUT, 0, a) for a in range(rank)]
        if geometry.layout == "flat":
            return (CeilDiv(product(dims), block[0]), Const(1), Const(1)), block
        tiled = len(geometry.block)
        if rank < tiled:
            self._where().fail(
                f"geometry Elementwise(layout='nd', block={geometry.block}) tiles the last {tiled} axes "
                f"of the output, but output 0 has rank {rank}. Use layout='flat' or a block of <= {rank} dims."
            )
        tiles = [CeilDiv(dims[rank - 1 - i], block[i]) for i in range(tiled)]
        leading = product(dims[: rank - tiled])
        grid_x = tiles[0]
        grid_y = tiles[1] if tiled >= 2 else Const(1)
        grid_z = product([tiles[2], leading]) if tiled == 3 else leading
        return (grid_x, grid_y, grid_z), block

    def _reduction(self, geometry: Reduction, in_ranks: tuple[int, ...]):
        source = self.reduced_input
        assert source is not None, "build_plan resolves a Reduction's input"
        rank = in_ranks[source]
        what = f"geometry Reduction over input {self._tensor_name(source)!r}: reduce_dims"
        reduced = self._reduced_axes(geometry.reduce_dims, rank, what)
        kept = product([Dim(INPUT, source, a) for a in range(rank) if a not in reduced])
        return (kept, Const(1), Const(1)), (Const(geometry.block_size), Const(1), Const(1))


def build_plan(
    op_name: str,
    spec: KernelSpec,
    num_outputs: int,
    pointee_sizes: Optional[Sequence[Optional[int]]] = None,
) -> LaunchPlan:
    """Derive the plan from an already validated spec.

    ``pointee_sizes`` gives, per kernel parameter, the element size its source declares for a
    pointer (``compiler.signature.pointer_element_sizes``); a list of another length is ignored.
    """
    where = Where("cuda_kernel_op", op_name)
    params = params_of(spec)
    outputs = None
    if spec.outputs is not None:
        outputs = tuple(_output_rule(where, spec, i, out) for i, out in enumerate(spec.outputs))
        num_outputs = len(outputs)
    extras = tuple(
        ExtraRule(
            source=resolve_tensor(where, spec, f"extras[{i}]", e.input_name),
            dim=e.dim if isinstance(e, DimSize) else None,
        )
        for i, e in enumerate(spec.extras)
    )
    slots = (
        [("tensor", p.tensor_index, "ptr") if p.is_tensor else ("scalar", p.position, SCALAR_CTYPES[p.py_type]) for p in params]  # type: ignore[index]
        + [("extra", i, "int") for i in range(len(extras))]
        + [("output", i, "ptr") for i in range(num_outputs)]
    )
    if pointee_sizes is None or len(pointee_sizes) != len(slots):
        pointee_sizes = [None] * len(slots)
    layout = tuple(ArgSlot(kind, index, ctype, size) for (kind, index, ctype), size in zip(slots, pointee_sizes))  # type: ignore[arg-type]
    reduced_input = None
    if isinstance(spec.geometry, Reduction):
        reduced_input = resolve_tensor(where, spec, "geometry.input_idx", spec.geometry.input_idx)
    return LaunchPlan(op_name, params, outputs, num_outputs, extras, spec.geometry, layout, reduced_input)


def params_of(spec: KernelSpec) -> tuple[Param, ...]:
    """The op's parameters in declaration order (what the schema and the kernel layout list)."""
    params = []
    tensor_index = 0
    for position, decl in enumerate(spec.inputs or ()):
        if isinstance(decl, InputDecl):
            params.append(Param(decl.name, position, tensor_index, dtype=decl.dtype))
            tensor_index += 1
        else:
            assert isinstance(decl, ScalarInput)
            params.append(Param(decl.name, position, None, py_type=decl.py_type))
    return tuple(params)


def _output_rule(where: Where, spec: KernelSpec, i: int, out: Any) -> OutputRule:
    source = resolve_tensor(where, spec, f"outputs[{i}].shape.input_idx", out.shape.input_idx)
    dtype_source = 0 if out.dtype_from is None else resolve_tensor(where, spec, f"outputs[{i}].dtype_from", out.dtype_from)
    if isinstance(out.shape, ReduceDims):
        return OutputRule(out.name, source, tuple(out.shape.dims), out.shape.keepdim, dtype_source)
    return OutputRule(out.name, source, None, False, dtype_source)
