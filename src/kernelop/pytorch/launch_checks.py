"""What a launch must satisfy before it is kept in the launcher's memo and run: the spec's
requirements, CUDA's and this kernel's limits, and the range of each integer parameter.

Each check runs once per distinct shape (a memo miss), so it may take its time; every refusal is
a ``ValueError`` naming the op and the numbers.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Union

from ..dsl.validate_sizes import MAX_SHARED_MEM_BYTES, MAX_THREADS_PER_BLOCK
from ..errors import Where
from ..plan.ctypes import C_NAMES, CTYPE_SIZES, FLOAT_MAX, INT_RANGES
from ..plan.expr import compile_int
from ..plan.launch_plan import Check, LaunchPlan

MAX_GRID = (2**31 - 1, 65535, 65535)
MAX_BLOCK = (1024, 1024, 64)
_RULES = {
    "divisible": (lambda v, o: v % o == 0, "to be a multiple of {other}"),
    "min": (lambda v, o: v >= o, "to be >= {other}"),
    "max": (lambda v, o: v <= o, "to be <= {other}"),
    "equal": (lambda v, o: v == o, "to equal {other_text} (= {other})"),
}


def shapes_text(in_shapes: Union[str, Sequence[Sequence[Any]]]) -> str:
    """Input shapes as messages show them, ``[(2, 3), (3,)]`` (a string is a placeholder, kept)."""
    return in_shapes if isinstance(in_shapes, str) else str([tuple(s) for s in in_shapes])


def negative_output(name: str, shape: Union[str, Sequence[Any]], in_shapes: Union[str, Sequence[Sequence[Any]]]) -> str:
    shown = shape if isinstance(shape, str) else tuple(shape)
    return f"output {name!r} would have the shape {shown} for input shapes {shapes_text(in_shapes)}"


def divides_by_zero(what: str, in_shapes: Union[str, Sequence[Sequence[Any]]]) -> str:
    """``what`` is ``an output size``, ``a launch size`` or ``a requirement``."""
    return f"{what} divides by zero for input shapes {shapes_text(in_shapes)}"


def output_divides_by_zero(in_shapes: Union[str, Sequence[Sequence[Any]]]) -> str:
    return divides_by_zero("an output size", in_shapes)


class RequirementChecks:
    """The plan's requirements for one tuple of ranks, compiled to one closure over the shapes."""

    def __init__(self, plan: LaunchPlan, in_ranks: tuple[int, ...]):
        self.checks = plan.checks(in_ranks)
        exprs = []
        for check in self.checks:
            exprs.append(check.value)
            if not isinstance(check.other, int):
                exprs.append(check.other)
        self.values: Callable[..., tuple] = compile_int(exprs)

    def check(self, where: Where, in_shapes: Sequence[Sequence[int]]) -> None:
        try:
            values = iter(self.values(in_shapes, ()))
        except ZeroDivisionError:
            where.fail(divides_by_zero("a requirement", in_shapes))
        for check in self.checks:
            value = next(values)
            other = check.other if isinstance(check.other, int) else next(values)
            if not holds(check, value, other):
                where.fail(failure(check, value, other, in_shapes))


def holds(check: Check, value: Any, other: Any) -> Any:
    """Whether the requirement holds: a bool for ints, a ``SymBool`` for symbolic sizes."""
    return _RULES[check.rule][0](value, other)


def failure(check: Check, value: Any, other: Any, in_shapes: Sequence[Sequence[Any]]) -> str:
    """The message for a broken requirement: the argument and axis (or the size), the rule, the values."""
    wanted = _RULES[check.rule][1].format(other=other, other_text=check.other_text)
    if check.argument is not None:
        name, axis = check.argument
        subject = f"argument {name!r} axis {axis} has size {value}"
    else:
        subject = f"{check.text} is {value}"
    return f"{subject}, but {check.where} requires it {wanted} (input shapes {shapes_text(in_shapes)})"


def check_geometry(where: Where, v: tuple, max_threads: Optional[int], max_shared: Optional[int], kernel: str, grid_hint: str = "") -> None:
    """Grid, block and dynamic shared memory within CUDA's limits and, where known, the kernel's.
    ``grid_hint`` ends the message of a grid over the limits."""
    grid, block, shared = v[0:3], v[3:6], v[6]
    if min(grid) < 0:
        where.fail(f"launch grid {tuple(grid)} has a negative size")
    if any(g > m for g, m in zip(grid, MAX_GRID)):
        where.fail(
            f"launch grid {tuple(grid)} exceeds the CUDA limits {MAX_GRID} (x, y, z).{grid_hint}"
        )
    if min(block) < 1 or any(b > m for b, m in zip(block, MAX_BLOCK)):
        where.fail(f"launch block {tuple(block)} is outside the CUDA limits 1..{MAX_BLOCK} (x, y, z)")
    threads = block[0] * block[1] * block[2]
    limit = MAX_THREADS_PER_BLOCK if max_threads is None else max_threads
    if threads > limit:
        why = "CUDA's limit" if max_threads is None else f"what kernel {kernel!r} can launch with (its registers permitting)"
        where.fail(f"launch block {tuple(block)} has {threads} threads, more than {limit}, {why}")
    if not 0 <= shared <= MAX_SHARED_MEM_BYTES:
        where.fail(f"dynamic shared memory of {shared} bytes is outside 0..{MAX_SHARED_MEM_BYTES}")
    if max_shared is not None and shared > max_shared:
        where.fail(
            f"kernel {kernel!r} asks for {shared} bytes of dynamic shared memory per block; this device allows "
            f"it {max_shared} (after its static shared memory)"
        )


def launch_failure(kernel: str, exc: Any) -> str:
    """The message for a launch the driver refused or a kernel that faulted (a ``DriverError``)."""
    fault = " The CUDA context is now unusable: restart the process." if exc.sticky else ""
    return f"kernel {kernel!r} failed: {exc}.{fault}"


def check_integer_values(where: Where, labels: Sequence[str], ctypes: Sequence[str], values: Sequence[int]) -> None:
    """Each integer extra within its kernel parameter's range: never wrapped or reinterpreted."""
    for label, ctype, value in zip(labels, ctypes, values):
        low, high = INT_RANGES[ctype]
        if not low <= value <= high:
            where.fail(extra_misfit(label, ctype, value))


def extra_misfit(label: str, ctype: str, value: object) -> str:
    """An extra outside its parameter's range (``value`` may be a placeholder)."""
    low, high = INT_RANGES[ctype]
    return (f"extra {label} = {value} does not fit the kernel's {CTYPE_SIZES[ctype] * 8}-bit "
            f"{C_NAMES[ctype]} parameter ({low}..{high}); the kernel would index with a wrapped size")


def scalar_misfit(name: str, ctype: str, value: object) -> str:
    """A scalar argument outside its parameter's range (``value`` may be a placeholder)."""
    return f"argument {name!r} = {value} does not fit the kernel's {CTYPE_SIZES[ctype] * 8}-bit {C_NAMES[ctype]} parameter"


def scalar_problem(name: str, ctype: str, value: Any) -> Optional[str]:
    """Why a scalar argument does not fit its kernel parameter, or None."""
    if ctype in INT_RANGES:
        low, high = INT_RANGES[ctype]
        if isinstance(value, int) and not low <= value <= high:
            return scalar_misfit(name, ctype, value)
    if ctype in FLOAT_MAX and isinstance(value, float) and value == value and abs(value) != float("inf") and abs(value) > FLOAT_MAX[ctype]:
        return scalar_misfit(name, ctype, value)
    return None
