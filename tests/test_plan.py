"""The launch plan: output shapes, grid/block and extras as dimension expressions.

Property tests check, for random ranks and shapes, that the three interpretations of one
expression tree agree (ints through ``ShapeAlgebra``, the ``compile_int`` closures of the eager
path, sympy with the symbols substituted) and that they equal a reference computed here from
the definitions in SEED.md (and torch's own reduction shapes).
"""
from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kernelop as ttk
from kernelop.plan.expr import INPUT, OUTPUT, Add, CeilDiv, Const, Dim, Mul, ShapeAlgebra, SympyAlgebra, compile_int, evaluate
from kernelop.plan.describe import describe, slot_name
from kernelop.plan.build import build_plan
from kernelop.dsl.validate import check_spec
from kernelop.errors import Where

PLAN_OP = "kotest::plan"
SOURCE = 'extern "C" __global__ void k() {}\n'  # plans are built without compiling

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_plan(spec: ttk.KernelSpec, op: str = PLAN_OP):
    """Validate and plan as registration does, without NVRTC or torch registration."""
    check_spec(Where("cuda_kernel_op", op), spec, has_meta_fn=False, has_eager_fn=False, has_aot_fn=False)
    return build_plan(op, spec, num_outputs=len(spec.outputs))


def spec_of(inputs, outputs, geometry, extras=()) -> ttk.KernelSpec:
    return ttk.KernelSpec(SOURCE, "k", inputs=list(inputs), outputs=list(outputs), extras=list(extras), geometry=geometry)


def interpret(exprs, in_shapes, out_shapes=()) -> list[int]:
    """The value of each expression under all three algebras, asserting that they agree."""
    exprs = list(exprs)
    in_shapes = [tuple(s) for s in in_shapes]
    out_shapes = [tuple(s) for s in out_shapes]
    by_algebra = [evaluate(e, ShapeAlgebra(in_shapes, out_shapes)) for e in exprs]
    by_closure = list(compile_int(exprs)(in_shapes, out_shapes))
    sym = SympyAlgebra()
    substitutions = {sym.symbol(INPUT, i, a): n for i, shape in enumerate(in_shapes) for a, n in enumerate(shape)}
    substitutions.update({sym.symbol(OUTPUT, i, a): n for i, shape in enumerate(out_shapes) for a, n in enumerate(shape)})
    by_sympy = []
    for e in exprs:
        value = evaluate(e, sym).subs(substitutions)
        assert value.is_Integer, f"{e} left free symbols after substitution: {value}"
        by_sympy.append(int(value))
    assert all(type(v) is int for v in by_algebra + by_closure), (by_algebra, by_closure)
    assert by_algebra == by_closure == by_sympy, (exprs, by_algebra, by_closure, by_sympy)
    return by_algebra


def plan_values(plan, in_shapes):
    """Output shapes and launch values of ``plan`` for concrete input shapes (all algebras agree)."""
    in_ranks = tuple(len(s) for s in in_shapes)
    shape_exprs = plan.output_shapes(in_ranks)
    out_shapes = [tuple(interpret(shape, in_shapes)) for shape in shape_exprs]
    dims = plan.launch_dims(in_ranks, tuple(len(s) for s in out_shapes))
    grid = tuple(interpret(dims.grid, in_shapes, out_shapes))
    block = tuple(interpret(dims.block, in_shapes, out_shapes))
    (shared,) = interpret([dims.shared_mem], in_shapes, out_shapes)
    extras = interpret(dims.extras, in_shapes, out_shapes)
    # The eager path evaluates all launch expressions in one closure; same values, same order.
    assert list(compile_int(dims.all_exprs())(in_shapes, out_shapes)) == [*grid, *block, shared, *extras]
    return out_shapes, grid, block, shared, extras


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


sizes = st.one_of(st.integers(0, 9), st.integers(10, 3000))


def shapes(min_rank: int, max_rank: int):
    return st.lists(sizes, min_size=min_rank, max_size=max_rank).map(tuple)


@st.composite
def block_of(draw, ndims: int):
    block = []
    budget = 1024
    for _ in range(ndims):
        b = draw(st.integers(1, budget))
        block.append(b)
        budget //= b
    return tuple(block)


