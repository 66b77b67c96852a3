"""Size expressions: integers computed from tensor sizes, written with Python operators.

``dim("x", -1) * 4`` or ``cdiv(numel("x"), 256 * 8)`` describe a kernel argument, a launch
dimension or a requirement once; the plan resolves names and axes per tuple of ranks, and every
interpreter (eager, fake, sympy, TensorRT) evaluates the result. Frozen dataclasses: specs built
from them compare and hash by value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

OPERATORS = ("+", "-", "*", "//", "cdiv", "min", "max")


class Size:
    """Base of size expressions; ``+ - * //`` with ints or sizes build larger ones."""

    def __add__(self, other: SizeLike) -> Size:
        return BinarySize("+", self, as_size(other))

    def __radd__(self, other: SizeLike) -> Size:
        return BinarySize("+", as_size(other), self)

    def __sub__(self, other: SizeLike) -> Size:
        return BinarySize("-", self, as_size(other))

    def __rsub__(self, other: SizeLike) -> Size:
        return BinarySize("-", as_size(other), self)

    def __mul__(self, other: SizeLike) -> Size:
        return BinarySize("*", self, as_size(other))

    def __rmul__(self, other: SizeLike) -> Size:
        return BinarySize("*", as_size(other), self)

    def __floordiv__(self, other: SizeLike) -> Size:
        return BinarySize("//", self, as_size(other))

    def __rfloordiv__(self, other: SizeLike) -> Size:
        return BinarySize("//", as_size(other), self)

    def __truediv__(self, other: object) -> Size:
        raise TypeError("kernelop: sizes are integers; use // (floor) or kernelop.cdiv (ceiling) instead of /")

    __rtruediv__ = __truediv__

    def __mod__(self, other: object) -> Size:
        raise TypeError("kernelop: sizes have no %; declare kernelop.Divisible(size, n) to require a multiple")

    __rmod__ = __mod__


@dataclass(frozen=True)
class AxisSize(Size):
    """Axis ``axis`` (negative counts from the end) of the tensor input or output ``name``."""

    name: str
    axis: int

    def __str__(self) -> str:
        return f"{self.name}.shape[{self.axis}]"


@dataclass(frozen=True)
class NumelSize(Size):
    name: str

    def __str__(self) -> str:
        return f"numel({self.name})"


@dataclass(frozen=True)
class ConstSize(Size):
    value: int

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class BinarySize(Size):
    op: str  # one of OPERATORS
    a: Size
    b: Size

    def __str__(self) -> str:
        if self.op in ("cdiv", "min", "max"):
            return f"{self.op}({self.a}, {self.b})"
        return f"({self.a} {self.op} {self.b})"


SizeLike = Union[Size, int]


def as_size(value: object) -> Size:
    """An int or a size expression as a size expression; anything else is refused."""
    if isinstance(value, Size):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return ConstSize(value)
    raise TypeError(f"kernelop: a size must be an int or a size expression such as kernelop.dim('x', 0) (got {value!r})")


def dim(name: str, axis: int) -> Size:
    """Axis ``axis`` of the tensor input or output ``name`` (negative counts from the end)."""
    return AxisSize(name, axis)


def numel(name: str) -> Size:
    """The number of elements of the tensor input or output ``name``."""
    return NumelSize(name)


def cdiv(a: SizeLike, b: SizeLike) -> Size:
    """Ceiling division, ``(a + b - 1) // b`` for positive ``b``."""
    return BinarySize("cdiv", as_size(a), as_size(b))


def minimum(a: SizeLike, b: SizeLike) -> Size:
    return BinarySize("min", as_size(a), as_size(b))


def maximum(a: SizeLike, b: SizeLike) -> Size:
    return BinarySize("max", as_size(a), as_size(b))
