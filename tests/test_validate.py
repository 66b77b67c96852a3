"""Registration-time validation: every authoring mistake is an error naming the op and the field,
and a failed registration leaves nothing behind (no torch op, no kernelop entry)."""
from __future__ import annotations

import re

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import kernelop as ttk
from kernelop.compiler.nvrtc import COMPILE_COUNTER

def _packet(name: str):
    namespace, short = name.split("::")
    return getattr(getattr(torch.ops, namespace), short)


def _alpha_inputs():
    return [ttk.InputDecl("x"), ttk.ScalarInput("alpha", float)]


def _noop(*args):  # a callable override that is never run on CPU
    return None


# Each case: build(make) -> (spec, cuda_kernel_op keyword arguments); the exception type; a regex
# for the offending field that must follow the op name in the message.
def _case(case_id, build, exc, field, **kwargs):
    return pytest.param(build, kwargs, exc, field, id=case_id)


VALUE_ERRORS = [
    _case("empty-inputs", lambda m: m(inputs=[]), ValueError, r"inputs is empty"),
    _case("empty-outputs", lambda m: m(outputs=[]), ValueError, r"outputs is empty"),
    _case(
        "duplicate-input",
        lambda m: m(inputs=[ttk.InputDecl("x"), ttk.InputDecl("x")]),
        ValueError,
        r"inputs\[1\]\.name 'x' duplicates inputs\[0\]\.name",
    ),
    _case(
        "duplicate-scalar-input",
        lambda m: m(inputs=[ttk.InputDecl("x"), ttk.ScalarInput("x", float)]),
        ValueError,
        r"inputs\[1\]\.name 'x' duplicates",
    ),
    _case(
        "duplicate-output",
        lambda m: m(outputs=[ttk.OutputDecl("y", ttk.SameAs(0)), ttk.OutputDecl("y", ttk.SameAs(0))]),
        ValueError,
        r"outputs\[1\]\.name 'y' duplicates outputs\[0\]\.name",
    ),
    _case(
        "output-named-like-input",
        lambda m: m(outputs=[ttk.OutputDecl("x", ttk.SameAs(0))]),
        ValueError,
        r"outputs\[0\]\.name 'x' duplicates inputs\[0\]\.name",
    ),
    _case("empty-input-name", lambda m: m(inputs=[ttk.InputDecl("")]), ValueError, r"inputs\[0\]\.name is empty"),
    _case(
        "input-name-not-identifier",
        lambda m: m(inputs=[ttk.InputDecl("my-x")]),
        ValueError,
        r"inputs\[0\]\.name must be a Python identifier.*'my-x'",
    ),
    _case(
        "input-name-keyword",
        lambda m: m(inputs=[ttk.InputDecl("lambda")]),
        ValueError,
        r"inputs\[0\]\.name must be a Python identifier and not a keyword.*'lambda'",
    ),
    _case(
        "output-name-keyword",
        lambda m: m(outputs=[ttk.OutputDecl("class", ttk.SameAs(0))]),
        ValueError,
        r"outputs\[0\]\.name .*not a keyword.*'class'",
    ),
    _case(
        "sameas-int-out-of-range",
        lambda m: m(outputs=[ttk.OutputDecl("y", ttk.SameAs(1))]),
        ValueError,
        r"outputs\[0\]\.shape\.input_idx is out of range \(got 1",
    ),
    _case(
        "sameas-negative",
        lambda m: m(outputs=[ttk.OutputDecl("y", ttk.SameAs(-1))]),
        ValueError,
        r"outputs\[0\]\.shape\.input_idx is out of range \(got -1",
    ),
    _case(
        # Two declared inputs, but only one tensor: positions count tensor inputs only.
        "sameas-int-counts-tensors-only",
        lambda m: m(inputs=[ttk.ScalarInput("alpha", float), ttk.InputDecl("x")], outputs=[ttk.OutputDecl("y", ttk.SameAs(1))]),
        ValueError,
        r"outputs\[0\]\.shape\.input_idx is out of range \(got 1",
    ),
    _case(
        "sameas-unknown-name",
        lambda m: m(outputs=[ttk.OutputDecl("y", ttk.SameAs("nope"))]),
        ValueError,
        r"outputs\[0\]\.shape\.input_idx names unknown input 'nope'",
    ),
    _case(
        "sameas-scalar-name",
        lambda m: m(inputs=_alpha_inputs(), outputs=[ttk.OutputDecl("y", ttk.SameAs("alpha"))]),
        ValueError,
        r"outputs\[0\]\.shape\.input_idx names scalar input 'alpha'",
    ),
    _case(
        "reducedims-int-out-of-range",
        lambda m: m(outputs=[ttk.OutputDecl("y", ttk.ReduceDims(2, (0,)))]),
        ValueError,
        r"outputs\[0\]\.shape\.input_idx is out of range \(got 2",
    ),
    _case(
        "reducedims-unknown-name",
        lambda m: m(outputs=[ttk.OutputDecl("y", ttk.ReduceDims("w", (0,)))]),
        ValueError,
        r"outputs\[0\]\.shape\.input_idx names unknown input 'w'",
    ),
    _case(
        "reducedims-scalar-name",
        lambda m: m(inputs=_alpha_inputs(), outputs=[ttk.OutputDecl("y", ttk.ReduceDims("alpha", (0,)))]),
        ValueError,
        r"outputs\[0\]\.shape\.input_idx names scalar input 'alpha'",
    ),
    _case(
        "reducedims-empty-dims",
        lambda m: m(outputs=[ttk.OutputDecl("y", ttk.ReduceDims("x", ()))]),
        ValueError,
        r"outputs\[0\]\.shape\.dims is empty",
    ),
    _case(
        "reducedims-repeated-axis",
        lambda m: m(outputs=[ttk.OutputDecl("y", ttk.ReduceDims("x", (1, 1)))]),
        ValueError,
        r"outputs\[0\]\.shape\.dims repeats an axis",
    ),
    _case(
        "dtype-from-unknown",
        lambda m: m(outputs=[ttk.OutputDecl("y", ttk.SameAs(0), dtype_from="w")]),
        ValueError,
        r"outputs\[0\]\.dtype_from names unknown tensor input 'w'",
    ),
    _case(
        "dtype-from-scalar",
        lambda m: m(inputs=_alpha_inputs(), outputs=[ttk.OutputDecl("y", ttk.SameAs(0), dtype_from="alpha")]),
        ValueError,
        r"outputs\[0\]\.dtype_from names unknown tensor input 'alpha'",
    ),
    _case("numel-unknown", lambda m: m(extras=[ttk.Numel("w")]), ValueError, r"extras\[0\] names unknown input 'w'"),
    _case(
        "numel-scalar",
        lambda m: m(inputs=_alpha_inputs(), extras=[ttk.Numel("x"), ttk.Numel("alpha")]),
        ValueError,
        r"extras\[1\] names scalar input 'alpha'",
    ),
    _case("dimsize-unknown", lambda m: m(extras=[ttk.DimSize("w", 0)]), ValueError, r"extras\[0\] names unknown input 'w'"),
    _case(
        "dimsize-scalar",
        lambda m: m(inputs=_alpha_inputs(), extras=[ttk.DimSize("alpha", 0)]),
        ValueError,
        r"extras\[0\] names scalar input 'alpha'",
    ),
    _case(
        "flat-2d-block",
        lambda m: m(geometry=ttk.Elementwise(block=(16, 16), layout="flat")),
        ValueError,
        r"geometry\.block must have one entry for layout='flat'",
    ),
    _case("block-zero", lambda m: m(geometry=ttk.Elementwise(block=(0,))), ValueError, r"geometry\.block\[0\] must be in 1\.\.1024 \(got 0\)"),
    _case("block-over-1024", lambda m: m(geometry=ttk.Elementwise(block=(2048,))), ValueError, r"geometry\.block\[0\] must be in 1\.\.1024"),
    _case(
        "nd-block-2048-threads",
        lambda m: m(geometry=ttk.Elementwise(block=(32, 32, 2), layout="nd")),
        ValueError,
        r"geometry\.block has 2048 threads",
    ),
    _case(
        "nd-block-zero-in-y",
        lambda m: m(geometry=ttk.Elementwise(block=(32, 0), layout="nd")),
        ValueError,
        r"geometry\.block\[1\] must be in 1\.\.1024",
    ),
    _case(
        "block-four-dims",
        lambda m: m(geometry=ttk.Elementwise(block=(4, 4, 4, 1), layout="nd")),
        ValueError,
        r"geometry\.block must be a tuple of 1 to 3 ints",
    ),
    _case("layout-unknown", lambda m: m(geometry=ttk.Elementwise(layout="2d")), ValueError, r"geometry\.layout must be 'flat' or 'nd'"),
    _case(
        "reduction-empty-dims",
        lambda m: m(geometry=ttk.Reduction(reduce_dims=())),
        ValueError,
        r"geometry\.reduce_dims is empty",
    ),
    _case(
        "reduction-block-size-zero",
        lambda m: m(geometry=ttk.Reduction(reduce_dims=(0,), block_size=0)),
        ValueError,
        r"geometry\.block_size must be in 1\.\.1024 \(got 0\)",
    ),
    _case(
        "reduction-block-size-over-1024",
        lambda m: m(geometry=ttk.Reduction(reduce_dims=(0,), block_size=1025)),
        ValueError,
        r"geometry\.block_size must be in 1\.\.1024",
    ),
    _case(
        "reduction-input-scalar",
        lambda m: m(inputs=_alpha_inputs(), geometry=ttk.Reduction(reduce_dims=(0,), input_idx="alpha")),
        ValueError,
        r"geometry\.input_idx names scalar input 'alpha'",
    ),
    _case("custom-fn-not-callable", lambda m: m(geometry=ttk.Custom(fn=42)), ValueError, r"geometry\.fn \(Custom\) must be callable"),
    _case(
        "scalar-py-type-str",
        lambda m: m(inputs=[ttk.InputDecl("x"), ttk.ScalarInput("s", str)]),
        ValueError,
        r"inputs\[1\]\.py_type must be float, int or bool",
    ),
    _case(
        "only-scalar-inputs",
        lambda m: m(inputs=[ttk.ScalarInput("alpha", float)], outputs=[ttk.OutputDecl("y", ttk.SameAs(0))], extras=[]),
        ValueError,
        r"inputs has no tensor input",
    ),
    _case("outputs-missing-no-meta", lambda m: m(outputs=None), ValueError, r"KernelSpec\.outputs is missing.*meta_fn"),
    _case("geometry-missing", lambda m: m(geometry=None), ValueError, r"KernelSpec\.geometry is missing.*eager_fn.*aot_fn"),
    _case(
        "geometry-missing-eager-only",
        lambda m: m(geometry=None),
        ValueError,
        r"KernelSpec\.geometry is missing",
        eager_fn=_noop,
    ),
    _case(
        "geometry-missing-aot-only",
        lambda m: m(geometry=None),
        ValueError,
        r"KernelSpec\.geometry is missing",
        aot_fn=_noop,
    ),
    _case("inputs-missing", lambda m: m(inputs=None), ValueError, r"KernelSpec\.inputs is missing"),
    _case("arch-no-underscore", lambda m: m(arch_override="sm90"), ValueError, r"arch_override must look like 'sm_90' \(got 'sm90'\)"),
    _case("arch-one-digit", lambda m: m(arch_override="sm_9"), ValueError, r"arch_override must look like 'sm_90'"),
    _case("compile-std", lambda m: m(compile_std="gnu17"), ValueError, r"compile_std must look like 'c\+\+17'"),
    _case(
        "schema-does-not-parse",
        lambda m: m(),
        ValueError,
        r"schema '\(Tensor x -> Tensor' does not parse",
        schema="(Tensor x -> Tensor",
    ),
    _case(
        "schema-arg-type-disagrees",
        lambda m: m(inputs=_alpha_inputs()),
        ValueError,
        r"schema arguments \['Tensor', 'int'\] do not match the declared inputs \['Tensor', 'float'\]",
        schema="(Tensor x, int alpha) -> Tensor",
    ),
    _case(
        "schema-arg-count-disagrees",
        lambda m: m(),
        ValueError,
        r"schema arguments .* do not match the declared inputs",
        schema="(Tensor x, Tensor w) -> Tensor",
    ),
    _case(
        "schema-return-count-disagrees",
        lambda m: m(),
        ValueError,
        r"schema returns 2 values but 1 outputs are declared",
        schema="(Tensor x) -> (Tensor, Tensor)",
    ),
    _case(
        "schema-returns-non-tensor",
        lambda m: m(),
        ValueError,
        r"schema must return only Tensors",
        schema="(Tensor x) -> int",
    ),
    _case(
        "meta-fn-without-hints",
        lambda m: m(outputs=None),
        ValueError,
        r"cannot infer a schema from meta_fn's type hints",
        meta_fn=lambda x: x,
    ),
]

