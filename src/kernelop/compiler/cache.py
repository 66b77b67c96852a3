"""Content-addressed disk cache of compiled kernels, so a process start skips NVRTC.

Entries are named by a SHA-256 over everything that changes NVRTC's output. Every read is
verified: a damaged, truncated or foreign file is deleted and treated as a miss, because a
bad CUBIN loaded into a GPU fails far from its cause.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import stat
import tempfile
from importlib import metadata
from pathlib import Path

from .. import settings
from . import nvrtc
from .nvrtc import CompiledKernel, CompileRequest

_LOG = logging.getLogger(__name__)

KEY_FORMAT = "2"
"""Bump when the key's inputs change meaning, so older entries are never matched."""
ENTRY_MAGIC = b"KERNELOP-KOBJ 1\n"
"""First line of every entry file: file type and entry format version."""
ENTRY_SUFFIX = ".kobj"
_TEMP_SUFFIX = ".tmp"
MAX_ENTRY_BYTES = 64 * 2**20
"""Largest entry read back; a bigger file is not a kernelop entry (a CUBIN and its PTX are far smaller)."""
_TEMP_PATTERN = re.compile(r"\.[0-9a-f]{64}\.\w+\.tmp")
_KEY_PATTERN = re.compile(r"[0-9a-f]{64}")
_CUDA_HEADER_DISTRIBUTIONS = ("nvidia-cuda-runtime", "nvidia-cuda-cccl")
_NVRTC_DISTRIBUTION = "nvidia-cuda-nvrtc"
_INCLUDE_PATTERN = re.compile(r'^[ \t]*#[ \t]*include[ \t]*([<"])([^>"\n]+)[>"]', re.MULTILINE)


class KernelCache:
    """A directory of ``<key>.kobj`` files; ``directory=None`` disables caching."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = Path(directory) if directory is not None else None

    @staticmethod
    def from_settings() -> "KernelCache":
        """The cache the environment asks for (``KERNELOP_CACHE``, ``KERNELOP_CACHE_DIR``)."""
        current = settings.SETTINGS
        return KernelCache(current.cache_dir if current.cache_enabled else None)

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    def key(self, request: CompileRequest) -> str:
        """Hex SHA-256 of every input that can change what NVRTC produces for ``request``."""
        return request_key(request)

    def get(self, key: str) -> CompiledKernel | None:
        """The verified entry for ``key``, or None; a bad entry is deleted, never returned."""
        path = self._path(key)
        if path is None:
            return None
        data = _read_entry(path)
        if data is None:
            return None
        try:
            return decode_entry(data, key)
        except Exception as error:  # noqa: BLE001 - any surprise in a cached file means "damaged"
            _LOG.warning("kernelop cache: discarding damaged entry %s (%s)", path, error)
            _unlink_quietly(path)
            return None

    def put(self, key: str, kernel: CompiledKernel) -> None:
        """Store ``kernel`` atomically: readers see the old entry or the whole new one."""
        path = self._path(key)
        if path is None:
            return
        data = encode_entry(key, kernel)
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # entries are 0600 (mkstemp)
            write_atomically(path, data)
        except OSError as error:
            _LOG.warning("kernelop cache: cannot write %s (%s); continuing without it", path, error)

    def entries(self) -> list[Path]:
        """kernelop's entry files (``<64 hex digits>.kobj``), sorted by name."""
        if self.directory is None or not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.glob(f"*{ENTRY_SUFFIX}") if _KEY_PATTERN.fullmatch(p.stem))

    def size_bytes(self) -> int:
        """Total size of the entry files."""
        total = 0
        for path in self.entries():
            try:
                total += path.stat().st_size
            except OSError:
                pass  # removed by another process since listing
        return total

    def clear(self) -> int:
        """Delete kernelop's entries (named by key, starting with the entry magic) and the temp
        files its interrupted writes left; return entries removed. Nothing else in the folder
        is touched."""
        if self.directory is None or not self.directory.is_dir():
            return 0
        removed = sum(_unlink_quietly(path) for path in self.entries() if _starts_with_magic(path))
        for leftover in self.directory.glob(f".*{_TEMP_SUFFIX}"):
            if _TEMP_PATTERN.fullmatch(leftover.name):
                _unlink_quietly(leftover)
        return removed

    def _path(self, key: str) -> Path | None:
        if _KEY_PATTERN.fullmatch(key) is None:
            raise ValueError(
                f"kernelop.KernelCache: key must be 64 lowercase hex digits (got {key!r}). "
                "Use KernelCache.key(request) to make one."
            )
        if self.directory is None:
            return None
        return self.directory / f"{key}{ENTRY_SUFFIX}"


