"""The native runtime, without a GPU: it builds, takes every plan the corpus registers, computes
the Python launcher's launch values and refusals (same numbers, same messages) for generated
shapes, refuses CPU tensors as the Python path does, and an op it cannot run stays on Python."""
from __future__ import annotations

import ctypes
import dataclasses
import logging

import pytest
import torch
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

import kernelop as ttk
from kernelop import settings
from kernelop.native import runtime as native_runtime
from kernelop.native.program import program_problem
from kernelop.pytorch.launcher import EagerLauncher
from conftest import op_packet, overwritten_shared_bytes
from kernel_corpus import CORPUS
from written_kernels import add_bias_spec, add_positive_spec, axpby_spec, row_sums_spec

SPECS = {k.name: k.spec for k in CORPUS if k.meta_fn is None} | {
    "axpby": axpby_spec(), "add_bias": add_bias_spec(), "row_sums": row_sums_spec(), "add_positive": add_positive_spec(),
}
needs_runtime = pytest.mark.skipif(
    not settings.SETTINGS.native_runtime or native_runtime.runtime() is None,
    reason=f"KERNELOP_NATIVE_RUNTIME=0, or the native runtime is unavailable here ({native_runtime.unavailable_reason()})")


def python_values(plan, shapes):
    """The Python launcher's values for these shapes (CUDA's limits, no kernel), as the runtime lays them out."""
    launcher = EagerLauncher(plan, None, None)
    v = launcher._dims_for(object(), shapes, None, None)
    sized = iter(v[7 + len(plan.extras):])
    out = list(v[:7 + len(plan.extras)])
    for rule in plan.outputs:
        out.extend(shapes[rule.source] if rule.like_input else next(sized))
    return tuple(out)


def outcome(compute):
    try:
        return compute()
    except (ValueError, TypeError) as exc:
        return type(exc).__name__, str(exc)


shape = st.lists(st.integers(0, 9), min_size=0, max_size=4).map(tuple)


@needs_runtime
@pytest.mark.parametrize("name", sorted(SPECS))
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_the_runtime_computes_the_python_launchers_values_and_refusals(name, op_name, register, data):
    op = op_name(name)
    register(op, SPECS[name])
    registration = ttk.registered_ops()[op]
    assert registration.call_path == "native"
    plan, runtime = registration.plan, native_runtime.runtime()
    shapes = [tuple(data.draw(shape)) for _ in plan.tensor_params]
    assert outcome(lambda: runtime.launch_values(op, shapes)) == outcome(lambda: python_values(plan, shapes))


@needs_runtime
def test_every_corpus_plan_has_a_native_program_and_meta_fn_ops_stay_on_python(op_name, register):
    for k in CORPUS:
        op = op_name(k.name)
        register(op, k.spec, meta_fn=k.meta_fn) if k.meta_fn is not None else register(op, k.spec)
        registration = ttk.registered_ops()[op]
        expected = "python" if program_problem(registration.plan) is not None else "native"
        assert registration.call_path == expected, (k.name, program_problem(registration.plan))
        assert (k.meta_fn is None) == (expected == "native")


@needs_runtime
@pytest.mark.parametrize("args, error", [
    (lambda: (torch.ones(5), torch.ones(5), 2.0, 3.0), ValueError),
    (lambda: (torch.ones(5, device="meta"), torch.ones(5), 2.0, 3.0), ValueError),
    (lambda: (None, torch.ones(5), 2.0, 3.0), ValueError),  # devices are explained first, as in Python
])
def test_refusals_before_the_launch_read_as_on_the_python_path(args, error, op_name, register, monkeypatch):
    native = op_name("axpby")
    register(native, axpby_spec())
    monkeypatch.setattr(settings, "SETTINGS", dataclasses.replace(settings.SETTINGS, native_runtime=False))
    python = op_name("axpby")
    register(python, axpby_spec())
    assert (ttk.registered_ops()[native].call_path, ttk.registered_ops()[python].call_path) == ("native", "python")
    messages = []
    for name in (native, python):
        with pytest.raises(error) as caught:
            op_packet(name)(*args())
        messages.append(str(caught.value).replace(name, "OP"))
    assert messages[0] == messages[1]


