"""The scripts in ``examples/``: registered, described and traced on the CPU, run on a GPU.

Without a GPU: each example registers its ops (NVRTC compiles the kernels), the ops' schemas are
the ones the examples declare, the fake impls give the right shapes and dtypes (and gradients,
for the op with a backward), and inputs of a dtype the kernel does not take are refused with an
error naming the op. With a GPU: every check an example's ``main()`` prints passes.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import kernelop as ttk
from kernelop.compiler.cache import KernelCache

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
NAMES = ("bias_gelu", "adam_step", "column_sum")
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def load_example(name: str) -> ModuleType:
    """``examples/<name>.py`` as a module (``examples/`` is no package), loaded once per process:
    registering again is a no-op only for the same backward function, not a fresh copy of it."""
    module_name = f"kernelop_example_{name}"
    if str(EXAMPLES_DIR) not in sys.path:  # as when run as a script: ``from checks import ...``
        sys.path.append(str(EXAMPLES_DIR))
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, EXAMPLES_DIR / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return sys.modules[module_name]


@pytest.fixture(scope="module")
def examples(kernel_cache: KernelCache) -> dict[str, ModuleType]:
    """Every example, its ops registered with the tests' temporary compile cache."""
    modules = {name: load_example(name) for name in NAMES}
    for module in modules.values():
        module.register(cache=kernel_cache)
    return modules


def _schema(op: str) -> torch.FunctionSchema:
    return getattr(torch.ops.examples, op).default._schema


