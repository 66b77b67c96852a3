"""Templates, in-place arguments, optional inputs, initialised outputs and autograd, on the CPU:
registration, schemas, the fake impl and every refusal, up to the launch."""
from __future__ import annotations

import re

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import kernelop as ttk
from kernelop.compiler.cache import KernelCache
from kernelop.compiler.nvrtc import COMPILE_COUNTER

from conftest import op_packet
from written_kernels import T, add_bias_spec, add_positive_spec, axpby_spec, row_sums_spec

FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def schema_of(name: str) -> str:
    return str(op_packet(name).default._schema).split("(", 1)[1]


# --- templates ---------------------------------------------------------------------------


def test_a_template_is_one_op_whose_fake_impl_follows_the_input_dtype(op_name, register):
    name = op_name("axpby")
    register(name, axpby_spec())
    assert schema_of(name) == "Tensor x, Tensor y, float a, float b) -> Tensor"
    with FakeTensorMode():
        for dtype in FLOATS:
            out = op_packet(name)(torch.empty(5, 3, dtype=dtype), torch.empty(15, dtype=dtype), 1.0, 2.0)
            assert (out.shape, out.dtype) == ((5, 3), dtype)


@pytest.mark.parametrize("dtypes, message", [
    ((torch.int32, torch.int32), "argument 'x' has dtype torch.int32; the kernel's template parameter T is instantiated for float32, float16, bfloat16, float64"),
    ((torch.float16, torch.float32), "argument 'y' has dtype torch.float32 but 'x' has torch.float16; both are of template type T"),
])
def test_a_dtype_the_template_does_not_serve_is_refused_listing_those_it_does(op_name, register, dtypes, message):
    name = op_name("axpby")
    register(name, axpby_spec())
    with FakeTensorMode(), pytest.raises(TypeError, match=re.escape(f"kernelop.call({name}): {message}")):
        op_packet(name)(torch.empty(4, dtype=dtypes[0]), torch.empty(4, dtype=dtypes[1]), 1.0, 1.0)


def test_instantiations_compile_on_first_use_and_a_warm_cache_runs_nvrtc_zero_times(op_name, tmp_path):
    name = op_name("axpby")
    before = COMPILE_COUNTER.count
    ttk.cuda_kernel_op(name, axpby_spec(), cache=KernelCache(tmp_path))
    assert COMPILE_COUNTER.count == before + 1  # the first dtype of T only
    binaries = ttk.registered_ops()[name].binaries
    assert binaries.request.kernel_name == f"axpby<float, {4}>"
    arch = binaries.request.arch  # the registration's: this GPU's, else the default
    symbols = {dtype: binaries.for_arch(arch, (dtype,)).lowered_name for dtype in FLOATS}
    assert COMPILE_COUNTER.count == before + 4 and len(set(symbols.values())) == 4
    assert "13__nv_bfloat16" in symbols[torch.bfloat16] and "Li4E" in symbols[torch.float64]

    warm = op_name("axpby")  # another process would see the same cache: no NVRTC at all
    ttk.cuda_kernel_op(warm, axpby_spec(), cache=KernelCache(tmp_path))
    again = ttk.registered_ops()[warm].binaries
    assert {dtype: again.for_arch(arch, (dtype,)).lowered_name for dtype in FLOATS} == symbols
    assert COMPILE_COUNTER.count == before + 4


def test_the_kernels_of_one_source_compile_once(op_name, tmp_path):
    cache = KernelCache(tmp_path)
    before = COMPILE_COUNTER.count
    for spec in (add_bias_spec(), row_sums_spec(), add_positive_spec()):
        ttk.cuda_kernel_op(op_name("one_source"), spec, cache=cache)
    assert COMPILE_COUNTER.count == before + 1
    assert len(cache.entries()) == 1


@pytest.mark.parametrize("change, message", [
    (dict(template_args=None), "inputs are typed by TypeParam ['T'] but template_args is missing"),
    (dict(kernel_name="axpby<float, 4>"), "kernel_name must be the template's name alone when template_args is given"),
    (dict(template_args=(ttk.TypeParam("T", (torch.complex64,)), 4)), "two different TypeParams are named 'T'"),
    (dict(template_args=(T, 4.5)), "template_args[1] must be a TypeParam, an int, a bool or C++ text (got 4.5)"),
    (dict(template_args=(T, "4; }")), "template_args[1] must be C++ text for one template argument"),
    (dict(template_args=(T, ttk.TypeParam("U"))), "template_args[1] TypeParam 'U' types no required tensor input"),
])
def test_template_mistakes_are_refused_naming_the_field(op_name, register, assert_left_nothing, change, message):
    name = op_name("axpby")
    spec = axpby_spec()
    for field, value in change.items():
        setattr(spec, field, value)
    with pytest.raises((ValueError, TypeError), match=re.escape(f"kernelop.cuda_kernel_op({name}): {message}")):
        register(name, spec)
    assert_left_nothing(name)


