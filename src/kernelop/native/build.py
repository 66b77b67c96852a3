"""Build the native runtime (``runtime.cpp``) against the installed torch, once per torch version.

It links to libtorch, so a build serves one torch version and C++ ABI: the file is named by
both, by the source's digest and by the program format it reads, and kept in the cache folder
(which must be the user's own and written by no one else: every process that runs an op loads
it). Where no C++ compiler or no
torch headers exist, ``load`` says why and kernelop calls through Python.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..counters import Counter
from ..cuda.launch_shim import build_atomically, first_line, folder_problem
from .program import FORMAT

SOURCE = Path(__file__).with_name("runtime.cpp")
BUILD_COUNTER = Counter()
_BUILD_TIMEOUT_S = 300
log = logging.getLogger("kernelop")


@dataclass(frozen=True)
class RuntimeLoad:
    """The loaded library (``ctypes.CDLL``) and its path, or None and why it is not available."""

    library: Optional[ctypes.CDLL]
    path: Optional[Path]
    reason: str


def library_name() -> str:
    """Named by torch's version and C++ ABI and by the source, so no stale build is reused."""
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    digest = hashlib.sha256(SOURCE.read_bytes() + torch.__version__.encode() + bytes([abi, FORMAT])).hexdigest()[:16]
    return f"kernelop_native-torch{torch.__version__.replace('+', '_')}-{digest}.so"


def compiler() -> Optional[str]:
    """The C++ compiler: ``CXX``, else ``c++`` or ``g++`` on the PATH."""
    for candidate in (os.environ.get("CXX"), "c++", "g++"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def build_command(cxx: str, output: Path) -> list[str]:
    """Compile and link against the installed torch's headers and libraries (no CUDA headers)."""
    root = Path(torch.__file__).parent
    include = root / "include"
    lib = root / "lib"
    return [
        cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-fvisibility=hidden", "-w",
        f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}", f"-DKERNELOP_PROGRAM_FORMAT={FORMAT}",
        f"-I{include}", f"-I{include / 'torch' / 'csrc' / 'api' / 'include'}",
        str(SOURCE), "-o", str(output),
        f"-L{lib}", "-lc10", "-ltorch_cpu", "-ltorch", f"-Wl,-rpath,{lib}", "-ldl",
    ]


def headers_problem() -> Optional[str]:
    header = Path(torch.__file__).parent / "include" / "torch" / "library.h"
    return None if header.is_file() else f"the installed torch has no C++ headers ({header} is missing)"


def build_problem() -> Optional[str]:
    """Why the runtime cannot be built here (no C++ compiler, no torch headers), or None."""
    if compiler() is None:
        return "no C++ compiler found (CXX, c++ or g++)"
    return headers_problem()


def build(directory: Path) -> Path:
    """Compile into ``directory`` (atomically: a concurrent process loads the old file or the new)."""
    problem = build_problem()
    if problem is not None:
        raise OSError(problem)
    cxx = compiler()
    assert cxx is not None  # build_problem() found one
    target = directory / library_name()
    try:
        build_atomically(lambda output: build_command(cxx, Path(output)), target, _BUILD_TIMEOUT_S)
    except subprocess.SubprocessError as exc:
        raise OSError(f"{cxx} failed: {first_line(exc)}") from None
    BUILD_COUNTER.increment()
    return target


def load(directory: Optional[Path]) -> RuntimeLoad:
    """The runtime from ``directory`` (None: a private one for this process), built there first
    if absent; the reason where it cannot be."""
    problem = folder_problem(directory) if directory is not None else None
    if problem is not None:
        log.warning("kernelop: the native runtime is built for this process only: %s", problem)
    if directory is None or problem is not None:  # a loaded library outlives its file
        directory = Path(tempfile.mkdtemp(prefix="kernelop-native-"))
    target = directory / library_name()
    try:
        if not target.is_file():
            target = build(directory)
        return RuntimeLoad(ctypes.CDLL(str(target)), target, f"loaded {target}")  # local: its symbols stay its own
    except OSError as exc:
        return RuntimeLoad(None, None, first_line(exc))