TYPE_ERRORS = [
    _case("spec-not-kernelspec", lambda m: {"kernel_source": "x"}, TypeError, r"spec must be a KernelSpec"),
    _case("input-is-str", lambda m: m(inputs=["x"]), TypeError, r"inputs\[0\] must be an InputDecl or ScalarInput"),
    _case("input-name-int", lambda m: m(inputs=[ttk.InputDecl(3)]), TypeError, r"inputs\[0\]\.name must be a str"),
    _case("input-dtype-str", lambda m: m(inputs=[ttk.InputDecl("x", dtype="float32")]), TypeError, r"inputs\[0\]\.dtype must be a torch\.dtype"),
    _case("output-not-decl", lambda m: m(outputs=[("y", ttk.SameAs(0))]), TypeError, r"outputs\[0\] must be an OutputDecl"),
    _case("output-shape-str", lambda m: m(outputs=[ttk.OutputDecl("y", "x")]), TypeError, r"outputs\[0\]\.shape must be SameAs, ReduceDims or a tuple of sizes"),
    _case("output-shape-float", lambda m: m(outputs=[ttk.OutputDecl("y", (4.0,))]), TypeError, r"outputs\[0\]\.shape\[0\] must be an int or a size expression"),
    _case(
        "sameas-float",
        lambda m: m(outputs=[ttk.OutputDecl("y", ttk.SameAs(0.0))]),
        TypeError,
        r"outputs\[0\]\.shape\.input_idx must be a tensor input's position or name",
    ),
    _case(
        "sameas-bool",
        lambda m: m(outputs=[ttk.OutputDecl("y", ttk.SameAs(True))]),
        TypeError,
        r"outputs\[0\]\.shape\.input_idx must be a tensor input's position or name",
    ),
    _case(
        "reducedims-dims-str",
        lambda m: m(outputs=[ttk.OutputDecl("y", ttk.ReduceDims("x", "0"))]),
        TypeError,
        r"outputs\[0\]\.shape\.dims must be a tuple of ints",
    ),
    _case(
        "reducedims-keepdim-int",
        lambda m: m(outputs=[ttk.OutputDecl("y", ttk.ReduceDims("x", (0,), keepdim=1))]),
        TypeError,
        r"outputs\[0\]\.shape\.keepdim must be a bool",
    ),
    _case("extra-not-numel", lambda m: m(extras=["x"]), TypeError, r"extras\[0\] must be Numel, DimSize or SizeArg"),
    _case("dimsize-dim-float", lambda m: m(extras=[ttk.DimSize("x", 1.0)]), TypeError, r"extras\[0\]\.dim must be an int"),
    _case("block-entry-str", lambda m: m(geometry=ttk.Elementwise(block=("256",))), TypeError, r"geometry\.block\[0\] must be an int"),
    _case(
        "reduction-block-size-str",
        lambda m: m(geometry=ttk.Reduction(reduce_dims=(0,), block_size="256")),
        TypeError,
        r"geometry\.block_size must be an int",
    ),
    _case("geometry-str", lambda m: m(geometry="flat"), TypeError, r"geometry must be Elementwise, Reduction, Launch or Custom"),
    _case("kernel-source-empty", lambda m: m(kernel_source="  "), TypeError, r"kernel_source must be non-empty"),
    _case("kernel-name-none", lambda m: m(kernel_name=None), TypeError, r"kernel_name must be a non-empty str"),
    _case("meta-fn-not-callable", lambda m: m(), TypeError, r"meta_fn must be callable", meta_fn=3),
    _case("dynamic-not-bool", lambda m: m(), TypeError, r"supports_dynamic_shapes must be a bool", supports_dynamic_shapes="yes"),
    _case("priority-str", lambda m: m(), TypeError, r"priority must be a ConverterPriority", priority="HIGH"),
    _case("schema-bytes", lambda m: m(), TypeError, r"schema must be a str", schema=b"(Tensor x) -> Tensor"),
]


