"""CUDA C++ source to CUBIN and PTX in one NVRTC run, with errors a user can act on.

NVRTC runs without a GPU and without a CUDA toolkit: the headers kernels commonly need
(``cuda_fp16.h``, ``cuda_bf16.h``, ``cuda/std/...``) come from the NVIDIA wheels.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from cuda.bindings import nvrtc as _nvrtc

from ..counters import Counter

_ARCH_PATTERN = re.compile(r"sm_\d+[af]?")
_SYSTEM_CUDA_ROOTS: tuple[str, ...] = ("/usr/local/cuda",)
"""Toolkit roots tried last, after the wheels and ``CUDA_HOME``/``CUDA_PATH``."""

SHIM_DIR = Path(__file__).with_name("shims")
"""kernelop's stand-ins for the host headers CUDA code includes and NVRTC lacks (searched last)."""
PRELUDE = SHIM_DIR / "kernelop_prelude.h"
"""Pre-included: ``INFINITY``, ``NAN``, ``M_PI`` & co., ``uint``."""

_SOURCE_CONTEXT_LINES = 4
_SHORT_SOURCE_LINES = 40
_NAME_MAP_FILE = "__nv_name_map"
"""NVRTC reports errors in name expressions (see nvrtcAddNameExpression) against this file."""


@dataclass(frozen=True)
class CompileRequest:
    """Everything that decides what NVRTC produces; the disk cache keys on it."""

    source: str
    kernel_name: str
    arch: str
    std: str = "c++17"
    include_paths: tuple[str, ...] = ()
    program_name: str = "kernel.cu"
    extra_options: tuple[str, ...] = ()
    defines: tuple[tuple[str, Optional[str]], ...] = ()  # (NAME, value or None), as -DNAME[=value]
    host_shims: bool = True  # kernelop's host-header stand-ins and prelude
    companions: tuple[str, ...] = ()  # the source's other kernels, lowered in the same run

    @property
    def name_expressions(self) -> tuple[str, ...]:
        """Every kernel name this run lowers: ops made from one source share one compile."""
        return (self.kernel_name, *sorted(set(self.companions) - {self.kernel_name}))

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or _ARCH_PATTERN.fullmatch(self.arch) is None:
            raise ValueError(
                f"kernelop.CompileRequest({self.kernel_name}): arch must name a real GPU "
                f"architecture like 'sm_90', 'sm_90a' or 'sm_100f' (got {self.arch!r}). "
                "Pass the target as sm_<major><minor>, with an optional 'a' or 'f' suffix."
            )
        # Lists are accepted for convenience but stored as tuples so the request stays hashable.
        object.__setattr__(self, "include_paths", tuple(str(p) for p in self.include_paths))
        object.__setattr__(self, "extra_options", tuple(str(o) for o in self.extra_options))
        object.__setattr__(self, "companions", tuple(str(c) for c in self.companions))
        object.__setattr__(self, "defines", tuple((str(n), None if v is None else str(v)) for n, v in self.defines))


@dataclass(frozen=True)
class CompiledKernel:
    """The output of one NVRTC run: machine code, its PTX, and the symbol to look up."""

    cubin: bytes
    ptx: bytes
    lowered_name: str
    arch: str
    options: tuple[str, ...]
    log: str
    nvrtc_version: tuple[int, int]
    lowered_names: tuple[tuple[str, str], ...] = ()  # (name expression, symbol) of every kernel lowered

    def for_kernel(self, name: str) -> Optional["CompiledKernel"]:
        """The same binary seen as kernel ``name``'s (another kernel of the source), or None if
        this run did not lower ``name``. A binary without the list is one kernel's: itself."""
        if not self.lowered_names:
            return self
        lowered = dict(self.lowered_names).get(name)
        return None if lowered is None else dataclasses.replace(self, lowered_name=lowered)

    def resource_report(self) -> str:
        """The ptxas lines for this kernel (registers, spills, shared memory).

        The log can describe several kernels (every ``__global__`` in the source), so only
        the block that ptxas opens with this kernel's mangled name is kept.
        """
        report: list[str] = []
        in_block = False
        for line in self.log.splitlines():
            started = re.search(r"Compiling entry function '([^']+)'", line)
            if started:
                in_block = started.group(1) == self.lowered_name
            if in_block and "Compile time" not in line:
                report.append(line)
        return "\n".join(report)


class CompileError(RuntimeError):
    """NVRTC rejected a kernel; the message carries everything needed to fix it."""

    def __init__(
        self,
        headline: str,
        *,
        op_name: str | None,
        log: str,
        options: tuple[str, ...],
        arch: str,
        source: str,
        program_name: str = "kernel.cu",
    ) -> None:
        self.op_name = op_name
        self.log = log
        self.options = options
        self.arch = arch
        self.source = source
        self.program_name = program_name
        super().__init__(
            "\n".join(
                [
                    headline,
                    f"arch: {arch}",
                    f"options: {' '.join(options)}",
                    "NVRTC log:",
                    _indent(log.strip() or "(empty)"),
                    f"source ({program_name}):",
                    _numbered_source(source, _first_error_line(log, program_name)),
                ]
            )
        )


