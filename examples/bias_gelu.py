"""Fused bias + GELU as a differentiable PyTorch op, from one templated CUDA source.

What it shows:

- one kernel template serving float32, float16, bfloat16 and float64: ``ttk.TypeParam`` picks the
  instantiation from the inputs' dtype at each call, and it is compiled on first use;
- an int template argument (the block size, which the launch uses too);
- two kernels, forward and backward, in one source string, each registered as an op;
- ``backward=``/``save=``: the forward op gets autograd, so it passes ``gradcheck`` and trains a
  model under ``torch.compile(fullgraph=True)``.

Run it on a CUDA GPU from the repository root::

    python examples/bias_gelu.py

It compares the output and both gradients with ``torch.nn.functional.gelu(x + bias)`` in
float32, float16 and bfloat16, runs ``torch.autograd.gradcheck`` in float64, and trains a small
model with the op under ``torch.compile`` next to the same model in plain PyTorch; one line per
check.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

import torch
import torch.nn.functional as F

import kernelop as ttk
from kernelop.compiler.cache import KernelCache

from checks import Check, max_error, report  # examples/checks.py

SOURCE = r"""
#include <cuda_fp16.h>
#include <cuda_bf16.h>

// The type the arithmetic is done in: float for float and the 16-bit types, double for double.
template <typename T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T> __device__ __forceinline__ T from_acc(typename AccType<T>::type v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) { return __float2half(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

// Phi(z) = (1 + erf(z / sqrt(2))) / 2, the standard normal CDF: gelu(z) = z * Phi(z).
template <typename A> __device__ __forceinline__ A normal_cdf(A z) {
  return A(0.5) * (A(1) + erf(z * A(0.70710678118654752440)));
}

// gelu'(z) = Phi(z) + z * phi(z), with phi(z) = exp(-z^2 / 2) / sqrt(2 pi).
template <typename A> __device__ __forceinline__ A gelu_grad(A z) {
  return normal_cdf(z) + z * A(0.39894228040143267794) * exp(A(-0.5) * z * z);
}

// y = gelu(x + bias) for x of shape [n / cols, cols] and bias of shape [cols]; one thread per element.
template <typename T, int kBlock>
__global__ void __launch_bounds__(kBlock) bias_gelu_fwd(const T* __restrict__ x, const T* __restrict__ bias,
                                                       T* __restrict__ y, long long n, int cols) {
  using A = typename AccType<T>::type;
  const long long i = (long long)blockIdx.x * kBlock + threadIdx.x;
  if (i >= n) return;
  const A z = to_acc(x[i]) + to_acc(bias[i % cols]);
  y[i] = from_acc<T>(z * normal_cdf(z));
}

// grad_x = grad_y * gelu'(x + bias); the bias gradient is grad_x summed over rows (done in PyTorch).
template <typename T, int kBlock>
__global__ void __launch_bounds__(kBlock) bias_gelu_bwd(const T* __restrict__ grad_y, const T* __restrict__ x,
                                                       const T* __restrict__ bias, T* __restrict__ grad_x,
                                                       long long n, int cols) {
  using A = typename AccType<T>::type;
  const long long i = (long long)blockIdx.x * kBlock + threadIdx.x;
  if (i >= n) return;
  const A z = to_acc(x[i]) + to_acc(bias[i % cols]);
  grad_x[i] = from_acc<T>(to_acc(grad_y[i]) * gelu_grad(z));
}
"""

BLOCK = 256
"""Threads per block: the kernels' ``kBlock`` (their ``__launch_bounds__``) and the launch's block."""

T = ttk.TypeParam("T")  # float32, float16, bfloat16 or float64: whatever x is
_COLS = ttk.dim("x", 1)

FORWARD = ttk.KernelSpec(
    kernel_source=SOURCE,
    kernel_name="bias_gelu_fwd",
    template_args=(T, BLOCK),
    inputs=[ttk.InputDecl("x", dtype=T), ttk.InputDecl("bias", dtype=T)],
    outputs=[ttk.OutputDecl("y", shape=ttk.SameAs("x"))],
    extras=[ttk.SizeArg("n", ttk.numel("x")), ttk.SizeArg("cols", _COLS)],
    geometry=ttk.Elementwise(block=(BLOCK,)),
    param_order=("x", "bias", "y", "n", "cols"),
    requires=[ttk.Equal(ttk.numel("bias"), _COLS)],
)

BACKWARD = ttk.KernelSpec(
    kernel_source=SOURCE,
    kernel_name="bias_gelu_bwd",
    template_args=(T, BLOCK),
    inputs=[ttk.InputDecl("grad_y", dtype=T), ttk.InputDecl("x", dtype=T), ttk.InputDecl("bias", dtype=T)],
    outputs=[ttk.OutputDecl("grad_x", shape=ttk.SameAs("x"), dtype_from="x")],
    extras=[ttk.SizeArg("n", ttk.numel("x")), ttk.SizeArg("cols", _COLS)],
    geometry=ttk.Elementwise(block=(BLOCK,)),
    param_order=("grad_y", "x", "bias", "grad_x", "n", "cols"),
    requires=[ttk.Equal(ttk.numel("bias"), _COLS), ttk.Equal(ttk.numel("grad_y"), ttk.numel("x"))],
)


def _backward(saved: Any, grad_y: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of gelu(x + bias): bias is broadcast over the rows, so its gradient is grad_x
    summed over them."""
    grad_x = torch.ops.examples.bias_gelu_backward(grad_y, saved.x, saved.bias)
    return {"x": grad_x, "bias": grad_x.sum(0)}


def register(cache: Optional[KernelCache] = None) -> None:
    """Register ``examples::bias_gelu`` and ``examples::bias_gelu_backward`` (again: a no-op).

    ``cache`` replaces the compile cache the environment names (the tests pass a temporary one).
    """
    ttk.cuda_kernel_op("examples::bias_gelu_backward", BACKWARD, cache=cache)
    ttk.cuda_kernel_op("examples::bias_gelu", FORWARD, backward=_backward, save=("x", "bias"), cache=cache)


TOLERANCES = {torch.float32: 1e-5, torch.float16: 5e-3, torch.bfloat16: 4e-2}
"""Per dtype, for ``_max_error``: about five units in the last place of float16 (11 bits) and
bfloat16 (8 bits), whose bias gradient sums rounded values; float32's is far above its rounding."""


def check_dtype(dtype: torch.dtype, rows: int = 37, cols: int = 300) -> list[Check]:
    """The output and both gradients in ``dtype`` against ``F.gelu(x + bias)`` and its autograd
    gradients, computed in float64 from the same values."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(rows, cols, generator=gen).to("cuda", dtype).requires_grad_()
    bias = (0.5 * torch.randn(cols, generator=gen)).to("cuda", dtype).requires_grad_()
    grad_y = torch.randn(rows, cols, generator=gen).to("cuda", dtype)

    y = torch.ops.examples.bias_gelu(x, bias)
    grad_x, grad_bias = torch.autograd.grad(y, (x, bias), grad_y)

    x64, bias64 = (t.detach().double().requires_grad_() for t in (x, bias))
    y64 = F.gelu(x64 + bias64)
    expected_x, expected_bias = torch.autograd.grad(y64, (x64, bias64), grad_y.double())

    name, tolerance = str(dtype).removeprefix("torch."), TOLERANCES[dtype]
    return [
        Check(f"{name} forward", max_error(y, y64), tolerance),
        Check(f"{name} grad x", max_error(grad_x, expected_x), tolerance),
        Check(f"{name} grad bias", max_error(grad_bias, expected_bias), tolerance),
    ]


def check_gradcheck() -> bool:
    """``torch.autograd.gradcheck`` in float64: the backward kernel against finite differences of
    the forward kernel. It raises, with the mismatching Jacobian entries, on a failure."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 7, generator=gen, dtype=torch.float64).cuda().requires_grad_()
    bias = torch.randn(7, generator=gen, dtype=torch.float64).cuda().requires_grad_()
    return torch.autograd.gradcheck(torch.ops.examples.bias_gelu, (x, bias))


class TinyMLP(torch.nn.Module):
    """Linear, bias + GELU, Linear; the hidden bias is a parameter of its own for the fused op."""

    def __init__(self, d_in: int, d_hidden: int, fused: bool) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(d_in, d_hidden, bias=False)
        self.bias = torch.nn.Parameter(0.1 * torch.randn(d_hidden))
        self.fc2 = torch.nn.Linear(d_hidden, 1)
        self.fused = fused

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = torch.ops.examples.bias_gelu(h, self.bias) if self.fused else F.gelu(h + self.bias)
        return self.fc2(h)


def check_training(steps: int = 5) -> Check:
    """``steps`` SGD steps of ``TinyMLP`` with the op under ``torch.compile(fullgraph=True)``
    against a copy in plain PyTorch: the losses and the final parameters must agree."""
    torch.manual_seed(0)
    fused = TinyMLP(16, 64, fused=True).cuda()
    plain = copy.deepcopy(fused)
    plain.fused = False
    data, target = torch.randn(32, 16, device="cuda"), torch.randn(32, 1, device="cuda")

    losses = []
    for model, run in ((fused, torch.compile(fused, fullgraph=True)), (plain, plain)):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        history = []
        for _ in range(steps):
            loss = F.mse_loss(run(data), target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            history.append(loss.detach())
        losses.append(torch.stack(history))

    errors = [max_error(losses[0], losses[1])]
    errors += [max_error(p, q) for p, q in zip(fused.parameters(), plain.parameters())]
    return Check(f"torch.compile training, {steps} steps", max(errors), 1e-4)


def main() -> None:
    register()
    checks = [check for dtype in TOLERANCES for check in check_dtype(dtype)]
    checks.append(check_training())
    check_gradcheck()
    print(f"{'float64 gradcheck':<34} passed")
    report(checks)


if __name__ == "__main__":
    main()
