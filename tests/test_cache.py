"""Disk cache of compiled kernels: keys, verified reads, atomic writes, several processes."""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
from pathlib import Path

import pytest

from kernelop.compiler import cache as cache_module
from kernelop import settings
from kernelop.compiler import nvrtc
from kernelop.compiler.cache import KernelCache, compile_cached
from kernelop.compiler.nvrtc import COMPILE_COUNTER, CompileRequest

RELU = """extern "C" __global__ void my_relu(const float* x, int n, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
"""
REQUEST = CompileRequest(RELU, "my_relu", "sm_90", program_name="relu.cu")

_SPAWN = multiprocessing.get_context("spawn")
_CHILD_TIMEOUT_S = 120


@pytest.fixture
def cache(tmp_path: Path) -> KernelCache:
    return KernelCache(tmp_path / "cache")


def _header_request(include_dir: Path, header: str = "act.h") -> CompileRequest:
    source = f'#include "{header}"\nextern "C" __global__ void k(float* y) {{ y[0] = act(y[0]); }}\n'
    return CompileRequest(source, "k", "sm_90", include_paths=(str(include_dir),))


# --- hits and misses --------------------------------------------------------------------


def test_miss_compiles_and_stores_then_hit_skips_nvrtc(cache: KernelCache) -> None:
    before = COMPILE_COUNTER.count
    first = compile_cached(REQUEST, cache, op_name="demo::relu")
    assert COMPILE_COUNTER.count == before + 1
    assert cache.entries() == [cache.directory / f"{cache.key(REQUEST)}.kobj"]
    second = compile_cached(REQUEST, cache, op_name="demo::relu")
    assert COMPILE_COUNTER.count == before + 1
    assert second == first
    assert second.cubin.startswith(b"\x7fELF")
    assert "registers" in second.resource_report()


def test_disabled_cache_never_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    disabled = KernelCache(None)
    before = COMPILE_COUNTER.count
    kernel = compile_cached(REQUEST, disabled)
    compile_cached(REQUEST, disabled)
    assert COMPILE_COUNTER.count == before + 2
    key = disabled.key(REQUEST)
    disabled.put(key, kernel)
    assert disabled.get(key) is None
    assert disabled.entries() == [] and disabled.size_bytes() == 0 and disabled.clear() == 0
    assert list(tmp_path.iterdir()) == []


def test_from_settings_follows_the_environment_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    enabled = dataclasses.replace(settings.SETTINGS, cache_enabled=True, cache_dir=tmp_path)
    monkeypatch.setattr(settings, "SETTINGS", enabled)
    assert KernelCache.from_settings().directory == tmp_path
    monkeypatch.setattr(settings, "SETTINGS", dataclasses.replace(enabled, cache_enabled=False))
    assert KernelCache.from_settings().directory is None


def test_clear_removes_every_entry(cache: KernelCache) -> None:
    compile_cached(REQUEST, cache)
    compile_cached(dataclasses.replace(REQUEST, arch="sm_80"), cache)
    assert len(cache.entries()) == 2
    assert cache.size_bytes() == sum(p.stat().st_size for p in cache.entries()) > 0
    assert cache.clear() == 2
    assert cache.entries() == [] and cache.size_bytes() == 0
    assert list(cache.directory.iterdir()) == []


# --- keys -------------------------------------------------------------------------------


def test_key_is_stable_hex_sha256(cache: KernelCache) -> None:
    key = cache.key(REQUEST)
    assert len(key) == 64 and int(key, 16) >= 0
    assert cache.key(dataclasses.replace(REQUEST)) == key
    assert KernelCache(None).key(REQUEST) == key  # the key does not depend on the location