# -- expression algebras ------------------------------------------------------------------------


def expr_trees():
    leaves = st.one_of(
        st.builds(Const, st.integers(1, 50)),
        st.builds(Dim, st.sampled_from([INPUT, OUTPUT]), st.integers(0, 1), st.integers(0, 2)),
    )
    return st.recursive(
        leaves,
        lambda sub: st.one_of(st.builds(Add, sub, sub), st.builds(Mul, sub, sub), st.builds(CeilDiv, sub, sub)),
        max_leaves=12,
    )


@PROPERTY
@given(
    exprs=st.lists(expr_trees(), min_size=1, max_size=4),
    ins=st.lists(st.tuples(*[st.integers(1, 100)] * 3), min_size=2, max_size=2),
    outs=st.lists(st.tuples(*[st.integers(1, 100)] * 3), min_size=2, max_size=2),
)
def test_algebras_agree_on_random_expressions(exprs, ins, outs):
    values = interpret(exprs, ins, outs)

    def reference(e):  # the definition, independently of every algebra
        if isinstance(e, Const):
            return e.value
        if isinstance(e, Dim):
            return (ins if e.side == INPUT else outs)[e.index][e.axis]
        a, b = reference(e.a), reference(e.b)
        return {Add: a + b, Mul: a * b, CeilDiv: a // b + (a % b != 0)}[type(e)]

    assert values == [reference(e) for e in exprs]


def test_compile_int_with_no_expressions_returns_empty_tuple():
    assert compile_int([])([(3,)], ()) == ()


# -- Elementwise ---------------------------------------------------------------------------------


@PROPERTY
@given(x=shapes(0, 5), a=shapes(0, 3), bx=st.integers(1, 1024), smem=st.integers(0, 4096), data=st.data())
def test_flat_elementwise_matches_definition(x, a, bx, smem, data):
    # A scalar before the tensors and a second tensor: positions count tensor inputs only.
    by_name = data.draw(st.booleans(), "reference by name")
    extras = [ttk.Numel("x"), ttk.Numel("a")]
    if x:
        d = data.draw(st.integers(-len(x), len(x) - 1), "DimSize dim")
        extras.append(ttk.DimSize("x", d))
    spec = spec_of(
        [ttk.ScalarInput("alpha", float), ttk.InputDecl("a"), ttk.InputDecl("x")],
        [ttk.OutputDecl("y", ttk.SameAs("x" if by_name else 1))],
        ttk.Elementwise(block=(bx,), layout="flat", shared_mem_bytes=smem),
        extras,
    )
    plan = make_plan(spec)
    (out,), grid, block, shared, got_extras = plan_values(plan, [a, x])
    assert out == x
    assert grid == (cdiv(math.prod(x), bx), 1, 1)
    assert block == (bx, 1, 1)
    assert shared == smem
    want_extras = [math.prod(x), math.prod(a)] + ([x[d]] if x else [])
    assert got_extras == want_extras


@pytest.mark.parametrize("ndims", [1, 2, 3])
@PROPERTY
@given(data=st.data())
def test_nd_elementwise_matches_definition(ndims, data):
    block = data.draw(block_of(ndims), "block")
    x = data.draw(shapes(ndims, 5), "shape")
    spec = spec_of(
        [ttk.InputDecl("x")],
        [ttk.OutputDecl("y", ttk.SameAs("x"))],
        ttk.Elementwise(block=block, layout="nd"),
        [ttk.DimSize("x", -1)],
    )
    (out,), grid, got_block, shared, extras = plan_values(make_plan(spec), [x])
    rank = len(x)
    assert out == x
    padded = block + (1,) * (3 - ndims)
    assert got_block == padded
    # block[0] tiles the innermost axis; leading (untiled) axes fold into grid z.
    leading = math.prod(x[: rank - ndims])
    want = (
        cdiv(x[-1], padded[0]),
        cdiv(x[-2], padded[1]) if ndims >= 2 else 1,
        leading * (cdiv(x[-3], padded[2]) if ndims == 3 else 1),
    )
    assert grid == want
    # Every element gets a thread: the launch covers the output exactly up to block rounding.
    assert math.prod(g * b for g, b in zip(grid, got_block)) >= math.prod(x)
    assert shared == 0 and extras == [x[-1]]


def test_elementwise_grid_follows_the_output_not_the_inputs():
    # Output 0 is shaped like the second tensor: the flat grid must cover *its* numel.
    spec = spec_of(
        [ttk.InputDecl("small"), ttk.InputDecl("big")],
        [ttk.OutputDecl("y", ttk.SameAs("big"))],
        ttk.Elementwise(block=(128,)),
    )
    _, grid, _, _, _ = plan_values(make_plan(spec), [(3,), (1000, 7)])
    assert grid == (cdiv(7000, 128), 1, 1)


# -- Reduction -----------------------------------------------------------------------------------


@st.composite
def reduction_case(draw):
    shape = draw(shapes(1, 5))
    rank = len(shape)
    axes = draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))

    def spelled(axes):  # each axis either as a or as a - rank
        return tuple(a - rank if draw(st.booleans()) else a for a in axes)

    return shape, spelled(axes), spelled(axes)


