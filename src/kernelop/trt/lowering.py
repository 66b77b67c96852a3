"""The launch plan lowered through a TensorRT ``ShapeExpr`` algebra, and sympy sizes back to it.

The algebra takes ``tensorrt.plugin`` as an argument, so tests drive the same code with strict
stand-ins.
"""
from typing import Any, Callable, Sequence, Tuple

from ..plan.expr import INPUT, OUTPUT, evaluate
from ..plan.launch_plan import LaunchDims, LaunchPlan


class ShapeExprAlgebra:
    """Dimension expressions as TensorRT ``ShapeExpr``s, read from plugin tensor descriptors.

    ``ShapeExpr`` has no reflected operators (``2 * N`` raises) and ``trtp.cdiv`` refuses two
    ints, so constants are folded in Python and an expression always sits on the left.
    """

    def __init__(self, trtp: Any, inputs: Sequence[Any], outputs: Sequence[Any] = ()):
        self.trtp = trtp
        self.shapes = {INPUT: [d.shape_expr for d in inputs], OUTPUT: [d.shape_expr for d in outputs]}

    def const(self, value: int) -> Any:
        return int(value)

    def dim(self, side: str, index: int, axis: int) -> Any:
        return self.shapes[side][index][axis]

    def add(self, a: Any, b: Any) -> Any:
        if isinstance(a, int):
            if isinstance(b, int):
                return a + b
            a, b = b, a
        return a + b

    def mul(self, a: Any, b: Any) -> Any:
        if isinstance(a, int):
            if isinstance(b, int):
                return a * b
            a, b = b, a
        return a * b

    def sub(self, a: Any, b: Any) -> Any:
        if isinstance(a, int):
            if isinstance(b, int):
                return a - b
            a = self.trtp.ShapeExpr(a)
        return a - b

    def floordiv(self, a: Any, b: Any) -> Any:
        if isinstance(a, int):
            if isinstance(b, int):
                return a // b
            a = self.trtp.ShapeExpr(a)
        return a // b

    def cdiv(self, a: Any, b: Any) -> Any:
        if isinstance(a, int) and isinstance(b, int):
            return -(-a // b)
        return self.trtp.cdiv(a, b)

    def max(self, a: Any, b: Any) -> Any:
        if isinstance(a, int) and isinstance(b, int):
            return a if a >= b else b
        return self.trtp.max(a, b)

    def min(self, a: Any, b: Any) -> Any:
        if isinstance(a, int) and isinstance(b, int):
            return a if a <= b else b
        return self.trtp.min(a, b)


def lower_launch(plan: LaunchPlan, in_ranks: Tuple[int, ...], out_ranks: Tuple[int, ...], algebra: Any) -> LaunchDims:
    """The plan's launch, interpreted by ``algebra``: one code path for ShapeExprs, sympy and ints."""
    dims = plan.launch_dims(in_ranks, out_ranks)
    value = lambda e: evaluate(e, algebra)  # noqa: E731
    return LaunchDims(
        tuple(value(e) for e in dims.grid),  # type: ignore[arg-type]
        tuple(value(e) for e in dims.block),  # type: ignore[arg-type]
        value(dims.shared_mem),
        tuple(value(e) for e in dims.extras),
    )


def lower_output_shapes(plan: LaunchPlan, in_ranks: Tuple[int, ...], algebra: Any) -> Tuple[Tuple[Any, ...], ...]:
    """Each declared output's shape, interpreted by ``algebra``."""
    return tuple(tuple(evaluate(e, algebra) for e in shape) for shape in plan.output_shapes(in_ranks))


def sym_int32(trtp: Any, value: Any) -> Any:
    """An extra kernel argument as ``SymInt32``: TensorRT's build refuses ints and base ``SymIntExpr``s."""
    if isinstance(value, int):
        return trtp.SymInt32(int(value))
    if isinstance(value, trtp.SymInt32):
        return value
    return trtp.SymInt32(value)


def launch_params(trtp: Any, lowered: LaunchDims) -> Tuple[Any, Any]:
    """``(KernelLaunchParams, SymIntExprs)`` for an AOT plugin from a lowered launch."""
    params = trtp.KernelLaunchParams()
    params.grid_x, params.grid_y, params.grid_z = lowered.grid
    params.block_x, params.block_y, params.block_z = lowered.block
    params.shared_mem = lowered.shared_mem
    extras = trtp.SymIntExprs(len(lowered.extras))
    for i, value in enumerate(lowered.extras):
        extras[i] = sym_int32(trtp, value)
    return params, extras


class UnsupportedShape(ValueError):
    """A symbolic output size with an operation TensorRT shape expressions do not have."""


def from_sympy(expr: Any, leaf: Callable[[Any], Any], algebra: Any) -> Any:
    """A sympy size expression (as torch's symbolic shapes print it) through ``algebra``.

    Handles integers, symbols (``leaf``), sums, integer multiples and products, natural powers,
    ``FloorDiv``, ``CeilDiv`` (also written ``-((-a)//b)``), ``Max`` and ``Min``.
    """
    import sympy
    from torch.utils._sympy import functions as tf

    def kinds(*names: str) -> tuple:
        """torch's sympy classes that this torch has (older ones lack some)."""
        return tuple(c for c in (getattr(tf, n, None) for n in names) if isinstance(c, type))

    floordiv, ceildiv, power = kinds("FloorDiv"), kinds("CeilDiv"), (sympy.Pow,) + kinds("PowByNatural")
    maximum, minimum = (sympy.Max,) + kinds("Max"), (sympy.Min,) + kinds("Min")

    def fold(op: Callable[[Any, Any], Any], items: Sequence[Any]) -> Any:
        acc = convert(items[0])
        for item in items[1:]:
            acc = op(acc, convert(item))
        return acc

    def convert(e: Any) -> Any:
        if isinstance(e, int):
            return algebra.const(e)
        if getattr(e, "is_Integer", False):
            return algebra.const(int(e))
        if getattr(e, "is_Symbol", False):
            return leaf(e)
        if isinstance(e, sympy.Add):
            plus = [t for t in e.args if t.as_coeff_Mul()[0] >= 0]
            minus = [-t for t in e.args if t.as_coeff_Mul()[0] < 0]
            acc = fold(algebra.add, plus) if plus else algebra.const(0)
            for term in minus:
                acc = algebra.sub(acc, convert(term))
            return acc
        if isinstance(e, sympy.Mul):
            coeff, rest = e.as_coeff_Mul()
            if coeff == -1 and isinstance(rest, floordiv):
                return algebra.cdiv(convert(-rest.args[0]), convert(rest.args[1]))
            if coeff.is_Integer and coeff < 0:
                return algebra.sub(algebra.const(0), convert(-e))
            if not coeff.is_Integer:
                raise UnsupportedShape(f"{e} has the non-integer factor {coeff}")
            return fold(algebra.mul, e.args)
        if isinstance(e, power):
            base, exponent = e.args
            if getattr(exponent, "is_Integer", False) and int(exponent) >= 1:
                return fold(algebra.mul, [base] * int(exponent))
        if isinstance(e, floordiv):
            return algebra.floordiv(convert(e.args[0]), convert(e.args[1]))
        if isinstance(e, ceildiv):
            return algebra.cdiv(convert(e.args[0]), convert(e.args[1]))
        if isinstance(e, maximum):
            return fold(algebra.max, list(e.args))
        if isinstance(e, minimum):
            return fold(algebra.min, list(e.args))
        raise UnsupportedShape(f"{e} ({type(e).__name__}) has no TensorRT shape expression")

    return convert(expr)