@pytest.mark.parametrize("build, kwargs, exc, field", VALUE_ERRORS + TYPE_ERRORS)
def test_registration_mistake_names_op_and_field_and_leaves_nothing(
    build, kwargs, exc, field, op_name, relu_spec, register, assert_left_nothing
):
    name = op_name("bad")
    with pytest.raises(exc, match=re.escape(name) + r"\): .*" + field) as info:
        register(name, build(relu_spec), **kwargs)
    # A subclass would do for ``pytest.raises``; users catching the documented type need the exact one.
    assert type(info.value) is exc
    assert_left_nothing(name)
    register(name, relu_spec())
    assert name in ttk.registered_ops()
    assert str(_packet(name).default._schema) == f"{name}(Tensor x) -> Tensor"


@pytest.mark.parametrize(
    "bad_name, field",
    [
        ("relu", r"op_name must be 'namespace::name'"),
        ("a::b::c", r"op_name must be 'namespace::name'"),
        ("1ns::x", r"op_name must be 'namespace::name'"),
        ("ns::class", r"op_name must be 'namespace::name'"),
        ("ns::", r"op_name must be 'namespace::name'"),
        ("ns::my-relu", r"op_name must be 'namespace::name'"),
        ("ns::relu.out", r"op_name must be 'namespace::name'"),
        ("aten::foo", r"op_name namespace 'aten' is reserved"),
    ],
)
def test_bad_op_name_is_rejected_before_anything_is_defined(bad_name, field, relu_spec, kernel_cache):
    before = ttk.registered_ops()
    with pytest.raises(ValueError, match=re.escape(f"({bad_name})") + r": " + field + r".*" + re.escape(repr(bad_name))):
        ttk.cuda_kernel_op(bad_name, relu_spec(), cache=kernel_cache)
    assert ttk.registered_ops().keys() == before.keys()
    if bad_name == "aten::foo":
        assert not hasattr(torch.ops.aten, "foo")


