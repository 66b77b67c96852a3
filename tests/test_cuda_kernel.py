"""``CudaKernel``: the launch API of the override path. Without a GPU: it compiles, reads the
kernel's parameter types and refuses bad arguments before touching CUDA. With one: launches on
the current stream or a given one, into CUDA graphs, from an ``eager_fn``, and from PTX."""
from __future__ import annotations

import re

import pytest
import torch

import kernelop as ttk
from kernelop.compiler.cache import KernelCache
from kernelop.compiler.nvrtc import CompileRequest, compile_kernel
from conftest import op_packet

SCALE = r"""
extern "C" __global__ void scale(float* __restrict__ y, const float* __restrict__ x, size_t n, float alpha, bool negate) {
  size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = (negate ? -alpha : alpha) * x[i];
}
"""
TEMPLATE = "template <typename T>\n__global__ void fill(T* y, T value, unsigned n, long long m, double d) {}\n"
SHARED = r"""
extern "C" __global__ void stage(float* y, const float* x, int n) {
  extern __shared__ float buffer[];
  for (int i = threadIdx.x; i < n; i += blockDim.x) buffer[i] = x[i];
  __syncthreads();
  for (int i = threadIdx.x; i < n; i += blockDim.x) y[i] = 2.f * buffer[n - 1 - i];
}
"""


@pytest.fixture
def cache(tmp_path) -> KernelCache:
    return KernelCache(tmp_path)


def test_compiles_without_a_gpu_and_reads_the_parameter_types(cache):
    assert ttk.CudaKernel(SCALE, "scale", cache=cache).params == ("ptr", "ptr", "u64", "f32", "bool")
    assert ttk.CudaKernel(TEMPLATE, "fill<double>", cache=cache).params == ("ptr", "f64", "u32", "i64", "f64")


@pytest.mark.parametrize(
    "args, exc, message",
    [
        ((None, None, 3), TypeError, r"kernel 'scale' takes 5 arguments \(pointer, pointer, unsigned long long, float, bool\) \(got 3\)"),
        ((torch.ones(3), None, 3, 1.0, False), ValueError, r"argument 0 must be a CUDA tensor \(got a tensor on cpu\)"),
        ((None, None, -1, 1.0, False), ValueError, r"argument 2 = -1 does not fit the kernel's 64-bit parameter \(0\.\.18446744073709551615\)"),
        ((None, None, 3, "a", False), TypeError, r"argument 3 must be a float for a float parameter \(got str\)"),
        ((None, None, 3, 1.0, 1), TypeError, r"argument 4 must be a bool \(got int\)"),
        ((None, None, True, 1.0, False), TypeError, r"argument 2 must be an int"),
        ((3, None, 3, 1.0, False), TypeError, r"argument 0 must be a CUDA tensor or None for a pointer parameter \(got int\)"),
    ],
)
def test_bad_arguments_are_refused_before_any_cuda_call(cache, args, exc, message):
    kernel = ttk.CudaKernel(SCALE, "scale", cache=cache)
    with pytest.raises(exc, match=re.escape("kernelop.CudaKernel(scale): ") + message):
        kernel.launch((1,), (32,), args)