def test_a_type_param_dtype_without_a_cpp_type_is_refused(op_name, register, assert_left_nothing):
    name = op_name("axpby")
    U = ttk.TypeParam("T", (torch.float32, torch.complex64))
    spec = axpby_spec()
    spec.template_args = (U, 4)
    spec.inputs = [ttk.InputDecl("x", U), ttk.InputDecl("y", U), ttk.ScalarInput("a", float), ttk.ScalarInput("b", float)]
    with pytest.raises(ValueError, match=re.escape(f"kernelop.cuda_kernel_op({name}): TypeParam 'T' lists [torch.complex64], which have no C++ type")):
        register(name, spec)
    assert_left_nothing(name)


# --- arguments the kernel writes ----------------------------------------------------------


def test_an_in_place_argument_is_registered_as_mutated_and_the_op_returns_nothing(op_name, register):
    name = op_name("add_bias")
    register(name, add_bias_spec())
    assert schema_of(name) == "Tensor(a0!) x, Tensor? bias, float alpha) -> ()"
    with FakeTensorMode():
        assert op_packet(name)(torch.empty(4, 3), torch.empty(3), 1.0) is None
        assert op_packet(name)(torch.empty(4, 3), None, 1.0) is None


def test_an_in_place_op_exports_functionalised(op_name, register):
    name = op_name("add_bias")
    register(name, add_bias_spec())

    class Step(torch.nn.Module):
        def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
            x = x.clone()
            op_packet(name)(x, bias, 0.5)
            return x * 2

    program = torch.export.export(Step(), (torch.randn(4, 3), torch.randn(3)))
    assert name.split("::")[1] in str(program.graph)  # kept as the op (functionalised), not dropped


def test_the_fake_impl_of_initialised_outputs_has_their_shapes(op_name, register):
    sums, positive = op_name("row_sums"), op_name("add_positive")
    register(sums, row_sums_spec())
    register(positive, add_positive_spec())
    with FakeTensorMode():
        assert op_packet(sums)(torch.empty(7, 5)).shape == (7,)
        assert op_packet(positive)(torch.empty(7, 5), torch.empty(35)).shape == (7, 5)


@pytest.mark.parametrize("change, message", [
    (dict(outputs=[]), "outputs is empty and no input has mutates=True"),
    (dict(inputs=[ttk.InputDecl("x", mutates=True, optional=True)]), "inputs[0] 'x' is both mutates=True and optional=True"),
    (dict(inputs=[ttk.InputDecl("x", mutates=1)]), "inputs[0].mutates must be a bool (got 1)"),
    (dict(inputs=[ttk.InputDecl("x", optional=True)]), "every tensor input is optional"),
    (dict(inputs=[ttk.InputDecl("x"), ttk.InputDecl("w", optional=True)], extras=[ttk.Numel("w")]), "extras[0] names optional input 'w', which may be None"),
    (dict(outputs=[ttk.OutputDecl("y", ttk.SameAs("x"), init=[0])]), "outputs[0].init must be a number to fill with or an input's name to copy"),
    (dict(outputs=[ttk.OutputDecl("y", ttk.ReduceDims("x", (0,)), init="x")]), "outputs[0].init copies input 'x', so the output must have its shape and dtype"),
    (dict(outputs=[ttk.OutputDecl("y", ttk.SameAs("x"), init="nope")]), "outputs[0].init names unknown input 'nope'"),
])
def test_written_argument_mistakes_are_refused_naming_the_field(op_name, relu_spec, register, assert_left_nothing, change, message):
    name = op_name("written")
    with pytest.raises((ValueError, TypeError), match=re.escape(f"kernelop.cuda_kernel_op({name}): {message}")):
        register(name, relu_spec(**change))
    assert_left_nothing(name)


