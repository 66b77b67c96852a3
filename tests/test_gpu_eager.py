"""Eager launches on a real GPU, checked against PyTorch."""
import itertools
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch

import kernelop as ttk
from kernelop.compiler import nvrtc
from kernelop.cuda import driver
from kernelop.compiler.cache import KernelCache
from kernelop.cli.examples import RELU, ROW_SUM
from kernelop.native import build as native_build
from conftest import module_loads

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

_names = itertools.count()


def op_name(stem: str) -> str:
    return f"kgpu::{stem}_{next(_names)}"


def register(cache, stem: str, **spec_fields) -> str:
    """Register a fresh op named after ``stem`` from KernelSpec fields; returns its name."""
    name = op_name(stem)
    ttk.cuda_kernel_op(name, ttk.KernelSpec(**spec_fields), cache=cache)
    return name


def ns_op(name: str):
    ns, op = name.split("::")
    return getattr(getattr(torch.ops, ns), op)


@pytest.fixture
def cache(tmp_path):
    return KernelCache(tmp_path)




ADD = r"""
extern "C" __global__ void add2(const float* a, const float* b, int n, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a[i] + 2.f * b[i];
}
"""


def relu_op(cache, block=256):
    name = register(
        cache,
        "relu",
        kernel_source=RELU,
        kernel_name="my_relu",
        inputs=[ttk.InputDecl("x", dtype=torch.float32)],
        outputs=[ttk.OutputDecl("y", shape=ttk.SameAs(0))],
        extras=[ttk.Numel("x")],
        geometry=ttk.Elementwise(block=(block,), layout="flat"),
    )
    return ns_op(name)


@pytest.mark.parametrize("shape", [(1,), (1000,), (3, 257), (2, 3, 129), (2, 3, 4, 65)])
def test_flat_relu_any_rank(cache, shape):
    op = relu_op(cache)
    x = torch.randn(shape, device="cuda")
    torch.testing.assert_close(op(x), torch.relu(x), rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(777,), (5, 300), (2, 2, 2, 333)])
def test_flat_two_inputs(cache, shape):
    a, b = torch.randn(shape, device="cuda"), torch.randn(shape, device="cuda")
    torch.testing.assert_close(add2_op(cache)(a, b), a + 2 * b)


SCALARS = r"""
extern "C" __global__ void affine(const float* x, float alpha, int k, bool negate, int n, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) { float v = alpha * x[i] + (float)k; y[i] = negate ? -v : v; }
}
"""


def affine_op(cache) -> str:
    name = register(
        cache,
        "affine",
        kernel_source=SCALARS,
        kernel_name="affine",
        inputs=[ttk.InputDecl("x"), ttk.ScalarInput("alpha", float), ttk.ScalarInput("k", int), ttk.ScalarInput("negate", bool)],
        outputs=[ttk.OutputDecl("y", shape=ttk.SameAs("x"))],
        extras=[ttk.Numel("x")],
        geometry=ttk.Elementwise(block=(256,)),
    )
    return name


@pytest.mark.parametrize("alpha,k,negate", [(0.5, 3, False), (-2.25, -7, True), (1e3, 0, True)])
def test_scalar_inputs_float_int_bool(cache, alpha, k, negate):
    name = affine_op(cache)
    assert str(ns_op(name).default._schema).endswith("(Tensor x, float alpha, int k, bool negate) -> Tensor")
    x = torch.randn(1000, device="cuda")
    expected = alpha * x + k
    torch.testing.assert_close(ns_op(name)(x, alpha, k, negate), -expected if negate else expected)


ND = r"""
extern "C" __global__ void nd_mix(const float* x, int H, int W, float* y) {
  int w = blockIdx.x * blockDim.x + threadIdx.x;
  int h = blockIdx.y * blockDim.y + threadIdx.y;
  long long b = blockIdx.z;
  if (h < H && w < W) {
    long long i = (b * H + h) * W + w;
    y[i] = 2.f * x[i] + (float)h - 0.5f * (float)w;
  }
}
"""


