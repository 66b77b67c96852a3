"""The declarative kernel description: frozen dataclasses, no logic.

Field names, order and defaults follow ``torch_tensorrt.kernels`` so code written for it runs
unchanged with ``import kernelop as ttk``. Fields marked *additive* are kernelop's own and
optional.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Callable, List, Literal, Optional, Sequence, Tuple, Union

import torch


@dataclass(frozen=True)
class InputDecl:
    """Tensor kernel input; the kernel receives a ``T*`` at its position."""

    name: str
    dtype: Optional[torch.dtype] = None


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
    name: str
    shape: ShapeRel
    dtype_from: Optional[str] = None


@dataclass(frozen=True)
class Numel:
    """Extra ``int`` kernel argument: the number of elements of a tensor input."""

    input_name: str


@dataclass(frozen=True)
class DimSize:
    """Extra ``int`` kernel argument: one dimension (negative counts from the end) of a tensor input."""

    input_name: str
    dim: int


Extra = Union[Numel, DimSize]


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


Geometry = Union[Elementwise, Reduction, Custom]


@dataclass(frozen=True)
class KernelSpec:
    """Declarative description of a CUDA kernel.

    The ``__global__`` function takes ``(inputs..., extras..., outputs...)``: tensor inputs as
    pointers and scalar inputs by value in declaration order, then extras, then output pointers.
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