def test_a_given_schema_must_declare_what_the_spec_writes(op_name, register, assert_left_nothing):
    name = op_name("add_bias")
    with pytest.raises(ValueError, match=re.escape(f"kernelop.cuda_kernel_op({name}): schema arguments ['Tensor', 'Tensor?', 'float'] "
                                                   "do not match the declared inputs ['Tensor(a!)', 'Tensor?', 'float']")):
        register(name, add_bias_spec(), schema="(Tensor x, Tensor? bias, float alpha) -> ()")
    assert_left_nothing(name)
    register(name, add_bias_spec(), schema="(Tensor(a!) x, Tensor? bias, float alpha) -> ()")


# --- autograd -----------------------------------------------------------------------------


def _axpby_backward(saved, grad):
    return {"x": grad * saved.a, "y": grad * saved.b}


def test_backward_reads_what_the_forward_saved_by_name(op_name, register):
    name = op_name("axpby")
    register(name, axpby_spec(), backward=_axpby_backward, save=("a", "b"))
    x = torch.empty(6, device="meta", requires_grad=True)
    y = torch.empty(6, device="meta", requires_grad=True)
    gx, gy = torch.autograd.grad(op_packet(name)(x, y, 3.0, -2.0).sum(), (x, y))
    assert gx.shape == gy.shape == (6,) and gx.device.type == "meta"


def test_backward_mistakes_are_named(op_name, register, assert_left_nothing):
    name = op_name("axpby")
    with pytest.raises(ValueError, match=re.escape(f"kernelop.cuda_kernel_op({name}): save names ['z'], which are not inputs or outputs of the op (they are ['x', 'y', 'a', 'b', 'out'])")):
        register(name, axpby_spec(), backward=_axpby_backward, save=("z",))
    assert_left_nothing(name)
    with pytest.raises(TypeError, match=re.escape(f"kernelop.cuda_kernel_op({name}): save must be a list of input and output names (got 'x')")):
        register(name, axpby_spec(), backward=_axpby_backward, save="x")
    with pytest.raises(ValueError, match=re.escape(f"kernelop.cuda_kernel_op({name}): backward= is given but the op writes ['x'] in place")):
        register(name, add_bias_spec(), backward=lambda saved, grad: None)
    assert_left_nothing(name)

    register(name, axpby_spec(), backward=lambda saved, grad: (grad,), save=())
    x = torch.empty(2, device="meta", requires_grad=True)
    with pytest.raises(ValueError, match=re.escape(f"kernelop.call({name}): backward must return a dict by input name or one gradient per input ['x', 'y', 'a', 'b']")):
        op_packet(name)(x, x, 1.0, 1.0).sum().backward()


def test_an_initialised_output_has_no_tensorrt_plugin_and_no_meta_fn(op_name, register, assert_left_nothing, monkeypatch, caplog):
    from kernelop.trt.decision import plan_problems

    name = op_name("row_sums")
    register(name, row_sums_spec())
    assert plan_problems(ttk.registered_ops()[name].plan) == [
        "outputs ['out'] are initialised before the launch (init=), which TensorRT's output buffers are not"]
    other = op_name("row_sums")
    with pytest.raises(ValueError, match=re.escape(f"kernelop.cuda_kernel_op({other}): outputs[0].init is given with meta_fn=")):
        register(other, row_sums_spec(), meta_fn=lambda x: x.new_zeros(x.shape[0]))
    assert_left_nothing(other)


def test_an_optional_input_is_never_a_shape_or_dtype_source(op_name, relu_spec, register, assert_left_nothing):
    source = 'extern "C" __global__ void k(const float* b, const float* x, int n, float* y) {}\n'
    inputs = [ttk.InputDecl("b", optional=True), ttk.InputDecl("x")]
    name = op_name("optional")
    register(name, relu_spec(kernel_source=source, kernel_name="k", inputs=inputs, extras=[ttk.Numel("x")],
                             outputs=[ttk.OutputDecl("y", ttk.SameAs("x"))]))
    with FakeTensorMode():
        assert op_packet(name)(None, torch.empty(3, dtype=torch.float32)).dtype == torch.float32  # x's dtype, not b's
    bad = op_name("optional")
    with pytest.raises(ValueError, match=re.escape(f"kernelop.cuda_kernel_op({bad}): outputs[0].shape.input_idx refers to optional input 'b'")):
        register(bad, relu_spec(kernel_source=source, kernel_name="k", inputs=inputs, extras=[ttk.Numel("x")],
                                outputs=[ttk.OutputDecl("y", ttk.SameAs(0))]))
    assert_left_nothing(bad)