def test_op_name_must_be_a_str(relu_spec, kernel_cache):
    with pytest.raises(TypeError, match=r"op_name must be a str like 'myns::relu' \(got int\)"):
        ttk.cuda_kernel_op(3, relu_spec(), cache=kernel_cache)


def test_geometry_may_be_omitted_with_both_eager_fn_and_aot_fn(op_name, relu_spec, register):
    name = op_name("nogeom")
    register(name, relu_spec(geometry=None), eager_fn=lambda x: x.clone(), aot_fn=_noop)
    assert name in ttk.registered_ops()
    assert str(_packet(name).default._schema) == f"{name}(Tensor x) -> Tensor"
    with FakeTensorMode():  # the fake impl still comes from the declared outputs
        y = _packet(name)(torch.empty(5, 3, device="cuda"))
    assert tuple(y.shape) == (5, 3)


def test_arch_override_spellings_accepted(op_name, relu_spec, register):
    # The documented spellings of an architecture: plain, 'a' and 'f' suffixes.
    for arch in ("sm_90", "sm_90a", "sm_100f"):
        name = op_name("arch")
        register(name, relu_spec(arch_override=arch))
        assert name in ttk.registered_ops()


# -- NVRTC failures ------------------------------------------------------------------------------

SYNTAX_ERROR_SOURCE = """extern "C" __global__ void my_relu(const float* x, int n, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] > 0.f ? x[i] : 0.f
}
"""