def compile_cached(
    request: CompileRequest, cache: KernelCache, op_name: str | None = None
) -> CompiledKernel:
    """Return the cached kernel for ``request``, compiling (and storing) it on a miss."""
    if not cache.enabled:
        return nvrtc.compile_kernel(request, op_name)
    alone = dataclasses.replace(request, companions=())
    candidates = (request, alone) if request.companions else (request,)
    for candidate in candidates:  # the source's shared run, else (its companions failed) the kernel alone
        key = cache.key(candidate)
        cached = cache.get(key)
        if cached is None:
            continue
        mine = cached.for_kernel(request.kernel_name)  # stored by any kernel of the same source
        problem = "it does not lower this kernel" if mine is None else entry_mismatch(mine, candidate)
        if problem is None:
            return mine
        _LOG.warning("kernelop cache: entry %s does not describe %s (%s); compiling instead", key, request.kernel_name, problem)
    kernel = nvrtc.compile_kernel(request, op_name)
    lowered_all = {name for name, _ in kernel.lowered_names} >= set(request.name_expressions)
    cache.put(cache.key(request if lowered_all else alone), kernel)
    return kernel


def entry_mismatch(kernel: CompiledKernel, request: CompileRequest) -> str | None:
    """Why a verified entry is not what ``request`` compiles to, or None. Checksums prove an entry
    whole, not whose it is: these catch another compile's binary put under this key with its
    header rewritten, short of a forgery crafted for this very kernel (which the private cache
    folder is there to prevent)."""
    if kernel.arch != request.arch:
        return f"compiled for {kernel.arch}, not {request.arch}"
    if kernel.options != nvrtc.build_options(request):
        return "compiled with other options"
    if kernel.lowered_names and {name for name, _ in kernel.lowered_names} != set(request.name_expressions):
        return "it lowers other kernel names"
    symbol = kernel.lowered_name.encode()
    if re.search(rb"\.entry\s+" + re.escape(symbol) + rb"\b", kernel.ptx) is None or symbol not in kernel.cubin:
        return f"its PTX or CUBIN has no kernel {kernel.lowered_name}"
    return None


# --- key ---------------------------------------------------------------------------------


def request_key(request: CompileRequest) -> str:
    """Hex SHA-256 over labelled, length-prefixed fields, so no two inputs can collide."""
    digest = hashlib.sha256()
    major, minor = nvrtc.nvrtc_version()
    fields = (
        ("key-format", KEY_FORMAT),
        ("nvrtc", f"{major}.{minor} {_distribution_version(_NVRTC_DISTRIBUTION)}"),
        ("arch", request.arch),
        ("std", request.std),
        ("options", "\0".join(nvrtc.build_options(request))),
        ("program-name", request.program_name),
        ("kernel-names", "\0".join(sorted(request.name_expressions))),
        ("source", request.source),
        ("includes", include_digest(request)),
        ("prelude", _read_or_empty(nvrtc.PRELUDE).decode() if request.host_shims else ""),
    )
    for label, value in fields:
        _add_field(digest, label, value.encode())
    return digest.hexdigest()


def include_digest(request: CompileRequest) -> str:
    """Digest of the headers the source can reach, following ``#include`` recursively.

    User headers are hashed by content. Headers found in the CUDA header directories are
    hashed by directory and installed wheel versions instead: they are large and change only
    with an install. Directives are scanned without preprocessing, so a conditional include
    counts whether or not it is taken; a header that cannot be found counts as missing,
    and the key changes once it appears.
    """
    cuda_dirs = nvrtc.cuda_include_dirs()
    search = list(nvrtc.include_dirs(request))
    digest = hashlib.sha256()
    seen: set[Path] = set()
    pending = [(request.source, _program_dir(request.program_name))]
    while pending:
        text, including_dir = pending.pop()
        for style, name in _INCLUDE_PATTERN.findall(text):
            dirs = [including_dir, *search] if style == '"' else search
            found = _resolve(name.strip(), dirs)
            if found is None:
                _add_field(digest, "missing", f"{style}{name}".encode())
            elif str(found[0]) in cuda_dirs:
                _add_field(digest, "cuda", f"{style}{name}\0{_cuda_identity(found[0])}".encode())
            elif found[1] not in seen:
                seen.add(found[1])
                content = _read_or_empty(found[1])
                _add_field(digest, "user", f"{style}{name}\0{found[1]}".encode())
                _add_field(digest, "content", content)
                pending.append((content.decode(errors="replace"), found[1].parent))
    return digest.hexdigest()


def _resolve(name: str, dirs: list[Path | str]) -> tuple[Path, Path] | None:
    """The first (directory, file) where ``name`` exists, in NVRTC's search order."""
    for directory in dirs:
        candidate = Path(directory) / name
        if candidate.is_file():
            return Path(directory), candidate.resolve()
    return None


