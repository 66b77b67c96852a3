"""Kernels as people write them: one source with a template, in-place updates, an optional
input and an accumulating kernel; and the specs that register them unchanged."""
from __future__ import annotations

import torch

import kernelop as ttk

SOURCE = r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>

// Arithmetic in float for the 16-bit types, in the element type otherwise.
template <typename T> struct Compute { using type = T; };
template <> struct Compute<__half> { using type = float; };
template <> struct Compute<__nv_bfloat16> { using type = float; };

template <typename T, int UNROLL>
__global__ void axpby(const T* __restrict__ x, const T* __restrict__ y, T* __restrict__ out,
                      float a, float b, long long n) {
  using C = typename Compute<T>::type;
  long long base = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) * UNROLL;
#pragma unroll
  for (int u = 0; u < UNROLL; ++u) {
    long long i = base + u;
    if (i < n) out[i] = static_cast<T>(C(a) * static_cast<C>(x[i]) + C(b) * static_cast<C>(y[i]));
  }
}

// In place: x += alpha * (bias ? bias[col] : 1), for a [rows, cols] x.
extern "C" __global__ void add_bias_(float* x, const float* bias, float alpha, int cols, long long n) {
  long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) x[i] += alpha * (bias != nullptr ? bias[i % cols] : 1.0f);
}

// Accumulates row sums into out, which must start at zero: one atomicAdd per element.
extern "C" __global__ void row_sums(const float* x, float* out, int cols, long long n) {
  long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) atomicAdd(out + i / cols, x[i]);
}

// out starts as a copy of x; adds y where y is positive.
extern "C" __global__ void add_positive(const float* x, const float* y, float* out, long long n) {
  long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n && y[i] > 0.0f) out[i] += y[i];
}
"""

UNROLL = 4
T = ttk.TypeParam("T")


def axpby_spec() -> ttk.KernelSpec:
    """``a*x + b*y`` for float32, float16, bfloat16 and float64, from one template."""
    return ttk.KernelSpec(
        kernel_source=SOURCE,
        kernel_name="axpby",
        template_args=(T, UNROLL),
        inputs=[ttk.InputDecl("x", T), ttk.InputDecl("y", T), ttk.ScalarInput("a", float), ttk.ScalarInput("b", float)],
        outputs=[ttk.OutputDecl("out", ttk.SameAs("x"))],
        extras=[ttk.SizeArg("n", ttk.numel("x"))],
        param_order=["x", "y", "out", "a", "b", "n"],
        geometry=ttk.Launch(grid=(ttk.cdiv(ttk.numel("x"), 256 * UNROLL),), block=(256,)),
        requires=[ttk.Equal(ttk.numel("x"), ttk.numel("y"))],
    )


def add_bias_spec() -> ttk.KernelSpec:
    """Writes ``x`` in place; ``bias`` may be None."""
    return ttk.KernelSpec(
        kernel_source=SOURCE,
        kernel_name="add_bias_",
        inputs=[ttk.InputDecl("x", torch.float32, mutates=True), ttk.InputDecl("bias", torch.float32, optional=True),
                ttk.ScalarInput("alpha", float)],
        outputs=[],
        extras=[ttk.SizeArg("cols", ttk.dim("x", -1)), ttk.SizeArg("n", ttk.numel("x"))],
        param_order=["x", "bias", "alpha", "cols", "n"],
        geometry=ttk.Elementwise(block=(128,)),
    )


def row_sums_spec() -> ttk.KernelSpec:
    """Accumulates into a zero-initialised output."""
    return ttk.KernelSpec(
        kernel_source=SOURCE,
        kernel_name="row_sums",
        inputs=[ttk.InputDecl("x", torch.float32)],
        outputs=[ttk.OutputDecl("out", (ttk.dim("x", 0),), init=0)],
        extras=[ttk.SizeArg("cols", ttk.dim("x", 1)), ttk.SizeArg("n", ttk.numel("x"))],
        param_order=["x", "out", "cols", "n"],
        geometry=ttk.Launch(grid=(ttk.cdiv(ttk.numel("x"), 256),), block=(256,)),
    )


def add_positive_spec() -> ttk.KernelSpec:
    """An output that starts as a copy of an input."""
    return ttk.KernelSpec(
        kernel_source=SOURCE,
        kernel_name="add_positive",
        inputs=[ttk.InputDecl("x", torch.float32), ttk.InputDecl("y", torch.float32)],
        outputs=[ttk.OutputDecl("out", ttk.SameAs("x"), dtype_from="x", init="x")],
        extras=[ttk.SizeArg("n", ttk.numel("x"))],
        param_order=["x", "y", "out", "n"],
        geometry=ttk.Launch(grid=(ttk.cdiv(ttk.numel("x"), 256),), block=(256,)),
        requires=[ttk.Equal(ttk.numel("x"), ttk.numel("y"))],
    )
