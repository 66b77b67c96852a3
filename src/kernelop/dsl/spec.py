"""The declarative kernel description: frozen dataclasses, no logic.

Field names, order and defaults follow ``torch_tensorrt.kernels`` so code written for it runs
unchanged with ``import kernelop as ttk``. Fields marked *additive* are kernelop's own and
optional.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields, is_dataclass, replace
from types import MappingProxyType
from typing import Any, Callable, List, Literal, Mapping, Optional, Sequence, Tuple, Union

import torch

from .sizes import Size, SizeLike


DEFAULT_TYPE_PARAM_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


@dataclass(frozen=True)
class TypeParam:
    """A template type parameter of the kernel, chosen per call from input dtypes (additive).

    Inputs declared ``InputDecl(name, dtype=T)`` share it: they must have one dtype, one of
    ``dtypes``, and the kernel is instantiated for that dtype's C++ type (``float``, ``__half``,
    ``__nv_bfloat16``, ``double``, ``int``, ...) on first use.
    """

    name: str = "T"
    dtypes: Tuple[torch.dtype, ...] = DEFAULT_TYPE_PARAM_DTYPES


@dataclass(frozen=True)
class InputDecl:
    """Tensor kernel input; the kernel receives a ``T*`` at its position.

    ``dtype`` may be a ``TypeParam`` (additive). ``mutates`` (additive): the kernel writes the
    tensor in place, so the op is registered as mutating it (``Tensor(a!)``). ``optional``
    (additive): the argument may be ``None``, passed to the kernel as a null pointer.
    """

    name: str
    dtype: Union[torch.dtype, TypeParam, None] = None
    mutates: bool = False
    optional: bool = False


@dataclass(frozen=True)
class ScalarInput:
    """Scalar kernel input forwarded by value: ``float`` as C ``float``, ``int`` as C ``int``,
    ``bool`` as C ``bool``."""

    name: str
    py_type: type


@dataclass(frozen=True)
class SameAs:
    """Output has the shape of a tensor input (position among tensor inputs, or its name)."""

    input_idx: Union[int, str] = 0


@dataclass(frozen=True)
class ReduceDims:
    """Output is the referenced tensor input with ``dims`` removed (or kept as size 1)."""

    input_idx: Union[int, str]
    dims: Tuple[int, ...]
    keepdim: bool = False


ShapeRel = Union[SameAs, ReduceDims]


@dataclass(frozen=True)
class OutputDecl:
    """An output the kernel writes. ``init`` (additive) sets it before the launch, for kernels
    that accumulate: a number fills it (``init=0``: zeros), an input's name copies that input."""

    name: str
    shape: ShapeRel
    dtype_from: Optional[str] = None
    init: Union[int, float, str, None] = None


@dataclass(frozen=True)
class Numel:
    """Extra ``int`` kernel argument: the number of elements of a tensor input."""

    input_name: str


@dataclass(frozen=True, init=False)
class DimSize:
    """Extra ``int`` kernel argument: one axis (negative counts from the end) of a tensor input.

    ``axis`` is ``torch_tensorrt.kernels``' keyword; ``dim=`` is accepted as well.
    """

    input_name: str
    axis: int

    def __init__(self, input_name: str, axis: Any = None, *, dim: Any = None) -> None:
        if (axis is None) == (dim is None):
            raise TypeError(f"kernelop.DimSize({input_name!r}): give the axis once, as DimSize(name, axis) or DimSize(name, dim=...)")
        object.__setattr__(self, "input_name", input_name)
        object.__setattr__(self, "axis", dim if axis is None else axis)

    @property
    def dim(self) -> int:
        return self.axis


@dataclass(frozen=True)
class SizeArg:
    """Integer kernel argument ``name`` computed from sizes (additive), e.g. ``cdiv(dim("x", 0), 64)``.

    Its C type is the kernel's own parameter (``int``, ``unsigned``, ``long long``, ``size_t``,
    ...); a value that does not fit it is refused before launch.
    """

    name: str
    value: SizeLike


Extra = Union[Numel, DimSize, SizeArg]


@dataclass(frozen=True)
class Elementwise:
    """One thread per output element.

    ``flat``: ``grid = (cdiv(numel(out), bx),)``. ``nd``: the trailing ``len(block)`` output axes
    are tiled by the block (``block[0]`` on the innermost axis); leading axes fold into grid z.
    ``shared_mem_bytes`` (additive) is the dynamic shared memory per block.
    """

    block: Tuple[int, ...] = (256,)
    layout: Literal["flat", "nd"] = "flat"
    shared_mem_bytes: int = 0


