"""PTX the CUDA driver can load: the engine's architecture and the PTX ISA each driver accepts."""
import re
from typing import Optional, Tuple

from ..compiler.target import DEFAULT_ARCH

PTX_ISA_FIRST_DRIVER: Tuple[Tuple[Tuple[int, int], Tuple[int, int]], ...] = (
    ((7, 0), (11, 0)), ((7, 1), (11, 1)), ((7, 2), (11, 2)), ((7, 3), (11, 3)), ((7, 4), (11, 4)),
    ((7, 5), (11, 5)), ((7, 6), (11, 6)), ((7, 7), (11, 7)), ((7, 8), (11, 8)),
    ((8, 0), (12, 0)), ((8, 1), (12, 1)), ((8, 2), (12, 2)), ((8, 3), (12, 3)), ((8, 4), (12, 4)),
    ((8, 5), (12, 5)), ((8, 6), (12, 7)), ((8, 7), (12, 8)), ((8, 8), (12, 9)),
    ((9, 0), (13, 0)), ((9, 1), (13, 1)), ((9, 2), (13, 2)), ((9, 3), (13, 3)), ((9, 4), (13, 4)),
    ((9, 5), (13, 5)),
)
"""(PTX ISA version, first CUDA driver that loads it), from NVIDIA's PTX ISA release history
(the table ``cuda.bindings.utils.get_minimal_required_cuda_ver_from_ptx_ver`` also encodes).
CUDA 12.6 added no ISA, so a 12.6 driver loads up to 8.5."""


def aot_arch(arch_override: Optional[str], gpu_arch: Optional[str]) -> str:
    """The architecture the engine's PTX is compiled for: the override, else this GPU's, else the default."""
    return arch_override or gpu_arch or DEFAULT_ARCH


def ptx_isa_version(ptx: bytes) -> Optional[Tuple[int, int]]:
    """The ``.version X.Y`` directive of PTX text."""
    match = re.search(rb"^\s*\.version\s+(\d+)\.(\d+)", ptx, re.M)
    return (int(match.group(1)), int(match.group(2))) if match else None


def driver_cuda_version(version: int) -> Tuple[int, int]:
    """``cuDriverGetVersion``'s integer (12080) as (12, 8)."""
    return version // 1000, (version % 1000) // 10


def max_ptx_isa(driver: Tuple[int, int]) -> Optional[Tuple[int, int]]:
    """The newest PTX ISA a CUDA driver of this version loads (None: older than the table)."""
    loadable = [isa for isa, first in PTX_ISA_FIRST_DRIVER if first <= driver]
    return max(loadable) if loadable else None


def ptx_driver_problem(ptx: bytes, driver_version: Optional[int]) -> Optional[str]:
    """A sentence when this driver cannot load the PTX (its ISA is too new), else None."""
    isa = ptx_isa_version(ptx)
    if isa is None or driver_version is None:
        return None
    driver = driver_cuda_version(driver_version)
    newest_known_isa, newest_known_driver = PTX_ISA_FIRST_DRIVER[-1]
    if isa > newest_known_isa and driver > newest_known_driver:
        return None  # both newer than the table: nothing to say
    supported = max_ptx_isa(driver)
    if supported is not None and isa <= supported:
        return None
    can = f"loads PTX ISA up to {supported[0]}.{supported[1]}" if supported else "predates the PTX ISA table"
    return (
        f"the PTX for TensorRT has ISA version {isa[0]}.{isa[1]} but this CUDA driver is version "
        f"{driver[0]}.{driver[1]} and {can}, so an engine built here cannot load the kernel. "
        "Update the driver, or install an NVRTC wheel no newer than the driver (nvidia-cuda-nvrtc)."
    )
