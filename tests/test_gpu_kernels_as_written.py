"""On the GPU: a template dispatched on dtypes, arguments written in place (non-contiguous ones
included), optional inputs, zero-initialised and copied outputs, and autograd, each checked
against PyTorch, on both launch paths, under torch.compile and in CUDA graphs."""
from __future__ import annotations

import itertools

import pytest
import torch

import kernelop as ttk
from kernelop.compiler.cache import KernelCache
from written_kernels import add_bias_spec, add_positive_spec, axpby_spec, row_sums_spec

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

_names = itertools.count()
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12, torch.float16: 2e-3, torch.bfloat16: 2e-2}


def register(tmp_path, spec: ttk.KernelSpec, stem: str, **kwargs):
    name = f"kgpuwritten::{stem}_{next(_names)}"
    ttk.cuda_kernel_op(name, spec, cache=KernelCache(tmp_path), **kwargs)
    namespace, short = name.split("::")
    return getattr(getattr(torch.ops, namespace), short)


@pytest.mark.parametrize("dtype", list(TOLERANCE))
def test_one_template_serves_each_dtype(tmp_path, launch_path, dtype):
    op = register(tmp_path, axpby_spec(), "axpby")
    for n in (1, 7, 1023, 4097, 100_003):
        x, y = torch.randn(n, device="cuda", dtype=dtype), torch.randn(n, device="cuda", dtype=dtype)
        expected = (1.5 * x.double() - 0.25 * y.double()).to(dtype)
        tol = TOLERANCE[dtype]
        torch.testing.assert_close(op(x, y, 1.5, -0.25), expected, atol=tol, rtol=tol)
    x = torch.randn(64, 33, device="cuda", dtype=dtype).t()  # non-contiguous input
    y = torch.randn(33, 64, device="cuda", dtype=dtype)
    torch.testing.assert_close(op(x, y, 1.0, 1.0), (x.double() + y.double()).to(dtype), atol=tol, rtol=tol)
    assert op(torch.empty(0, device="cuda", dtype=dtype), torch.empty(0, device="cuda", dtype=dtype), 1.0, 1.0).shape == (0,)


def test_mixed_and_unserved_dtypes_are_refused_before_launch(tmp_path):
    op = register(tmp_path, axpby_spec(), "axpby")
    with pytest.raises(TypeError, match=r"argument 'y' has dtype torch.float16 but 'x' has torch.float32; both are of template type T"):
        op(torch.ones(4, device="cuda"), torch.ones(4, device="cuda", dtype=torch.float16), 1.0, 1.0)
    with pytest.raises(TypeError, match=r"instantiated for float32, float16, bfloat16, float64"):
        op(torch.ones(4, device="cuda", dtype=torch.int32), torch.ones(4, device="cuda", dtype=torch.int32), 1.0, 1.0)


def test_an_in_place_argument_is_written_also_when_not_contiguous(tmp_path, launch_path):
    op = register(tmp_path, add_bias_spec(), "add_bias")
    x = torch.randn(37, 19, device="cuda")
    bias = torch.randn(19, device="cuda")
    expected = x + 0.5 * bias
    assert op(x, bias, 0.5) is None
    torch.testing.assert_close(x, expected)
    op(x, None, 2.0)  # a null bias: the kernel adds alpha
    torch.testing.assert_close(x, expected + 2.0)

    base = torch.randn(19, 37, device="cuda")
    view = base.t()  # [37, 19], not contiguous: written through a copy, then copied back
    expected = view + bias
    op(view, bias, 1.0)
    torch.testing.assert_close(view, expected)
    torch.testing.assert_close(base, expected.t())


def test_an_in_place_op_under_torch_compile_and_in_a_cuda_graph(tmp_path):
    op = register(tmp_path, add_bias_spec(), "add_bias")

    def step(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = x * 2
        op(x, bias, 1.0)
        return x + 1

    compiled = torch.compile(step, fullgraph=True)
    x, bias = torch.randn(8, 5, device="cuda"), torch.randn(5, device="cuda")
    torch.testing.assert_close(compiled(x, bias), x * 2 + bias + 1)

    static = torch.zeros(8, 5, device="cuda")
    op(static, bias, 1.0)  # loaded before capture
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        op(static, bias, 1.0)
    static.zero_()
    for _ in range(3):
        graph.replay()
    torch.testing.assert_close(static, 3 * bias.expand(8, 5))


def test_an_accumulating_kernel_starts_from_zero_on_every_call(tmp_path, launch_path):
    op = register(tmp_path, row_sums_spec(), "row_sums")
    x = torch.randn(123, 457, device="cuda")
    for _ in range(2):  # a second call must not add to the first one's memory
        torch.testing.assert_close(op(x), x.double().sum(1).float(), atol=1e-3, rtol=1e-4)
    assert op(torch.empty(0, 5, device="cuda")).shape == (0,)


def test_an_output_that_starts_as_a_copy_of_an_input(tmp_path):
    op = register(tmp_path, add_positive_spec(), "add_positive")
    x, y = torch.randn(33, 17, device="cuda"), torch.randn(33 * 17, device="cuda")
    out = op(x, y)
    torch.testing.assert_close(out, x + y.clamp(min=0).view(33, 17))
    assert out.data_ptr() != x.data_ptr()


def _axpby_backward(saved, grad):
    return {"x": grad * saved.a, "y": grad * saved.b}


def test_backward_passes_gradcheck_in_float64_and_trains_under_torch_compile(tmp_path):
    op = register(tmp_path, axpby_spec(), "axpby_grad", backward=_axpby_backward, save=("a", "b"))
    x = torch.randn(50, device="cuda", dtype=torch.float64, requires_grad=True)
    y = torch.randn(50, device="cuda", dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: op(x, y, 0.7, -1.3), (x, y))

    w = torch.zeros(64, device="cuda", requires_grad=True)
    target = torch.randn(64, device="cuda")

    @torch.compile(fullgraph=True)
    def loss_of(w: torch.Tensor) -> torch.Tensor:
        return (op(w, target, 1.0, -1.0) ** 2).mean()

    optimizer = torch.optim.SGD([w], lr=10.0)
    for _ in range(30):
        optimizer.zero_grad()
        loss_of(w).backward()
        optimizer.step()
    torch.testing.assert_close(w.detach(), target, atol=1e-3, rtol=0)