@needs_runtime
def test_an_in_place_op_with_an_optional_input_registers_natively(op_name, register):
    op = op_name("add_bias")
    register(op, add_bias_spec())
    assert ttk.registered_ops()[op].call_path == "native"


def test_with_the_runtime_off_ops_stay_on_python(op_name, register, python_path):
    op = op_name("axpby")
    register(op, axpby_spec())
    assert ttk.registered_ops()[op].call_path == "python"


def test_without_a_compiler_the_runtime_says_why_once(monkeypatch, caplog, tmp_path):
    from kernelop.native import build

    monkeypatch.setattr(build, "compiler", lambda: None)
    loaded = build.load(tmp_path)
    assert loaded.library is None and loaded.reason == "no C++ compiler found (CXX, c++ or g++)"
    monkeypatch.setattr(native_runtime, "_runtime", None)
    monkeypatch.setattr(native_runtime, "_unavailable", None)
    monkeypatch.setattr(build, "load", lambda directory: loaded)
    with caplog.at_level(logging.INFO, logger="kernelop"):
        assert native_runtime.runtime() is None and native_runtime.runtime() is None
    lines = [r.getMessage() for r in caplog.records if "native runtime" in r.getMessage()]
    assert lines == ["kernelop: ops are called through Python: the native runtime is unavailable (no C++ compiler found (CXX, c++ or g++))"]


@needs_runtime
def test_a_bundles_library_registers_its_ops_in_a_process_without_kernelop(op_name, register, tmp_path):
    import subprocess
    import sys

    from kernelop.export.bundle import LIBRARY, export_bundle

    op = op_name("axpby")
    register(op, axpby_spec())
    bundle = export_bundle(tmp_path / "bundle", [op], ["sm_90"])
    namespace, name = op.split("::")
    script = (
        "import sys, torch\n"
        f"torch.ops.load_library({str(bundle / LIBRARY)!r})\n"
        "assert 'kernelop' not in sys.modules\n"
        f"op = torch.ops.{namespace}.{name}\n"
        "print(op.default._schema)\n"
        "try:\n"
        "    op(torch.ones(3), torch.ones(3), 2.0, 3.0)\n"
        "except ValueError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{op}(Tensor x, Tensor y, float a, float b) -> Tensor",
        f"kernelop.call({op}): argument 'x' must be a CUDA tensor (got a tensor on cpu)",
    ]


@needs_runtime
def test_an_extra_beyond_its_c_type_is_refused_as_on_the_python_path(op_name, register, relu_spec):
    op = op_name("relu")
    register(op, relu_spec())
    plan = ttk.registered_ops()[op].plan
    shapes = [(50000, 50000)]  # numel 2.5e9 overflows the kernel's int n
    native = outcome(lambda: native_runtime.runtime().launch_values(op, shapes))
    assert native == outcome(lambda: python_values(plan, shapes))
    assert native[0] == "ValueError" and "extra numel(x) = 2500000000 does not fit the kernel's 32-bit int parameter" in native[1]


@needs_runtime
def test_a_failing_kernel_provider_writes_its_message_into_the_runtimes_buffer():
    """The runtime hands the provider a C buffer for the reason it failed; the message lands there
    (and nowhere else: the interpreter's shared one-byte bytes objects are intact)."""
    runtime = native_runtime.runtime()
    error = ctypes.create_string_buffer(4096)
    as_c = ctypes.cast(runtime._provider, ctypes.c_void_p).value
    provide = native_runtime._PROVIDER(as_c)
    assert provide(b"kotest::never_attached", b"float32", b"sm_90", ctypes.addressof(error), len(error)) == 1
    assert "kotest::never_attached" in error.value.decode()
    assert overwritten_shared_bytes() == []
