"""Inputs that once escaped kernelop's promise of a ValueError/TypeError naming the op; each
test failed before its fix."""
from __future__ import annotations

import re

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import kernelop as ttk
from kernelop.pytorch.launcher import EagerLauncher
from conftest import op_packet


@pytest.mark.parametrize("name", ["kotest::__doc__", "kotest::_private", "_kotest::op"])
def test_op_names_torch_looks_up_as_attributes_are_refused(name, relu_spec, assert_left_nothing):
    with pytest.raises(ValueError, match=re.escape(f"kernelop.cuda_kernel_op({name}): op_name parts must not start with '_'")):
        ttk.cuda_kernel_op(name, relu_spec())


@pytest.mark.parametrize("cache", ["/tmp/kernelop-cache", 3, False, True])
def test_a_cache_of_another_type_is_refused(cache, op_name, relu_spec, assert_left_nothing):
    name = op_name("cachetype")
    with pytest.raises(TypeError, match=re.escape(f"kernelop.cuda_kernel_op({name}): cache must be a kernelop KernelCache or None")):
        ttk.cuda_kernel_op(name, relu_spec(), cache=cache)
    assert_left_nothing(name)
    with pytest.raises(TypeError, match=r"kernelop.CudaKernel\(my_relu\): cache must be a kernelop KernelCache"):
        ttk.CudaKernel(relu_spec().kernel_source, "my_relu", cache=cache)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("kernel_source", "\0", r"kernel_source contains a NUL character at offset \d+; NVRTC would stop reading there"),
        ("kernel_source", "// \ud800\n", r"kernel_source is not valid Unicode text at offset \d+ \(surrogates not allowed"),
        ("kernel_name", "\0x", r"kernel_name contains a NUL character at offset 7"),
    ],
)
def test_text_nvrtc_cannot_read_whole_is_refused(field, value, message, op_name, relu_spec, register, assert_left_nothing):
    spec = relu_spec()
    name = op_name("text")
    setattr(spec, field, getattr(spec, field) + value)
    with pytest.raises(ValueError, match=re.escape(f"kernelop.cuda_kernel_op({name}): ") + message):
        register(name, spec)
    assert_left_nothing(name)


def test_zero_outputs_are_refused_at_registration(op_name, relu_spec, register, assert_left_nothing):
    name = op_name("noout")
    with pytest.raises(ValueError, match=re.escape(f"kernelop.cuda_kernel_op({name}): schema must return at least one Tensor")):
        register(name, relu_spec(outputs=None), meta_fn=lambda x: (), schema="(Tensor x) -> ()")
    assert_left_nothing(name)


def test_shared_memory_past_32_bits_is_refused_at_registration_and_at_the_call(op_name, relu_spec, register):
    name = op_name("shared32")
    with pytest.raises(ValueError, match=r"geometry.shared_mem_bytes must be an int in 0..4294967295 \(got 4294967296\)"):
        register(name, relu_spec(geometry=ttk.Elementwise(shared_mem_bytes=2**32)))
    with pytest.raises(ValueError, match=r"geometry.shared_mem_bytes must be in 0..4294967295"):
        register(op_name("shared32"), relu_spec(geometry=ttk.Launch((1,), (1,), 2**32)))
    name = op_name("shared32")
    register(name, relu_spec(geometry=ttk.Launch((1,), (1,), ttk.numel("x") * 2**20)))
    launcher = EagerLauncher(ttk.registered_ops()[name].plan, ttk.registered_ops()[name].binaries, None)
    with pytest.raises(ValueError, match=re.escape(f"kernelop.call({name}): dynamic shared memory of 4294967296 bytes is outside 0..4294967295")):
        launcher._dims_for((4096,), ((4096,),), None)


def test_a_0d_input_to_a_dim_size_extra_is_refused_naming_the_op(op_name, relu_spec, register):
    name = op_name("zerod")
    register(name, relu_spec(extras=[ttk.DimSize("x", -1)]))
    launcher = EagerLauncher(ttk.registered_ops()[name].plan, ttk.registered_ops()[name].binaries, None)
    with pytest.raises(ValueError, match=re.escape(f"kernelop.call({name}): extra x.shape[-1]: 'x' axis -1 is out of range for a tensor of rank 0")):
        launcher._dims_for((), ((),), None)


def test_an_output_size_dividing_by_zero_or_negative_is_refused_by_the_fake_impl_as_by_eager(op_name, relu_spec, register):
    name = op_name("outsize")
    register(name, relu_spec(outputs=[ttk.OutputDecl("y", (ttk.dim("x", 0) // ttk.dim("x", 1), ttk.dim("x", 0) - 5))],
                             extras=[], geometry=ttk.Launch(grid=(1,), block=(1,))))
    with FakeTensorMode():
        with pytest.raises(ValueError, match=re.escape(f"kernelop.call({name}): an output size divides by zero for input shapes [(3, 0)]")):
            op_packet(name)(torch.empty(3, 0))
        with pytest.raises(ValueError, match=re.escape(f"kernelop.call({name}): output 'y' would have the shape (3, -2) for input shapes [(3, 1)]")):
            op_packet(name)(torch.empty(3, 1))
        assert op_packet(name)(torch.empty(8, 2)).shape == (4, 3)


@pytest.mark.parametrize("schema, message", [
    ("(Tensor(a) x) -> Tensor(a)", "schema arguments ['Tensor(a)'] do not match the declared inputs ['Tensor']"),
    ("(Tensor x) -> Tensor(a)", "schema returns an alias of an argument; a kernelop op returns new tensors its kernel writes"),
    ("(Tensor x) -> Tensor(b!)", "schema returns an alias of an argument"),
])
def test_a_schema_claiming_aliases_the_kernel_does_not_make_is_refused(schema, message, op_name, relu_spec, register, assert_left_nothing):
    name = op_name("alias")
    with pytest.raises(ValueError, match=re.escape(f"kernelop.cuda_kernel_op({name}): {message}")):
        register(name, relu_spec(), schema=schema)
    assert_left_nothing(name)
