"""``python -m kernelop demo``: register the example kernels, then check or inspect them.

With a GPU every example runs and is compared with PyTorch. Without one, each is compiled by
NVRTC and its schema, launch plan and ptxas report are printed. Either way a small model built
from the ops is exported with ``torch.export`` and a dynamic batch dimension.
"""
from __future__ import annotations

import torch

from ..frontend.cuda_kernel_op import cuda_kernel_op
from ..frontend.registry import registered_ops
from ..plan.describe import describe
from .examples import EXAMPLES, Example


def run_demo() -> int:
    gpu = torch.cuda.is_available()
    print(f"kernelop demo on {torch.cuda.get_device_name() if gpu else 'a machine without a GPU'}")
    for example in EXAMPLES:
        cuda_kernel_op(example.op_name, example.spec, meta_fn=example.meta_fn)
    failures = sum(not _check(e) for e in EXAMPLES) if gpu else sum(not _inspect(e) for e in EXAMPLES)
    _export()
    print(f"\n{len(EXAMPLES) - failures} of {len(EXAMPLES)} examples {'match PyTorch' if gpu else 'compiled'}")
    return 1 if failures else 0


def _op(example: Example):
    namespace, name = example.op_name.split("::")
    return getattr(getattr(torch.ops, namespace), name)


def _check(example: Example) -> bool:
    args = example.make_args("cuda")
    got, expected = _as_tuple(_op(example)(*args)), _as_tuple(example.reference(*args))
    ok = len(got) == len(expected) and all(_close(g, e) for g, e in zip(got, expected))
    error = max((g.double() - e.double()).abs().max().item() for g, e in zip(got, expected))
    shapes = [tuple(g.shape) for g in got]
    print(f"  {'ok  ' if ok else 'FAIL'} {example.op_name:28s} out {shapes}  max |err| {error:.2e}")
    return ok


def _as_tuple(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


def _close(got: torch.Tensor, expected: torch.Tensor) -> bool:
    if got.shape != expected.shape or got.dtype != expected.dtype:
        return False
    tol = 1e-2 if got.dtype in (torch.float16, torch.bfloat16) else 1e-4
    return torch.allclose(got.float(), expected.float(), rtol=tol, atol=tol)


def _inspect(example: Example) -> bool:
    registration = registered_ops()[example.op_name]
    meta_args = example.make_args("meta")
    ranks = tuple(a.dim() for a in meta_args if isinstance(a, torch.Tensor))
    out_ranks = tuple(o.dim() for o in _as_tuple(example.meta_fn(*meta_args))) if example.meta_fn else None
    binaries = registration.binaries
    assert binaries is not None and registration.plan is not None
    compiled = binaries.for_arch(binaries.request.arch)
    print(f"\n{example.op_name}{registration.schema}")
    print(describe(registration.plan, ranks, out_ranks))
    print(f"  compiled for {compiled.arch}: {len(compiled.cubin)} bytes CUBIN, {len(compiled.ptx)} bytes PTX")
    for line in compiled.resource_report().splitlines():
        print(f"    {line.strip()}")
    return len(compiled.cubin) > 0


class DemoModel(torch.nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = torch.ops.kernelop_demo.axpy(x, y, 0.5)
        return torch.ops.kernelop_demo.row_sum(torch.ops.kernelop_demo.relu(h))


def _export() -> None:
    batch = torch.export.Dim("batch", min=2, max=4096)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    example = (torch.randn(8, 64, device=device), torch.randn(8, 64, device=device))
    program = torch.export.export(DemoModel(), example, dynamic_shapes={"x": {0: batch}, "y": {0: batch}})
    print("\ntorch.export of axpy -> relu -> row_sum with a dynamic batch:")
    print(program.graph_module.code.strip())
    output = next(n for n in program.graph.nodes if n.op == "output").args[0][0]
    print(f"output shape: {tuple(output.meta['val'].shape)}")
