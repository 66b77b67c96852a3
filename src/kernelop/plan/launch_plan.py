"""The launch plan: the single derivation of arguments, shapes, dtypes, requirements and geometry.

Everything rank-dependent (which axes a reduction drops, which axes an nd block tiles, what a
negative axis in ``dim("x", -1)`` means) is resolved per tuple of ranks into plain dimension
expressions and memoised, so the eager launch, the fake impl and the TensorRT lowering all read
the same expressions. ``build.build_plan`` makes a plan from a spec; ``binding.bind_kernel``
types its parameters from the compiled kernel.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch

from ..dsl.sizes import AxisSize, BinarySize, ConstSize, NumelSize, Size, SizeLike
from ..dsl.spec import Custom, Divisible, Elementwise, InRange, Launch, Reduction, TypeParam
from ..errors import Where
from .expr import INPUT, OUTPUT, Add, CeilDiv, Const, Dim, Expr, FloorDiv, Max, Min, Mul, Sub, product
from .template import TemplatePlan

SCHEMA_TYPES = {float: "float", int: "int", bool: "bool"}
_BINARY = {"+": Add, "-": Sub, "*": Mul, "//": FloorDiv, "cdiv": CeilDiv, "min": Min, "max": Max}


@dataclass(frozen=True)
class Param:
    """One argument of the op, in declaration order."""

    name: str
    position: int
    tensor_index: Optional[int]  # position among tensor inputs; None for scalars
    dtype: Union[torch.dtype, TypeParam, None] = None
    py_type: Optional[type] = None
    mutates: bool = False  # the kernel writes it in place
    optional: bool = False  # may be None: a null pointer

    @property
    def is_tensor(self) -> bool:
        return self.tensor_index is not None

    @property
    def schema_type(self) -> str:
        return "Tensor" if self.is_tensor else SCHEMA_TYPES[self.py_type]  # type: ignore[index]

    @property
    def allowed_dtypes(self) -> Optional[frozenset[torch.dtype]]:
        """The dtypes the declaration admits; None: any (then the kernel's pointer type decides)."""
        if isinstance(self.dtype, TypeParam):
            return frozenset(self.dtype.dtypes)
        return None if self.dtype is None else frozenset({self.dtype})


@dataclass(frozen=True)
class OutputRule:
    """An output's shape (an input's, reduced, or given ``sizes``) and the input whose dtype it takes."""

    name: str
    source: Optional[int]  # tensor input whose shape it derives from; None with ``sizes``
    reduce_dims: Optional[tuple[int, ...]]  # None: same shape
    keepdim: bool
    dtype_source: int
    sizes: Optional[tuple[Size, ...]] = None
    init: Union[int, float, None] = None  # a fill value before the launch
    copy_of: Optional[int] = None  # tensor input it starts as a copy of

    @property
    def like_input(self) -> bool:
        """Shaped and typed like an input: ``empty_like`` is PyTorch's cheapest allocation."""
        return self.sizes is None and self.reduce_dims is None and self.dtype_source == self.source


@dataclass(frozen=True)
class ExtraRule:
    """An integer kernel argument: ``label`` names it in messages (a SizeArg's name, ``numel(x)``)."""

    label: str
    value: Size


@dataclass(frozen=True)
class ArgSlot:
    """One kernel parameter: ``kind`` is tensor, scalar, extra or output; ``ctype`` its C type.

    ``index`` counts within the kind (tensor inputs, op arguments for scalars, extras, outputs).
    ``pointee_size`` is the element size of a pointer parameter as the kernel's source declares
    it (``const float*``: 4), None where it could not be read.
    """

    kind: str
    index: int
    ctype: str
    pointee_size: Optional[int] = None


@dataclass(frozen=True)
class Check:
    """A requirement for fixed ranks: ``value`` must be divisible by, >=, <= or equal to ``other``."""

    rule: str  # "divisible", "min", "max" or "equal"
    value: Expr
    other: Union[int, Expr]
    where: str  # "requires[i]"
    text: str  # the size as written, e.g. "x.shape[-1]"
    other_text: str = ""
    argument: Optional[tuple[str, int]] = None  # (input name, axis as written) when value is one axis


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
    geometry: Any  # Elementwise | Reduction | Launch | Custom | None
    arg_layout: tuple[ArgSlot, ...]  # in the kernel's parameter order
    reduced_input: Optional[int] = None  # Reduction only: the tensor index of geometry.input_idx
    requires: tuple[Any, ...] = ()  # the spec's Divisible / InRange / Equal
    seed_order: bool = True  # arg_layout is (inputs..., extras..., outputs...)
    template: Optional[TemplatePlan] = None
    _memo: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    @property
    def tensor_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.is_tensor)

    def dtype_problem(self, dtypes: tuple[Optional[torch.dtype], ...]) -> Optional[str]:
        """What is wrong with these tensor input dtypes (None for an absent optional input), or
        None: each declared dtype, and one dtype per ``TypeParam``, among its dtypes."""
        typed: dict[TypeParam, tuple[str, torch.dtype]] = {}
        for param, dtype in zip(self.tensor_params, dtypes):
            if dtype is None:
                continue
            allowed = param.allowed_dtypes
            if isinstance(param.dtype, TypeParam):
                if dtype not in allowed:  # type: ignore[operator]
                    names = ", ".join(str(d).replace("torch.", "") for d in param.dtype.dtypes)
                    return (f"argument {param.name!r} has dtype {dtype}; the kernel's template parameter "
                            f"{param.dtype.name} is instantiated for {names}")
                name, first = typed.setdefault(param.dtype, (param.name, dtype))
                if first != dtype:
                    return (f"argument {param.name!r} has dtype {dtype} but {name!r} has {first}; both are of "
                            f"template type {param.dtype.name}, so they must have one dtype")
            elif allowed is not None and dtype not in allowed:
                return f"argument {param.name!r} must have dtype {param.dtype} (got {dtype})"
        return None

    @property
    def first_required(self) -> int:
        """The first tensor input that is never None: the call's device."""
        return next(i for i, p in enumerate(self.tensor_params) if not p.optional)

    @property
    def mutated(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.mutates)

    @property
    def declares_inputs(self) -> bool:
        """False for a spec without inputs (its eager path is ``eager_fn``): the plan has no params."""
        return bool(self.params)

    @property
    def uses_dynamic_shared(self) -> bool:
        """True when a launch may ask for dynamic shared memory (then the kernel is opted in to
        all the device has: the 48 KB default limit counts static and dynamic together)."""
        shared = getattr(self.geometry, "shared_mem_bytes", 0)
        return not (isinstance(shared, ConstSize) and shared.value == 0 or shared == 0)

    def output_shapes(self, in_ranks: tuple[int, ...]) -> tuple[tuple[Expr, ...], ...]:
        """Each declared output's shape as expressions over input dimensions."""
        key = ("shapes", in_ranks)
        if key not in self._memo:
            assert self.outputs is not None, "output shapes come from meta_fn"
            self._memo[key] = tuple(self._output_shape(rule, in_ranks) for rule in self.outputs)
        return self._memo[key]

    def launch_dims(self, in_ranks: tuple[int, ...], out_ranks: tuple[int, ...]) -> LaunchDims:
        """Launch geometry and extras; they may reference output dimensions."""
        key = ("launch", in_ranks, out_ranks)
        if key not in self._memo:
            self._memo[key] = self._launch_dims(in_ranks, out_ranks)
        return self._memo[key]

    def checks(self, in_ranks: tuple[int, ...]) -> tuple[Check, ...]:
        """The requirements as expressions over input dimensions."""
        key = ("checks", in_ranks)
        if key not in self._memo:
            self._memo[key] = tuple(c for i, rule in enumerate(self.requires) for c in self._checks(i, rule, in_ranks))
        return self._memo[key]

    # -- derivations -------------------------------------------------------------------------

    def _where(self) -> Where:
        return Where("call", self.op_name)

    def _tensor_name(self, index: int) -> str:
        return self.tensor_params[index].name

    def _normalize(self, axis: int, rank: int, what: str) -> int:
        if not -max(rank, 1) <= axis < max(rank, 1):
            self._where().fail(axis_out_of_range(what, axis, rank))
        return axis % max(rank, 1)

    def _reduced_axes(self, dims: tuple[int, ...], rank: int, what: str) -> set[int]:
        """``dims`` as non-negative axes of a tensor of ``rank``, each named once."""
        reduced = {self._normalize(d, rank, what) for d in dims}
        if len(reduced) != len(dims):
            self._where().fail(same_axis_twice(what, dims, rank))
        return reduced

    def _lower(self, size: SizeLike, in_ranks: tuple[int, ...], out_ranks: tuple[int, ...], what: str) -> Expr:
        """A size expression (or int) of the spec as a dimension expression for these ranks."""
        if isinstance(size, int):
            return Const(size)
        if isinstance(size, ConstSize):
            return Const(size.value)
        if isinstance(size, BinarySize):
            return _BINARY[size.op](self._lower(size.a, in_ranks, out_ranks, what), self._lower(size.b, in_ranks, out_ranks, what))
        side, index = self.resolve_name(size.name)  # type: ignore[union-attr]
        rank = (in_ranks if side == INPUT else out_ranks)[index]
        if isinstance(size, NumelSize):
            return product([Dim(side, index, a) for a in range(rank)])
        assert isinstance(size, AxisSize)
        if rank == 0:
            self._where().fail(axis_out_of_range(f"{what} {size.name!r}", size.axis, 0))
        return Dim(side, index, self._normalize(size.axis, rank, f"{what} {size.name!r}"))

    def resolve_name(self, name: str) -> tuple[str, int]:
        for index, param in enumerate(self.tensor_params):
            if param.name == name:
                return INPUT, index
        for index, rule in enumerate(self.outputs or ()):
            if rule.name == name:
                return OUTPUT, index
        raise AssertionError(f"validation admits only tensor and output names (got {name!r})")

    def _output_shape(self, rule: OutputRule, in_ranks: tuple[int, ...]) -> tuple[Expr, ...]:
        if rule.sizes is not None:
            return tuple(self._lower(s, in_ranks, (), f"output {rule.name!r} shape:") for s in rule.sizes)
        assert rule.source is not None
        rank = in_ranks[rule.source]
        dims = [Dim(INPUT, rule.source, a) for a in range(rank)]
        if rule.reduce_dims is None:
            return tuple(dims)
        what = self.reduce_dims_what(rule)
        reduced = self._reduced_axes(rule.reduce_dims, rank, what)
        if rule.keepdim:
            return tuple(Const(1) if a in reduced else d for a, d in enumerate(dims))
        return tuple(d for a, d in enumerate(dims) if a not in reduced)

    def _launch_dims(self, in_ranks: tuple[int, ...], out_ranks: tuple[int, ...]) -> LaunchDims:
        extras = tuple(self._lower(rule.value, in_ranks, out_ranks, f"extra {rule.label}:") for rule in self.extras)
        geometry = self.geometry
        if isinstance(geometry, Elementwise):
            grid, block = self._elementwise(geometry, in_ranks, out_ranks)
            shared: Expr = Const(geometry.shared_mem_bytes)
        elif isinstance(geometry, Reduction):
            grid, block = self._reduction(geometry, in_ranks)
            shared = Const(geometry.shared_mem_bytes)
        elif isinstance(geometry, Launch):
            lower = lambda s, what: self._lower(s, in_ranks, out_ranks, what)  # noqa: E731
            grid = _three(tuple(lower(s, f"geometry.grid[{i}]") for i, s in enumerate(geometry.grid)))
            block = _three(tuple(lower(s, f"geometry.block[{i}]") for i, s in enumerate(geometry.block)))
            shared = lower(geometry.shared_mem_bytes, "geometry.shared_mem_bytes")
        elif isinstance(geometry, Custom):
            self._where().fail(
                "geometry is Custom, which only describes the TensorRT launch; "
                "pass eager_fn= to run this op in PyTorch eager",
                NotImplementedError,
            )
        else:
            self._where().fail("has no geometry; its eager path is the eager_fn override", NotImplementedError)
        return LaunchDims(grid, block, shared, extras)

    @property
    def elementwise_target(self) -> tuple[str, int]:
        """What ``Elementwise`` tiles: output 0, else (an op writing only in place) the first
        mutated input."""
        if self.num_outputs:
            return OUTPUT, 0
        return INPUT, self.mutated[0].tensor_index  # type: ignore[return-value]

    def reduce_dims_what(self, rule: OutputRule) -> str:
        """How messages about an output's ``ReduceDims`` begin."""
        return f"output {rule.name!r} ReduceDims of input {self._tensor_name(rule.source)!r}: dims"  # type: ignore[arg-type]

    def reduction_what(self) -> str:
        """How messages about a ``Reduction``'s axes begin."""
        return f"geometry Reduction over input {self._tensor_name(self.reduced_input)!r}: reduce_dims"  # type: ignore[arg-type]

    def nd_rank_problem(self, geometry: Elementwise, rank: object) -> str:
        """An ``nd`` Elementwise over a target of lower rank than its block (``rank`` may be a placeholder)."""
        tiled = len(geometry.block)
        target = "output 0" if self.num_outputs else repr(self.mutated[0].name)
        return (f"geometry Elementwise(layout='nd', block={geometry.block}) tiles the last {tiled} axes "
                f"of {target}, which has rank {rank}. Use layout='flat' or a block of <= {rank} dims.")

    def _elementwise(self, geometry: Elementwise, in_ranks: tuple[int, ...], out_ranks: tuple[int, ...]):
        block = tuple(Const(b) for b in geometry.block) + (Const(1),) * (3 - len(geometry.block))
        side, index = self.elementwise_target
        rank = (out_ranks if side == OUTPUT else in_ranks)[index]
        dims = [Dim(side, index, a) for a in range(rank)]
        if geometry.layout == "flat":
            return (CeilDiv(product(dims), block[0]), Const(1), Const(1)), block
        tiled = len(geometry.block)
        if rank < tiled:
            self._where().fail(self.nd_rank_problem(geometry, rank))
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
        what = self.reduction_what()
        reduced = self._reduced_axes(geometry.reduce_dims, rank, what)
        kept = product([Dim(INPUT, source, a) for a in range(rank) if a not in reduced])
        return (kept, Const(1), Const(1)), (Const(geometry.block_size), Const(1), Const(1))

    def _checks(self, i: int, rule: Any, in_ranks: tuple[int, ...]) -> list[Check]:
        checks = []
        for kind, size, other, where in requirement_parts(i, rule):
            lower = lambda s: self._lower(s, in_ranks, (), f"{where}:")  # noqa: E731
            value = lower(size)  # before the other side: rank refusals come in this order
            other_text = "" if isinstance(other, int) else str(other)
            checks.append(requirement_check(kind, size, value, other if isinstance(other, int) else lower(other), where, other_text))
        return checks


