"""Kernels with their own parameter order, sizes as expressions, requirements and C types, checked
without a GPU: registration refuses a spec the compiled kernel disagrees with (both layouts
shown), launch values obey the requirements and the ranges of the kernel's own types, and the
fake impl and ``torch.export`` see the same rules."""
from __future__ import annotations

import re

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import kernelop as ttk
from kernelop.plan.describe import describe
from kernelop.pytorch.launcher import EagerLauncher
from conftest import op_packet

SOFTMAX = r"""
extern "C" __global__ void softmax_rows(float* __restrict__ out, const float* __restrict__ inp, int N, int C) {
  extern __shared__ float row[];
  if (blockIdx.x < N && threadIdx.x == 0) for (int c = 0; c < C; ++c) { row[c] = inp[blockIdx.x * C + c]; out[blockIdx.x * C + c] = row[c]; }
}
"""


def softmax_spec(**fields) -> ttk.KernelSpec:
    rows = ttk.numel("inp") // ttk.dim("inp", -1)
    base = dict(
        kernel_source=SOFTMAX,
        kernel_name="softmax_rows",
        inputs=[ttk.InputDecl("inp", dtype=torch.float32)],
        outputs=[ttk.OutputDecl("out", shape=ttk.SameAs("inp"))],
        extras=[ttk.SizeArg("N", rows), ttk.SizeArg("C", ttk.dim("inp", -1))],
        geometry=ttk.Launch(grid=(rows,), block=(32, 8), shared_mem_bytes=ttk.dim("inp", -1) * 4),
        param_order=("out", "inp", "N", "C"),
        requires=[ttk.Divisible(ttk.dim("inp", -1), 4), ttk.InRange(ttk.dim("inp", -1), min=4, max=4096)],
    )
    base.update(fields)
    return ttk.KernelSpec(**base)


def plan_of(name: str):
    return ttk.registered_ops()[name].plan


# -- size expressions ------------------------------------------------------------------------


def test_sizes_are_integer_expressions_that_compare_by_value():
    n = ttk.dim("x", -1)
    assert str(ttk.cdiv(ttk.numel("x"), 256 * 8) + 2 * n - 1) == "((cdiv(numel(x), 2048) + (2 * x.shape[-1])) - 1)"
    assert ttk.minimum(n, 4) == ttk.minimum(ttk.dim("x", -1), 4) and hash(n * 2) == hash(ttk.dim("x", -1) * 2)
    with pytest.raises(TypeError, match="use // .* or kernelop.cdiv"):
        n / 2
    with pytest.raises(TypeError, match="Divisible"):
        n % 8


def test_the_same_new_style_spec_again_is_a_no_op(op_name, register):
    name = op_name("again")
    register(name, softmax_spec())
    register(name, softmax_spec())
    assert name in ttk.registered_ops()


# -- registration: the kernel's own parameter list --------------------------------------------


def test_the_kernels_own_order_registers_and_is_kept(op_name, register):
    name = op_name("order")
    register(name, softmax_spec())
    plan = plan_of(name)
    assert [(s.kind, s.ctype) for s in plan.arg_layout] == [("output", "ptr"), ("tensor", "ptr"), ("extra", "i32"), ("extra", "i32")]
    assert str(op_packet(name).default._schema) == f"{name}(Tensor inp) -> Tensor"


def test_outputs_first_declared_in_the_seed_order_is_refused_on_a_machine_without_gpu(op_name, register, assert_left_nothing):
    """(out, inp) declared as (inp, out): same sizes, so only names and const can tell."""
    name = op_name("swapped")
    spec = softmax_spec(param_order=None, extras=[ttk.SizeArg("N", 1), ttk.SizeArg("C", 1)])
    with pytest.raises(ValueError) as raised:
        register(name, spec)
    message = str(raised.value)
    assert message.startswith(f"kernelop.cuda_kernel_op({name}): kernel 'softmax_rows' does not take the parameters the spec describes")
    assert "spec, in (inputs..., extras..., outputs...):" in message and "0: inp: pointer (8 bytes)" in message
    assert "0: float* __restrict__ out (PTX .u64, 8 bytes)" in message
    assert_left_nothing(name)


