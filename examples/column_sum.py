"""Column sums of a matrix with a kernel that accumulates into its output with ``atomicAdd``.

What it shows: ``OutputDecl(..., init=0)``, an output that kernelop fills with zeros before the
launch, for kernels where many blocks add into the same element; an output shape written as a
tuple of sizes (``(ttk.dim("x", 1),)``); a 2-D ``Launch`` grid; and ``defines``, which gives the
kernel the same rows-per-block constant the grid is computed with.

Run it on a CUDA GPU from the repository root::

    python examples/column_sum.py

It compares the op with ``x.sum(0)`` on several shapes, a matrix with no rows included (its
column sums are zeros), and prints the largest difference for each.
"""
from __future__ import annotations

from typing import Optional

import torch

import kernelop as ttk
from kernelop.compiler.cache import KernelCache

from checks import Check, report  # examples/checks.py

SOURCE = r"""
// Column sums of a row-major [rows, cols] matrix into `out`, which must start at zero.
// Block (bx, by) covers rows [bx * ROWS_PER_BLOCK, (bx + 1) * ROWS_PER_BLOCK) of the columns
// by * blockDim.x + threadIdx.x: consecutive threads read consecutive elements of a row, each
// thread sums its column's rows in a register, and one atomicAdd per thread merges the blocks.
extern "C" __global__ void column_sum_atomic(const float* __restrict__ x, float* __restrict__ out, int rows, int cols) {
  const int col = blockIdx.y * blockDim.x + threadIdx.x;
  if (col >= cols) return;
  const int row_begin = blockIdx.x * ROWS_PER_BLOCK;
  const int count = min(ROWS_PER_BLOCK, rows - row_begin);
  const float* p = x + (size_t)row_begin * cols + col;
  float acc = 0.0f;
  for (int r = 0; r < count; ++r, p += cols) acc += *p;
  atomicAdd(out + col, acc);
}
"""

BLOCK = 256
ROWS_PER_BLOCK = 32
_ROWS, _COLS = ttk.dim("x", 0), ttk.dim("x", 1)

SPEC = ttk.KernelSpec(
    kernel_source=SOURCE,
    kernel_name="column_sum_atomic",
    inputs=[ttk.InputDecl("x", dtype=torch.float32)],
    outputs=[ttk.OutputDecl("out", (_COLS,), init=0)],
    extras=[ttk.SizeArg("rows", _ROWS), ttk.SizeArg("cols", _COLS)],
    geometry=ttk.Launch(grid=(ttk.cdiv(_ROWS, ROWS_PER_BLOCK), ttk.cdiv(_COLS, BLOCK)), block=(BLOCK,)),
    param_order=("x", "out", "rows", "cols"),
    defines={"ROWS_PER_BLOCK": ROWS_PER_BLOCK},
)


def register(cache: Optional[KernelCache] = None) -> None:
    """Register ``examples::column_sum`` (again: a no-op).

    ``cache`` replaces the compile cache the environment names (the tests pass a temporary one).
    """
    ttk.cuda_kernel_op("examples::column_sum", SPEC, cache=cache)


SHAPES = ((1, 1), (0, 5), (7, 1000), (1000, 257), (20000, 96))
"""One partial block, no rows, one row chunk over four column blocks, many of both."""


def check_column_sum(rows: int, cols: int) -> Check:
    """The op against ``x.sum(0)`` for a ``[rows, cols]`` matrix. Float32 sums in another order
    differ by rounding that grows with the number of rows, and atomics add in any order."""
    gen = torch.Generator().manual_seed(rows * 7919 + cols)
    x = torch.randn(rows, cols, generator=gen).cuda()
    error = (torch.ops.examples.column_sum(x) - x.sum(0)).abs().max().item()
    return Check(f"column sums of [{rows}, {cols}]", error, 1e-6 * max(rows, 1))


def main() -> None:
    register()
    checks = [check_column_sum(rows, cols) for rows, cols in SHAPES]
    report(checks)


if __name__ == "__main__":
    main()
