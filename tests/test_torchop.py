"""The torch side of a registered op, without a GPU: schema, fake impl, tracing and export,
input checks, and ``ptx_op``."""
from __future__ import annotations

import re

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

import kernelop as ttk
from kernelop.compiler.nvrtc import CompileRequest, compile_kernel


def _packet(name: str):
    namespace, short = name.split("::")
    return getattr(getattr(torch.ops, namespace), short)


def _schema(name: str) -> str:
    return str(_packet(name).default._schema)


def _noop(*args):
    return None


def _meta_sum(shape, dims, keepdim):
    """torch's own answer for the shape of a reduction."""
    return tuple(torch.sum(torch.empty(shape, device="meta"), dims, keepdim=keepdim).shape)


# -- schema --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "inputs, outputs, expected",
    [
        pytest.param(
            [ttk.InputDecl("x"), ttk.ScalarInput("alpha", float)],
            [ttk.OutputDecl("y", ttk.SameAs(0))],
            "(Tensor x, float alpha) -> Tensor",
            id="float-scalar",
        ),
        pytest.param(
            [ttk.InputDecl("x")],
            [ttk.OutputDecl("y", ttk.SameAs(0)), ttk.OutputDecl("s", ttk.ReduceDims("x", (0,)))],
            "(Tensor x) -> (Tensor, Tensor)",
            id="two-outputs",
        ),
        pytest.param(
            [ttk.InputDecl("x"), ttk.ScalarInput("k", int), ttk.ScalarInput("flag", bool)],
            [ttk.OutputDecl("y", ttk.SameAs(0))],
            "(Tensor x, int k, bool flag) -> Tensor",
            id="int-and-bool",
        ),
        pytest.param(
            [ttk.ScalarInput("alpha", float), ttk.InputDecl("x"), ttk.InputDecl("w")],
            [ttk.OutputDecl("y", ttk.SameAs("w"))],
            "(float alpha, Tensor x, Tensor w) -> Tensor",
            id="scalar-first",
        ),
    ],
)
def test_schema_derived_from_declared_inputs_and_outputs(inputs, outputs, expected, op_name, relu_spec, register):
    name = op_name("schema")
    register(name, relu_spec(inputs=inputs, outputs=outputs, extras=[]))
    assert _schema(name) == f"{name}{expected}"
    assert ttk.registered_ops()[name].schema == expected


def test_explicit_schema_is_used_with_its_defaults(op_name, relu_spec, register):
    name = op_name("explicit")
    schema = "(Tensor x, float alpha=0.5) -> Tensor"
    register(name, relu_spec(inputs=[ttk.InputDecl("x"), ttk.ScalarInput("alpha", float)]), schema=schema)
    assert _schema(name) == f"{name}{schema}"
    with FakeTensorMode():
        x = torch.empty(6, 2, device="cuda")
        assert tuple(_packet(name)(x).shape) == (6, 2)  # alpha defaulted by the dispatcher
        assert tuple(_packet(name)(x, 2.0).shape) == (6, 2)


