"""Kernels as people write them (``kernel_corpus.py``), registered with their sources untouched.

Without a GPU: each registers (NVRTC compiles it and its PTX parameter list is checked against
the spec), its fake impl gives the reference's shapes and dtypes, and shapes that break a
declared requirement are refused under ``FakeTensorMode``. With a GPU: each runs on every shape
and matches PyTorch, and every bad shape raises ``ValueError`` before anything is launched.
"""
from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import kernelop as ttk
from kernelop.compiler.cache import KernelCache
from kernelop.compiler.signature import source_params
from kernelop.plan.describe import slot_name
from conftest import op_packet
from kernel_corpus import CORPUS, CorpusKernel

NAMESPACE = "kocorpus"
IDS = [k.name for k in CORPUS]


def _as_tuple(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _fake_args(args: tuple) -> list:
    """The arguments as fake CUDA tensors (call inside ``FakeTensorMode``), scalars unchanged."""
    return [torch.empty(a.shape, dtype=a.dtype, device="cuda") if isinstance(a, torch.Tensor) else a for a in args]


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every corpus kernel registered once for the module: name -> op name."""
    kernel_cache = KernelCache(tmp_path_factory.mktemp("corpus-cache"))
    names = {}
    for kernel in CORPUS:
        name = f"{NAMESPACE}::{kernel.name}"
        ttk.cuda_kernel_op(name, kernel.spec, meta_fn=kernel.meta_fn, cache=kernel_cache)
        names[kernel.name] = name
    return names


@pytest.mark.parametrize("kernel", CORPUS, ids=IDS)
def test_registers_with_its_own_parameter_list(kernel: CorpusKernel, registered):
    """The kernel's parameters, in its own order, with the C types its source declares."""
    plan = ttk.registered_ops()[registered[kernel.name]].plan
    if kernel.spec.param_order is not None:
        assert [slot_name(plan, s) for s in plan.arg_layout] == list(kernel.spec.param_order)
    declared = source_params(kernel.spec.kernel_source, kernel.spec.kernel_name)
    assert declared is not None and len(declared) == len(plan.arg_layout)
    for slot, param in zip(plan.arg_layout, declared):
        assert (slot.ctype == "ptr") == param.is_pointer, (slot, param)
        if param.ctype is not None:
            assert slot.ctype == param.ctype, (slot, param)


@pytest.mark.parametrize("kernel", CORPUS, ids=IDS)
def test_fake_impl_gives_the_reference_shapes_and_dtypes(kernel: CorpusKernel, registered):
    args = kernel.shapes[0]("cpu")
    expected = _as_tuple(kernel.reference(*args))
    with FakeTensorMode():
        got = _as_tuple(op_packet(registered[kernel.name])(*_fake_args(args)))
    assert [(tuple(g.shape), g.dtype) for g in got] == [(tuple(e.shape), e.dtype) for e in expected]


@pytest.mark.parametrize("kernel", [k for k in CORPUS if k.bad_shapes], ids=[k.name for k in CORPUS if k.bad_shapes])
def test_bad_shapes_are_refused_by_the_fake_impl(kernel: CorpusKernel, registered):
    name = registered[kernel.name]
    for make in kernel.bad_shapes:
        args = make("meta")
        with FakeTensorMode():
            with pytest.raises(ValueError, match=rf"kernelop\.call\({name}\): .*requires\[\d+\] requires it"):
                op_packet(name)(*_fake_args(args))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kernel", CORPUS, ids=IDS)
def test_matches_pytorch_on_the_gpu(kernel: CorpusKernel, registered):
    op = op_packet(registered[kernel.name])
    for make in kernel.shapes:
        args = make("cuda")
        got = _as_tuple(op(*args))
        expected = _as_tuple(kernel.reference(*args))
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == e.shape and g.dtype == e.dtype, (g.shape, e.shape, g.dtype, e.dtype)
            torch.testing.assert_close(g, e, atol=kernel.atol, rtol=kernel.rtol)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("kernel", [k for k in CORPUS if k.bad_shapes], ids=[k.name for k in CORPUS if k.bad_shapes])
def test_bad_shapes_are_refused_before_launch(kernel: CorpusKernel, registered):
    name = registered[kernel.name]
    for make in kernel.bad_shapes:
        args = make("cuda")
        with pytest.raises(ValueError, match=rf"kernelop\.call\({name}\): .*requires\[\d+\] requires it"):
            op_packet(name)(*args)
    torch.cuda.synchronize()  # nothing was launched that could fault
