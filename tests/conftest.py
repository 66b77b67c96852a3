"""Shared fixtures: unique op names, a throw-away compile cache, the relu kernel.

Ops registered with torch live for the whole process, so every test takes a fresh name from
``op_name`` and never reuses one registered by another test.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
from typing import Callable

import pytest
import torch

import kernelop as ttk
from kernelop import settings
from kernelop.compiler.cache import KernelCache
from kernelop.cuda import driver

TEST_NAMESPACE = "kotest"
"""The torch.ops namespace these tests register into (one no library code uses)."""

RELU_SOURCE = """extern "C" __global__ void my_relu(const float* x, int n, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
"""

_counter = itertools.count()


def overwritten_shared_bytes() -> list[int]:
    """The bytes whose interpreter-wide one-byte ``bytes`` object no longer holds that byte: C
    code (NVRTC, the driver, a ctypes callback) wrote into an immutable buffer, and from then on,
    e.g., ``" ".encode()`` gives the written byte instead of a space."""
    return [code for code in range(256) if bytes([code])[0] != code]


_first_overwritten_by: list[str] = []


@pytest.fixture(autouse=True)
def shared_bytes_intact(request):
    """Fails the test after which one of the interpreter's shared one-byte ``bytes`` objects
    changed; the damage lasts for the process, so later tests fail naming that first test."""
    yield
    overwritten = overwritten_shared_bytes()
    if overwritten and not _first_overwritten_by:
        _first_overwritten_by.append(request.node.nodeid)
        pytest.fail(f"the interpreter's shared one-byte bytes objects for {overwritten} were overwritten during this test")
    assert not overwritten, f"the interpreter's shared one-byte bytes objects were overwritten earlier, by {_first_overwritten_by[0]}"


def _fresh_name(prefix: str = "op") -> str:
    return f"{TEST_NAMESPACE}::{prefix}_{os.getpid()}_{next(_counter)}"


@pytest.fixture
def op_name() -> Callable[..., str]:
    """A factory of op names never used before in this process: ``kotest::<prefix>_<pid>_<n>``."""
    return _fresh_name


@pytest.fixture(scope="session")
def kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> KernelCache:
    """A compile cache in a temporary directory (never the user's cache)."""
    return KernelCache(tmp_path_factory.mktemp("kernelop-cache"))


@pytest.fixture(scope="session")
def relu_source() -> str:
    return RELU_SOURCE


_C_SCALARS = {float: "float", int: "int", bool: "bool"}


def stub_kernel(name: str, inputs, extras, outputs, meta_outputs: int = 1) -> str:
    """An empty kernel whose parameter list is the seed convention's for these declarations, so
    that a spec registers (kernelop checks the kernel's parameters) where nothing is launched.
    ``outputs=None`` (shapes from meta_fn) takes ``meta_outputs`` output pointers."""
    try:
        params = [
            f"const float* {d.name}" if isinstance(d, ttk.InputDecl) else f"{_C_SCALARS[d.py_type]} {d.name}" for d in inputs or ()
        ]
        params += [f"int {getattr(e, 'name', f'extra{i}')}" for i, e in enumerate(extras or ())]
        params += [f"float* {o.name}" for o in outputs] if outputs is not None else [f"float* out{k}" for k in range(meta_outputs)]
    except (AttributeError, KeyError, TypeError):  # a malformed spec, which validation refuses first
        return RELU_SOURCE
    return f'extern "C" __global__ void {name}({", ".join(params)}) {{}}\n'


def seed_relu_fields() -> dict:
    """The KernelSpec fields of the SEED's declarative relu (the README's quickstart)."""
    return dict(
        kernel_source=RELU_SOURCE,
        kernel_name="my_relu",
        inputs=[ttk.InputDecl("x")],
        outputs=[ttk.OutputDecl("y", shape=ttk.SameAs(0))],
        extras=[ttk.Numel("x")],
        geometry=ttk.Elementwise(block=(256,), layout="flat"),
    )


@pytest.fixture
def relu_spec() -> Callable[..., ttk.KernelSpec]:
    """The SEED's declarative relu; keyword arguments replace KernelSpec fields. Other inputs,
    extras or outputs without a ``kernel_source`` get an empty kernel taking those parameters
    (``meta_outputs`` output pointers where ``outputs=None``)."""

    def make(meta_outputs: int = 1, **fields) -> ttk.KernelSpec:
        base = {**seed_relu_fields(), **fields}
        if "kernel_source" not in fields and {"inputs", "extras", "outputs"} & set(fields):
            base["kernel_source"] = stub_kernel(base["kernel_name"], base["inputs"], base["extras"], base["outputs"], meta_outputs)
        return ttk.KernelSpec(**base)

    return make


@pytest.fixture
def register(kernel_cache: KernelCache) -> Callable[..., None]:
    """``cuda_kernel_op`` with the temporary cache filled in."""

    def call(name: str, spec: ttk.KernelSpec, **kwargs) -> None:
        kwargs.setdefault("cache", kernel_cache)
        ttk.cuda_kernel_op(name, spec, **kwargs)

    return call


def op_packet(name: str):
    """``torch.ops.<ns>.<name>`` for a qualified op name."""
    namespace, short = name.split("::")
    return getattr(getattr(torch.ops, namespace), short)


def is_defined_in_torch(name: str) -> bool:
    """Whether torch knows an op of that name (schema or any kernel)."""
    try:
        torch._C._get_schema(name, "")
    except RuntimeError:
        pass
    else:
        return True
    try:
        return bool(torch._C._dispatch_has_kernel_for_dispatch_key(name, "CUDA"))
    except RuntimeError:  # "operator ... does not exist"
        return False


@pytest.fixture
def assert_left_nothing() -> Callable[[str], None]:
    """Checks that a failed registration left no trace of ``name`` in torch or kernelop."""

    def check(name: str) -> None:
        namespace, short = name.split("::")
        assert not is_defined_in_torch(name), f"{name} is still defined in torch"
        assert not hasattr(getattr(torch.ops, namespace), short), f"torch.ops.{namespace}.{short} exists"
        assert name not in ttk.registered_ops(), f"{name} is still in kernelop.registered_ops()"

    return check


@pytest.fixture(params=["native", "cuda-bindings"])
def launch_path(request, monkeypatch):
    """Each launch path of the Python launcher in turn, for ops registered (and first called)
    within the test (so these ops are kept off the native runtime)."""
    monkeypatch.setattr(settings, "SETTINGS", dataclasses.replace(settings.SETTINGS, native_runtime=False))
    if request.param == "cuda-bindings":
        monkeypatch.setattr(driver, "_backend", driver.LaunchBackend("cuda-bindings", driver.bindings_launch, "test"))
    elif driver.launch_backend().name != "native":
        pytest.skip(f"the native launch is not available here: {driver.launch_backend().reason}")
    return request.param


def module_loads() -> int:
    """CUDA modules loaded so far, by the Python launcher and by the native runtime."""
    from kernelop.native import runtime as native_runtime

    loaded = native_runtime.runtime()
    return driver.MODULE_LOAD_COUNTER.count + (loaded.module_loads if loaded is not None else 0)


@pytest.fixture
def python_path(monkeypatch):
    """Ops registered under this fixture stay on the Python launcher."""
    monkeypatch.setattr(settings, "SETTINGS", dataclasses.replace(settings.SETTINGS, native_runtime=False))