@pytest.mark.parametrize("shape", [(33, 47), (3, 17, 40), (2, 3, 5, 70)])
def test_nd_geometry_2d_block(cache, shape):
    name = register(
        cache,
        "nd",
        kernel_source=ND,
        kernel_name="nd_mix",
        inputs=[ttk.InputDecl("x")],
        outputs=[ttk.OutputDecl("y", shape=ttk.SameAs("x"))],
        extras=[ttk.DimSize("x", -2), ttk.DimSize("x", -1)],
        geometry=ttk.Elementwise(block=(16, 8), layout="nd"),
    )
    x = torch.randn(shape, device="cuda")
    h = torch.arange(shape[-2], device="cuda", dtype=torch.float32).view(-1, 1)
    w = torch.arange(shape[-1], device="cuda", dtype=torch.float32).view(1, -1)
    torch.testing.assert_close(ns_op(name)(x), 2 * x + h - 0.5 * w)





@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("shape", [(7, 1000), (3, 4, 513)])
def test_reduction_keepdim(cache, keepdim, shape):
    name = register(
        cache,
        "rowsum",
        kernel_source=ROW_SUM,
        kernel_name="row_sum",
        inputs=[ttk.InputDecl("x")],
        outputs=[ttk.OutputDecl("y", shape=ttk.ReduceDims("x", (-1,), keepdim=keepdim))],
        extras=[ttk.DimSize("x", -1)],
        geometry=ttk.Reduction(reduce_dims=(-1,), block_size=256),
    )
    x = torch.randn(shape, device="cuda")
    out = ns_op(name)(x)
    expected = x.sum(-1, keepdim=keepdim)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


SINCOS = r"""
extern "C" __global__ void sincos_k(const float* x, int n, float* s, float* c) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) { s[i] = sinf(x[i]); c[i] = cosf(x[i]); }
}
"""


def test_two_outputs_one_launch(cache):
    name = register(
        cache,
        "sincos",
        kernel_source=SINCOS,
        kernel_name="sincos_k",
        inputs=[ttk.InputDecl("x")],
        outputs=[ttk.OutputDecl("s", shape=ttk.SameAs("x")), ttk.OutputDecl("c", shape=ttk.SameAs("x"))],
        extras=[ttk.Numel("x")],
        geometry=ttk.Elementwise(block=(256,)),
    )
    x = torch.randn(4, 999, device="cuda")
    s, c = ns_op(name)(x)
    torch.testing.assert_close(s, torch.sin(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c, torch.cos(x), rtol=1e-5, atol=1e-5)


CAST_HALF = r"""
#include <cuda_fp16.h>
extern "C" __global__ void cast_like(const float* x, const __half* like, int n, __half* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = __float2half(x[i]);
}
"""


def test_dtype_from_and_fp16_header(cache):
    name = register(
        cache,
        "cast",
        kernel_source=CAST_HALF,
        kernel_name="cast_like",
        inputs=[ttk.InputDecl("x", dtype=torch.float32), ttk.InputDecl("like", dtype=torch.float16)],
        outputs=[ttk.OutputDecl("y", shape=ttk.SameAs("x"), dtype_from="like")],
        extras=[ttk.Numel("x")],
        geometry=ttk.Elementwise(block=(256,)),
    )
    x = torch.randn(3000, device="cuda")
    out = ns_op(name)(x, torch.empty(1, device="cuda", dtype=torch.float16))
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, x.half())


REPEAT2 = r"""
extern "C" __global__ void repeat2(const float* x, int n, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < 2 * n) y[i] = x[i / 2];
}
"""


def test_override_meta_fn_shape_changing(cache):
    def meta(x: torch.Tensor) -> torch.Tensor:
        return x.new_empty((x.shape[0] * 2,))

    name = op_name("repeat2")
    ttk.cuda_kernel_op(
        name,
        ttk.KernelSpec(
            kernel_source=REPEAT2,
            kernel_name="repeat2",
            inputs=[ttk.InputDecl("x")],
            extras=[ttk.Numel("x")],
            geometry=ttk.Elementwise(block=(256,)),
        ),
        meta_fn=meta,
        cache=cache,
    )
    x = torch.randn(1001, device="cuda")
    torch.testing.assert_close(ns_op(name)(x), x.repeat_interleave(2))


