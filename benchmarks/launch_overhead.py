"""Host time per call of a tiny op (relu over 1024 float32), all candidates interleaved.

Candidates: torch.relu; the kernelop op (on the native runtime where it builds); the same op kept
on the Python call path; ``torch.ops.aten.relu.default``; a model compiled with
``torch.compile(cpp_wrapper=True)`` of the kernelop relu alone, of torch.relu alone (Inductor
generates its own kernel for that one), and of torch.abs alone with Inductor's lowering replaced by
a fallback, so that the model calls ATen's kernel through its C shim (``aoti_torch_cuda_abs``), as
it calls any ATen op it does not generate: one launch each, so the ratios are what calling the op
from a compiled model costs over an ATen op of the same size; the relu as a custom op registered from
C++ (``TORCH_LIBRARY``, calling ``at::relu``), eager and in such a compiled model: the floor for
any custom op, which a compiled model reaches through the dispatcher by name; the same relu
written as existing kernels often are (output first, sizes after the pointers, a 2-D grid of
32x8 blocks) and registered with
``param_order`` and a ``Launch`` geometry; the relu as a template whose instantiation each call
picks from the input's dtype; the torch_tensorrt.kernels-style eager path (a
torch.library op whose impl wraps PyTorch's stream and builds a cuda.core LaunchConfig per
call); CuPy RawKernel on PyTorch's current stream; torch.cuda._compile_kernel; a CUDA graph
replaying kernelop launches. Each round runs every candidate for ``--calls`` calls and
synchronises; the table shows medians over rounds, and the goal ratios are computed per round
(candidates run back to back) and summarised by their median.

    PYTHONPATH=src python benchmarks/launch_overhead.py
"""
from __future__ import annotations

import argparse
import ctypes
import dataclasses
import gc
import statistics
import sys
import time
from typing import Callable, Optional

import torch
from torch.utils import cpp_extension

import kernelop as ttk
from kernelop import settings
from kernelop.compiler import nvrtc
from kernelop.cuda import driver
from kernelop.native import runtime as native_runtime

RELU = r"""
extern "C" __global__ void my_relu(const float* x, int n, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
"""
RELU_2D = r"""
extern "C" __global__ void relu_2d(float* __restrict__ y, const float* __restrict__ x, int rows, int cols) {
  int c = blockIdx.x * blockDim.x + threadIdx.x;
  int r = blockIdx.y * blockDim.y + threadIdx.y;
  if (r < rows && c < cols) { float v = x[r * cols + c]; y[r * cols + c] = v > 0.f ? v : 0.f; }
}
"""
RELU_T = r"""
template <typename T>
__global__ void relu_t(const T* x, int n, T* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] > T(0) ? x[i] : T(0);
}
"""
CPP_RELU_OP = r"""
#include <ATen/ATen.h>
#include <torch/library.h>

at::Tensor relu_from_cpp(const at::Tensor& x) { return at::relu(x); }

TORCH_LIBRARY(bench_cpp, m) { m.def("relu(Tensor x) -> Tensor"); }
TORCH_LIBRARY_IMPL(bench_cpp, CUDA, m) { m.impl("relu", relu_from_cpp); }
"""
N = 1024
BLOCK = 256
PYTHON_PATH = "kernelop, Python call path"
ATEN_OP = "torch.ops.aten.relu.default"
WRAPPED_KERNELOP = "cpp_wrapper model: the kernelop relu"
WRAPPED_ATEN = "cpp_wrapper model: torch.relu"
WRAPPED_ATEN_CALL = "cpp_wrapper model: torch.abs called through its C shim"
CPP_OP = "a C++ custom op calling at::relu"
WRAPPED_CPP_OP = "cpp_wrapper model: a C++ custom op calling at::relu"
OWN_ORDER = "kernelop, own order + 2-D Launch"
TEMPLATED = "kernelop, relu<T> chosen by dtype"
UPSTREAM_PATH = "torch_tensorrt.kernels-style path (cuda.core)"
GRAPH_LAUNCHES = 100


def kernelop_candidate(x: torch.Tensor, name: str = "relu") -> Callable[[], object]:
    """The README Quickstart's relu as a kernelop op (on the native runtime where it builds)."""
    ttk.cuda_kernel_op(
        f"bench::{name}",
        ttk.KernelSpec(
            kernel_source=RELU,
            kernel_name="my_relu",
            inputs=[ttk.InputDecl("x")],
            outputs=[ttk.OutputDecl("y", shape=ttk.SameAs(0))],
            extras=[ttk.Numel("x")],
            geometry=ttk.Elementwise(block=(BLOCK,)),
        ),
    )
    op = getattr(torch.ops.bench, name)
    return lambda: op(x)


