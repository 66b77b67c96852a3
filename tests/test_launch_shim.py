"""The native launch shim: built once into the cache folder, reused, and marshalling exactly.

No GPU needed: the driver entry point is replaced by a ctypes callback that records its
arguments, so these tests check what the shim hands to ``cuLaunchKernel``.
"""
from __future__ import annotations

import ctypes
import dataclasses
import sysconfig
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kernelop.cuda import driver, launch_shim, packing
from kernelop import settings as kernelop_settings

HAS_HEADERS = Path(sysconfig.get_paths().get("include") or "", "Python.h").is_file()
needs_compiler = pytest.mark.skipif(
    not (HAS_HEADERS and launch_shim.compilers()), reason="needs a C compiler and Python's headers"
)

LAUNCH_SIGNATURE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, *[ctypes.c_uint] * 7, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p
)


@pytest.fixture
def recording_shim(tmp_path: Path):
    """A freshly built shim whose driver entry point records every call and returns ``result``."""
    loaded = launch_shim.load(tmp_path)
    assert loaded.module is not None, loaded.reason
    calls = []
    state = {"result": 0, "on_call": lambda params: None}

    def fake_launch(function, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        calls.append((function, gx, gy, gz, bx, by, bz, shared, stream, params, extra))
        state["on_call"](params)
        return state["result"]

    entry = LAUNCH_SIGNATURE(fake_launch)
    loaded.module.set_entry(ctypes.cast(entry, ctypes.c_void_p).value)
    yield loaded.module, calls, state
    loaded.module.set_entry(0)
    del entry


@needs_compiler
def test_builds_once_then_loads_from_the_folder(tmp_path: Path):
    before = launch_shim.BUILD_COUNTER.count
    first = launch_shim.load(tmp_path)
    assert first.module is not None, first.reason
    assert launch_shim.BUILD_COUNTER.count == before + 1
    second = launch_shim.load(tmp_path)
    assert second.module is not None and second.reason.startswith("loaded")
    assert launch_shim.BUILD_COUNTER.count == before + 1
    assert [p.name for p in tmp_path.iterdir()] == [launch_shim.binary_name(launch_shim.SOURCE.read_bytes(), sysconfig.get_paths()["include"])]


@needs_compiler
def test_an_unloadable_file_in_the_folder_is_rebuilt(tmp_path: Path):
    name = launch_shim.binary_name(launch_shim.SOURCE.read_bytes(), sysconfig.get_paths()["include"])
    (tmp_path / name).write_bytes(b"not a shared object")
    loaded = launch_shim.load(tmp_path)
    assert loaded.module is not None and loaded.reason.startswith("built")


def read_parameters(params: int, layout: bytes) -> list[tuple[int, bytes]]:
    """(address, bytes) of each parameter the driver would read through a ``void**``."""
    if not layout:
        return []
    pointers = (ctypes.c_void_p * len(layout)).from_address(params)
    return [(pointers[i], ctypes.string_at(pointers[i], packing.SIZES[chr(code)])) for i, code in enumerate(layout)]


@needs_compiler
def test_launch_passes_dims_and_stream_to_the_driver(recording_shim):
    module, calls, state = recording_shim
    dims = (40, 2, 3, 256, 4, 1, 49152, 1024, 7)  # items after the first seven are not launch dims
    assert module.launch(0xDEAD0, dims, 0xBEEF, b"") == 0
    assert calls == [(0xDEAD0, 40, 2, 3, 256, 4, 1, 49152, 0xBEEF, None, None)]
    state["result"] = 201  # CUDA_ERROR_INVALID_CONTEXT comes back as the int
    assert module.launch(1, dims, 0, b"") == 201
    assert calls[-1][8] is None  # stream 0, the legacy default stream, is passed as NULL


values_by_code = {
    "Q": st.integers(0, 2**64 - 1),
    "q": st.integers(-(2**63), 2**63 - 1),
    "i": st.integers(-(2**31), 2**31 - 1),
    "I": st.integers(0, 2**32 - 1),
    "f": st.floats(width=32) | st.floats(allow_nan=False, min_value=-3e38, max_value=3e38),
    "d": st.floats(allow_nan=False),
    "?": st.booleans(),
}


def test_every_plan_ctype_has_a_code_both_packings_know():
    assert set(packing.CODES.values()) == set(values_by_code)


@st.composite
def layouts_and_values(draw):
    codes = draw(st.lists(st.sampled_from(sorted(values_by_code)), max_size=24))
    return "".join(codes).encode(), [draw(values_by_code[c]) for c in codes]


@needs_compiler
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=layouts_and_values())
def test_native_packing_matches_struct_packing(recording_shim, case):
    """Same bytes at the same offsets as ``ParameterBuffers``, which packs for cuda-bindings."""
    module, calls, state = recording_shim
    layout, values = case
    seen = []
    state["on_call"] = lambda params: seen.append(read_parameters(params, layout))
    module.launch(1, (1,) * 7, 0, layout, *values)
    native = seen[-1]
    buffers = packing.ParameterBuffers(layout)
    expected = read_parameters(buffers.pack(values), layout)
    assert [data for _, data in native] == [data for _, data in expected]
    if native:
        base = native[0][0]
        assert [address - base for address, _ in native] == packing.offsets_of(layout)


