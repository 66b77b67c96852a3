"""Registration-time checks of the size-based additions: size expressions, ``SizeArg``,
``Launch``, output shapes given as sizes, requirements and ``param_order``."""
from __future__ import annotations

from typing import Sequence

from ..errors import Where
from .sizes import OPERATORS, AxisSize, BinarySize, ConstSize, NumelSize, Size, as_size
from .spec import Divisible, Equal, InRange, KernelSpec, Launch, SizeArg

MAX_THREADS_PER_BLOCK = 1024
MAX_SHARED_MEM_BYTES = 2**32 - 1
"""cuLaunchKernel takes the dynamic shared memory size as an unsigned 32-bit int."""


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_size(where: Where, field_name: str, value: object, names: Sequence[str]) -> Size:
    """``value`` as a well-formed size expression whose names are all in ``names``."""
    try:
        size = as_size(value)
    except TypeError:
        where.fail(f"{field_name} must be an int or a size expression such as kernelop.dim('x', 0) (got {value!r})", TypeError)
    _check_tree(where, field_name, size, names)
    return size


def _check_tree(where: Where, field_name: str, size: Size, names: Sequence[str]) -> None:
    if isinstance(size, (AxisSize, NumelSize)):
        if size.name not in names:
            where.fail(f"{field_name} refers to {size.name!r}, which is not one of {list(names)}")
        if isinstance(size, AxisSize) and not is_int(size.axis):
            where.fail(f"{field_name}: the axis of dim({size.name!r}, ...) must be an int (got {size.axis!r})", TypeError)
    elif isinstance(size, ConstSize):
        if not is_int(size.value):
            where.fail(f"{field_name} has a constant that is not an int (got {size.value!r})", TypeError)
    elif isinstance(size, BinarySize) and size.op in OPERATORS:
        _check_tree(where, field_name, size.a, names)
        _check_tree(where, field_name, size.b, names)
    else:
        where.fail(f"{field_name} is not a size expression (got {size!r})", TypeError)


def check_size_arg(where: Where, field_name: str, extra: SizeArg, names: Sequence[str]) -> None:
    check_size(where, f"{field_name}.value", extra.value, names)


def check_launch(where: Where, geometry: Launch, names: Sequence[str]) -> None:
    """Grid and block of 1 to 3 sizes; constant block sizes within CUDA's limits."""
    threads = 1
    for field_name in ("grid", "block"):
        dims = getattr(geometry, field_name)
        if not isinstance(dims, (tuple, list)) or not 1 <= len(dims) <= 3:
            where.fail(f"geometry.{field_name} must be a tuple of 1 to 3 sizes (x first) (got {dims!r})", TypeError)
        for i, value in enumerate(dims):
            size = check_size(where, f"geometry.{field_name}[{i}]", value, names)
            if isinstance(size, ConstSize) and size.value < (1 if field_name == "block" else 0):
                where.fail(f"geometry.{field_name}[{i}] must be {'>= 1' if field_name == 'block' else '>= 0'} (got {size.value})")
            if field_name == "block" and isinstance(size, ConstSize):
                threads *= size.value
    if threads > MAX_THREADS_PER_BLOCK:
        where.fail(f"geometry.block has {threads} threads; CUDA allows at most {MAX_THREADS_PER_BLOCK} (got {tuple(geometry.block)})")
    shared = check_size(where, "geometry.shared_mem_bytes", geometry.shared_mem_bytes, names)
    if isinstance(shared, ConstSize) and not 0 <= shared.value <= MAX_SHARED_MEM_BYTES:
        where.fail(f"geometry.shared_mem_bytes must be in 0..{MAX_SHARED_MEM_BYTES} (got {shared.value})")


def check_output_shape(where: Where, field_name: str, shape: object, inputs: Sequence[str]) -> None:
    """An output shape given as a tuple of sizes over the tensor inputs."""
    if not isinstance(shape, (tuple, list)):
        where.fail(f"{field_name} must be SameAs, ReduceDims or a tuple of sizes (got {shape!r})", TypeError)
    for i, value in enumerate(shape):
        check_size(where, f"{field_name}[{i}]", value, inputs)


def check_requirements(where: Where, requires: object, inputs: Sequence[str]) -> None:
    if isinstance(requires, (str, bytes)) or not isinstance(requires, Sequence):
        where.fail(f"requires must be a list of Divisible/InRange/Equal (got {type(requires).__name__})", TypeError)
    for i, rule in enumerate(requires):
        field_name = f"requires[{i}]"
        if isinstance(rule, Divisible):
            check_size(where, f"{field_name}.value", rule.value, inputs)
            if not is_int(rule.by) or rule.by < 1:
                where.fail(f"{field_name}.by must be an int >= 1 (got {rule.by!r})")
        elif isinstance(rule, InRange):
            check_size(where, f"{field_name}.value", rule.value, inputs)
            for bound in ("min", "max"):
                value = getattr(rule, bound)
                if value is not None and not is_int(value):
                    where.fail(f"{field_name}.{bound} must be an int or None (got {value!r})", TypeError)
            if rule.min is None and rule.max is None:
                where.fail(f"{field_name} has neither min nor max")
            if rule.min is not None and rule.max is not None and rule.min > rule.max:
                where.fail(f"{field_name} has min {rule.min} > max {rule.max}")
        elif isinstance(rule, Equal):
            check_size(where, f"{field_name}.a", rule.a, inputs)
            check_size(where, f"{field_name}.b", rule.b, inputs)
        else:
            where.fail(f"{field_name} must be Divisible, InRange or Equal (got {rule!r})", TypeError)


def check_param_order(where: Where, spec: KernelSpec) -> None:
    """Every input, output and ``SizeArg`` named exactly once, and nothing else."""
    order = spec.param_order
    if order is None:
        return
    if isinstance(order, (str, bytes)) or not isinstance(order, Sequence) or not all(isinstance(n, str) for n in order):
        where.fail(f"param_order must be a sequence of parameter names (got {order!r})", TypeError)
    if spec.inputs is None or spec.outputs is None:
        where.fail("param_order needs declared inputs and outputs (OutputDecl), since it names each of them")
    unnamed = [f"extras[{i}]" for i, e in enumerate(spec.extras) if not isinstance(e, SizeArg)]
    if unnamed:
        where.fail(
            f"param_order names every kernel parameter, but {', '.join(unnamed)} have no name. "
            "Write them as SizeArg('n', kernelop.numel('x')) or SizeArg('W', kernelop.dim('x', -1))"
        )
    declared = [d.name for d in spec.inputs] + [o.name for o in spec.outputs] + [e.name for e in spec.extras]  # type: ignore[union-attr]
    repeated = sorted({n for n in order if list(order).count(n) > 1})
    if repeated:
        where.fail(f"param_order names {repeated} more than once (got {tuple(order)})")
    unknown = [n for n in order if n not in declared]
    if unknown:
        where.fail(f"param_order names {unknown}, which are not inputs, outputs or SizeArgs of the spec (those are {declared})")
    missing = [n for n in declared if n not in order]
    if missing:
        where.fail(f"param_order leaves out {missing}; name every kernel parameter once (got {tuple(order)})")