def _cuda_empty(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A CUDA tensor: a fake one inside ``FakeTensorMode``, where no GPU is needed."""
    return torch.empty(shape, dtype=dtype, device="cuda")


def test_registering_again_is_a_no_op(examples, kernel_cache):
    for module in examples.values():
        module.register(cache=kernel_cache)
    ops = ttk.registered_ops()
    for op in ("bias_gelu", "bias_gelu_backward", "adam_step", "column_sum"):
        assert f"examples::{op}" in ops


# Per op: (argument name, type, written in place) for each argument, and the return types.
SCHEMAS = {
    "bias_gelu": ([("x", "Tensor", False), ("bias", "Tensor", False)], ["Tensor"]),
    "bias_gelu_backward": ([("grad_y", "Tensor", False), ("x", "Tensor", False), ("bias", "Tensor", False)], ["Tensor"]),
    "adam_step": (
        [
            ("param", "Tensor", True),
            ("grad", "Tensor", False),
            ("exp_avg", "Tensor", True),
            ("exp_avg_sq", "Tensor", True),
            ("lr", "float", False),
            ("beta1", "float", False),
            ("beta2", "float", False),
            ("eps", "float", False),
            ("weight_decay", "float", False),
            ("step", "int", False),
        ],
        [],
    ),
    "column_sum": ([("x", "Tensor", False)], ["Tensor"]),
}


@pytest.mark.parametrize("op", SCHEMAS)
def test_schema_is_the_declared_one(examples, op):
    schema = _schema(op)
    arguments = [(a.name, str(a.type), a.alias_info is not None and a.alias_info.is_write) for a in schema.arguments]
    assert (arguments, [str(r.type) for r in schema.returns]) == SCHEMAS[op], str(schema)


def test_adam_step_declares_its_updated_tensors_mutable(examples):
    text = str(_schema("adam_step"))
    for name in ("param", "exp_avg", "exp_avg_sq"):
        assert f"!) {name}," in text, text
    assert text.endswith("-> ()"), text


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_bias_gelu_fake_impl(examples, dtype):
    with FakeTensorMode():
        x, bias = _cuda_empty(6, 10, dtype=dtype), _cuda_empty(10, dtype=dtype)
        y = torch.ops.examples.bias_gelu(x, bias)
        grad_x = torch.ops.examples.bias_gelu_backward(torch.empty_like(x), x, bias)
    assert (tuple(y.shape), y.dtype) == ((6, 10), dtype)
    assert (tuple(grad_x.shape), grad_x.dtype) == ((6, 10), dtype)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_bias_gelu_backward_gives_both_gradients(examples, dtype):
    """The registered backward, on meta tensors: autograd over fake CUDA tensors needs a CUDA
    build of torch (the engine asks for a CUDA device guard)."""
    x = torch.empty(6, 10, dtype=dtype, device="meta", requires_grad=True)
    bias = torch.empty(10, dtype=dtype, device="meta", requires_grad=True)
    y = torch.ops.examples.bias_gelu(x, bias)
    grad_x, grad_bias = torch.autograd.grad(y, (x, bias), torch.ones_like(y))
    assert (tuple(grad_x.shape), grad_x.dtype) == ((6, 10), dtype)
    assert (tuple(grad_bias.shape), grad_bias.dtype) == ((10,), dtype)


def test_adam_step_fake_impl_returns_nothing(examples):
    with FakeTensorMode():
        param, grad, exp_avg, exp_avg_sq = (_cuda_empty(3, 5) for _ in range(4))
        assert torch.ops.examples.adam_step(param, grad, exp_avg, exp_avg_sq, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1) is None


def test_column_sum_fake_impl(examples):
    with FakeTensorMode():
        out = torch.ops.examples.column_sum(_cuda_empty(7, 11))
    assert (tuple(out.shape), out.dtype) == ((11,), torch.float32)


# Per op: arguments with a dtype the op refuses.
BAD_DTYPES = {
    "int32 for bias_gelu": ("bias_gelu", lambda: (_cuda_empty(4, 8, dtype=torch.int32), _cuda_empty(8, dtype=torch.int32))),
    "mixed dtypes for bias_gelu": ("bias_gelu", lambda: (_cuda_empty(4, 8), _cuda_empty(8, dtype=torch.float16))),
    "float16 for adam_step": (
        "adam_step",
        lambda: (_cuda_empty(8, dtype=torch.float16), *(_cuda_empty(8) for _ in range(3)), 1e-3, 0.9, 0.999, 1e-8, 0.0, 1),
    ),
    "float64 for column_sum": ("column_sum", lambda: (_cuda_empty(4, 8, dtype=torch.float64),)),
}


@pytest.mark.parametrize("case", BAD_DTYPES)
def test_a_bad_dtype_is_refused_naming_the_op(examples, case):
    op, make_args = BAD_DTYPES[case]
    with FakeTensorMode():
        with pytest.raises(TypeError, match=rf"examples::{op}\b"):
            getattr(torch.ops.examples, op)(*make_args())


def test_bias_gelu_refuses_a_bias_of_another_width(examples):
    with FakeTensorMode():
        with pytest.raises(ValueError, match=r"examples::bias_gelu\b.*requires\[0\]"):
            torch.ops.examples.bias_gelu(_cuda_empty(4, 8), _cuda_empty(7))


# ---------------------------------------------------------------------------------------------
# On a GPU: the checks each example's main() prints, and the dtype checks before a launch.
# ---------------------------------------------------------------------------------------------

requires_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _assert_ok(checks: list) -> None:
    assert all(check.ok for check in checks), "\n".join(map(str, checks))


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("dtype", (torch.float32, torch.float16, torch.bfloat16), ids=str)
def test_bias_gelu_matches_pytorch(examples, dtype):
    _assert_ok(examples["bias_gelu"].check_dtype(dtype))


@pytest.mark.gpu
@requires_gpu
def test_bias_gelu_passes_gradcheck(examples):
    assert examples["bias_gelu"].check_gradcheck()


@pytest.mark.gpu
@requires_gpu
def test_bias_gelu_trains_under_torch_compile(examples):
    _assert_ok([examples["bias_gelu"].check_training()])


@pytest.mark.gpu
@requires_gpu
def test_adam_step_matches_torch_adamw(examples):
    _assert_ok(examples["adam_step"].check_adamw())


@pytest.mark.gpu
@requires_gpu
def test_column_sum_matches_x_sum(examples):
    module = examples["column_sum"]
    _assert_ok([module.check_column_sum(rows, cols) for rows, cols in module.SHAPES])


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("case", BAD_DTYPES)
def test_a_bad_dtype_is_refused_before_launch(examples, case):
    op, make_args = BAD_DTYPES[case]
    with pytest.raises(TypeError, match=rf"examples::{op}\b"):
        getattr(torch.ops.examples, op)(*make_args())
    torch.cuda.synchronize()  # nothing was launched that could fault


@pytest.mark.gpu
@requires_gpu
@pytest.mark.parametrize("name", NAMES)
def test_main_prints_every_check_passed(examples, name, capsys):
    examples[name].main()  # exits with status 1 if a check fails
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.endswith(("ok", "passed")) for line in lines), lines