@pytest.mark.parametrize(
    "change",
    [
        {"source": RELU.replace(": 0.f;", ": -0.f;")},
        {"source": RELU + "\n"},
        {"arch": "sm_80"},
        {"std": "c++20"},
        {"extra_options": ("-lineinfo",)},
        {"kernel_name": "other"},
        {"program_name": "other.cu"},
    ],
)
def test_every_input_changes_the_key(cache: KernelCache, change: dict[str, object]) -> None:
    assert cache.key(dataclasses.replace(REQUEST, **change)) != cache.key(REQUEST)


def test_user_header_content_changes_the_key(cache: KernelCache, tmp_path: Path) -> None:
    header = tmp_path / "act.h"
    header.write_text("__device__ inline float act(float v) { return v; }\n")
    request = _header_request(tmp_path)
    before = cache.key(request)
    header.write_text("__device__ inline float act(float v) { return 2.f * v; }\n")
    assert cache.key(request) != before


def test_nested_header_content_changes_the_key(cache: KernelCache, tmp_path: Path) -> None:
    (tmp_path / "detail").mkdir()
    (tmp_path / "act.h").write_text('#include "detail/impl.h"\n')
    impl = tmp_path / "detail" / "impl.h"
    impl.write_text('#include "scale.h"\n__device__ inline float act(float v) { return v; }\n')
    scale = tmp_path / "detail" / "scale.h"  # quoted include, found next to impl.h
    scale.write_text("#define SCALE 1\n")
    request = _header_request(tmp_path)
    before = cache.key(request)
    scale.write_text("#define SCALE 2\n")
    assert cache.key(request) != before
    compile_cached(request, cache)  # the same headers NVRTC follows compile


def test_header_appearing_later_changes_the_key(cache: KernelCache, tmp_path: Path) -> None:
    request = _header_request(tmp_path)
    missing = cache.key(request)
    (tmp_path / "act.h").write_text("__device__ inline float act(float v) { return v; }\n")
    assert cache.key(request) != missing