def test_eager_fn_override_is_the_cuda_impl(cache):
    calls = []

    def meta(x: torch.Tensor) -> torch.Tensor:
        return torch.empty_like(x)

    def eager(x: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape)
        return torch.relu(x)

    name = op_name("eager_override")
    ttk.cuda_kernel_op(
        name,
        ttk.KernelSpec(kernel_source=RELU, kernel_name="my_relu", inputs=[ttk.InputDecl("x")]),
        meta_fn=meta,
        eager_fn=eager,
        aot_fn=lambda *a: None,
        cache=cache,
    )
    x = torch.randn(10, device="cuda")
    torch.testing.assert_close(ns_op(name)(x), torch.relu(x))
    assert calls == [x.shape]


def test_non_contiguous_inputs_read_correctly(cache):
    op = relu_op(cache)
    base = torch.randn(64, 96, device="cuda")
    for x in (base.t(), base[:, ::3], base[:1].expand(64, 96)):
        assert not x.is_contiguous()
        torch.testing.assert_close(op(x), torch.relu(x), rtol=0, atol=0)


def test_empty_input_returns_empty_output(cache):
    op = relu_op(cache)
    out = op(torch.empty(0, 5, device="cuda"))
    assert out.shape == (0, 5) and out.device.type == "cuda"


def test_non_default_stream(cache):
    op = relu_op(cache)
    stream = torch.cuda.Stream()
    x = torch.randn(1 << 20, device="cuda")
    torch.cuda.synchronize()
    with torch.cuda.stream(stream):
        y = op(x)
    stream.synchronize()
    torch.testing.assert_close(y, torch.relu(x), rtol=0, atol=0)


def test_cuda_graph_capture_and_replay(cache):
    op = relu_op(cache)
    x = torch.randn(4096, device="cuda")
    op(x)  # warm-up outside capture: compile and module load
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = op(x)
    x.copy_(torch.randn(4096, device="cuda"))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(y, torch.relu(x), rtol=0, atol=0)


def test_no_compile_or_module_load_after_warm_up(cache):
    op = relu_op(cache)
    x = torch.randn(512, device="cuda")
    op(x)
    compiles, loads = nvrtc.COMPILE_COUNTER.count, module_loads()
    for shape in [(512,), (3, 7), (2, 2, 2)]:
        op(torch.randn(shape, device="cuda"))
    assert (nvrtc.COMPILE_COUNTER.count, module_loads()) == (compiles, loads)


def test_kernel_signature_mismatch_is_refused_at_registration(cache):
    loads = module_loads()
    with pytest.raises(ValueError, match=r"(?s)my_relu.*the kernel has 3 parameters, the spec 2.*x: pointer.*y: pointer"):
        register(
            cache,
            "mismatch",
            kernel_source=RELU,
            kernel_name="my_relu",
            inputs=[ttk.InputDecl("x")],
            outputs=[ttk.OutputDecl("y", shape=ttk.SameAs(0))],
            geometry=ttk.Elementwise(block=(256,)),
        )
    assert module_loads() == loads  # refused from the PTX, before any load


def test_cpu_tensor_is_refused(cache):
    op = relu_op(cache)
    with pytest.raises(ValueError, match=r"kernelop.call\(kgpu::relu_\d+\): argument 'x' must be a CUDA tensor \(got a tensor on cpu\)"):
        op(torch.randn(8))


def test_wrong_declared_dtype_is_refused(cache):
    op = relu_op(cache)
    with pytest.raises(TypeError, match="'x' must have dtype torch.float32"):
        op(torch.randn(8, device="cuda", dtype=torch.float64))


def test_nd_block_on_low_rank_output_is_refused(cache):
    name = register(
        cache,
        "nd_low",
        kernel_source=ND,
        kernel_name="nd_mix",
        inputs=[ttk.InputDecl("x")],
        outputs=[ttk.OutputDecl("y", shape=ttk.SameAs("x"))],
        extras=[ttk.DimSize("x", -1), ttk.DimSize("x", -1)],
        geometry=ttk.Elementwise(block=(16, 16), layout="nd"),
    )
    with pytest.raises(ValueError, match="rank 1"):
        ns_op(name)(torch.randn(10, device="cuda"))


def test_opcheck_declarative_ops(cache):
    op = relu_op(cache)
    name = affine_op(cache)
    utils = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
    torch.library.opcheck(op.default, (torch.randn(5, 7, device="cuda"),), test_utils=utils)
    torch.library.opcheck(ns_op(name).default, (torch.randn(33, device="cuda"), 0.5, 2, True), test_utils=utils)


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_fullgraph(cache, dynamic):
    op = relu_op(cache)

    def f(x):
        return op(x * 2) + 1

    compiled = torch.compile(f, fullgraph=True, dynamic=dynamic)
    for n in (64, 100, 333):
        x = torch.randn(n, device="cuda")
        torch.testing.assert_close(compiled(x), f(x))