COMPILE_COUNTER = Counter()


@functools.cache
def nvrtc_version() -> tuple[int, int]:
    """The (major, minor) version of the NVRTC library that compile_kernel uses."""
    result, major, minor = _nvrtc.nvrtcVersion()
    _check(result, "nvrtcVersion", "")
    return int(major), int(minor)


@functools.cache
def cuda_include_dirs() -> tuple[str, ...]:
    """Directories holding the CUDA headers, wheels first so no toolkit is needed.

    A toolkit (``CUDA_HOME``, ``CUDA_PATH``, then ``/usr/local/cuda``) only serves as a
    fallback: its headers may be older than the NVRTC in use.
    """
    candidates = [_wheel_header_dir("cudart"), _wheel_header_dir("cccl")]
    for variable in ("CUDA_HOME", "CUDA_PATH"):
        root = os.environ.get(variable)
        if root:
            candidates.append(os.path.join(root, "include"))
    candidates.extend(os.path.join(root, "include") for root in _SYSTEM_CUDA_ROOTS)
    found: list[str] = []
    for directory in candidates:
        if directory and os.path.isdir(directory):
            normalized = os.path.normpath(os.path.abspath(directory))
            if normalized not in found:
                found.append(normalized)
    return tuple(found)


def include_dirs(request: CompileRequest) -> tuple[str, ...]:
    """NVRTC's search order: the user's folders, CUDA's headers, then kernelop's stand-ins."""
    return (*request.include_paths, *cuda_include_dirs(), *((str(SHIM_DIR),) if request.host_shims else ()))


@functools.cache
def _no_nvrtc_cache() -> tuple[str, ...]:
    """NVRTC 12.9 and later keep their own compile cache, and a compile it serves carries no
    ptxas report in its log; kernelop caches compiles itself, so every NVRTC run is a real one."""
    return ("--no-cache",) if nvrtc_version() >= (12, 9) else ()


def build_options(request: CompileRequest) -> tuple[str, ...]:
    """The exact NVRTC command line for a request (user include dirs win over CUDA's)."""
    return (
        f"--gpu-architecture={request.arch}",
        f"-std={request.std}",
        "--ptxas-options=-v",
        *_no_nvrtc_cache(),
        *(f"-I{directory}" for directory in include_dirs(request)),
        *((f"--pre-include={PRELUDE}",) if request.host_shims else ()),
        *(f"-D{name}" if value is None else f"-D{name}={value}" for name, value in request.defines),
        *request.extra_options,
    )


def compile_kernel(request: CompileRequest, op_name: str | None = None) -> CompiledKernel:
    """Compile ``request`` with NVRTC, returning CUBIN and PTX from the same run.

    A companion name that NVRTC cannot lower (a kernel inside a namespace, an overload) only
    costs the companions: the kernel is compiled again alone.
    """
    try:
        return _compile_once(request, op_name)
    except CompileError as error:
        if not request.companions or not _only_name_errors(error.log):
            raise
    return _compile_once(dataclasses.replace(request, companions=()), op_name)


def _compile_once(request: CompileRequest, op_name: str | None) -> CompiledKernel:
    options = build_options(request)
    label = op_name or request.kernel_name
    COMPILE_COUNTER.increment()
    result, program = _nvrtc.nvrtcCreateProgram(
        request.source.encode(), request.program_name.encode(), 0, [], []
    )
    _check(result, "nvrtcCreateProgram", label)
    try:
        return _compile_program(program, request, options, op_name)
    finally:
        _nvrtc.nvrtcDestroyProgram(program)


def _compile_program(
    program: object, request: CompileRequest, options: tuple[str, ...], op_name: str | None
) -> CompiledKernel:
    label = op_name or request.kernel_name
    names = request.name_expressions
    for name in names:
        (result,) = _nvrtc.nvrtcAddNameExpression(program, name.encode())
        _check(result, "nvrtcAddNameExpression", label)
    encoded = [option.encode() for option in options]
    (compiled,) = _nvrtc.nvrtcCompileProgram(program, len(encoded), encoded)
    log = _program_log(program, label)
    if compiled != _nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise _compile_error(compiled, request, options, log, op_name)
    lowered = []
    for name in names:
        result, symbol = _nvrtc.nvrtcGetLoweredName(program, name.encode())
        _check(result, "nvrtcGetLoweredName", label)
        lowered.append((name, symbol.decode()))
    return CompiledKernel(
        cubin=_read_output(program, "CUBIN", label),
        ptx=_read_output(program, "PTX", label).rstrip(b"\x00"),
        lowered_name=lowered[0][1],
        arch=request.arch,
        options=options,
        log=log,
        nvrtc_version=nvrtc_version(),
        lowered_names=tuple(lowered),
    )