def python_path_candidate(x: torch.Tensor) -> Callable[[], object]:
    """The same op kept on the Python launcher."""
    settings.SETTINGS = dataclasses.replace(settings.SETTINGS, native_runtime=False)
    try:
        return kernelop_candidate(x, "relu_python")
    finally:
        settings.SETTINGS = dataclasses.replace(settings.SETTINGS, native_runtime=True)


def cpp_wrapper_candidate(x: torch.Tensor, relu: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], object]:
    """A compiled model (C++ wrapper) of the relu alone."""
    model = torch.compile(lambda t: relu(t), fullgraph=True, options={"cpp_wrapper": True})
    return lambda: model(x)


def aten_call_candidate(x: torch.Tensor) -> Callable[[], object]:
    """The compiled model of torch.abs, which Inductor is made to call rather than generate: an
    ATen op outside Inductor's own kernels, reached directly through its C shim, as a kernelop op
    is opaque to it. Only abs changes (its lowering is replaced in this process). It is compiled
    now, without the graph cache, and held to calling the shim: a cached graph from before the
    fallback would time Inductor's own kernel instead."""
    from torch._inductor import lowering
    from torch._inductor.utils import run_and_get_code

    if torch.ops.aten.abs.default not in lowering.fallbacks:
        lowering.make_fallback(torch.ops.aten.abs, warn=False)
    model = torch.compile(lambda t: torch.abs(t), fullgraph=True, options={"cpp_wrapper": True, "fx_graph_cache": False})
    _, code = run_and_get_code(model, x)
    assert any("aoti_torch_cuda_abs(" in source for source in code), "the compiled torch.abs model does not call ATen's C shim"
    return lambda: model(x)


def cpp_custom_op() -> Callable[[torch.Tensor], torch.Tensor]:
    """The same relu as a custom op registered from C++, as an extension's ops are: a compiled
    model reaches it the way it reaches a kernelop op (a boxed dispatcher call by name), so it is
    the floor for any custom op in such a model."""
    if not hasattr(torch.ops.bench_cpp, "relu"):
        cpp_extension.load_inline("kernelop_bench_cpp_relu", cpp_sources=CPP_RELU_OP, is_python_module=False, with_cuda=False)
        torch.library.register_fake("bench_cpp::relu")(lambda t: torch.empty_like(t))
    return torch.ops.bench_cpp.relu