def add2_op(cache):
    name = register(
        cache,
        "add2",
        kernel_source=ADD,
        kernel_name="add2",
        inputs=[ttk.InputDecl("a"), ttk.InputDecl("b")],
        outputs=[ttk.OutputDecl("y", shape=ttk.SameAs("a"))],
        extras=[ttk.Numel("a")],
        geometry=ttk.Elementwise(block=(128,)),
    )
    return ns_op(name)


def test_inputs_on_different_devices_are_refused(cache):
    op = add2_op(cache)
    with pytest.raises(ValueError, match="argument 'b' must be a CUDA tensor"):
        op(torch.randn(8, device="cuda"), torch.randn(8))


def test_element_size_mismatch_with_kernel_pointer_is_refused(cache):
    op = add2_op(cache)  # a and b are undeclared, the kernel reads them as const float*
    x = torch.randn(8, device="cuda")
    with pytest.raises(TypeError, match=r"'b' has dtype torch.float64 \(8-byte elements\).*4-byte elements"):
        op(x, x.double())
    torch.testing.assert_close(op(x, x.view(torch.int32).view(torch.float32)), 3 * x)  # same size is allowed


def test_int_scalar_overflowing_int32_is_refused(cache):
    name = affine_op(cache)
    with pytest.raises(ValueError, match=r"argument 'k' = 2147483648 does not fit the kernel's 32-bit int"):
        ns_op(name)(torch.randn(8, device="cuda"), 1.0, 2**31, False)


COPY_BYTES = r"""
extern "C" __global__ void copy_bytes(const unsigned char* x, int n, unsigned char* y) {
  long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i];
}
"""


def test_extra_overflowing_int32_is_refused(cache):
    name = register(
        cache,
        "copy_bytes",
        kernel_source=COPY_BYTES,
        kernel_name="copy_bytes",
        inputs=[ttk.InputDecl("x", dtype=torch.uint8)],
        outputs=[ttk.OutputDecl("y", shape=ttk.SameAs("x"))],
        extras=[ttk.Numel("x")],
        geometry=ttk.Elementwise(block=(256,)),
    )
    big = torch.empty(2**31 + 5, dtype=torch.uint8, device="cuda")
    with pytest.raises(ValueError, match=r"extra numel\(x\) = 2147483653 does not fit the kernel's 32-bit int"):
        ns_op(name)(big)
    del big
    small = torch.randint(0, 255, (1000,), dtype=torch.uint8, device="cuda")
    torch.testing.assert_close(ns_op(name)(small), small)


def test_grid_beyond_device_limits_is_refused(cache):
    name = register(
        cache,
        "nd_fold",
        kernel_source=RELU,
        kernel_name="my_relu",
        inputs=[ttk.InputDecl("x")],
        outputs=[ttk.OutputDecl("y", shape=ttk.SameAs("x"))],
        extras=[ttk.Numel("x")],
        geometry=ttk.Elementwise(block=(32,), layout="nd"),
    )
    with pytest.raises(ValueError, match=r"grid \(1, 1, 140000\) exceeds the CUDA limits"):
        ns_op(name)(torch.randn(70000, 2, 32, device="cuda"))


def test_eight_threads_on_eight_streams(cache):
    op = add2_op(cache)
    op(torch.randn(4, device="cuda"), torch.randn(4, device="cuda"))
    errors, barrier = [], threading.Barrier(8)

    def work(seed: int) -> None:
        try:
            stream = torch.cuda.Stream()
            generator = torch.Generator(device="cuda").manual_seed(seed)
            barrier.wait()
            with torch.cuda.stream(stream):
                for i in range(200):
                    a = torch.randn(1000 + seed * 7 + i, device="cuda", generator=generator)
                    b = torch.randn(a.shape, device="cuda", generator=generator)
                    y = op(a, b)
                    if not torch.equal(y, a + 2 * b):
                        errors.append((seed, i))
            stream.synchronize()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


