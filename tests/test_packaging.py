"""The built wheel carries every file the package reads at run time, not only its Python: the
native runtime's and the launch call's sources, and the NVRTC header shims. An editable install
reads them from the source tree and would not notice one missing."""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "kernelop"


def test_the_wheel_holds_every_file_of_the_package(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel needs setuptools")
    source = tmp_path / "source"
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("kernelop-*.whl")
    in_wheel = {name for name in zipfile.ZipFile(wheel).namelist() if name.startswith("kernelop/")}
    in_tree = {f"kernelop/{path.relative_to(PACKAGE).as_posix()}" for path in PACKAGE.rglob("*")
               if path.is_file() and "__pycache__" not in path.parts}
    assert in_tree - in_wheel == set(), f"files of the package missing from the wheel: {sorted(in_tree - in_wheel)}"