def test_schema_inferred_from_annotated_meta_fn(op_name, relu_spec, register):
    def meta(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return x.new_empty(2 * x.shape[0])

    name = op_name("hints")
    register(name, relu_spec(inputs=[ttk.InputDecl("x"), ttk.ScalarInput("alpha", float)], outputs=None), meta_fn=meta)
    assert _schema(name) == f"{name}(Tensor x, float alpha) -> Tensor"


def test_schema_inferred_from_meta_fn_with_two_outputs(op_name, relu_spec, register):
    def meta(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.new_empty(x.shape), x.new_empty(3)

    name = op_name("hints2")
    register(name, relu_spec(outputs=None, meta_outputs=2), meta_fn=meta)
    assert _schema(name) == f"{name}(Tensor x) -> (Tensor, Tensor)"
    with FakeTensorMode():
        y, z = _packet(name)(torch.empty(4, 5, device="cuda"))
    assert tuple(y.shape) == (4, 5) and tuple(z.shape) == (3,)


def test_schema_with_keyword_only_scalar_is_rejected(op_name, relu_spec, register):
    name = op_name("kwonly")
    spec = relu_spec(inputs=[ttk.InputDecl("x"), ttk.ScalarInput("alpha", float)])
    with pytest.raises(ValueError, match=re.escape(name) + r".*keyword-only arguments \['alpha'\]"):
        register(name, spec, schema="(Tensor x, *, float alpha) -> Tensor")


# -- fake impl -----------------------------------------------------------------------------------


def test_fake_impl_same_shape_and_dtype(op_name, relu_spec, register):
    name = op_name("fake")
    register(name, relu_spec())
    with FakeTensorMode():
        for dtype in (torch.float32, torch.float16):
            x = torch.empty(7, 3, 2, device="cuda", dtype=dtype)
            y = _packet(name)(x)
            assert (tuple(y.shape), y.dtype, y.device) == ((7, 3, 2), dtype, x.device)
    # meta tensors reach the same impl with no FakeTensorMode
    assert tuple(_packet(name)(torch.empty(0, 5, device="meta")).shape) == (0, 5)


def test_fake_impl_dtype_from_picks_the_named_input(op_name, relu_spec, register):
    name = op_name("dtype_from")
    spec = relu_spec(
        inputs=[ttk.InputDecl("x"), ttk.ScalarInput("alpha", float), ttk.InputDecl("w")],
        outputs=[
            ttk.OutputDecl("y", ttk.SameAs("x"), dtype_from="w"),
            ttk.OutputDecl("z", ttk.SameAs("w"), dtype_from="x"),
        ],
    )
    register(name, spec)
    with FakeTensorMode():
        x = torch.empty(4, 3, device="cuda", dtype=torch.float32)
        w = torch.empty(5, device="cuda", dtype=torch.bfloat16)
        y, z = _packet(name)(x, 1.0, w)
    assert (tuple(y.shape), y.dtype) == ((4, 3), torch.bfloat16)
    assert (tuple(z.shape), z.dtype) == ((5,), torch.float32)


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dims", [(1,), (-1, 0), (0, 2)])
def test_fake_impl_reduce_dims(dims, keepdim, op_name, relu_spec, register):
    name = op_name("reduce")
    spec = relu_spec(
        outputs=[ttk.OutputDecl("y", ttk.ReduceDims("x", dims, keepdim=keepdim)), ttk.OutputDecl("copy", ttk.SameAs("x"))],
        geometry=ttk.Reduction(reduce_dims=dims),
    )
    register(name, spec)
    shape = (2, 3, 5)
    with FakeTensorMode():
        y, copy = _packet(name)(torch.empty(shape, device="cuda"))
    assert tuple(y.shape) == _meta_sum(shape, dims, keepdim)
    assert tuple(copy.shape) == shape


def test_fake_impl_reduce_dims_out_of_range_at_call_names_op(op_name, relu_spec, register):
    name = op_name("reduce_rank")
    register(name, relu_spec(outputs=[ttk.OutputDecl("y", ttk.ReduceDims("x", (2,)))], geometry=ttk.Reduction((2,))))
    with FakeTensorMode():
        with pytest.raises(ValueError, match=re.escape(name) + r".*axis 2 is out of range for a tensor of rank 1"):
            _packet(name)(torch.empty(8, device="cuda"))


def test_meta_fn_override_for_shape_changing_op(op_name, relu_spec, register):
    def meta(x: torch.Tensor) -> torch.Tensor:  # e.g. a kernel that writes x twice
        return x.new_empty(2 * x.shape[0], dtype=torch.int32)

    name = op_name("concat")
    register(name, relu_spec(outputs=None), meta_fn=meta)
    with FakeTensorMode():
        y = _packet(name)(torch.empty(9, device="cuda"))
    assert (tuple(y.shape), y.dtype) == ((18,), torch.int32)


# -- tracing and export --------------------------------------------------------------------------


def _placeholder_vals(gm):
    return [n.meta["val"] for n in gm.graph.nodes if n.op == "placeholder"]


def _output_vals(gm):
    (out,) = [n for n in gm.graph.nodes if n.op == "output"]
    args = out.args[0]
    return [a.meta["val"] for a in (args if isinstance(args, (tuple, list)) else [args])]


def test_export_keeps_dynamic_dim_symbolic(op_name, relu_spec, register):
    name = op_name("export")
    register(name, relu_spec(outputs=[ttk.OutputDecl("y", ttk.ReduceDims("x", (-1,)))], geometry=ttk.Reduction((-1,))))
    op = _packet(name)

    class M(torch.nn.Module):
        def forward(self, x):
            return op(x)

    batch = torch.export.Dim("batch", min=2, max=1024)
    ep = torch.export.export(M(), (torch.randn(4, 8),), dynamic_shapes={"x": {0: batch}})
    assert any(n.target is op.default for n in ep.graph.nodes)
    (x_val,) = _placeholder_vals(ep.graph_module)
    (y_val,) = _output_vals(ep.graph_module)
    assert len(y_val.shape) == 1
    b = y_val.shape[0]
    assert isinstance(b, torch.SymInt)
    assert str(b) == str(x_val.shape[0])  # the output's dim *is* the input's batch symbol
    (constraint,) = [r for s, r in ep.range_constraints.items() if str(s) == str(b)]
    assert (int(constraint.lower), int(constraint.upper)) == (2, 1024)


def test_export_of_elementwise_op_with_two_dynamic_dims(op_name, relu_spec, register):
    name = op_name("export2")
    register(name, relu_spec())
    op = _packet(name)

    class M(torch.nn.Module):
        def forward(self, x):
            return op(x) + 1

    dims = {"x": {0: torch.export.Dim("rows", min=2, max=64), 1: torch.export.Dim("cols", min=2, max=64)}}
    ep = torch.export.export(M(), (torch.randn(3, 5),), dynamic_shapes=dims)
    (x_val,) = _placeholder_vals(ep.graph_module)
    (y_val,) = _output_vals(ep.graph_module)
    assert [str(d) for d in y_val.shape] == [str(d) for d in x_val.shape]
    assert all(isinstance(d, torch.SymInt) for d in y_val.shape)


@pytest.mark.parametrize("keepdim", [False, True])
def test_make_fx_symbolic_tracing(keepdim, op_name, relu_spec, register):
    name = op_name("fx")
    register(name, relu_spec(outputs=[ttk.OutputDecl("y", ttk.ReduceDims("x", (0,), keepdim=keepdim))], geometry=ttk.Reduction((0,))))
    op = _packet(name)
    gm = make_fx(lambda x: op(x), tracing_mode="symbolic")(torch.randn(4, 6))
    assert any(n.target is op.default for n in gm.graph.nodes)
    (x_val,) = _placeholder_vals(gm)
    (y_val,) = _output_vals(gm)
    want = [1, str(x_val.shape[1])] if keepdim else [str(x_val.shape[1])]
    assert [d if isinstance(d, int) and d == 1 else str(d) for d in y_val.shape] == want


def test_torch_compile_fullgraph_on_meta_tensors(op_name, relu_spec, register):
    name = op_name("compiled")
    register(name, relu_spec(outputs=[ttk.OutputDecl("y", ttk.ReduceDims("x", (-1,)))], geometry=ttk.Reduction((-1,))))
    op = _packet(name)
    graphs = []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    fn = torch.compile(lambda x: op(x) * 2, fullgraph=True, backend=backend, dynamic=True)
    assert tuple(fn(torch.empty(3, 4, device="meta")).shape) == (3,)
    assert tuple(fn(torch.empty(5, 4, device="meta")).shape) == (5,)
    assert graphs and any(n.target in (op, op.default) for g in graphs for n in g.graph.nodes)


# -- calls the op refuses ------------------------------------------------------------------------


def test_cpu_tensor_call_names_the_op(op_name, relu_spec, register):
    name = op_name("cpu")
    register(name, relu_spec())
    # The dispatcher's NotImplementedError (no CPU kernel) or kernelop's own ValueError will do,
    # as long as it names the op and says CUDA is what it runs on.
    with pytest.raises((NotImplementedError, ValueError), match=re.escape(name)) as info:
        _packet(name)(torch.randn(4))
    assert "CUDA" in str(info.value)


def test_ptx_op_cpu_tensor_call_names_the_op(relu_ptx, op_name):
    name = op_name("ptx_cpu")
    ttk.ptx_op(name, relu_ptx, "my_relu", _ptx_meta, _EAGER, _noop)
    with pytest.raises((NotImplementedError, ValueError), match=re.escape(name)) as info:
        _packet(name)(torch.randn(4), 1.0)
    assert "CUDA" in str(info.value)


def test_declared_dtype_mismatch_is_type_error_naming_argument(op_name, relu_spec, register):
    name = op_name("dtype")
    spec = relu_spec(inputs=[ttk.InputDecl("x"), ttk.InputDecl("w", dtype=torch.float32)])
    register(name, spec)
    with FakeTensorMode():
        x = torch.empty(3, device="cuda")
        assert tuple(_packet(name)(x, torch.empty(3, device="cuda")).shape) == (3,)
        with pytest.raises(TypeError, match=re.escape(name) + r".*argument 'w' must have dtype torch\.float32 \(got torch\.float16\)"):
            _packet(name)(x, torch.empty(3, device="cuda", dtype=torch.float16))


def test_declared_dtype_is_checked_under_fake_mode_with_meta_fn_too(op_name, relu_spec, register):
    def meta(x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x)

    name = op_name("dtype_meta")
    register(name, relu_spec(inputs=[ttk.InputDecl("x", dtype=torch.float32)], outputs=None), meta_fn=meta)
    with FakeTensorMode():
        with pytest.raises(TypeError, match=re.escape(name) + r".*argument 'x' must have dtype torch\.float32"):
            _packet(name)(torch.empty(3, device="cuda", dtype=torch.float16))


def test_inputs_on_different_devices_raise(op_name, relu_spec, register):
    name = op_name("devices")
    register(name, relu_spec(inputs=[ttk.InputDecl("x"), ttk.InputDecl("w")]))
    with FakeTensorMode():
        with pytest.raises(ValueError, match=re.escape(name) + r".*argument 'w' is on cpu but 'x' is on cuda"):
            _packet(name)(torch.empty(3, device="cuda"), torch.empty(3))


# -- ptx_op --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def relu_ptx(relu_source: str) -> bytes:
    return compile_kernel(CompileRequest(relu_source, "my_relu", "sm_80")).ptx


def _ptx_meta(x: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.empty_like(x)


def _EAGER(x, alpha):
    return x


def test_ptx_op_registers_with_schema_from_meta_fn_hints(relu_ptx, op_name):
    name = op_name("ptx")
    ttk.ptx_op(name, relu_ptx, "my_relu", _ptx_meta, lambda x, alpha: x, _noop)
    assert _schema(name) == f"{name}(Tensor x, float alpha) -> Tensor"
    assert name in ttk.registered_ops()
    with FakeTensorMode():
        y = _packet(name)(torch.empty(2, 7, device="cuda", dtype=torch.float16), 0.5)
    assert (tuple(y.shape), y.dtype) == ((2, 7), torch.float16)


def test_ptx_op_same_arguments_again_is_a_no_op_and_different_raise(relu_ptx, op_name):
    name = op_name("ptx_again")
    ttk.ptx_op(name, relu_ptx, "my_relu", _ptx_meta, _EAGER, _noop)
    first = ttk.registered_ops()[name]
    ttk.ptx_op(name, bytearray(relu_ptx), "my_relu", _ptx_meta, _EAGER, _noop)
    assert ttk.registered_ops()[name] is first
    with pytest.raises(ValueError, match=re.escape(name) + r".*already registered"):
        ttk.ptx_op(name, relu_ptx, "my_relu", _ptx_meta, _EAGER, _noop, supports_dynamic_shapes=True)


def test_ptx_op_explicit_schema(relu_ptx, op_name):
    name = op_name("ptx_schema")
    ttk.ptx_op(name, relu_ptx, "my_relu", lambda x, a: torch.empty_like(x), _EAGER, _noop, schema="(Tensor x, float alpha) -> Tensor")
    assert _schema(name) == f"{name}(Tensor x, float alpha) -> Tensor"


@pytest.mark.parametrize(
    "change, exc, pattern",
    [
        pytest.param({"ptx": 42}, TypeError, r"ptx must be bytes or str \(got int\)", id="ptx-int"),
        pytest.param({"kernel_name": "not_relu"}, ValueError, r"ptx defines no kernel named 'not_relu' \(it defines \['my_relu'\]\)", id="unknown-kernel"),
        pytest.param({"ptx": b"// not ptx\n"}, ValueError, r"ptx has no '\.version' directive", id="not-ptx"),
        pytest.param({"meta_fn": None}, TypeError, r"meta_fn is required for ptx_op", id="no-meta-fn"),
        pytest.param({"eager_fn": None}, TypeError, r"eager_fn is required for ptx_op", id="no-eager-fn"),
        pytest.param({"meta_fn": lambda x, alpha: x}, ValueError, r"cannot infer a schema from meta_fn's type hints", id="meta-no-hints"),
        pytest.param({"schema": "(Tensor x) -> float"}, ValueError, r"schema must return only Tensors", id="non-tensor-return"),
    ],
)
def test_ptx_op_rejects_and_leaves_nothing(change, exc, pattern, relu_ptx, op_name, assert_left_nothing):
    name = op_name("ptx_bad")
    args = {"ptx": relu_ptx, "kernel_name": "my_relu", "meta_fn": _ptx_meta, "eager_fn": _EAGER, "aot_fn": _noop}
    change = dict(change)
    schema = change.pop("schema", None)
    args.update(change)
    if args["ptx"] == "str":
        args["ptx"] = relu_ptx.decode()
    with pytest.raises(exc, match=re.escape(f"ptx_op({name})") + r": " + pattern):
        ttk.ptx_op(name, args["ptx"], args["kernel_name"], args["meta_fn"], args["eager_fn"], args["aot_fn"], schema=schema)
    assert_left_nothing(name)
    ttk.ptx_op(name, relu_ptx, "my_relu", _ptx_meta, _EAGER, _noop)
    assert name in ttk.registered_ops()


# -- code written for torch_tensorrt.kernels -------------------------------------------------------


def test_dim_size_takes_upstreams_axis_keyword(op_name, relu_spec, register):
    assert ttk.DimSize("x", axis=-1) == ttk.DimSize("x", -1) == ttk.DimSize("x", dim=-1)
    assert ttk.DimSize("x", axis=1).dim == 1
    with pytest.raises(TypeError, match=r"give the axis once"):
        ttk.DimSize("x", 1, dim=1)
    name = op_name("axis")
    register(name, relu_spec(extras=[ttk.DimSize("x", axis=-1)]))
    assert ttk.registered_ops()[name].plan.extras[0].label == "x.shape[-1]"


def test_meta_fn_parameters_without_hints_are_tensors(op_name, relu_spec, register):
    def meta(x, alpha: float) -> torch.Tensor:
        return torch.empty_like(x)

    name = op_name("nohint")
    register(name, relu_spec(inputs=[ttk.InputDecl("x"), ttk.ScalarInput("alpha", float)], outputs=None), meta_fn=meta)
    assert _schema(name) == f"{name}(Tensor x, float alpha) -> Tensor"


def test_ptx_op_takes_ptx_as_text(relu_ptx, op_name):
    name = op_name("ptxstr")
    ttk.ptx_op(name, relu_ptx.decode(), "my_relu", _ptx_meta, _EAGER, _noop)
    ttk.ptx_op(name, relu_ptx, "my_relu", _ptx_meta, _EAGER, _noop)  # the same PTX as bytes: the same op
    assert ttk.registered_ops()[name].ptx == relu_ptx


def test_a_spec_assigned_after_construction_registers_as_assigned_and_is_snapshotted(op_name, relu_spec, register):
    spec = relu_spec()
    spec.extras = [ttk.DimSize("x", axis=0)]  # upstream's KernelSpec is a mutable dataclass
    spec.geometry = ttk.Elementwise(block=(128,))
    name = op_name("mutable")
    register(name, spec)
    plan = ttk.registered_ops()[name].plan
    assert plan.extras[0].label == "x.shape[0]" and plan.geometry.block == (128,)
    spec.extras.append(ttk.Numel("x"))  # later edits do not reach the registered op
    spec.geometry = ttk.Elementwise(block=(64,))
    assert ttk.registered_ops()[name].plan.geometry.block == (128,)
    with pytest.raises(ValueError, match=r"already registered with a different kernel or spec"):
        register(name, spec)
    spec.extras.pop()
    spec.geometry = ttk.Elementwise(block=(128,))
    register(name, spec)  # as registered again: a no-op