def own_order_candidate(x: torch.Tensor) -> Callable[[], object]:
    """The relu of an existing kernel's shape: (y, x, rows, cols) on a 2-D grid, over x as 32 x 32."""
    cols = ttk.dim("x", -1)
    rows = ttk.numel("x") // cols
    ttk.cuda_kernel_op(
        "bench::relu_2d",
        ttk.KernelSpec(
            kernel_source=RELU_2D,
            kernel_name="relu_2d",
            inputs=[ttk.InputDecl("x")],
            outputs=[ttk.OutputDecl("y", shape=ttk.SameAs("x"))],
            extras=[ttk.SizeArg("rows", rows), ttk.SizeArg("cols", cols)],
            geometry=ttk.Launch(grid=(ttk.cdiv(cols, 32), ttk.cdiv(rows, 8)), block=(32, 8)),
            param_order=("y", "x", "rows", "cols"),
            requires=[ttk.InRange(cols, min=1)],
        ),
    )
    op, square = torch.ops.bench.relu_2d, x.view(32, N // 32)
    return lambda: op(square)


def templated_candidate(x: torch.Tensor) -> Callable[[], object]:
    """The same relu as a template over float32 and float64: each call picks ``relu_t<float>``."""
    T = ttk.TypeParam("T", (torch.float32, torch.float64))
    ttk.cuda_kernel_op(
        "bench::relu_t",
        ttk.KernelSpec(
            kernel_source=RELU_T,
            kernel_name="relu_t",
            template_args=(T,),
            inputs=[ttk.InputDecl("x", T)],
            outputs=[ttk.OutputDecl("y", shape=ttk.SameAs(0))],
            extras=[ttk.Numel("x")],
            geometry=ttk.Elementwise(block=(BLOCK,)),
        ),
    )
    op = torch.ops.bench.relu_t
    return lambda: op(x)


def _cuda_core():
    try:
        import cuda.core as core

        core.LaunchConfig  # noqa: B018 - newer releases export at top level
    except (ImportError, AttributeError):
        import cuda.core.experimental as core
    return core


def upstream_style_candidate(x: torch.Tensor) -> Optional[Callable[[], object]]:
    """A Library op launching through cuda.core with per-call stream wrapper and config."""
    try:
        core = _cuda_core()
    except ImportError:
        return None
    device = core.Device(x.device.index)
    device.set_current()
    arch = "".join(str(v) for v in torch.cuda.get_device_capability())
    program = core.Program(RELU, "c++", core.ProgramOptions(arch=f"sm_{arch}"))
    kernel = program.compile("cubin").get_kernel("my_relu")

    class TorchStream:
        def __init__(self, handle: int):
            self.handle = handle

        def __cuda_stream__(self):
            return (0, self.handle)

    def impl(t: torch.Tensor) -> torch.Tensor:
        y = torch.empty_like(t)
        stream = device.create_stream(TorchStream(torch.cuda.current_stream().cuda_stream))
        n = t.numel()
        config = core.LaunchConfig(grid=((n + BLOCK - 1) // BLOCK,), block=(BLOCK,))
        core.launch(stream, config, kernel, t.data_ptr(), ctypes.c_int32(n), y.data_ptr())
        return y

    lib = torch.library.Library("bench_upstream", "DEF")
    lib.define("relu(Tensor x) -> Tensor")
    lib.impl("relu", impl, "CUDA")
    upstream_style_candidate.lib = lib  # keep the registration alive
    op = torch.ops.bench_upstream.relu
    return lambda: op(x)


def cupy_candidate(x: torch.Tensor) -> Optional[Callable[[], object]]:
    try:
        import cupy
        import numpy as np
    except ImportError:
        return None
    kernel = cupy.RawKernel(RELU, "my_relu")
    grid = ((N + BLOCK - 1) // BLOCK,)

    def call() -> torch.Tensor:
        y = torch.empty_like(x)
        with cupy.cuda.ExternalStream(torch._C._cuda_getCurrentRawStream(x.device.index)):
            kernel(grid, (BLOCK,), (x.data_ptr(), np.int32(x.numel()), y.data_ptr()))
        return y

    return call


def compile_kernel_candidate(x: torch.Tensor) -> Optional[Callable[[], object]]:
    compile_kernel = getattr(torch.cuda, "_compile_kernel", None)
    if compile_kernel is None:
        return None
    kernel = compile_kernel(RELU, "my_relu")
    grid = ((N + BLOCK - 1) // BLOCK, 1, 1)

    def call() -> torch.Tensor:
        y = torch.empty_like(x)
        kernel(grid=grid, block=(BLOCK, 1, 1), args=[x, x.numel(), y])
        return y

    return call


def graph_candidate(x: torch.Tensor) -> Callable[[], object]:
    op = torch.ops.bench.relu
    op(x)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(GRAPH_LAUNCHES):
            op(x)
    return graph.replay


def module_loads() -> int:
    native = native_runtime.runtime()
    return driver.MODULE_LOAD_COUNTER.count + (native.module_loads if native is not None else 0)


def time_per_call(fn: Callable[[], object], calls: int, per_call_launches: int = 1) -> float:
    """Host time per launch, the collector paused so that no candidate pays for another's garbage."""
    torch.cuda.synchronize()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    return elapsed / (calls * per_call_launches) * 1e6


def paired_ratio(samples: dict[str, list[float]], numerator: str, denominator: str) -> str:
    """The ratio of two candidates per round, summarised over rounds.

    Both ran back to back in every round, so a per-round ratio cancels the machine's drift
    between rounds, which moves absolute times by tens of percent on a shared host.
    """
    ratios = [a / b for a, b in zip(samples[numerator], samples[denominator])]
    low, median, high = statistics.quantiles(ratios, n=4)
    return f"{numerator} / {denominator} = {median:.2f}x  (middle half of rounds {low:.2f}x-{high:.2f}x)"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=1000)
    # Inductor reads --only from sys.argv too and writes it unescaped into a generated module's
    # string literal: candidate names hold no quotes.
    parser.add_argument("--only", default="", help="candidate names to keep, separated by semicolons (torch.relu always runs)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("launch_overhead needs a CUDA GPU")
        return 1
    x = torch.randn(N, device="cuda")
    wanted = (lambda label: True) if not args.only else (lambda label: label in {"torch.relu", *args.only.split(";")})
    candidates: dict[str, tuple[Callable[[], object], int]] = {"torch.relu": (lambda: torch.relu(x), 1)}
    candidates["kernelop"] = (kernelop_candidate(x), 1)
    for label, make in ((PYTHON_PATH, python_path_candidate), (ATEN_OP, lambda t: (lambda: torch.ops.aten.relu.default(t))),
                        (CPP_OP, lambda t: (lambda op: lambda: op(t))(cpp_custom_op())),
                        (WRAPPED_KERNELOP, lambda t: cpp_wrapper_candidate(t, torch.ops.bench.relu)),
                        (WRAPPED_ATEN, lambda t: cpp_wrapper_candidate(t, torch.relu)),
                        (WRAPPED_ATEN_CALL, aten_call_candidate),
                        (WRAPPED_CPP_OP, lambda t: cpp_wrapper_candidate(t, cpp_custom_op()))):
        if wanted(label):
            candidates[label] = (make(x), 1)
    if wanted(OWN_ORDER):
        candidates[OWN_ORDER] = (own_order_candidate(x), 1)
    if wanted(TEMPLATED):
        candidates[TEMPLATED] = (templated_candidate(x), 1)
    for label, make in (
        (UPSTREAM_PATH, upstream_style_candidate),
        ("cupy RawKernel", cupy_candidate),
        ("torch.cuda._compile_kernel", compile_kernel_candidate),
    ):
        if not wanted(label):
            continue
        try:
            fn = make(x)
        except Exception as exc:  # a candidate missing on this machine is reported, not fatal
            print(f"skipping {label}: {type(exc).__name__}: {exc}")
            continue
        if fn is None:
            print(f"skipping {label}: not installed")
            continue
        candidates[label] = (fn, 1)
    graph_label = f"kernelop in a CUDA graph (per launch, {GRAPH_LAUNCHES}/replay)"
    if wanted(graph_label):
        candidates[graph_label] = (graph_candidate(x), GRAPH_LAUNCHES)
    for label, (fn, _) in candidates.items():  # warm-up, and every candidate must be correct
        out = fn()
        if isinstance(out, torch.Tensor):
            expected = torch.abs(x) if label == WRAPPED_ATEN_CALL else torch.relu(x)
            torch.testing.assert_close(out.reshape(x.shape), expected, rtol=0, atol=0, msg=f"{label} is wrong")
    compiles, loads = nvrtc.COMPILE_COUNTER.count, module_loads()

    samples: dict[str, list[float]] = {label: [] for label in candidates}
    for _ in range(args.rounds):
        for label, (fn, launches) in candidates.items():
            calls = max(args.calls // launches, 10)
            samples[label].append(time_per_call(fn, calls, launches))

    assert (nvrtc.COMPILE_COUNTER.count, module_loads()) == (compiles, loads), "compile or load after warm-up"
    medians = {label: statistics.median(values) for label, values in samples.items()}
    base = medians["torch.relu"]
    backend = driver.launch_backend()
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.rounds} rounds x {args.calls} calls, relu over {N} float32")
    native = native_runtime.runtime()
    print(f"kernelop call path: {'native runtime' if native is not None else 'Python'}; Python path's launch: {backend.name} ({backend.reason})")
    print(f"{'candidate':58s} {'us/call':>9s} {'IQR':>6s} {'vs torch.relu':>14s}")
    for label, values in samples.items():
        low, _, high = statistics.quantiles(values, n=4)
        print(f"{label:58s} {medians[label]:9.2f} {high - low:6.2f} {medians[label] / base:13.2f}x")
    print("\nRatios paired within each round (median, and the middle half of rounds):")
    print(paired_ratio(samples, "kernelop", "torch.relu"))
    for numerator, denominator in ((PYTHON_PATH, "torch.relu"), (ATEN_OP, "torch.relu"), ("kernelop", PYTHON_PATH),
                                   ("kernelop", CPP_OP), (WRAPPED_KERNELOP, WRAPPED_ATEN), (WRAPPED_KERNELOP, WRAPPED_ATEN_CALL),
                                   (WRAPPED_ATEN_CALL, WRAPPED_ATEN), (WRAPPED_KERNELOP, WRAPPED_CPP_OP)):
        if numerator in samples and denominator in samples:
            print(paired_ratio(samples, numerator, denominator))
    if OWN_ORDER in samples:
        print(paired_ratio(samples, OWN_ORDER, "torch.relu"))
        print(paired_ratio(samples, OWN_ORDER, "kernelop"))
    if TEMPLATED in samples:
        print(paired_ratio(samples, TEMPLATED, "kernelop"))
    if UPSTREAM_PATH in samples:
        print(paired_ratio(samples, UPSTREAM_PATH, "kernelop"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
