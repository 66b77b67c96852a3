"""Build and load the native launch call (``launch_shim.c``) once per machine.

The eager hot path spends most of its time in the driver's ``cuLaunchKernel``; calling it through
cuda-bindings adds about a microsecond of argument objects per launch. The shim removes that. It
is built on first need with the C compiler Python was built with (or ``cc``) and Python's
headers, needs no CUDA toolkit, and is kept in the cache folder for later processes. Where it
cannot be built, kernelop launches through cuda-bindings, which is equally correct.
"""
from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional

from ..counters import Counter

SOURCE = Path(__file__).with_name("launch_shim.c")
BUILD_COUNTER = Counter()
_BUILD_TIMEOUT_S = 120


@dataclass(frozen=True)
class ShimLoad:
    """The loaded module, or None and the reason it could not be built or loaded."""

    module: Optional[ModuleType]
    reason: str


def load(directory: Path) -> ShimLoad:
    """The shim from ``directory``, compiling it there first if absent or unloadable."""
    headers = sysconfig.get_paths().get("include") or ""
    if not Path(headers, "Python.h").is_file():
        return ShimLoad(None, f"Python's C headers are not installed (no Python.h in {headers!r})")
    source = SOURCE.read_bytes()
    target = directory / binary_name(source, headers)
    if target.is_file():
        module = _import(target)
        if module is not None:
            return ShimLoad(module, f"loaded {target}")
    failures = []
    for compiler in compilers():
        try:
            _build(compiler, headers, directory, target)
        except (OSError, subprocess.SubprocessError) as exc:
            failures.append(f"{' '.join(compiler)}: {first_line(exc)}")
            continue
        module = _import(target)
        if module is not None:
            return ShimLoad(module, f"built {target}")
        failures.append(f"{' '.join(compiler)}: the built module does not import")
    if not failures:
        return ShimLoad(None, "no C compiler found (sysconfig CC or cc)")
    return ShimLoad(None, "could not build it: " + "; ".join(failures))


def folder_problem(directory: Path) -> Optional[str]:
    """Why the shim must not be loaded from ``directory`` (every process that launches loads it,
    so only a folder its user owns and no one else can write to will do), or None."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
    except OSError as error:
        return f"{directory} cannot be used ({error})"
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        return f"{directory} belongs to another user (uid {info.st_uid})"
    if info.st_mode & 0o022:
        return f"{directory} can be written by others (mode {oct(info.st_mode & 0o777)})"
    return None


def binary_name(source: bytes, headers: str) -> str:
    """Named by the source, the headers' folder and the extension ABI, so no stale build is reused."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    digest = hashlib.sha256(source + b"\0" + headers.encode() + b"\0" + suffix.encode()).hexdigest()[:16]
    return f"launch_shim-{digest}{suffix}"


def compilers() -> list[list[str]]:
    """Candidate compiler commands that exist on this machine, Python's own first."""
    candidates = []
    configured = sysconfig.get_config_var("CC")
    if configured:
        candidates.append(shlex.split(configured))
    candidates.append(["cc"])
    found: list[list[str]] = []
    for command in candidates:
        if command and shutil.which(command[0]) and command not in found:
            found.append(command)
    return found


def _build(compiler: list[str], headers: str, directory: Path, target: Path) -> None:
    build_atomically(lambda output: [*compiler, "-O2", "-shared", "-fPIC", f"-I{headers}", str(SOURCE), "-o", output],
                     target, _BUILD_TIMEOUT_S)
    BUILD_COUNTER.increment()


def build_atomically(command_for: Callable[[str], list[str]], target: Path, timeout: float) -> None:
    """Run the compiler command ``command_for(temporary file)`` beside ``target``, then rename the
    file into place (atomic: a concurrent loader sees the old file or the whole new one).
    ``SubprocessError`` with the compiler's message where it fails."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}-", suffix=target.suffix)
    os.close(handle)
    try:
        done = subprocess.run(command_for(temp_name), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise subprocess.SubprocessError(done.stderr.strip() or f"exit status {done.returncode}")
        os.chmod(temp_name, 0o700)  # the compiler may have recreated the file with its own mode
        os.replace(temp_name, target)
    finally:
        if os.path.exists(temp_name):
            os.unlink(temp_name)


def _import(path: Path) -> Optional[ModuleType]:
    spec = importlib.util.spec_from_file_location("kernelop._launch_shim", path)
    if spec is None or spec.loader is None:
        return None
    try:
        module = importlib.util.module_from_spec(spec)  # loads the shared object
        spec.loader.exec_module(module)
    except ImportError:
        return None
    return module


def first_line(exc: BaseException) -> str:
    """An error's first line: a compiler's whole output would drown the reason."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