def test_an_output_the_kernel_declares_const_is_refused(op_name, register, assert_left_nothing):
    source = 'extern "C" __global__ void k(const float* y, const float* x, int n) {}'
    spec = ttk.KernelSpec(source, "k", inputs=[ttk.InputDecl("a")], outputs=[ttk.OutputDecl("b", ttk.SameAs("a"))],
                          extras=[ttk.SizeArg("n", ttk.numel("a"))], geometry=ttk.Launch((1,), (1,)), param_order=("b", "a", "n"))
    name = op_name("constout")
    with pytest.raises(ValueError, match=r"output 'b' is the kernel's 'const float\* y', which is const"):
        register(name, spec)
    assert_left_nothing(name)


@pytest.mark.parametrize(
    "source, problem",
    [
        ('extern "C" __global__ void my_relu(const float* x, float* y) {}', r"the kernel has 2 parameters, the spec 3"),
        ('extern "C" __global__ void my_relu(const float* x, float n, float* y) {}', r"parameter 1: the spec passes 'numel\(x\)' as a int, but the kernel's parameter is a 4-byte float"),
        ('extern "C" __global__ void my_relu(const float* x, int n, char y) {}', r"parameter 2: the spec passes 'y' as a pointer"),
        ('struct P { float a, b; };\nextern "C" __global__ void my_relu(const float* x, P n, float* y) {}', r"parameter 1: .*8-byte aggregate"),
    ],
    ids=["forgotten-parameter", "float-for-int", "value-for-pointer", "struct-by-value"],
)
def test_a_default_order_spec_the_kernel_disagrees_with_is_refused_at_registration(source, problem, op_name, relu_spec, register, assert_left_nothing):
    name = op_name("mismatch")
    with pytest.raises(ValueError, match=re.escape(f"kernelop.cuda_kernel_op({name}): ") + r".*" + problem):
        register(name, relu_spec(kernel_source=source))
    assert_left_nothing(name)


def test_parameters_take_the_kernels_own_c_types(op_name, register):
    source = r"""
#define INDEX unsigned long
extern "C" __global__ void k(double alpha, const float* x, size_t n, long long m, unsigned u, ptrdiff_t p, INDEX q, float* y) {}
"""
    spec = ttk.KernelSpec(
        source, "k",
        inputs=[ttk.InputDecl("x"), ttk.ScalarInput("alpha", float)],
        outputs=[ttk.OutputDecl("y", ttk.SameAs("x"))],
        extras=[ttk.SizeArg(n, ttk.numel("x")) for n in ("n", "m", "u", "p", "q")],
        geometry=ttk.Launch(grid=(ttk.cdiv(ttk.numel("x"), 128),), block=(128,)),
        param_order=("alpha", "x", "n", "m", "u", "p", "q", "y"),
    )
    name = op_name("ctypes")
    register(name, spec)
    assert [s.ctype for s in plan_of(name).arg_layout] == ["f64", "ptr", "u64", "i64", "u32", "i64", "x64", "ptr"]


def test_a_template_kernel_is_typed_from_its_ptx(op_name, register):
    source = "template <typename T, typename I>\n__global__ void scale(T* out, const T* x, T alpha, I n) {}\n"
    spec = ttk.KernelSpec(
        source, "scale<double, int>",
        inputs=[ttk.InputDecl("x", dtype=torch.float64), ttk.ScalarInput("alpha", float)],
        outputs=[ttk.OutputDecl("out", ttk.SameAs("x"))],
        extras=[ttk.SizeArg("n", ttk.numel("x"))],
        geometry=ttk.Launch(grid=(ttk.cdiv(ttk.numel("x"), 256),), block=(256,)),
        param_order=("out", "x", "alpha", "n"),
    )
    name = op_name("template")
    register(name, spec)
    assert [s.ctype for s in plan_of(name).arg_layout] == ["ptr", "ptr", "f64", "x32"]


