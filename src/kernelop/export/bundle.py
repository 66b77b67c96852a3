"""``export_bundle``: registered ops as a folder a process without kernelop can serve them from.

A bundle holds, per op, its schema, its launch plan as plain data (``plan.serialize``), and for
each template instantiation and each architecture asked for, the kernel's CUBIN, PTX and symbol.
``manifest.json`` lists it all; binaries are files named by their content's digest. A native
runtime reads the same manifest; ``kernels_for`` is the rule it follows for architectures.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence
from urllib.parse import quote

import torch

from ..compiler.cache import write_atomically
from ..compiler.target import target_arch
from ..cuda.binaries import KernelBinaries
from ..dsl.validate_options import check_arch
from ..errors import Where
from ..frontend.registry import Registration, registered_ops
from ..native import runtime as native_runtime
from ..native.program import header, op_program
from ..plan.serialize import plan_to_data

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
LIBRARY = "kernelop_ops.so"
"""``torch.ops.load_library`` of it registers the bundle's ops, in a process without kernelop."""
PROGRAM = "kernelop_ops.program"
"""What the library reads beside itself: the ops' programs and kernels (``native/program.py``)."""
log = logging.getLogger("kernelop")


def export_bundle(directory: os.PathLike | str, ops: Optional[Iterable[str]] = None, archs: Optional[Sequence[str]] = None) -> Path:
    """Write ``ops`` (default: every op kernelop registered in this process) to ``directory``,
    compiled for ``archs`` (default: this GPU's architecture, else the default one)."""
    where = Where("export_bundle", str(directory))
    archs = tuple(archs) if archs else (target_arch(None),)
    for i, arch in enumerate(archs):
        check_arch(where, f"archs[{i}]", arch)
    registry = registered_ops()
    names = sorted(registry) if ops is None else list(ops)
    unknown = [n for n in names if n not in registry]
    if unknown:
        where.fail(f"ops {unknown} were not registered by kernelop in this process (registered: {sorted(registry)})")
    if not names:
        where.fail("there are no ops to export; register them first (import the module that does)")
    root = Path(directory)
    (root / "kernels").mkdir(parents=True, exist_ok=True)
    entries = [_op_entry(registry[name], archs, root) for name in names]
    manifest = {"format": BUNDLE_FORMAT, "torch": torch.__version__, "archs": list(archs), "ops": entries}
    _write_library(root, [registry[name] for name in names], entries)
    write_atomically(root / MANIFEST, json.dumps(manifest, indent=1, allow_nan=False).encode(), mode=0o644)
    return root


def _write_library(root: Path, registrations: list[Registration], entries: list[dict[str, Any]]) -> None:
    """The loadable op library: the native runtime (built for this torch) and its program, which
    defines the ops from their schemas and reads their kernels from ``kernels/`` when loaded."""
    loaded = native_runtime.runtime()
    if loaded is None:
        log.warning("kernelop: the bundle in %s has no loadable op library: %s", root, native_runtime.unavailable_reason())
        return
    lines = header()
    for registration in registrations:
        lines += op_program(registration.plan, registration.binaries.kernel_label, registration.binaries.shared_opt_in,  # type: ignore[arg-type, union-attr]
                            (registration.schema, not_built_for(registration.op_name, "{built}", "{arch}")))
    for entry in entries:
        for kernel in entry["kernels"]:
            fields = (entry["name"], ",".join(kernel["dtypes"]), kernel["arch"], kernel["symbol"], kernel["cubin"])
            lines.append("kernel " + " ".join(quote(f, safe="") or "%" for f in fields))
    write_atomically(root / PROGRAM, ("\n".join(lines) + "\n").encode(), mode=0o644)
    write_atomically(root / LIBRARY, loaded.path.read_bytes(), mode=0o755)


def read_manifest(directory: os.PathLike | str) -> dict[str, Any]:
    """A bundle's manifest, or ``ValueError`` saying what the folder holds instead."""
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"kernelop.read_manifest({directory}): no readable {MANIFEST} ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"kernelop.read_manifest({directory}): expected a bundle of format {BUNDLE_FORMAT} "
                         f"(got {manifest.get('format') if isinstance(manifest, dict) else type(manifest).__name__!r})")
    for entry in manifest.get("ops", ()):
        problem = _entry_problem(entry)
        if problem is not None:
            raise ValueError(f"kernelop.read_manifest({directory}): {problem}")
    return manifest