def _program_log(program: object, label: str) -> str:
    result, size = _nvrtc.nvrtcGetProgramLogSize(program)
    _check(result, "nvrtcGetProgramLogSize", label)
    buffer = bytearray(size)  # NVRTC writes into it: never an immutable (possibly shared) bytes object
    (result,) = _nvrtc.nvrtcGetProgramLog(program, buffer)
    _check(result, "nvrtcGetProgramLog", label)
    return buffer.rstrip(b"\x00").decode(errors="replace")


def _read_output(program: object, kind: str, label: str) -> bytes:
    """Read the CUBIN or PTX of a compiled program (``kind`` picks the NVRTC getter pair)."""
    result, size = getattr(_nvrtc, f"nvrtcGet{kind}Size")(program)
    _check(result, f"nvrtcGet{kind}Size", label)
    buffer = bytearray(size)  # NVRTC writes into it: never an immutable (possibly shared) bytes object
    (result,) = getattr(_nvrtc, f"nvrtcGet{kind}")(program, buffer)
    _check(result, f"nvrtcGet{kind}", label)
    return bytes(buffer)


def _check(result: object, call: str, label: str) -> None:
    """Turn a failing nvrtcResult from an API call (not a compile) into an exception."""
    if result != _nvrtc.nvrtcResult.NVRTC_SUCCESS:
        raise RuntimeError(
            f"kernelop.compile_kernel({label}): NVRTC call {call} failed "
            f"(got {_result_name(result)}). Check that the installed NVRTC library matches "
            "cuda-bindings (pip install -U nvidia-cuda-nvrtc cuda-bindings)."
        )


def _result_name(result: object) -> str:
    return getattr(result, "name", str(result))


def _compile_error(
    result: object,
    request: CompileRequest,
    options: tuple[str, ...],
    log: str,
    op_name: str | None,
) -> CompileError:
    label = f"kernelop.compile_kernel({op_name or request.kernel_name})"
    if result == _nvrtc.nvrtcResult.NVRTC_ERROR_INVALID_OPTION:
        problem = (
            f"NVRTC rejected the options (got {_result_name(result)}). "
            "Fix the option named in the log below (arch, std or extra_options)."
        )
    elif _only_name_errors(log):
        problem = (
            f"kernel {request.kernel_name!r} is not defined in the source as a __global__ "
            f"function (got {_result_name(result)}). Use the name of an extern \"C\" kernel, "
            "or a full name expression with template arguments such as 'scale<float>'."
        )
    else:
        problem = (
            f"kernel {request.kernel_name!r} failed to compile for {request.arch} "
            f"(got {_result_name(result)}). Fix the errors in the log below."
        )
    return CompileError(
        f"{label}: {problem}",
        op_name=op_name,
        log=log,
        options=options,
        arch=request.arch,
        source=request.source,
        program_name=request.program_name,
    )


def _error_files(log: str) -> list[str]:
    return re.findall(r"^(.*?)\(\d+\): (?:catastrophic )?error", log, flags=re.MULTILINE)


def _only_name_errors(log: str) -> bool:
    files = _error_files(log)
    return bool(files) and all(name == _NAME_MAP_FILE for name in files)


def _first_error_line(log: str, program_name: str) -> int | None:
    pattern = rf"^{re.escape(program_name)}\((\d+)\): (?:catastrophic )?error"
    match = re.search(pattern, log, flags=re.MULTILINE)
    return int(match.group(1)) if match else None


def _numbered_source(source: str, error_line: int | None) -> str:
    """The source with line numbers: all of it when short, else the lines near the error."""
    lines = source.splitlines()
    width = len(str(max(len(lines), 1)))
    if len(lines) <= _SHORT_SOURCE_LINES:
        first, last = 1, len(lines)
    elif error_line is None:
        first, last = 1, _SHORT_SOURCE_LINES
    else:
        first = max(1, min(error_line, len(lines)) - _SOURCE_CONTEXT_LINES)
        last = min(len(lines), error_line + _SOURCE_CONTEXT_LINES)
    shown = [f"  {'':>{width}} | ... ({first - 1} lines above)"] if first > 1 else []
    for number in range(first, last + 1):
        marker = ">" if number == error_line else " "
        shown.append(f"{marker} {number:>{width}} | {lines[number - 1]}")
    if last < len(lines):
        shown.append(f"  {'':>{width}} | ... ({len(lines) - last} more lines below)")
    return "\n".join(shown)


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _wheel_header_dir(libname: str) -> str | None:
    """A header directory located by cuda.pathfinder (NVIDIA wheels first), or None."""
    try:
        from cuda.pathfinder import find_nvidia_header_directory
    except ImportError:
        return None
    try:
        return find_nvidia_header_directory(libname)
    except (RuntimeError, ValueError):
        # Older cuda-pathfinder releases do not know every library name.
        return None