@PROPERTY
@given(
    case=reduction_case(),
    w=shapes(0, 3),
    keepdim=st.booleans(),
    block_size=st.integers(1, 1024),
    by_name=st.booleans(),
)
def test_reduction_matches_definition(case, w, keepdim, block_size, by_name):
    x, out_dims, geo_dims = case
    ref = "x" if by_name else 1  # tensor position 1; the ScalarInput is not counted
    spec = spec_of(
        [ttk.InputDecl("w"), ttk.ScalarInput("k", int), ttk.InputDecl("x")],
        [ttk.OutputDecl("y", ttk.ReduceDims(ref, out_dims, keepdim=keepdim)), ttk.OutputDecl("z", ttk.SameAs("w"))],
        ttk.Reduction(reduce_dims=geo_dims, block_size=block_size, input_idx=ref),
        [ttk.Numel("x")],
    )
    (y, z), grid, block, shared, extras = plan_values(make_plan(spec), [w, x])
    assert y == tuple(torch.sum(torch.empty(x, device="meta"), out_dims, keepdim=keepdim).shape)
    assert z == w
    reduced = {d % len(x) for d in geo_dims}
    assert grid == (math.prod(n for a, n in enumerate(x) if a not in reduced), 1, 1)
    assert block == (block_size, 1, 1)
    assert shared == 0 and extras == [math.prod(x)]


@pytest.mark.parametrize("dims", [(0,), (-1,)])
@pytest.mark.parametrize("keepdim", [False, True])
def test_reduce_dims_of_a_0d_input_matches_torch(dims, keepdim):
    spec = spec_of([ttk.InputDecl("x")], [ttk.OutputDecl("y", ttk.ReduceDims("x", dims, keepdim))], ttk.Reduction(dims))
    (y,), grid, _, _, _ = plan_values(make_plan(spec), [()])
    assert y == tuple(torch.sum(torch.empty((), device="meta"), dims, keepdim=keepdim).shape)
    assert grid == (1, 1, 1)


# -- shape-dependent errors ----------------------------------------------------------------------


@pytest.mark.parametrize("block, rank", [((16, 16), 1), ((8, 8, 8), 2), ((4, 4, 4), 0)])
def test_nd_block_on_too_low_rank_output_raises_at_launch_dims(block, rank):
    op = "kotest::plan_nd_rank"
    spec = spec_of([ttk.InputDecl("x")], [ttk.OutputDecl("y", ttk.SameAs(0))], ttk.Elementwise(block=block, layout="nd"))
    plan = make_plan(spec, op)
    assert len(plan.output_shapes((rank,))[0]) == rank  # output shapes alone are fine
    with pytest.raises(ValueError, match=re.escape(op) + rf".*layout='nd'.*output 0, which has rank {rank}"):
        plan.launch_dims((rank,), (rank,))