_KERNEL_KEYS = {"dtypes", "kernel_name", "symbol", "arch", "cubin", "ptx"}
_BINARY_PATH = re.compile(r"kernels/[0-9a-f]{32}\.(cubin|ptx)")


def _entry_problem(entry: Any) -> Optional[str]:
    """What makes an op entry unreadable: missing fields, or a binary path outside ``kernels/``
    (a reader must never be sent elsewhere on the disk)."""
    if not (isinstance(entry, dict) and {"name", "schema", "plan", "kernels"} <= set(entry) and isinstance(entry["kernels"], list)):
        return f"an op entry lacks name, schema, plan or kernels ({str(entry)[:120]})"
    for kernel in entry["kernels"]:
        if not (isinstance(kernel, dict) and _KERNEL_KEYS <= set(kernel)):
            return f"op {entry['name']}: a kernel entry lacks one of {sorted(_KERNEL_KEYS)}"
        for field in ("cubin", "ptx"):
            if not (isinstance(kernel[field], str) and _BINARY_PATH.fullmatch(kernel[field])):
                return f"op {entry['name']}: {field} path {kernel[field]!r} is not a file of the bundle's kernels/ folder"
    return None


def kernels_for(entry: dict[str, Any], arch: str) -> list[dict[str, Any]]:
    """An op's kernels built for ``arch``; a bundle built for other architectures is refused with
    both named, never launched (a CUBIN runs only on the architecture it was built for)."""
    kernels = [k for k in entry["kernels"] if k["arch"] == arch]
    if not kernels:
        raise ValueError(not_built_for(entry["name"], ", ".join(sorted({k["arch"] for k in entry["kernels"]})), arch))
    return kernels


def not_built_for(op_name: str, built: str, arch: str) -> str:
    """A bundle's op on a GPU it has no kernels for (the loadable library says the same, from
    this text with ``{built}`` and ``{arch}`` filled in)."""
    return f"kernelop.bundle({op_name}): built for {built}, but this GPU is {arch}; export it again with --arch {arch}"


def _op_entry(registration: Registration, archs: Sequence[str], root: Path) -> dict[str, Any]:
    where = Where("export_bundle", registration.op_name)
    plan, binaries = registration.plan, registration.binaries
    if not registration.plan_launch or plan is None or binaries is None:
        where.fail("only ops kernelop launches from their plan can be exported (not ptx_op ops, eager_fn or "
                   "meta_fn overrides, or Custom geometries): a process without Python cannot run those functions")
    kernels = []
    for key, arch in itertools.product(_instantiations(binaries), archs):
        compiled = binaries.for_arch(arch, key)
        kernels.append({
            "dtypes": [str(d).removeprefix("torch.") for d in key],
            "kernel_name": binaries.request_for(arch, key).kernel_name,
            "symbol": compiled.lowered_name,
            "arch": arch,
            "cubin": _store(root, compiled.cubin, ".cubin"),
            "ptx": _store(root, compiled.ptx, ".ptx"),
        })
    return {"name": registration.op_name, "schema": registration.schema, "plan": plan_to_data(plan), "kernels": kernels}


def _instantiations(binaries: KernelBinaries) -> list[tuple]:
    """Every dtype combination of a template's type parameters; ``[()]`` for a plain kernel."""
    template = binaries.template
    if template is None:
        return [()]
    return list(itertools.product(*(p.dtypes for p in template.type_params)))


def _store(root: Path, data: bytes, suffix: str) -> str:
    """Write ``data`` under its digest (written once, however many ops share it); its bundle path."""
    name = f"kernels/{hashlib.sha256(data).hexdigest()[:32]}{suffix}"
    path = root / name
    if not (path.is_file() and path.read_bytes() == data):  # a file left by an interrupted export is replaced
        write_atomically(path, data, mode=0o644)  # a bundle is shipped: readable by the processes that serve it
    return name
