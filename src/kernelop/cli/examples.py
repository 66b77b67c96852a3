"""Example kernels, one per geometry, with the PyTorch expression each must equal.

The demo registers and checks them; the README's quickstart is the first one, and its section on
existing kernels is the last (a row softmax in its own parameter order).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from ..dsl.sizes import dim, numel
from ..dsl.spec import (
    DimSize,
    Elementwise,
    InputDecl,
    InRange,
    KernelSpec,
    Launch,
    Numel,
    OutputDecl,
    ReduceDims,
    Reduction,
    SameAs,
    ScalarInput,
    SizeArg,
)


@dataclass(frozen=True)
class Example:
    op_name: str
    spec: KernelSpec
    make_args: Callable[[str], tuple]  # device -> op arguments
    reference: Callable[..., Any]  # the same arguments -> what the op must return
    meta_fn: Optional[Callable[..., Any]] = None


RELU = r"""
extern "C" __global__ void my_relu(const float* x, int n, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
"""

AXPY = r"""
extern "C" __global__ void axpy(const float* x, const float* y, float alpha, int n, float* out) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = alpha * x[i] + y[i];
}
"""

BIAS_2D = r"""
extern "C" __global__ void add_row_col(const float* x, int H, int W, float* y) {
  int w = blockIdx.x * blockDim.x + threadIdx.x;
  int h = blockIdx.y * blockDim.y + threadIdx.y;
  long long b = blockIdx.z;
  if (h < H && w < W) {
    long long i = (b * H + h) * W + w;
    y[i] = x[i] + 0.25f * (float)h - 0.5f * (float)w;
  }
}
"""

ROW_SUM = r"""
extern "C" __global__ void row_sum(const float* x, int cols, float* y) {
  __shared__ float partial[256];
  long long row = blockIdx.x;
  float acc = 0.f;
  for (int j = threadIdx.x; j < cols; j += blockDim.x) acc += x[row * cols + j];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) y[row] = partial[0];
}
"""

SINCOS = r"""
#include <cuda_fp16.h>
extern "C" __global__ void sincos_half(const __half* x, int n, __half* s, __half* c) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) { float v = __half2float(x[i]); s[i] = __float2half(sinf(v)); c[i] = __float2half(cosf(v)); }
}
"""

REPEAT2 = r"""
extern "C" __global__ void repeat2(const float* x, int n, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < 2 * n) y[i] = x[i / 2];
}
"""


SOFTMAX = r"""
// Block-wide max or sum of one float per thread (blockDim.x a multiple of 32).
__device__ float block_reduce(float v, bool is_max, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) { float w = __shfl_xor_sync(0xffffffffu, v, o); v = is_max ? fmaxf(v, w) : v + w; }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < blockDim.x / 32 ? scratch[lane] : (is_max ? -3.402823466e+38f : 0.f);
    for (int o = 16; o > 0; o >>= 1) { float w = __shfl_xor_sync(0xffffffffu, v, o); v = is_max ? fmaxf(v, w) : v + w; }
    if (lane == 0) scratch[0] = v;
  }
  __syncthreads();
  v = scratch[0];
  __syncthreads();
  return v;
}

