"""What the compile cache trusts: its folder is private, an entry is read only if it is a regular
file of bounded size, ``clear`` removes only kernelop's own files, and the native launch is
loaded only from a folder no one else can write to."""
from __future__ import annotations

import dataclasses
import logging
import os
import stat
import threading
from pathlib import Path

import pytest

from kernelop import settings
from kernelop.compiler import cache as cache_module
from kernelop.compiler.cache import KernelCache, compile_cached
from kernelop.compiler.nvrtc import COMPILE_COUNTER, CompileRequest
from kernelop.cuda import driver, launch_shim

REQUEST = CompileRequest('extern "C" __global__ void k(float* y) { y[0] = 1.f; }\n', "k", "sm_90")
posix_only = pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")


@pytest.fixture
def permissive_umask():
    previous = os.umask(0)
    yield
    os.umask(previous)


@posix_only
def test_folder_and_entries_are_private_under_a_permissive_umask(tmp_path: Path, permissive_umask) -> None:
    cache = KernelCache(tmp_path / "cache")
    compile_cached(REQUEST, cache)
    assert stat.S_IMODE(cache.directory.stat().st_mode) == 0o700
    (entry,) = cache.entries()
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600


def _get_within(cache: KernelCache, key: str, seconds: float = 10.0):
    """``cache.get`` in a thread, so that a blocking open fails the test instead of hanging it."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("value", cache.get(key)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "reading the entry blocked"
    return result["value"]


@posix_only
@pytest.mark.parametrize("target", ["fifo", "/dev/zero", "entry"])
def test_a_symlinked_entry_is_never_followed(tmp_path: Path, target: str, caplog) -> None:
    cache = KernelCache(tmp_path / "cache")
    compile_cached(REQUEST, cache)
    key = cache.key(REQUEST)
    entry = cache.directory / f"{key}.kobj"
    real = tmp_path / "real.kobj"
    os.replace(entry, real)
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo")
        os.symlink(tmp_path / "fifo", entry)
    else:
        os.symlink(real if target == "entry" else target, entry)
    with caplog.at_level(logging.WARNING, logger="kernelop.compiler.cache"):
        assert _get_within(cache, key) is None  # even a link to a valid entry is not followed
    assert "not a regular file" in caplog.text


@posix_only
def test_a_fifo_or_an_oversized_file_as_entry_is_refused(tmp_path: Path) -> None:
    cache = KernelCache(tmp_path / "cache")
    cache.directory.mkdir()
    key = cache.key(REQUEST)
    os.mkfifo(cache.directory / f"{key}.kobj")
    assert _get_within(cache, key) is None
    os.unlink(cache.directory / f"{key}.kobj")
    with open(cache.directory / f"{key}.kobj", "wb") as handle:
        handle.truncate(cache_module.MAX_ENTRY_BYTES + 1)  # sparse: no disk used
    assert _get_within(cache, key) is None
    before = COMPILE_COUNTER.count
    compile_cached(REQUEST, cache)  # compiled again, and the entry replaced
    assert COMPILE_COUNTER.count == before + 1 and cache.get(key) is not None


def test_clear_removes_only_kernelops_own_files(tmp_path: Path) -> None:
    cache = KernelCache(tmp_path / "cache")
    compile_cached(REQUEST, cache)
    key = cache.key(REQUEST)
    theirs = {
        "notes.kobj": b"a user's file",
        f"{'f' * 64}.kobj": b"named like an entry but not one",
        ".backup.tmp": b"someone's temp file",
    }
    for name, data in theirs.items():
        (cache.directory / name).write_bytes(data)
    (cache.directory / f".{key}.abc123.tmp").write_bytes(b"an interrupted write")
    assert cache.clear() == 1
    assert sorted(p.name for p in cache.directory.iterdir()) == sorted(theirs)


@posix_only
def test_the_native_launch_is_not_loaded_from_a_folder_others_can_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert "can be written by others" in launch_shim.folder_problem(shared)
    assert launch_shim.folder_problem(tmp_path / "private") is None
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) & 0o077 == 0
    monkeypatch.setattr(driver, "SETTINGS", dataclasses.replace(settings.SETTINGS, cache_dir=shared, native_launch=True, cache_enabled=True))
    monkeypatch.setattr(launch_shim, "compilers", lambda: [])  # no build needed to see the choice
    monkeypatch.setattr(driver, "_backend", None)
    with caplog.at_level(logging.WARNING, logger="kernelop"):
        backend = driver.launch_backend()
    monkeypatch.setattr(driver, "_backend", None)
    assert backend.name == "cuda-bindings"
    assert "built for this process only" in caplog.text and "can be written by others" in caplog.text
    assert list(shared.iterdir()) == []


OTHER = CompileRequest('extern "C" __global__ void evil(float* y) { y[0] = 666.f; }\n', "evil", "sm_90")


def _forged_as_k(other: "cache_module.CompiledKernel") -> "cache_module.CompiledKernel":
    """Another kernel's binary, claiming to be ``k``'s: its names and options rewritten."""
    return dataclasses.replace(other, lowered_name="k", lowered_names=(("k", "k"),), options=cache_module.nvrtc.build_options(REQUEST))


@pytest.mark.parametrize("forge", [
    lambda other: other,  # another kernel's entry, copied under this key with valid checksums
    _forged_as_k,  # the same, with its header rewritten to name this kernel
    lambda other: dataclasses.replace(_forged_as_k(other), arch="sm_80"),  # claims another architecture
], ids=["copied", "renamed", "other-arch"])
def test_an_entry_with_valid_checksums_for_another_kernel_is_never_loaded(tmp_path: Path, forge, caplog) -> None:
    cache = KernelCache(tmp_path)
    other = compile_cached(OTHER, KernelCache(None))
    cache.put(cache.key(REQUEST), forge(other))
    assert cache.get(cache.key(REQUEST)) is not None  # whole and checksummed: only its content tells
    before = COMPILE_COUNTER.count
    with caplog.at_level(logging.WARNING, logger=cache_module.__name__):
        kernel = compile_cached(REQUEST, cache)
    assert COMPILE_COUNTER.count == before + 1
    assert kernel.lowered_name == "k" and b"evil" not in kernel.ptx and b".entry k" in kernel.ptx.replace(b"\t", b" ")
    assert f"does not describe {REQUEST.kernel_name}" in caplog.text
    assert compile_cached(REQUEST, cache) == kernel  # the entry was replaced with the real one