# -- registration: the spec's own mistakes -----------------------------------------------------


@pytest.mark.parametrize(
    "fields, exc, message",
    [
        ({"param_order": ("out", "inp", "N")}, ValueError, r"param_order leaves out \['C'\]"),
        ({"param_order": ("out", "inp", "N", "C", "N")}, ValueError, r"param_order names \['N'\] more than once"),
        ({"param_order": ("out", "inp", "N", "D")}, ValueError, r"param_order names \['D'\], which are not"),
        ({"extras": [ttk.Numel("inp"), ttk.SizeArg("C", 1)]}, ValueError, r"extras\[0\] have no name. Write them as SizeArg"),
        ({"param_order": "out inp N C"}, TypeError, r"param_order must be a sequence of parameter names"),
        ({"geometry": ttk.Launch(grid=(1, 1, 1, 1), block=(1,))}, TypeError, r"geometry.grid must be a tuple of 1 to 3 sizes"),
        ({"geometry": ttk.Launch(grid=(1,), block=(64, 32))}, ValueError, r"geometry.block has 2048 threads"),
        ({"geometry": ttk.Launch(grid=(1,), block=(0,))}, ValueError, r"geometry.block\[0\] must be >= 1"),
        ({"geometry": ttk.Launch(grid=(ttk.dim("w", 0),), block=(1,))}, ValueError, r"geometry.grid\[0\] refers to 'w', which is not one of \['inp', 'out'\]"),
        ({"geometry": ttk.Launch(grid=(1.5,), block=(1,))}, TypeError, r"geometry.grid\[0\] must be an int or a size expression"),
        ({"extras": [ttk.SizeArg("N", "inp"), ttk.SizeArg("C", 1)]}, TypeError, r"extras\[0\].value must be an int or a size expression"),
        ({"extras": [ttk.SizeArg("N", ttk.dim("inp", "a")), ttk.SizeArg("C", 1)]}, TypeError, r"the axis of dim\('inp', ...\) must be an int"),
        ({"extras": [ttk.SizeArg("inp", 1), ttk.SizeArg("C", 1)]}, ValueError, r"extras\[0\].name 'inp' duplicates inputs\[0\].name"),
        ({"requires": [ttk.Divisible(ttk.dim("out", 0), 4)]}, ValueError, r"requires\[0\].value refers to 'out', which is not one of \['inp'\]"),
        ({"requires": [ttk.Divisible(ttk.dim("inp", 0), 0)]}, ValueError, r"requires\[0\].by must be an int >= 1"),
        ({"requires": [ttk.InRange(ttk.dim("inp", 0))]}, ValueError, r"requires\[0\] has neither min nor max"),
        ({"requires": [ttk.InRange(ttk.dim("inp", 0), min=5, max=4)]}, ValueError, r"requires\[0\] has min 5 > max 4"),
        ({"requires": ["inp"]}, TypeError, r"requires\[0\] must be Divisible, InRange or Equal"),
    ],
)
def test_spec_mistakes_name_the_field_and_leave_nothing(fields, exc, message, op_name, register, assert_left_nothing):
    name = op_name("bad")
    with pytest.raises(exc, match=re.escape(f"kernelop.cuda_kernel_op({name}): ") + r".*" + message):
        register(name, softmax_spec(**fields))
    assert_left_nothing(name)


# -- launch values ------------------------------------------------------------------------------


@pytest.fixture
def softmax(op_name, register) -> tuple[str, EagerLauncher]:
    name = op_name("softmax")
    register(name, softmax_spec())
    registration = ttk.registered_ops()[name]
    return name, EagerLauncher(registration.plan, registration.binaries, None)


def test_launch_values_come_from_the_size_expressions(softmax):
    _, launcher = softmax
    assert launcher._dims_for((3, 5, 64), ((3, 5, 64),), None) == (15, 1, 1, 32, 8, 1, 256, 15, 64)


