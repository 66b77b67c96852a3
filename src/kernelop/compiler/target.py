"""Which GPU architecture a kernel is compiled for."""
from __future__ import annotations

from typing import Optional

import torch

DEFAULT_ARCH = "sm_80"
"""Compile target when no GPU is present and the spec names no ``arch_override``.

``sm_80`` PTX runs (through the driver's JIT) on every GPU from Ampere on, so a kernel
registered on a GPU-less build machine compiles for the oldest architecture likely to run it.
"""


def device_arch(device_index: int) -> str:
    major, minor = torch.cuda.get_device_capability(device_index)
    return f"sm_{major}{minor}"


def target_arch(arch_override: Optional[str]) -> str:
    """The current GPU's architecture, else ``arch_override``, else ``DEFAULT_ARCH``."""
    if torch.cuda.is_available():
        return device_arch(torch.cuda.current_device())
    return arch_override or DEFAULT_ARCH