FAULT = textwrap.dedent(
    r"""
    import torch, kernelop as ttk
    ttk.cuda_kernel_op("fault::write_null", ttk.KernelSpec(
        kernel_source='extern "C" __global__ void write_null(const float* x, int n, float* y) { *(volatile float*)0 = x[0]; }',
        kernel_name="write_null", inputs=[ttk.InputDecl("x")], outputs=[ttk.OutputDecl("y", shape=ttk.SameAs(0))],
        extras=[ttk.Numel("x")], geometry=ttk.Elementwise(block=(32,))))
    try:
        torch.ops.fault.write_null(torch.ones(4, device="cuda"))
    except RuntimeError as exc:
        print("RAISED " + str(exc))
    """
)


def test_sync_mode_names_the_faulting_op(tmp_path):
    env = {**os.environ, "KERNELOP_SYNC": "1", "KERNELOP_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    result = subprocess.run([sys.executable, "-c", FAULT], capture_output=True, text=True, env=env, timeout=120)
    assert "kernelop.call(fault::write_null): kernel 'write_null' failed" in result.stdout, result.stdout + result.stderr
    assert "CUDA_ERROR_ILLEGAL_ADDRESS" in result.stdout
    assert "restart the process" in result.stdout


SYNC_MODE = textwrap.dedent(
    r"""
    import threading, torch, kernelop as ttk
    from kernelop.cli.examples import RELU
    ttk.cuda_kernel_op("synccap::relu", ttk.KernelSpec(
        kernel_source=RELU, kernel_name="my_relu", inputs=[ttk.InputDecl("x")],
        outputs=[ttk.OutputDecl("y", shape=ttk.SameAs(0))], extras=[ttk.Numel("x")], geometry=ttk.Elementwise(block=(256,))))
    x = torch.randn(4096, device="cuda")
    torch.ops.synccap.relu(x)  # warm-up outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        y = torch.ops.synccap.relu(x)
    x.copy_(torch.randn(4096, device="cuda"))
    graph.replay()
    torch.testing.assert_close(y, torch.relu(x), rtol=0, atol=0)
    from cuda.bindings import driver as cu
    seen = {}  # a thread with no current context: launched and synchronised with the context pushed

    def work():
        seen["context_before"] = int(cu.cuCtxGetCurrent()[1])
        seen["y"] = torch.ops.synccap.relu(x)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert seen["context_before"] == 0, "the thread had a current context: the case under test did not arise"
    torch.testing.assert_close(seen["y"], torch.relu(x), rtol=0, atol=0)
    print("ok", ttk.registered_ops()["synccap::relu"].call_path)
    """
)


@pytest.mark.parametrize("native", ["1", "0"])
def test_sync_mode_captures_cuda_graphs_and_launches_from_fresh_threads(tmp_path, native):
    """A capturing stream cannot be synchronised: under KERNELOP_SYNC=1 a launch being captured
    is only recorded, and the graph replays. A launch from a thread with no current context is
    synchronised before the context pushed for it is popped."""
    problem = native_build.build_problem()
    if native == "1" and problem is not None:
        pytest.skip(f"the native runtime cannot be built here: {problem}")
    env = {**os.environ, "KERNELOP_SYNC": "1", "KERNELOP_NATIVE_RUNTIME": native, "KERNELOP_CACHE_DIR": str(tmp_path),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    result = subprocess.run([sys.executable, "-c", SYNC_MODE], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stdout + result.stderr[-3000:]
    assert result.stdout.split()[1] == ("native" if native == "1" else "python"), result.stdout


def test_torch_compile_reduce_overhead_equals_eager(cache):
    op = relu_op(cache)

    def f(x):
        return op(x) * 3 - 1

    compiled = torch.compile(f, mode="reduce-overhead", fullgraph=True)
    x = torch.randn(4096, device="cuda")
    for _ in range(4):  # warm-up runs, then CUDA graph replays
        x.copy_(torch.randn(4096, device="cuda"))
        torch.testing.assert_close(compiled(x), f(x))


def test_launch_into_caller_buffers_on_a_given_stream(cache):
    name = affine_op(cache)
    from kernelop.pytorch.launcher import EagerLauncher

    launcher = ns_op(name).default  # the registered impl is the launcher's generated call
    registration = ttk.registered_ops()[name]
    eager = EagerLauncher(registration.plan, registration.binaries, None)
    x = torch.randn(3, 500, device="cuda")
    y = torch.full_like(x, float("nan"))
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    eager.launch_into(0, [(x.data_ptr(), tuple(x.shape))], [2.0, -3, True], [(y.data_ptr(), tuple(y.shape))], stream.cuda_stream)
    stream.synchronize()
    torch.testing.assert_close(y, -(2.0 * x - 3))
    torch.testing.assert_close(launcher(x, 2.0, -3, True), y)


def test_launch_from_a_thread_with_no_current_context(cache):
    from cuda.bindings import driver as cu

    op = relu_op(cache)
    x = torch.randn(2048, device="cuda")
    op(x)
    seen = {}

    def work() -> None:
        seen["context_before"] = int(cu.cuCtxGetCurrent()[1])
        seen["y"] = op(x)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    torch.cuda.synchronize()
    assert seen["context_before"] == 0  # the case the retry with the pushed context exists for
    torch.testing.assert_close(seen["y"], torch.relu(x), rtol=0, atol=0)


def test_launches_go_through_the_native_shim_where_it_builds(cache):
    import sysconfig

    from kernelop.cuda import launch_shim

    relu_op(cache)(torch.randn(8, device="cuda"))
    backend = driver.launch_backend()
    buildable = Path(sysconfig.get_paths()["include"], "Python.h").is_file() and launch_shim.compilers()
    if os.environ.get("KERNELOP_NATIVE_LAUNCH", "1") == "0" or not buildable:
        assert backend.name == "cuda-bindings"
    else:
        assert backend.name == "native", backend.reason


def test_each_launch_path_matches_pytorch_also_from_a_fresh_thread(cache, launch_path):
    op = relu_op(cache)
    for shape in [(1000,), (0,), (3, 5000)]:
        x = torch.randn(shape, device="cuda")
        torch.testing.assert_close(op(x), torch.relu(x), rtol=0, atol=0)
    x = torch.randn(4096, device="cuda")
    seen = {}
    thread = threading.Thread(target=lambda: seen.setdefault("y", op(x)))
    thread.start()
    thread.join()
    torch.cuda.synchronize()
    torch.testing.assert_close(seen["y"], torch.relu(x), rtol=0, atol=0)


def test_each_launch_path_reports_a_refused_launch_with_the_op_name(cache, launch_path):
    """More dynamic shared memory than the device has: refused before launch, naming the numbers;
    and where that check is bypassed, the driver's own refusal names the op."""
    import dataclasses

    name = register(
        cache,
        "too_much_shared",
        kernel_source=RELU,
        kernel_name="my_relu",
        inputs=[ttk.InputDecl("x")],
        outputs=[ttk.OutputDecl("y", shape=ttk.SameAs(0))],
        extras=[ttk.Numel("x")],
        geometry=ttk.Elementwise(block=(256,), layout="flat", shared_mem_bytes=1_000_000),
    )
    with pytest.raises(ValueError, match=rf"{name}.*asks for 1000000 bytes of dynamic shared memory per block; this device allows it"):
        ns_op(name)(torch.randn(100, device="cuda"))
    binaries = ttk.registered_ops()[name].binaries
    binaries._functions[(0, ())] = dataclasses.replace(binaries.function(0), max_dynamic_shared=2_000_000)
    with pytest.raises(RuntimeError, match=rf"{name}.*cuLaunchKernel failed: CUDA_ERROR_INVALID_VALUE"):
        ns_op(name)(torch.randn(100, device="cuda"))
    torch.cuda.synchronize()  # the refusal is not a fault: the context stays usable


def test_without_a_disk_cache_the_shim_is_built_for_the_process_and_leaves_no_folder(cache, monkeypatch):
    import dataclasses
    import re

    from kernelop import settings

    monkeypatch.setattr(driver, "SETTINGS", dataclasses.replace(settings.SETTINGS, cache_enabled=False))
    backend = driver._choose_backend()
    if backend.name != "native":
        pytest.skip(f"the native launch is not available here: {backend.reason}")
    built = Path(re.match(r"built (.*)", backend.reason).group(1))
    assert not built.parent.exists()
    monkeypatch.setattr(driver, "_backend", backend)
    op = relu_op(cache)
    x = torch.randn(3000, device="cuda")
    torch.testing.assert_close(op(x), torch.relu(x), rtol=0, atol=0)