@pytest.mark.parametrize(
    "shape, message",
    [
        ((3, 66), r"argument 'inp' axis -1 has size 66, but requires\[0\] requires it to be a multiple of 4 \(input shapes \[\(3, 66\)\]\)"),
        ((3, 0), r"argument 'inp' axis -1 has size 0, but requires\[1\] requires it to be >= 4"),
        ((2, 8192), r"argument 'inp' axis -1 has size 8192, but requires\[1\] requires it to be <= 4096"),
    ],
)
def test_a_broken_requirement_names_argument_axis_rule_and_value(softmax, shape, message):
    name, launcher = softmax
    with pytest.raises(ValueError, match=re.escape(f"kernelop.call({name}): ") + message):
        launcher._dims_for(shape, (shape,), None)
    assert launcher.dims.get(None, {}) == {}


def test_equal_names_both_sizes(op_name, register):
    source = 'extern "C" __global__ void mm(const float* A, const float* B, int M, int N, int K, float* C) {}'
    spec = ttk.KernelSpec(
        source, "mm",
        inputs=[ttk.InputDecl("A"), ttk.InputDecl("B")],
        outputs=[ttk.OutputDecl("C", shape=(ttk.dim("A", 0), ttk.dim("B", 1)))],
        extras=[ttk.SizeArg("M", ttk.dim("A", 0)), ttk.SizeArg("N", ttk.dim("B", 1)), ttk.SizeArg("K", ttk.dim("A", 1))],
        geometry=ttk.Launch(grid=(ttk.cdiv(ttk.dim("C", 1), 16), ttk.cdiv(ttk.dim("C", 0), 16)), block=(16, 16)),
        requires=[ttk.Equal(ttk.dim("A", 1), ttk.dim("B", 0))],
    )
    name = op_name("mm")
    register(name, spec)
    launcher = EagerLauncher(plan_of(name), ttk.registered_ops()[name].binaries, None)
    assert launcher._dims_for(((40, 7), (7, 33)), ((40, 7), (7, 33)), None)[:9] == (3, 3, 1, 16, 16, 1, 0, 40, 33)
    assert launcher.launch_values([(40, 7), (7, 33)])[10] == (40, 33)  # C's shape from the sizes
    with pytest.raises(ValueError, match=r"argument 'A' axis 1 has size 7, but requires\[0\] requires it to equal B.shape\[0\] \(= 8\)"):
        launcher._dims_for(((40, 7), (8, 33)), ((40, 7), (8, 33)), None)
    with FakeTensorMode():
        c = op_packet(name)(torch.empty(40, 7, device="cuda"), torch.empty(7, 33, device="cuda"))
        assert tuple(c.shape) == (40, 33)
        with pytest.raises(ValueError, match=r"requires\[0\] requires it to equal B.shape\[0\]"):
            op_packet(name)(torch.empty(40, 7, device="cuda"), torch.empty(8, 33, device="cuda"))


def _sized_op(op_name, register, extra, ctype_source: str, geometry=None, inputs_shape_name="x"):
    source = f'extern "C" __global__ void k(const float* x, {ctype_source} n, float* y) {{}}'
    spec = ttk.KernelSpec(source, "k", inputs=[ttk.InputDecl("x")], outputs=[ttk.OutputDecl("y", ttk.SameAs("x"))],
                          extras=[ttk.SizeArg("n", extra)], geometry=geometry or ttk.Launch((ttk.numel("x"),), (1,)))
    name = op_name("sized")
    register(name, spec)
    return name, EagerLauncher(plan_of(name), ttk.registered_ops()[name].binaries, None)


@pytest.mark.parametrize(
    "ctype, shape, fits",
    [
        ("unsigned int", (3,), False),  # 3 - 10 < 0 for an unsigned parameter
        ("int", (3,), True),
        ("size_t", (3,), False),
        ("long long", (3,), True),
    ],
)
def test_an_extra_is_checked_against_its_own_c_type(op_name, register, ctype, shape, fits):
    name, launcher = _sized_op(op_name, register, ttk.dim("x", 0) - 10, ctype)
    if fits:
        assert launcher._dims_for(shape, (shape,), None)[7] == shape[0] - 10
    else:
        with pytest.raises(ValueError, match=r"extra n = -7 does not fit the kernel's \d+-bit .* parameter"):
            launcher._dims_for(shape, (shape,), None)