@needs_compiler
@pytest.mark.parametrize(
    "code, value",
    [("i", 2**31), ("i", -(2**31) - 1), ("i", 1.5), ("i", 2**70), ("Q", -1), ("Q", 2**64), ("Q", None), ("f", 1e39), ("f", "x"),
     ("I", -1), ("I", 2**32), ("q", 2**63), ("q", -(2**63) - 1), ("d", "x")],
)
def test_a_value_that_does_not_fit_fails_in_both_packings(recording_shim, code, value):
    module, calls, _ = recording_shim
    with pytest.raises(packing.PACK_ERRORS):
        module.launch(1, (1,) * 7, 0, code.encode(), value)
    with pytest.raises(packing.PACK_ERRORS):
        packing.ParameterBuffers(code.encode()).pack([value])
    assert calls == []


@needs_compiler
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), 3.4028235e38])
def test_floats_that_struct_accepts_are_accepted(recording_shim, value):
    module, calls, _ = recording_shim
    assert module.launch(1, (1,) * 7, 0, b"f", value) == 0


@needs_compiler
@pytest.mark.parametrize(
    "args, error, message",
    [
        ((1, (1,) * 7, 0), TypeError, "at least 4 arguments"),
        ((1, (1,) * 6, 0, b""), TypeError, "at least 7"),
        ((1, [1] * 7, 0, b""), TypeError, "tuple"),
        ((1, (1, 1, -1, 1, 1, 1, 0), 0, b""), OverflowError, None),
        ((1, (1, 1, 2**32, 1, 1, 1, 0), 0, b""), OverflowError, "32 bits"),
        ((1, (1.5,) * 7, 0, b""), TypeError, None),
        ((1, (1,) * 7, 0, "Q", 5), TypeError, "layout must be bytes"),
        ((1, (1,) * 7, 0, b"QQ", 5), TypeError, "2 parameters but 1 values"),
        ((1, (1,) * 7, 0, b"x", 5.0), ValueError, "not one of"),
        ((1, (1,) * 7, 0, b"?" * 513, *[True] * 513), ValueError, "at most 512"),
    ],
)
def test_launch_refuses_malformed_arguments_without_calling_the_driver(recording_shim, args, error, message):
    module, calls, _ = recording_shim
    with pytest.raises(error, match=message):
        module.launch(*args)
    assert calls == []


@needs_compiler
def test_launch_before_set_entry_raises(tmp_path: Path):
    loaded = launch_shim.load(tmp_path)
    loaded.module.set_entry(0)
    with pytest.raises(RuntimeError, match="set_entry"):
        loaded.module.launch(1, (1,) * 7, 0, b"")


def test_without_a_compiler_the_reason_is_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(launch_shim, "compilers", lambda: [])
    loaded = launch_shim.load(tmp_path)
    assert loaded.module is None
    assert "compiler" in loaded.reason or "Python.h" in loaded.reason


@pytest.mark.skipif(not HAS_HEADERS, reason="needs Python's headers")
def test_a_failing_compiler_is_reported_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(launch_shim, "compilers", lambda: [["false"]])
    loaded = launch_shim.load(tmp_path)
    assert loaded.module is None
    assert loaded.reason.startswith("could not build it: false:")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("native", [False, True])
def test_backend_falls_back_to_cuda_bindings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, native: bool):
    """Turned off, or unbuildable: launches go through cuda-bindings, with the reason kept."""
    monkeypatch.setattr(driver, "SETTINGS", dataclasses.replace(kernelop_settings.SETTINGS, native_launch=native, cache_dir=tmp_path))
    monkeypatch.setattr(launch_shim, "compilers", lambda: [])
    backend = driver._choose_backend()
    assert backend.name == "cuda-bindings"
    assert backend.launch is driver.bindings_launch
    assert backend.reason == ("KERNELOP_NATIVE_LAUNCH=0" if not native else launch_shim.load(tmp_path).reason)


def test_native_launch_flag_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KERNELOP_NATIVE_LAUNCH", "0")
    assert kernelop_settings.Settings.from_environment().native_launch is False
    monkeypatch.delenv("KERNELOP_NATIVE_LAUNCH")
    assert kernelop_settings.Settings.from_environment().native_launch is True