// One block per row of C floats; the row is staged in dynamic shared memory.
extern "C" __global__ void softmax_rows(float* __restrict__ out, const float* __restrict__ inp, int N, int C) {
  extern __shared__ float row[];
  __shared__ float scratch[32];
  const float* x = inp + (long long)blockIdx.x * C;
  float m = -3.402823466e+38f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) { row[c] = x[c]; m = fmaxf(m, row[c]); }
  m = block_reduce(m, true, scratch);
  float s = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) { row[c] = expf(row[c] - m); s += row[c]; }
  s = block_reduce(s, false, scratch);
  float* y = out + (long long)blockIdx.x * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) y[c] = row[c] / s;
}
"""
_ROWS = numel("x") // dim("x", -1)


def _repeat2_meta(x: torch.Tensor) -> torch.Tensor:
    return x.new_empty((x.shape[0] * 2,))


def _randn(*shape: int, dtype: torch.dtype = torch.float32) -> Callable[[str], torch.Tensor]:
    return lambda device: torch.randn(*shape, device=device, dtype=dtype)


def _bias_2d_reference(x: torch.Tensor) -> torch.Tensor:
    h = torch.arange(x.shape[-2], device=x.device, dtype=x.dtype).view(-1, 1)
    w = torch.arange(x.shape[-1], device=x.device, dtype=x.dtype).view(1, -1)
    return x + 0.25 * h - 0.5 * w


EXAMPLES: tuple[Example, ...] = (
    Example(
        "kernelop_demo::relu",
        KernelSpec(
            kernel_source=RELU,
            kernel_name="my_relu",
            inputs=[InputDecl("x", dtype=torch.float32)],
            outputs=[OutputDecl("y", shape=SameAs(0))],
            extras=[Numel("x")],
            geometry=Elementwise(block=(256,), layout="flat"),
        ),
        make_args=lambda d: (_randn(4, 1000)(d),),
        reference=torch.relu,
    ),
    Example(
        "kernelop_demo::axpy",
        KernelSpec(
            kernel_source=AXPY,
            kernel_name="axpy",
            inputs=[InputDecl("x"), InputDecl("y"), ScalarInput("alpha", float)],
            outputs=[OutputDecl("out", shape=SameAs("x"))],
            extras=[Numel("x")],
            geometry=Elementwise(block=(128,)),
        ),
        make_args=lambda d: (_randn(3, 333)(d), _randn(3, 333)(d), 1.5),
        reference=lambda x, y, alpha: alpha * x + y,
    ),
    Example(
        "kernelop_demo::bias_2d",
        KernelSpec(
            kernel_source=BIAS_2D,
            kernel_name="add_row_col",
            inputs=[InputDecl("x")],
            outputs=[OutputDecl("y", shape=SameAs("x"))],
            extras=[DimSize("x", -2), DimSize("x", -1)],
            geometry=Elementwise(block=(32, 8), layout="nd"),
        ),
        make_args=lambda d: (_randn(2, 3, 45, 70)(d),),
        reference=_bias_2d_reference,
    ),
    Example(
        "kernelop_demo::row_sum",
        KernelSpec(
            kernel_source=ROW_SUM,
            kernel_name="row_sum",
            inputs=[InputDecl("x", dtype=torch.float32)],
            outputs=[OutputDecl("y", shape=ReduceDims("x", (-1,), keepdim=True))],
            extras=[DimSize("x", -1)],
            geometry=Reduction(reduce_dims=(-1,), block_size=256),
        ),
        make_args=lambda d: (_randn(6, 5000)(d),),
        reference=lambda x: x.sum(-1, keepdim=True),
    ),
    Example(
        "kernelop_demo::sincos",
        KernelSpec(
            kernel_source=SINCOS,
            kernel_name="sincos_half",
            inputs=[InputDecl("x", dtype=torch.float16)],
            outputs=[OutputDecl("s", shape=SameAs("x")), OutputDecl("c", shape=SameAs("x"))],
            extras=[Numel("x")],
            geometry=Elementwise(block=(256,)),
        ),
        make_args=lambda d: (_randn(4096, dtype=torch.float16)(d),),
        reference=lambda x: (torch.sin(x.float()).half(), torch.cos(x.float()).half()),
    ),
    Example(
        "kernelop_demo::repeat2",
        KernelSpec(
            kernel_source=REPEAT2,
            kernel_name="repeat2",
            inputs=[InputDecl("x")],
            extras=[Numel("x")],
            geometry=Elementwise(block=(256,)),
        ),
        make_args=lambda d: (_randn(1001)(d),),
        reference=lambda x: x.repeat_interleave(2),
        meta_fn=_repeat2_meta,
    ),
    Example(
        "kernelop_demo::softmax",
        KernelSpec(
            kernel_source=SOFTMAX,
            kernel_name="softmax_rows",
            inputs=[InputDecl("x", dtype=torch.float32)],
            outputs=[OutputDecl("y", shape=SameAs("x"))],
            extras=[SizeArg("N", _ROWS), SizeArg("C", dim("x", -1))],
            geometry=Launch(grid=(_ROWS,), block=(256,), shared_mem_bytes=dim("x", -1) * 4),
            param_order=("y", "x", "N", "C"),
            requires=[InRange(dim("x", -1), min=1, max=16384)],
        ),
        make_args=lambda d: (_randn(5, 15000)(d),),  # 60000 bytes of shared memory: past the 48 KB default
        reference=lambda x: torch.softmax(x, dim=-1),
    ),
)
