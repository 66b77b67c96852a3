"""Dimension expressions and the algebras that interpret them.

A launch plan stores every size as a small expression tree over tensor dimensions. Each consumer
(eager launch, fake impl, TensorRT AOT, tests) interprets the same tree with its own algebra, so
no size is ever derived twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Generic, Protocol, Sequence, TypeVar, Union

import torch

V = TypeVar("V")

INPUT = "in"
OUTPUT = "out"


@dataclass(frozen=True)
class Const:
    value: int

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True)
class Dim:
    """Axis ``axis`` (non-negative) of tensor ``index`` on side ``side`` (inputs or outputs)."""

    side: str
    index: int
    axis: int

    def __str__(self) -> str:
        return f"{self.side}{self.index}.shape[{self.axis}]"


@dataclass(frozen=True)
class _Binary:
    a: "Expr"
    b: "Expr"
    text = ""  # how the node prints, with {a} and {b}

    def __str__(self) -> str:
        return self.text.format(a=self.a, b=self.b)


class Add(_Binary):
    text = "({a} + {b})"


class Sub(_Binary):
    text = "({a} - {b})"


class Mul(_Binary):
    text = "{a} * {b}"


class FloorDiv(_Binary):
    text = "({a} // {b})"


class CeilDiv(_Binary):
    text = "cdiv({a}, {b})"


class Min(_Binary):
    text = "min({a}, {b})"


class Max(_Binary):
    text = "max({a}, {b})"


Expr = Union[Const, Dim, Add, Sub, Mul, FloorDiv, CeilDiv, Min, Max]
_INFIX = {Add: "+", Sub: "-", Mul: "*", FloorDiv: "//"}
_METHODS = {Add: "add", Sub: "sub", Mul: "mul", FloorDiv: "floordiv", CeilDiv: "cdiv", Min: "min", Max: "max"}
"""Each binary node and the algebra method that interprets it."""


def product(factors: Sequence[Expr]) -> Expr:
    """The product of ``factors`` (``Const(1)`` when empty), without multiplying by one."""
    result: Expr | None = None
    for factor in factors:
        result = factor if result is None else Mul(result, factor)
    return Const(1) if result is None else result


def substitute(expr: Expr, leaf: Callable[[Dim], Expr]) -> Expr:
    """``expr`` with every ``Dim`` replaced by ``leaf(dim)`` (e.g. output dims by their shapes)."""
    if isinstance(expr, Dim):
        return leaf(expr)
    if isinstance(expr, _Binary):
        return type(expr)(substitute(expr.a, leaf), substitute(expr.b, leaf))
    return expr


class Algebra(Protocol[V]):
    """What an interpretation of expressions must provide."""

    def const(self, value: int) -> V: ...
    def dim(self, side: str, index: int, axis: int) -> V: ...
    def add(self, a: V, b: V) -> V: ...
    def sub(self, a: V, b: V) -> V: ...
    def mul(self, a: V, b: V) -> V: ...
    def floordiv(self, a: V, b: V) -> V: ...
    def cdiv(self, a: V, b: V) -> V: ...
    def min(self, a: V, b: V) -> V: ...
    def max(self, a: V, b: V) -> V: ...


def evaluate(expr: Expr, algebra: Algebra[V]) -> V:
    """Interpret ``expr`` with ``algebra``."""
    if isinstance(expr, Const):
        return algebra.const(expr.value)
    if isinstance(expr, Dim):
        return algebra.dim(expr.side, expr.index, expr.axis)
    method = _METHODS.get(type(expr))
    if method is not None:
        return getattr(algebra, method)(evaluate(expr.a, algebra), evaluate(expr.b, algebra))  # type: ignore[union-attr]
    raise TypeError(f"kernelop: not a dimension expression (got {type(expr).__name__})")


class ShapeAlgebra(Generic[V]):
    """Reads leaves from concrete or symbolic shapes; ``int`` and torch ``SymInt`` share it.

    Arithmetic uses ``+ - *``, floor division and ``torch.sym_min``/``sym_max``, which ``SymInt``
    keeps symbolic (Python's ``min`` would compare, and so specialise, the sizes).
    """

    def __init__(self, inputs: Sequence[Sequence[Any]], outputs: Sequence[Sequence[Any]] = ()):
        self.shapes = {INPUT: inputs, OUTPUT: outputs}

    def const(self, value: int) -> Any:
        return value

    def dim(self, side: str, index: int, axis: int) -> Any:
        return self.shapes[side][index][axis]

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def sub(self, a: Any, b: Any) -> Any:
        return a - b

    def mul(self, a: Any, b: Any) -> Any:
        return a * b

    def floordiv(self, a: Any, b: Any) -> Any:
        return a // b

    def cdiv(self, a: Any, b: Any) -> Any:
        return -((-a) // b)  # as compile_int: the ceiling for any sign of b

    def min(self, a: Any, b: Any) -> Any:
        return torch.sym_min(a, b)

    def max(self, a: Any, b: Any) -> Any:
        return torch.sym_max(a, b)


class SympyAlgebra:
    """Symbols ``in0_1`` (axis 1 of input 0) etc.; used by tests to compare interpretations."""

    def __init__(self) -> None:
        import sympy

        self.sympy = sympy

    def symbol(self, side: str, index: int, axis: int) -> Any:
        return self.sympy.Symbol(f"{side}{index}_{axis}", integer=True, nonnegative=True)

    def const(self, value: int) -> Any:
        return self.sympy.Integer(value)

    def dim(self, side: str, index: int, axis: int) -> Any:
        return self.symbol(side, index, axis)

    def add(self, a: Any, b: Any) -> Any:
        return a + b

    def sub(self, a: Any, b: Any) -> Any:
        return a - b

    def mul(self, a: Any, b: Any) -> Any:
        return a * b

    def floordiv(self, a: Any, b: Any) -> Any:
        return self.sympy.floor(a / b)

    def cdiv(self, a: Any, b: Any) -> Any:
        return self.sympy.ceiling(a / b)

    def min(self, a: Any, b: Any) -> Any:
        return self.sympy.Min(a, b, evaluate=self._constant(a, b))

    def max(self, a: Any, b: Any) -> Any:
        return self.sympy.Max(a, b, evaluate=self._constant(a, b))

    def _constant(self, *values: Any) -> bool:
        """Min and Max are left unevaluated over symbols: sympy simplifies some of them wrongly
        (``Max(floor(1/Max(1, a*b)), 1)`` to its first argument, which is 0 for ``a*b > 1``)."""
        return not any(self.sympy.sympify(v).free_symbols for v in values)


def compile_int(exprs: Sequence[Expr]) -> Callable[[Sequence[Sequence[int]], Sequence[Sequence[int]]], tuple]:
    """Evaluate ``exprs`` with concrete shapes through one closure (the eager hot path).

    Equivalent to ``evaluate`` with a ``ShapeAlgebra`` over ints; tests check that they agree.
    """
    code = ", ".join(_python_source(e) for e in exprs)
    source = f"lambda ins, outs: ({code},)" if exprs else "lambda ins, outs: ()"
    return eval(source, {"__builtins__": {}, "min": min, "max": max})  # noqa: S307 - source built from our own tree only


def _python_source(expr: Expr) -> str:
    if isinstance(expr, Const):
        return str(int(expr.value))
    if isinstance(expr, Dim):
        return f"{'ins' if expr.side == INPUT else 'outs'}[{int(expr.index)}][{int(expr.axis)}]"
    if isinstance(expr, _Binary):
        a, b = _python_source(expr.a), _python_source(expr.b)
        if isinstance(expr, CeilDiv):
            return f"(-(-{a} // {b}))"
        if isinstance(expr, (Min, Max)):
            return f"{type(expr).__name__.lower()}({a}, {b})"
        return f"({a} {_INFIX[type(expr)]} {b})"
    raise TypeError(f"kernelop: not a dimension expression (got {type(expr).__name__})")