@pytest.mark.parametrize("dims", [(2,), (-3,), (0, -2)])
def test_reduce_dims_out_of_range_or_repeated_at_call_rank_raises(dims):
    op = "kotest::plan_reduce_range"
    spec = spec_of([ttk.InputDecl("x")], [ttk.OutputDecl("y", ttk.ReduceDims("x", dims))], ttk.Reduction((0,)))
    plan = make_plan(spec, op)
    with pytest.raises(ValueError, match=re.escape(op) + r".*output 'y' ReduceDims of input 'x'.*(out of range for a tensor of rank 2|same axis twice)"):
        plan.output_shapes((2,))
    # with torch, too: these dims are invalid at rank 2
    with pytest.raises((IndexError, RuntimeError)):
        torch.sum(torch.empty(3, 4, device="meta"), dims)


def test_reduction_geometry_dims_out_of_range_raises():
    op = "kotest::plan_reduction_range"
    spec = spec_of([ttk.InputDecl("x")], [ttk.OutputDecl("y", ttk.SameAs("x"))], ttk.Reduction((3,)))
    with pytest.raises(ValueError, match=re.escape(op) + r".*Reduction over input 'x'.*axis 3 is out of range for a tensor of rank 2"):
        make_plan(spec, op).launch_dims((2,), (2,))


def test_dimsize_out_of_range_raises():
    op = "kotest::plan_dimsize_range"
    spec = spec_of([ttk.InputDecl("x")], [ttk.OutputDecl("y", ttk.SameAs("x"))], ttk.Elementwise(), [ttk.DimSize("x", -3)])
    with pytest.raises(ValueError, match=re.escape(op) + r".*extra x\.shape\[-3\]: 'x' axis -3 is out of range for a tensor of rank 2"):
        make_plan(spec, op).launch_dims((2,), (2,))


def test_custom_geometry_has_no_eager_launch():
    op = "kotest::plan_custom"
    spec = spec_of([ttk.InputDecl("x")], [ttk.OutputDecl("y", ttk.SameAs("x"))], ttk.Custom(fn=lambda *a: None))
    with pytest.raises(NotImplementedError, match=re.escape(op) + r".*Custom.*eager_fn"):
        make_plan(spec, op).launch_dims((1,), (1,))


# -- calling convention --------------------------------------------------------------------------


def test_arg_layout_follows_the_calling_convention():
    spec = spec_of(
        [
            ttk.InputDecl("a"),
            ttk.ScalarInput("alpha", float),
            ttk.InputDecl("b"),
            ttk.ScalarInput("k", int),
            ttk.ScalarInput("flag", bool),
        ],
        [ttk.OutputDecl("y", ttk.SameAs("a")), ttk.OutputDecl("z", ttk.SameAs("b"))],
        ttk.Elementwise(),
        [ttk.Numel("b"), ttk.DimSize("a", 0)],
    )
    plan = make_plan(spec)
    names = {p.name: p for p in plan.params}

    got = [(s.kind, s.ctype, slot_name(plan, s)) for s in plan.arg_layout]
    assert got == [
        ("tensor", "ptr", "a"),
        ("scalar", "f32", "alpha"),
        ("tensor", "ptr", "b"),
        ("scalar", "i32", "k"),
        ("scalar", "bool", "flag"),
        ("extra", "i32", "numel(b)"),
        ("extra", "i32", "a.shape[0]"),
        ("output", "ptr", "y"),
        ("output", "ptr", "z"),
    ]
    assert names["alpha"].py_type is float and not names["alpha"].is_tensor
    # the extras, in declaration order, read the inputs they name
    _, _, _, _, extras = plan_values(plan, [(5, 6), (7, 8, 9)])
    assert extras == [7 * 8 * 9, 5]


def test_describe_mentions_grid_block_and_input_names():
    spec = spec_of(
        [ttk.InputDecl("x")],
        [ttk.OutputDecl("y", ttk.ReduceDims("x", (-1,)))],
        ttk.Reduction((-1,), block_size=128),
        [ttk.DimSize("x", -1)],
    )
    text = describe(make_plan(spec, "kotest::described"), (2,))
    assert "kotest::described" in text
    assert re.search(r"grid:\s*\(.*x\.shape\[0\]", text), text
    assert re.search(r"block:\s*\(128, 1, 1\)", text), text
    assert "output y" in text and "in0" not in text