def test_compile_error_carries_op_log_and_line_and_leaves_nothing(op_name, relu_spec, register, assert_left_nothing):
    name = op_name("syntax")
    with pytest.raises(ttk.CompileError) as info:
        register(name, relu_spec(kernel_source=SYNTAX_ERROR_SOURCE))
    error = info.value
    assert error.op_name == name
    assert name in str(error)
    # The log is NVRTC's and points at the user's line 3 (the missing ';' is reported on line 4,
    # where the next token is; either way, a line of the user's source, not a wrapper's).
    assert re.search(r"\((3|4)\): error", error.log), error.log
    line = int(re.search(r"\((\d+)\): error", error.log).group(1))
    assert re.search(rf"^> +{line} \| ", str(error), re.M), str(error)
    assert error.log.strip() and error.log.strip().splitlines()[0] in str(error)
    assert_left_nothing(name)
    register(name, relu_spec())
    assert name in ttk.registered_ops()


def test_unknown_kernel_name_is_a_compile_error_naming_it(op_name, relu_spec, register, assert_left_nothing):
    name = op_name("noname")
    with pytest.raises(ttk.CompileError, match=r"'not_my_relu' is not defined in the source") as info:
        register(name, relu_spec(kernel_name="not_my_relu"))
    assert info.value.op_name == name
    assert_left_nothing(name)
    register(name, relu_spec())
    assert name in ttk.registered_ops()