def test_a_64_bit_extra_carries_a_size_past_int32(op_name, register):
    name, launcher = _sized_op(op_name, register, ttk.numel("x") * 4, "size_t", ttk.Launch((1,), (1,)))
    assert launcher._dims_for((2**31,), ((2**31,),), None)[7] == 2**33


def test_a_division_by_zero_is_an_empty_launch_for_empty_inputs_else_an_error(op_name, register):
    spec = softmax_spec(requires=[])
    name = op_name("nodiv")
    register(name, spec)
    launcher = EagerLauncher(plan_of(name), ttk.registered_ops()[name].binaries, None)
    assert launcher._dims_for((5, 0), ((5, 0),), None)[0] == 0  # rows = numel // 0: nothing to launch
    name2, launcher2 = _sized_op(op_name, register, ttk.dim("x", 0) // (ttk.dim("x", 0) - 4), "int", ttk.Launch((1,), (1,)))
    with pytest.raises(ValueError, match=re.escape(f"kernelop.call({name2}): a launch size divides by zero for input shapes [(4,)]")):
        launcher2._dims_for((4,), ((4,),), None)


def test_a_negative_grid_or_an_empty_block_is_refused(op_name, register):
    name, launcher = _sized_op(op_name, register, 1, "int", ttk.Launch((ttk.dim("x", 0) - 5,), (1,)))
    with pytest.raises(ValueError, match=r"launch grid \(-2, 1, 1\) has a negative size"):
        launcher._dims_for((3,), ((3,),), None)
    name, launcher = _sized_op(op_name, register, 1, "int", ttk.Launch((1,), (ttk.dim("x", 0) - 3,)))
    with pytest.raises(ValueError, match=r"launch block \(0, 1, 1\) is outside the CUDA limits"):
        launcher._dims_for((3,), ((3,),), None)


# -- fake impl and export ------------------------------------------------------------------------


def test_fake_impl_checks_requirements_and_export_records_them(op_name, register):
    name = op_name("export")
    register(name, softmax_spec())

    class Model(torch.nn.Module):
        def forward(self, x):
            return op_packet(name)(x)

    with FakeTensorMode():
        with pytest.raises(ValueError, match=r"argument 'inp' axis -1 has size 66, but requires\[0\]"):
            op_packet(name)(torch.empty(3, 66, device="cuda"))
    example = (torch.randn(4, 64),)  # traced on the CPU; the fake impl only reads shapes
    rows, cols = torch.export.Dim("rows"), torch.export.Dim("cols", max=1024)
    with pytest.raises(Exception, match=r"(?s)Not all values of cols.*% 4"):
        torch.export.export(Model(), example, dynamic_shapes={"x": {0: rows, 1: cols}})
    program = torch.export.export(Model(), example, dynamic_shapes={"x": {0: rows, 1: 4 * torch.export.Dim("quarter", min=1, max=1024)}})
    output = next(n for n in program.graph.nodes if n.op == "output").args[0][0]
    assert [str(s) for s in output.meta["val"].shape] != ["4", "64"]  # both dims stay symbolic


def test_describe_shows_the_launch_and_the_requirements(op_name, register):
    name = op_name("describe")
    register(name, softmax_spec())
    text = describe(plan_of(name), (2,), None)
    assert "kernel args: out: pointer (8 bytes); inp: pointer (8 bytes); N: int (4 bytes); C: int (4 bytes)" in text
    assert "dynamic shared memory: inp.shape[1] * 4 bytes" in text
    assert "requires (requires[0]): inp.shape[1] % 4 == 0" in text and "requires (requires[1]): inp.shape[1] <= 4096" in text


# -- TensorRT: what an AOT launch cannot pass ---------------------------------------------------


def test_an_order_tensorrt_cannot_pass_makes_the_plugin_jit_or_is_refused_with_require_aot(op_name, register, assert_left_nothing):
    from kernelop.trt.decision import aot_layout_problem

    name = op_name("aotorder")
    register(name, softmax_spec())
    assert "param_order differs" in aot_layout_problem(plan_of(name))
    refused = op_name("aotorder")
    with pytest.raises(ValueError, match=r"require_aot=True but its TensorRT plugin would use the JIT path: its param_order differs"):
        register(refused, softmax_spec(), require_aot=True)
    assert_left_nothing(refused)
    wide, _ = _sized_op(op_name, register, ttk.numel("x"), "size_t")
    assert aot_layout_problem(plan_of(wide)) == "extras ['n'] are 64-bit kernel parameters, and a TensorRT AOT launch passes 32-bit integers"
    seed, _ = _sized_op(op_name, register, ttk.numel("x"), "int")
    assert aot_layout_problem(plan_of(seed)) is None


# -- findings of a review, each pinned -----------------------------------------------------------


def test_a_vector_pointer_reads_tensors_of_its_element_type(op_name, register):
    source = '#include <cuda_fp16.h>\nextern "C" __global__ void k(const __half2* x, int n, __half2* y) {}\n'
    spec = ttk.KernelSpec(source, "k", inputs=[ttk.InputDecl("x")], outputs=[ttk.OutputDecl("y", ttk.SameAs("x"))],
                          extras=[ttk.SizeArg("n", ttk.numel("x") // 2)], geometry=ttk.Launch((1,), (1,)))
    name = op_name("half2")
    register(name, spec)
    (_, allowed), = EagerLauncher(plan_of(name), ttk.registered_ops()[name].binaries, None).tensor_rules
    assert torch.float16 in allowed and torch.float32 not in allowed


def test_array_parameters_are_pointers_and_unknown_types_are_left_to_the_ptx(op_name, register):
    source = 'typedef float* fptr;\nextern "C" __global__ void k(const float x[], int n, fptr y) {}\n'
    spec = ttk.KernelSpec(source, "k", inputs=[ttk.InputDecl("x")], outputs=[ttk.OutputDecl("y", ttk.SameAs("x"))],
                          extras=[ttk.Numel("x")], geometry=ttk.Elementwise())
    name = op_name("array")
    register(name, spec)
    assert [s.pointee_size for s in plan_of(name).arg_layout] == [4, None, None]


def test_a_template_scalar_of_unknown_sign_refuses_negative_values(op_name, register):
    source = "template <typename T>\n__global__ void shift(const float* x, T s, int n, float* y) {}\n"
    spec = ttk.KernelSpec(source, "shift<unsigned>", inputs=[ttk.InputDecl("x"), ttk.ScalarInput("s", int)],
                          outputs=[ttk.OutputDecl("y", ttk.SameAs("x"))], extras=[ttk.Numel("x")], geometry=ttk.Elementwise())
    name = op_name("tscalar")
    register(name, spec)
    launcher = EagerLauncher(plan_of(name), ttk.registered_ops()[name].binaries, None)
    assert [s.ctype for s in plan_of(name).arg_layout] == ["ptr", "x32", "i32", "ptr"]
    assert "a1 < 0" in launcher.source  # checked per call, before packing
    with pytest.raises(ValueError, match=r"argument 's' = -1 does not fit the kernel's 32-bit integer of unknown sign parameter"):
        launcher._refuse_values({1: -1})


def test_cdiv_by_a_negative_size_agrees_in_eager_and_fake(op_name, register):
    source = 'extern "C" __global__ void k(const float* x, const float* w, float* y) {}'
    size = ttk.cdiv(ttk.dim("x", 0) - 10, ttk.dim("w", 0) - 10)
    spec = ttk.KernelSpec(source, "k", inputs=[ttk.InputDecl("x"), ttk.InputDecl("w")],
                          outputs=[ttk.OutputDecl("y", shape=(ttk.maximum(size, 0),))], geometry=ttk.Launch((1,), (1,)))
    name = op_name("cdivneg")
    register(name, spec)
    eager = EagerLauncher(plan_of(name), ttk.registered_ops()[name].binaries, None).launch_values([(5,), (8,)])
    with FakeTensorMode():
        fake = op_packet(name)(torch.empty(5, device="cuda"), torch.empty(8, device="cuda"))
    assert eager[7] == tuple(fake.shape) == (3,)  # cdiv(-5, -2) = 3


def test_a_negative_output_size_is_refused_naming_the_output(op_name, register):
    source = 'extern "C" __global__ void k(const float* x, float* y) {}'
    spec = ttk.KernelSpec(source, "k", inputs=[ttk.InputDecl("x")], outputs=[ttk.OutputDecl("y", shape=(ttk.dim("x", 0) - 10,))],
                          geometry=ttk.Launch((1,), (1,)))
    name = op_name("negout")
    register(name, spec)
    launcher = EagerLauncher(plan_of(name), ttk.registered_ops()[name].binaries, None)
    with pytest.raises(ValueError, match=re.escape(f"kernelop.call({name}): output 'y' would have the shape (-5,) for input shapes [(5,)]")):
        launcher._dims_for((5,), ((5,),), None)


def test_a_requirement_dividing_by_zero_and_a_dim_of_a_0d_input_name_the_op(op_name, register):
    name = op_name("reqdiv")
    register(name, softmax_spec(requires=[ttk.InRange(ttk.numel("inp") // ttk.dim("inp", -1), min=1)]))
    launcher = EagerLauncher(plan_of(name), ttk.registered_ops()[name].binaries, None)
    with pytest.raises(ValueError, match=re.escape(f"kernelop.call({name}): a requirement divides by zero")):
        launcher._dims_for((5, 0), ((5, 0),), None)
    with FakeTensorMode():
        with pytest.raises(ValueError, match=r"a requirement divides by zero"):
            op_packet(name)(torch.empty(5, 0, device="cuda"))
    with pytest.raises(ValueError, match=r"'inp' axis -1 is out of range for a tensor of rank 0"):
        launcher._dims_for((), ((),), None)


def test_the_snapshot_freezes_nested_lists_too(op_name, register):
    grid = [ttk.numel("inp") // ttk.dim("inp", -1)]
    spec = softmax_spec(geometry=ttk.Launch(grid=grid, block=[32, 8], shared_mem_bytes=ttk.dim("inp", -1) * 4))
    name = op_name("deep")
    register(name, spec)
    grid[0] = 1
    assert plan_of(name).launch_dims((2,), (2,)).grid[0] != plan_of(name).launch_dims((2,), (2,)).grid[1]
    assert plan_of(name).geometry.grid != (1,) and isinstance(plan_of(name).geometry.block, tuple)


def test_launch_values_are_remembered_per_device_and_checked_against_each_devices_limits(op_name, register):
    """Two GPUs of different kinds: a shape accepted on one is checked again on the other."""
    from types import SimpleNamespace

    name = op_name("twodev")
    register(name, softmax_spec(requires=[]))
    limits = {0: SimpleNamespace(max_threads=1024, max_dynamic_shared=232448), 1: SimpleNamespace(max_threads=1024, max_dynamic_shared=101376)}
    binaries = SimpleNamespace(function=lambda device, key=None: limits[device], kernel_label="softmax_rows")
    launcher = EagerLauncher(plan_of(name), binaries, None)
    shape = (2, 40000)  # 160000 bytes of dynamic shared memory
    assert launcher._dims_for(shape, (shape,), None, 0)[6] == 160000
    assert launcher._memo_for(1).get(shape) is None  # device 0's values are not device 1's
    with pytest.raises(ValueError, match=r"asks for 160000 bytes of dynamic shared memory per block; this device allows it 101376"):
        launcher._dims_for(shape, (shape,), None, 1)
    assert shape in launcher.dims[0] and shape not in launcher.dims[1]
