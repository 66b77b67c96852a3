"""On the GPU: ops registered in the kernel's own parameter order with a ``Launch`` geometry keep
every guarantee of the seed path (guards, empty and non-contiguous inputs, streams, CUDA graphs,
``torch.compile``, ``torch.export``, ``opcheck``, both launch paths), opt in to more than 48 KB
of dynamic shared memory, and are refused before launch where the device cannot run them."""
from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

import kernelop as ttk
from kernelop.compiler.cache import KernelCache
from kernel_corpus import CORPUS

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

SOFTMAX = next(k for k in CORPUS if k.name == "softmax_rows")
TRANSPOSE = next(k for k in CORPUS if k.name == "transpose_tiled")
_names = itertools.count()


def register(tmp_path, spec: ttk.KernelSpec, stem: str):
    name = f"kgpuparams::{stem}_{next(_names)}"
    ttk.cuda_kernel_op(name, spec, cache=KernelCache(tmp_path))
    namespace, short = name.split("::")
    return getattr(getattr(torch.ops, namespace), short)


def softmax_reference(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x.double(), dim=-1).float()


def test_own_order_and_launch_geometry_on_each_launch_path(tmp_path, launch_path):
    op = register(tmp_path, SOFTMAX.spec, "softmax")
    for shape in [(1, 1), (7, 333), (4, 3, 1000), (2, 12000)]:  # 12000 floats: 48000 bytes of dynamic shared memory
        x = torch.randn(shape, device="cuda")
        torch.testing.assert_close(op(x), softmax_reference(x), atol=1e-5, rtol=1e-5)
    x = torch.randn(300, 5, device="cuda").t()  # non-contiguous: made contiguous first
    torch.testing.assert_close(op(x), softmax_reference(x), atol=1e-5, rtol=1e-5)
    empty = op(torch.randn(0, 64, device="cuda"))
    assert empty.shape == (0, 64)


def test_more_than_48_kb_of_dynamic_shared_memory_is_opted_in(tmp_path, launch_path):
    spec = dataclasses.replace(SOFTMAX.spec, requires=[])
    op = register(tmp_path, spec, "bigshared")
    x = torch.randn(3, 40000, device="cuda")  # 160000 bytes of dynamic shared memory
    torch.testing.assert_close(op(x), softmax_reference(x), atol=1e-5, rtol=1e-5)


def test_a_launch_beyond_the_device_is_refused_before_launch_with_the_numbers(tmp_path):
    spec = dataclasses.replace(SOFTMAX.spec, requires=[])
    op = register(tmp_path, spec, "toomuch")
    optin = torch.cuda.get_device_properties(0).shared_memory_per_block_optin
    columns = optin // 4 + 16
    with pytest.raises(ValueError, match=rf"asks for {columns * 4} bytes of dynamic shared memory per block; this device allows it \d+"):
        op(torch.randn(2, columns, device="cuda"))
    wide = dataclasses.replace(spec, geometry=ttk.Launch(grid=(1,), block=(ttk.dim("inp", -1),)))
    op = register(tmp_path, wide, "wideblock")
    with pytest.raises(ValueError, match=r"launch block \(2048, 1, 1\) is outside the CUDA limits"):
        op(torch.randn(2, 2048, device="cuda"))
    torch.cuda.synchronize()


def test_guards_of_the_seed_path_hold(tmp_path):
    op = register(tmp_path, SOFTMAX.spec, "guards")
    with pytest.raises(ValueError, match=r"argument 'inp' must be a CUDA tensor"):
        op(torch.randn(2, 8))
    with pytest.raises(TypeError, match=r"argument 'inp' must have dtype torch.float32"):
        op(torch.randn(2, 8, device="cuda", dtype=torch.float64))
    with pytest.raises(ValueError, match=r"argument 'inp' axis -1 has size 20000, but requires\[0\] requires it to be <= 16384"):
        op(torch.randn(2, 20000, device="cuda"))


def test_streams_and_cuda_graphs(tmp_path):
    op = register(tmp_path, TRANSPOSE.spec, "transpose")
    x = torch.randn(70, 45, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        y = op(x)
    stream.synchronize()
    torch.testing.assert_close(y, x.t().contiguous(), rtol=0, atol=0)
    static = torch.randn(33, 65, device="cuda")
    op(static)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = op(static)
    for _ in range(3):
        static.copy_(torch.randn(33, 65, device="cuda"))
        graph.replay()
        torch.testing.assert_close(out, static.t().contiguous(), rtol=0, atol=0)


@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_fullgraph(tmp_path, dynamic):
    softmax = register(tmp_path, SOFTMAX.spec, "csoftmax")
    transpose = register(tmp_path, TRANSPOSE.spec, "ctranspose")

    def f(x):
        return transpose(softmax(x * 2)) + 1

    compiled = torch.compile(f, fullgraph=True, dynamic=dynamic)
    for shape in [(8, 64), (5, 100), (33, 7)]:
        x = torch.randn(shape, device="cuda")
        torch.testing.assert_close(compiled(x), f(x))


def test_torch_export_with_dynamic_dims_runs(tmp_path):
    softmax = register(tmp_path, SOFTMAX.spec, "esoftmax")
    transpose = register(tmp_path, TRANSPOSE.spec, "etranspose")

    class Model(torch.nn.Module):
        def forward(self, x):
            return transpose(softmax(x))

    x = torch.randn(8, 64, device="cuda")
    static = torch.export.export(Model(), (x,))
    torch.testing.assert_close(static.module()(x), softmax_reference(x).t(), atol=1e-5, rtol=1e-5)
    rows, cols = torch.export.Dim("rows", min=1, max=4096), torch.export.Dim("cols", min=1, max=16384)  # the spec's ranges
    program = torch.export.export(Model(), (x,), dynamic_shapes={"x": {0: rows, 1: cols}})
    for shape in [(8, 64), (3, 1000)]:
        x = torch.randn(shape, device="cuda")
        torch.testing.assert_close(program.module()(x), softmax_reference(x).t(), atol=1e-5, rtol=1e-5)


def test_opcheck(tmp_path):
    utils = ("test_schema", "test_faketensor", "test_aot_dispatch_dynamic")
    for kernel, args in [(SOFTMAX, (torch.randn(5, 77, device="cuda"),)), (TRANSPOSE, (torch.randn(40, 9, device="cuda"),))]:
        op = register(tmp_path, kernel.spec, "opcheck")
        torch.library.opcheck(op.default, args, test_utils=utils)


def test_a_negative_value_for_a_scalar_of_unknown_sign_is_refused_per_call(tmp_path):
    source = "template <typename T>\n__global__ void shift(const float* x, T s, int n, float* y) {\n  int i = blockIdx.x * blockDim.x + threadIdx.x;\n  if (i < n) y[i] = x[i] + (float)s;\n}\n"
    spec = ttk.KernelSpec(source, "shift<unsigned>", inputs=[ttk.InputDecl("x"), ttk.ScalarInput("s", int)],
                          outputs=[ttk.OutputDecl("y", ttk.SameAs("x"))], extras=[ttk.Numel("x")], geometry=ttk.Elementwise())
    op = register(tmp_path, spec, "tscalar")
    x = torch.zeros(10, device="cuda")
    torch.testing.assert_close(op(x, 3), x + 3)
    with pytest.raises(ValueError, match=r"argument 's' = -1 does not fit the kernel's 32-bit integer of unknown sign parameter"):
        op(x, -1)