def test_cuda_headers_are_keyed_by_installed_version(
    cache: KernelCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = "#include <cuda_fp16.h>\n" + RELU
    request = dataclasses.replace(REQUEST, source=source)
    before = cache.key(request)
    monkeypatch.setattr(cache_module, "_distribution_version", lambda name: "99.0")
    assert cache.key(request) != before


# --- damaged entries --------------------------------------------------------------------


def _flip_payload_byte(data: bytes) -> bytes:
    return data[:-10] + bytes([data[-10] ^ 0x01]) + data[-9:]


def _flip_header_byte(data: bytes) -> bytes:
    index = data.index(b'"sm_90"') + 5
    return data[:index] + b"1" + data[index + 1 :]


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _garbage(data: bytes) -> bytes:
    return os.urandom(len(data))


def _empty(data: bytes) -> bytes:
    return b""


@pytest.mark.parametrize("damage", [_flip_payload_byte, _flip_header_byte, _truncate, _garbage, _empty])
def test_damaged_entry_is_discarded_recompiled_and_replaced(cache: KernelCache, damage) -> None:
    good = compile_cached(REQUEST, cache)
    (entry,) = cache.entries()
    entry.write_bytes(damage(entry.read_bytes()))
    assert cache.get(cache.key(REQUEST)) is None
    assert not entry.exists()
    before = COMPILE_COUNTER.count
    again = compile_cached(REQUEST, cache)
    assert COMPILE_COUNTER.count == before + 1
    assert (again.cubin, again.ptx, again.lowered_name) == (good.cubin, good.ptx, good.lowered_name)
    assert cache.get(cache.key(REQUEST)) == again


def test_entry_of_another_key_is_not_trusted(cache: KernelCache) -> None:
    compile_cached(REQUEST, cache)
    other_key = cache.key(dataclasses.replace(REQUEST, arch="sm_80"))
    (entry,) = cache.entries()
    foreign = entry.with_name(f"{other_key}.kobj")
    foreign.write_bytes(entry.read_bytes())
    assert cache.get(other_key) is None
    assert not foreign.exists()
    assert cache.get(cache.key(REQUEST)) is not None


def test_malformed_key_is_refused(cache: KernelCache) -> None:
    with pytest.raises(ValueError, match="64 lowercase hex"):
        cache.get("../../etc/passwd")


# --- write failures ---------------------------------------------------------------------


def test_unwritable_directory_only_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    blocked = KernelCache(blocker / "cache")
    with caplog.at_level(logging.WARNING, logger="kernelop.compiler.cache"):
        kernel = compile_cached(REQUEST, blocked)
    assert kernel.cubin.startswith(b"\x7fELF")
    assert "cannot write" in caplog.text


def test_failed_write_leaves_no_temp_file(
    cache: KernelCache, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    kernel = nvrtc.compile_kernel(REQUEST)

    def refuse(source: str, target: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(cache_module.os, "replace", refuse)
    with caplog.at_level(logging.WARNING, logger="kernelop.compiler.cache"):
        cache.put(cache.key(REQUEST), kernel)
    assert "disk full" in caplog.text
    assert list(cache.directory.iterdir()) == []


# --- several processes ------------------------------------------------------------------


def _compile_in_child(directory: str, results) -> None:
    kernel = compile_cached(REQUEST, KernelCache(Path(directory)))
    results.put((COMPILE_COUNTER.count, kernel.lowered_name))


def _hammer_in_child(directory: str, barrier, results) -> None:
    """Compile and rewrite the same entry repeatedly; count reads that found no valid entry."""
    store = KernelCache(Path(directory))
    barrier.wait(timeout=_CHILD_TIMEOUT_S)
    kernel = compile_cached(REQUEST, store)
    key = store.key(REQUEST)
    misses = 0
    for _ in range(25):
        store.put(key, kernel)
        misses += store.get(key) is None
    results.put(misses)


def _run_children(target, args_for_child, count: int) -> list:
    results = _SPAWN.Queue()
    children = [_SPAWN.Process(target=target, args=(*args_for_child, results)) for _ in range(count)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=_CHILD_TIMEOUT_S) for _ in children]
    for child in children:
        child.join(timeout=_CHILD_TIMEOUT_S)
        assert child.exitcode == 0
    return outcomes


def test_second_process_hits_without_running_nvrtc(cache: KernelCache) -> None:
    compile_cached(REQUEST, cache)
    [(child_compiles, lowered)] = _run_children(_compile_in_child, (str(cache.directory),), 1)
    assert child_compiles == 0
    assert lowered == "my_relu"


def test_concurrent_writers_leave_one_valid_entry(cache: KernelCache) -> None:
    barrier = _SPAWN.Barrier(4)
    misses = _run_children(_hammer_in_child, (str(cache.directory), barrier), 4)
    assert misses == [0, 0, 0, 0]
    assert [p.name for p in cache.directory.iterdir()] == [f"{cache.key(REQUEST)}.kobj"]
    before = COMPILE_COUNTER.count
    assert compile_cached(REQUEST, cache).lowered_name == "my_relu"
    assert COMPILE_COUNTER.count == before


def test_a_source_whose_other_kernels_do_not_lower_still_hits_a_warm_cache(tmp_path: Path, caplog) -> None:
    """``inner`` sits in a namespace, so NVRTC cannot lower it by that name: the kernel is compiled
    alone, and stored where the next process looks."""
    source = 'namespace ns { __global__ void inner(float* y) {} }\nextern "C" __global__ void k(float* y) { y[0] = 1.f; }\n'
    request = CompileRequest(source, "k", "sm_90", companions=("inner", "k"))
    before = COMPILE_COUNTER.count
    first = compile_cached(request, KernelCache(tmp_path))
    assert COMPILE_COUNTER.count == before + 2  # the shared run fails on ``inner``, then ``k`` alone
    with caplog.at_level(logging.WARNING):
        again = compile_cached(request, KernelCache(tmp_path))
    assert COMPILE_COUNTER.count == before + 2 and again == first and "does not describe" not in caplog.text