@pytest.mark.parametrize(
    "grid, block, shared, message",
    [((-1,), (32,), 0, r"grid\[0\] must be >= 0"), ((1,), (0,), 0, r"block\[0\] must be >= 1"), ((1, 1, 1, 1), (1,), 0, r"grid must be an int or a tuple of 1 to 3"),
     ((1,), (1.5,), 0, r"block\[0\] must be an int"), ((1,), (1,), -4, r"shared_mem must be >= 0")],
)
def test_bad_launch_dims_are_refused(cache, grid, block, shared, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ttk.CudaKernel(SCALE, "scale", cache=cache).launch(grid, block, (None, None, 1, 1.0, False), shared_mem=shared)


def test_compile_errors_and_options_are_checked_as_for_ops(cache):
    with pytest.raises(ttk.CompileError, match="scale"):
        ttk.CudaKernel(SCALE.replace("size_t i", "size_t i ="), "scale", cache=cache)
    with pytest.raises(ValueError, match=r"kernelop\.CudaKernel\(scale\): options\[0\] '-std=c\+\+20' is set by kernelop"):
        ttk.CudaKernel(SCALE, "scale", options=["-std=c++20"], cache=cache)


def test_from_ptx_reads_the_entry(cache):
    ptx = compile_kernel(CompileRequest(SCALE, "scale", "sm_80")).ptx
    assert ttk.CudaKernel.from_ptx(ptx.decode(), "scale").params == ("ptr|x64",) * 3 + ("f32", "bool")




@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_launches_on_the_current_stream_a_given_stream_and_in_a_graph(cache, launch_path):
    kernel = ttk.CudaKernel(SCALE, "scale", cache=cache)
    x = torch.randn(1000, device="cuda")
    y = torch.empty_like(x)
    kernel((4,), (256,), (y, x, x.numel(), 1.5, True))
    torch.testing.assert_close(y, -1.5 * x)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    kernel.launch((4,), (256,), (y, x, x.numel(), 2.0, False), stream=stream)
    stream.synchronize()
    torch.testing.assert_close(y, 2.0 * x)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        kernel((4,), (256,), (y, x, x.numel(), 3.0, False))
    x.copy_(torch.randn(1000, device="cuda"))
    graph.replay()
    torch.testing.assert_close(y, 3.0 * x)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_dynamic_shared_memory_past_48_kb_and_past_the_device(cache):
    kernel = ttk.CudaKernel(SHARED, "stage", cache=cache)
    x = torch.randn(20000, device="cuda")  # 80000 bytes
    y = torch.empty_like(x)
    kernel((1,), (256,), (y, x, x.numel()), shared_mem=x.numel() * 4)
    torch.testing.assert_close(y, 2.0 * x.flip(0))
    with pytest.raises(ValueError, match=r"asks for 4000000 bytes of dynamic shared memory per block; this device allows it \d+"):
        kernel((1,), (256,), (y, x, x.numel()), shared_mem=4_000_000)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_an_eager_fn_launches_without_cuda_bindings(cache, op_name, register):
    kernel = ttk.CudaKernel(SCALE, "scale", cache=cache)

    def eager(x: torch.Tensor, alpha: float) -> torch.Tensor:
        y = torch.empty_like(x)
        kernel(((x.numel() + 255) // 256,), (256,), (y, x.contiguous(), x.numel(), alpha, False))
        return y

    def meta(x: torch.Tensor, alpha: float) -> torch.Tensor:
        return torch.empty_like(x)

    name = op_name("override")
    spec = ttk.KernelSpec(SCALE, "scale")
    register(name, spec, meta_fn=meta, eager_fn=eager, aot_fn=lambda inputs, outputs, tactic: None)
    x = torch.randn(3, 333, device="cuda")
    torch.testing.assert_close(op_packet(name)(x, 0.5), 0.5 * x)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_kernel_from_ptx_launches(cache):
    ptx = compile_kernel(CompileRequest(SCALE, "scale", "sm_80")).ptx
    kernel = ttk.CudaKernel.from_ptx(ptx, "scale")
    x = torch.randn(77, device="cuda")
    y = torch.empty_like(x)
    kernel((1,), (128,), (y, x, x.numel(), 4.0, False))
    torch.testing.assert_close(y, 4.0 * x)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_tensor_of_another_element_size_is_refused(cache):
    kernel = ttk.CudaKernel(SCALE, "scale", cache=cache)
    x = torch.randn(8, device="cuda", dtype=torch.float16)
    with pytest.raises(TypeError, match=r"argument 1 has dtype torch.float16 \(2-byte elements\), but parameter 1 points to 4-byte elements"):
        kernel((1,), (32,), (torch.empty(8, device="cuda"), x, 8, 1.0, False))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_an_eager_fn_runs_behind_the_specs_requirements_and_dtypes(cache, op_name, register):
    kernel = ttk.CudaKernel(SCALE, "scale", cache=cache)

    def eager(x: torch.Tensor) -> torch.Tensor:
        y = torch.empty_like(x)
        kernel((1,), (256,), (y, x, x.numel(), 1.0, False))
        return y

    name = op_name("eagerreq")
    spec = ttk.KernelSpec(SCALE, "scale", inputs=[ttk.InputDecl("x", dtype=torch.float32)], outputs=[ttk.OutputDecl("y", ttk.SameAs("x"))],
                          requires=[ttk.Divisible(ttk.dim("x", -1), 4)])
    register(name, spec, eager_fn=eager, aot_fn=lambda inputs, outputs, tactic: None)
    torch.testing.assert_close(op_packet(name)(torch.ones(8, device="cuda")), torch.ones(8, device="cuda"))
    with pytest.raises(ValueError, match=r"argument 'x' axis -1 has size 6, but requires\[0\] requires it to be a multiple of 4"):
        op_packet(name)(torch.ones(6, device="cuda"))
    with pytest.raises(TypeError, match=r"argument 'x' must have dtype torch.float32"):
        op_packet(name)(torch.ones(8, device="cuda", dtype=torch.float64))