def requirement_parts(i: int, rule: Any) -> list[tuple[str, Size, SizeLike, str]]:
    """Requirement ``i`` as (rule, size, bound or other size, where) per comparison: an ``InRange``
    with both bounds is two."""
    where = f"requires[{i}]"
    if isinstance(rule, Divisible):
        return [("divisible", rule.value, rule.by, where)]
    if isinstance(rule, InRange):
        return [(kind, rule.value, bound, where) for kind, bound in (("min", rule.min), ("max", rule.max)) if bound is not None]
    return [("equal", rule.a, rule.b, where)]


def axis_out_of_range(what: str, axis: int, rank: object) -> str:
    return f"{what} axis {axis} is out of range for a tensor of rank {rank}"


def same_axis_twice(what: str, dims: tuple[int, ...], rank: object) -> str:
    return f"{what} {tuple(dims)} name the same axis twice at rank {rank}"


def _three(exprs: tuple[Expr, ...]) -> tuple[Expr, Expr, Expr]:
    return exprs + (Const(1),) * (3 - len(exprs))  # type: ignore[return-value]


def requirement_check(rule: str, size: Size, value: Expr, other: Union[int, Expr], where: str, other_text: str = "") -> Check:
    argument = (size.name, size.axis) if isinstance(size, AxisSize) else None
    return Check(rule, value, other, where, str(size), other_text, argument)