def _read_or_empty(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""  # NVRTC cannot read it either; the compile reports it


def _program_dir(program_name: str) -> Path:
    """NVRTC looks up quoted includes next to the program name, taken relative to the cwd."""
    return Path(os.path.abspath(program_name)).parent


def _cuda_identity(directory: Path) -> str:
    versions = " ".join(f"{d}={_distribution_version(d)}" for d in _CUDA_HEADER_DISTRIBUTIONS)
    return f"{os.path.realpath(directory)} {versions}"


def _distribution_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _add_field(digest: "hashlib._Hash", label: str, value: bytes) -> None:
    digest.update(label.encode() + b"\0" + len(value).to_bytes(8, "little") + value)


# --- entry files -------------------------------------------------------------------------


def encode_entry(key: str, kernel: CompiledKernel) -> bytes:
    """Magic line, one-line JSON header, then the raw CUBIN and PTX bytes."""
    payload = kernel.cubin + kernel.ptx
    header = {
        "key": key,
        "arch": kernel.arch,
        "lowered_name": kernel.lowered_name,
        "lowered_names": [list(pair) for pair in kernel.lowered_names],
        "options": list(kernel.options),
        "log": kernel.log,
        "nvrtc_version": list(kernel.nvrtc_version),
        "cubin_size": len(kernel.cubin),
        "ptx_size": len(kernel.ptx),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    header["header_sha256"] = _header_digest(header)
    return ENTRY_MAGIC + json.dumps(header).encode() + b"\n" + payload


def decode_entry(data: bytes, key: str) -> CompiledKernel:
    """Parse and verify an entry file; raise ValueError if anything does not check out."""
    if not data.startswith(ENTRY_MAGIC):
        raise ValueError("not a kernelop entry (bad magic line)")
    header_end = data.find(b"\n", len(ENTRY_MAGIC))
    if header_end < 0:
        raise ValueError("header line is incomplete")
    header = json.loads(data[len(ENTRY_MAGIC) : header_end])
    if header.pop("header_sha256") != _header_digest(header):
        raise ValueError("header checksum does not match")
    payload = data[header_end + 1 :]
    if header["key"] != key:
        raise ValueError(f"entry belongs to key {header['key']!r}")
    cubin_size, ptx_size = int(header["cubin_size"]), int(header["ptx_size"])
    if cubin_size < 0 or ptx_size < 0 or len(payload) != cubin_size + ptx_size:
        raise ValueError(f"payload is {len(payload)} bytes, header says {cubin_size + ptx_size}")
    if hashlib.sha256(payload).hexdigest() != header["payload_sha256"]:
        raise ValueError("payload checksum does not match")
    major, minor = header["nvrtc_version"]
    return CompiledKernel(
        cubin=payload[:cubin_size],
        ptx=payload[cubin_size:],
        lowered_name=_text(header["lowered_name"]),
        arch=_text(header["arch"]),
        options=tuple(_text(option) for option in header["options"]),
        log=_text(header["log"]),
        nvrtc_version=(int(major), int(minor)),
        lowered_names=tuple((_text(name), _text(symbol)) for name, symbol in header["lowered_names"]),
    )


def _header_digest(header: dict[str, object]) -> str:
    """Checksum of the header fields, so a damaged kernel name or log is caught too."""
    return hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string in the entry header (got {type(value).__name__})")
    return value


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write to a temp file beside ``path``, fsync it, then rename it over ``path``: readers see
    the old file or the whole new one. ``mode``: private by default, as cache entries are."""
    descriptor, temp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.stem}.", suffix=_TEMP_SUFFIX
    )
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        _unlink_quietly(Path(temp_name))
        raise


def _read_entry(path: Path, length: int = MAX_ENTRY_BYTES + 1) -> bytes | None:
    """An entry's first ``length`` bytes (all of it, by default) if it is a regular file of at most
    ``MAX_ENTRY_BYTES``; anything else (a symlink, a FIFO, a device, a huge file) is refused
    without being followed or read whole."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as error:  # ELOOP: a symlink
        _LOG.warning("kernelop cache: ignoring %s, which is not a regular file (%s); compiling instead", path, error)
        return None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_ENTRY_BYTES:
            _LOG.warning("kernelop cache: ignoring %s, which is not a regular file of at most %d bytes; compiling instead",
                         path, MAX_ENTRY_BYTES)
            return None
        try:
            return handle.read(length)
        except OSError as error:
            _LOG.warning("kernelop cache: cannot read %s (%s); compiling instead", path, error)
            return None


def _starts_with_magic(path: Path) -> bool:
    return _read_entry(path, len(ENTRY_MAGIC)) == ENTRY_MAGIC


def _unlink_quietly(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except OSError:
        return False