# -- re-registration -----------------------------------------------------------------------------


def test_same_spec_again_is_a_no_op(op_name, relu_spec, register):
    name = op_name("again")
    register(name, relu_spec(), supports_dynamic_shapes=True)
    first = ttk.registered_ops()[name]
    compiles = COMPILE_COUNTER.count
    register(name, relu_spec(), supports_dynamic_shapes=True)  # an equal spec, a new object
    assert COMPILE_COUNTER.count == compiles
    assert ttk.registered_ops()[name] is first


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda m: (m(geometry=ttk.Elementwise(block=(128,))), {}), id="other-block"),
        pytest.param(lambda m: (m(inputs=[ttk.InputDecl("x", dtype=torch.float16)]), {}), id="other-dtype"),
        pytest.param(lambda m: (m(), {"supports_dynamic_shapes": False}), id="other-keyword"),
        pytest.param(lambda m: (m(), {"meta_fn": lambda x: x.new_empty(2)}), id="with-meta-fn"),
    ],
)
def test_different_spec_under_same_name_raises_and_keeps_the_original(change, op_name, relu_spec, register):
    name = op_name("clash")
    register(name, relu_spec())
    original = ttk.registered_ops()[name]
    spec, kwargs = change(relu_spec)
    with pytest.raises(ValueError, match=re.escape(name) + r".*already registered with a different"):
        register(name, spec, **kwargs)
    assert ttk.registered_ops()[name] is original
    with FakeTensorMode():
        y = _packet(name)(torch.empty(4, 6, device="cuda", dtype=torch.float32))
    assert tuple(y.shape) == (4, 6) and y.dtype == torch.float32


def test_registry_is_a_snapshot(op_name, relu_spec, register):
    name = op_name("snap")
    register(name, relu_spec())
    snapshot = ttk.registered_ops()
    snapshot.pop(name)
    assert name in ttk.registered_ops()


# -- names taken outside kernelop ----------------------------------------------------------------


@pytest.fixture
def foreign_op(op_name):
    """An op defined directly with torch.library, not through kernelop."""
    name = op_name("foreign")
    namespace, short = name.split("::")
    lib = torch.library.Library(namespace, "FRAGMENT")
    lib.define(f"{short}(Tensor x) -> Tensor")
    lib.impl(short, lambda x: x * 2, "CPU")
    yield name
    lib._destroy()


def test_name_taken_outside_kernelop_fails_and_leaves_that_op_alone(foreign_op, relu_spec, register):
    with pytest.raises(Exception, match=re.escape(foreign_op)):
        register(foreign_op, relu_spec())
    assert foreign_op not in ttk.registered_ops()
    assert torch.equal(_packet(foreign_op)(torch.ones(3)), torch.full((3,), 2.0))


def test_name_taken_outside_kernelop_is_a_value_error_naming_the_op(foreign_op, relu_spec, register):
    with pytest.raises(ValueError, match=re.escape(foreign_op) + r".*already defined outside kernelop"):
        register(foreign_op, relu_spec())


def test_schema_with_an_op_name_is_rejected(op_name, relu_spec, register, assert_left_nothing):
    name = op_name("named_schema")
    short = name.split("::")[1]
    with pytest.raises(ValueError, match=re.escape(name) + r".*schema must be the signature alone"):
        register(name, relu_spec(), schema=f"{short}(Tensor x) -> Tensor")
    assert_left_nothing(name)
