"""An in-place AdamW step as a PyTorch op that returns nothing.

What it shows: ``InputDecl(..., mutates=True)`` for tensors the kernel updates in place (the
parameters and both moment buffers, registered as ``Tensor(a!)``), a read-only gradient, float
and int scalar arguments, and ``outputs=[]``. The update is ``torch.optim.AdamW``'s, fused into
one pass over memory as fused optimizers do.

Run it on a CUDA GPU from the repository root::

    python examples/adam_step.py

It takes several steps with the op and with ``torch.optim.AdamW`` on a copy of the same
parameters and gradients, and prints the largest difference in the parameters and in each moment.
"""
from __future__ import annotations

from typing import Optional

import torch

import kernelop as ttk
from kernelop.compiler.cache import KernelCache

from checks import Check, max_error, report  # examples/checks.py

SOURCE = r"""
// One AdamW step (decoupled weight decay, as torch.optim.AdamW) for element i, in place.
extern "C" __global__ void adamw_step(float* __restrict__ param, const float* __restrict__ grad,
                                      float* __restrict__ exp_avg, float* __restrict__ exp_avg_sq, long long n,
                                      float lr, float beta1, float beta2, float eps, float weight_decay, int step) {
  const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float g = grad[i];
  const float m = beta1 * exp_avg[i] + (1.0f - beta1) * g;
  const float v = beta2 * exp_avg_sq[i] + (1.0f - beta2) * g * g;
  exp_avg[i] = m;
  exp_avg_sq[i] = v;
  // Bias corrections for moments that start at zero; `step` counts from 1.
  const float bias_correction1 = 1.0f - powf(beta1, (float)step);
  const float bias_correction2 = 1.0f - powf(beta2, (float)step);
  const float denom = sqrtf(v) / sqrtf(bias_correction2) + eps;
  const float decayed = param[i] * (1.0f - lr * weight_decay);
  param[i] = decayed - (lr / bias_correction1) * (m / denom);
}
"""

BLOCK = 256
_N = ttk.numel("param")

SPEC = ttk.KernelSpec(
    kernel_source=SOURCE,
    kernel_name="adamw_step",
    inputs=[
        ttk.InputDecl("param", dtype=torch.float32, mutates=True),
        ttk.InputDecl("grad", dtype=torch.float32),
        ttk.InputDecl("exp_avg", dtype=torch.float32, mutates=True),
        ttk.InputDecl("exp_avg_sq", dtype=torch.float32, mutates=True),
        ttk.ScalarInput("lr", float),
        ttk.ScalarInput("beta1", float),
        ttk.ScalarInput("beta2", float),
        ttk.ScalarInput("eps", float),
        ttk.ScalarInput("weight_decay", float),
        ttk.ScalarInput("step", int),
    ],
    outputs=[],
    extras=[ttk.SizeArg("n", _N)],
    geometry=ttk.Launch(grid=(ttk.cdiv(_N, BLOCK),), block=(BLOCK,)),
    param_order=("param", "grad", "exp_avg", "exp_avg_sq", "n", "lr", "beta1", "beta2", "eps", "weight_decay", "step"),
    requires=[ttk.Equal(ttk.numel(name), _N) for name in ("grad", "exp_avg", "exp_avg_sq")],
)


def register(cache: Optional[KernelCache] = None) -> None:
    """Register ``examples::adam_step`` (again: a no-op).

    ``cache`` replaces the compile cache the environment names (the tests pass a temporary one).
    """
    ttk.cuda_kernel_op("examples::adam_step", SPEC, cache=cache)


LR, BETA1, BETA2, EPS, WEIGHT_DECAY = 1e-2, 0.9, 0.999, 1e-8, 1e-2  # those of the comparison

TOLERANCE = 1e-5
"""Float32 rounding over a few steps; the kernel computes its bias corrections in float."""


def check_adamw(shape: tuple[int, ...] = (123, 45), steps: int = 10) -> list[Check]:
    """``steps`` steps of the op against ``torch.optim.AdamW`` on a copy, with the same gradients."""
    gen = torch.Generator().manual_seed(0)
    param = torch.randn(shape, generator=gen).cuda()
    exp_avg, exp_avg_sq = torch.zeros_like(param), torch.zeros_like(param)
    reference = torch.nn.Parameter(param.clone())
    optimizer = torch.optim.AdamW([reference], lr=LR, betas=(BETA1, BETA2), eps=EPS, weight_decay=WEIGHT_DECAY)
    for step in range(1, steps + 1):
        grad = torch.randn(shape, generator=gen).cuda()
        torch.ops.examples.adam_step(param, grad, exp_avg, exp_avg_sq, LR, BETA1, BETA2, EPS, WEIGHT_DECAY, step)
        reference.grad = grad
        optimizer.step()

    state = optimizer.state[reference]
    return [
        Check(f"param after {steps} steps", max_error(param, reference), TOLERANCE),
        Check(f"exp_avg after {steps} steps", max_error(exp_avg, state["exp_avg"]), TOLERANCE),
        Check(f"exp_avg_sq after {steps} steps", max_error(exp_avg_sq, state["exp_avg_sq"]), TOLERANCE),
    ]


def main() -> None:
    register()
    checks = check_adamw()
    report(checks)


if __name__ == "__main__":
    main()