@dataclass(frozen=True)
class Reduction:
    """One block of ``block_size`` threads per kept element of a tensor input.

    ``grid = (prod of the input's axes not in reduce_dims,)``. ``input_idx`` (additive) picks
    the reduced tensor input; ``shared_mem_bytes`` (additive) is dynamic shared memory per block.
    """

    reduce_dims: Tuple[int, ...]
    block_size: int = 256
    input_idx: Union[int, str] = 0
    shared_mem_bytes: int = 0


@dataclass(frozen=True)
class Custom:
    """Geometry computed by a user function: the TensorRT AOT launch ``(inputs, outputs, tactic)``.

    It has no eager meaning; pass ``eager_fn=`` to run such a kernel in PyTorch eager.
    """

    fn: Callable[..., Any]


@dataclass(frozen=True)
class Launch:
    """Grid, block and dynamic shared memory as sizes (additive): any launch a kernel expects.

    ``grid`` and ``block`` have 1 to 3 entries (x first), each an int or a size expression over
    the sizes of inputs and outputs; above 48 KB of ``shared_mem_bytes`` the opt-in is set.
    """

    grid: Tuple[SizeLike, ...]
    block: Tuple[SizeLike, ...]
    shared_mem_bytes: SizeLike = 0


Geometry = Union[Elementwise, Reduction, Launch, Custom]


@dataclass(frozen=True)
class Divisible:
    """Requirement (additive): ``value`` is a multiple of ``by``."""

    value: Size
    by: int


@dataclass(frozen=True)
class InRange:
    """Requirement (additive): ``min <= value <= max`` (either bound may be None)."""

    value: Size
    min: Optional[int] = None
    max: Optional[int] = None


@dataclass(frozen=True)
class Equal:
    """Requirement (additive): two sizes are equal, e.g. the inner dimensions of a matmul."""

    a: Size
    b: Size


Requirement = Union[Divisible, InRange, Equal]


@dataclass
class KernelSpec:
    """Declarative description of a CUDA kernel.

    Mutable, as ``torch_tensorrt.kernels``' is: fields may be assigned after construction.
    Registration works from a snapshot (``snapshot``), so later changes do not reach a
    registered op.

    The ``__global__`` function takes ``(inputs..., extras..., outputs...)``: tensor inputs as
    pointers and scalar inputs by value in declaration order, then extras, then output pointers.
    ``param_order`` (additive) gives the kernel's own order instead, naming every input, output
    and ``SizeArg`` once. ``requires`` (additive) lists the sizes a call must satisfy.
    ``defines`` (``-DNAME=value``; None for a bare ``-DNAME``) and ``options`` (more NVRTC
    options) are additive; so is ``host_shims``: kernelop's stand-ins for ``<stdio.h>``,
    ``<math.h>``, ``<cstdint>`` & co. and the macros ``INFINITY``, ``NAN``, ``M_PI``, ``uint``,
    which NVRTC lacks. ``template_args`` (additive) instantiate a kernel template named
    ``kernel_name``: ``TypeParam``s (chosen per call from the inputs' dtypes), ints, bools, or C++
    text; each instantiation is compiled on first use.
    """

    kernel_source: str
    kernel_name: str
    inputs: Optional[Sequence[Union[InputDecl, ScalarInput]]] = None
    outputs: Optional[Sequence[OutputDecl]] = None
    extras: Sequence[Extra] = field(default_factory=list)
    geometry: Optional[Geometry] = None
    include_paths: Optional[List[str]] = None
    compile_std: str = "c++17"
    arch_override: Optional[str] = None
    param_order: Optional[Sequence[str]] = None
    requires: Sequence[Requirement] = ()
    defines: Optional[Mapping[str, Union[str, int, None]]] = None
    options: Sequence[str] = ()
    host_shims: bool = True
    template_args: Optional[Sequence[Union[TypeParam, int, bool, str]]] = None


def snapshot(spec: KernelSpec) -> KernelSpec:
    """A copy of ``spec`` in which every list, at any depth (``Launch.grid``, ``ReduceDims.dims``),
    is a tuple and every dict read-only, so that neither the user's later assignments nor in-place
    edits of their lists reach kernelop."""
    return KernelSpec(**{f.name: _frozen(getattr(spec, f.name)) for f in fields(spec)})


def _frozen(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if is_dataclass(value) and not isinstance(value, (type, Size)):
        changed = {f.name: _frozen(getattr(value, f.name)) for f in fields(value) if f.init}
        return replace(value, **changed)
    return value


class _FallbackConverterPriority(enum.Enum):
    """Mirror of Torch-TensorRT's ``ConverterPriority`` when Torch-TensorRT is absent."""

    STANDARD = enum.auto()
    HIGH = enum.auto()


def _converter_priority() -> type:
    try:
        from torch_tensorrt.dynamo.conversion._ConverterRegistry import ConverterPriority
    except Exception:  # Torch-TensorRT absent or broken: keep the PyTorch side usable
        return _FallbackConverterPriority
    return ConverterPriority


ConverterPriority = _converter_priority()
