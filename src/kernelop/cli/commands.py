"""The ``kernelop`` command: ``demo``, ``compile FILE --name KERNEL``, ``cache info|clear``, ``export FILE --out DIR``."""
from __future__ import annotations

import argparse
import re
import runpy
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..compiler.cache import KernelCache
from ..compiler.nvrtc import CompileError, CompileRequest, compile_kernel
from ..compiler.target import DEFAULT_ARCH, target_arch


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="kernelop", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="register the example kernels; run and check them on a GPU, else compile and export them")
    compile_cmd = commands.add_parser("compile", help="compile one kernel with NVRTC and print its resource report")
    compile_cmd.add_argument("file", type=Path)
    compile_cmd.add_argument("--name", required=True, help="kernel name (extern \"C\" name or C++ name expression)")
    compile_cmd.add_argument("--arch", default=None, help=f"target such as sm_90 (default: this GPU, else {DEFAULT_ARCH})")
    compile_cmd.add_argument("--std", default="c++17")
    compile_cmd.add_argument("-I", dest="include", action="append", default=[], help="include directory")
    cache_cmd = commands.add_parser("cache", help="inspect or clear the compile cache")
    cache_cmd.add_argument("action", choices=["info", "clear"])
    export_cmd = commands.add_parser("export", help="write the ops a Python file registers as a bundle: schemas, plans, CUBINs and PTX")
    export_cmd.add_argument("file", type=Path, help="a Python file that registers kernelop ops when run")
    export_cmd.add_argument("--out", type=Path, required=True, help="the bundle folder")
    export_cmd.add_argument("--arch", action="append", default=[], help=f"target such as sm_90, repeatable (default: this GPU, else {DEFAULT_ARCH})")
    export_cmd.add_argument("--op", action="append", default=[], help="an op to export, repeatable (default: every op the file registers)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        return run_demo()
    if args.command == "compile":
        return _compile(args.file, args.name, args.arch, args.std, args.include)
    if args.command == "export":
        return _export(args.file, args.out, args.arch, args.op)
    return _cache(args.action)


def _export(file: Path, out: Path, archs: list[str], ops: list[str]) -> int:
    """Run ``file`` (it registers ops, as a user's module does), then export what it registered."""
    from ..export.bundle import export_bundle
    from ..frontend.registry import registered_ops

    before = set(registered_ops())
    try:
        runpy.run_path(str(file), run_name="__kernelop_export__")
        registered = sorted(set(registered_ops()) - before)
        bundle = export_bundle(out, ops or registered, archs or None)
    except Exception as exc:  # noqa: BLE001 - the user's file may raise anything; say it in one line
        print(f"kernelop export: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"exported {len(ops or registered)} ops to {bundle} ({', '.join(ops or registered)})")
    return 0


def _compile(file: Path, name: str, arch: Optional[str], std: str, include: list[str]) -> int:
    try:
        source = file.read_text()
    except OSError as exc:
        print(f"kernelop compile: cannot read {file} ({exc.strerror})", file=sys.stderr)
        return 2
    if arch is None:
        arch = target_arch(None)
    try:
        request = CompileRequest(source, name, arch, std=std, include_paths=tuple(include), program_name=file.name)
        kernel = compile_kernel(request)
    except (CompileError, ValueError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(compile_report(kernel))
    return 0


def compile_report(kernel) -> str:
    """Target, sizes, PTX ISA version and the ptxas resource lines of one compiled kernel."""
    isa = re.search(rb"^\s*\.version\s+(\S+)", kernel.ptx, re.M)
    lines = [
        f"kernel:     {kernel.lowered_name}",
        f"arch:       {kernel.arch}",
        f"nvrtc:      {kernel.nvrtc_version[0]}.{kernel.nvrtc_version[1]}",
        f"PTX ISA:    {isa.group(1).decode() if isa else 'unknown'}",
        f"cubin:      {len(kernel.cubin)} bytes",
        f"ptx:        {len(kernel.ptx)} bytes",
        f"options:    {' '.join(kernel.options)}",
        "ptxas:",
    ]
    lines += ["  " + line.strip() for line in kernel.resource_report().splitlines() if line.strip()]
    return "\n".join(lines)


def _cache(action: str) -> int:
    cache = KernelCache.from_settings()
    if cache.directory is None:
        print("cache: disabled (KERNELOP_CACHE=0)")
        return 0
    if action == "clear":
        print(f"cache: removed {cache.clear()} entries from {cache.directory}")
        return 0
    entries = cache.entries()
    print(f"cache: {cache.directory}")
    print(f"entries: {len(entries)}")
    print(f"size: {cache.size_bytes()} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
