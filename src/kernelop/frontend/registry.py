"""kernelop's record of the ops it registered, and the rule for registering one again.

The same arguments under the same op name again is a no-op; different arguments under a name
kernelop already registered raise ``ValueError`` naming the op, because silently keeping the old
kernel (or swapping it under live compiled graphs) gives wrong results.
"""
from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional, TypeVar

import torch

from ..cuda.binaries import KernelBinaries
from ..errors import Where
from ..plan.launch_plan import LaunchPlan


@dataclass(frozen=True)
class Registration:
    """What kernelop keeps per registered op."""

    op_name: str
    fingerprint: tuple
    schema: str
    library: torch.library.Library
    plan: Optional[LaunchPlan]
    binaries: Optional[KernelBinaries]
    ptx: Optional[bytes]
    plan_launch: bool = False  # kernelop's launcher, from the plan alone, is the op's CUDA impl
    call_path: str = "python"  # "native": the native runtime's C++ impl serves calls


_registry: dict[str, Registration] = {}
_lock = threading.RLock()
F = TypeVar("F", bound=Callable[..., Any])


def one_at_a_time(register: F) -> F:
    """Run registrations one at a time in a process: between "is this name registered?" and the
    record, another thread's registration of the same name would otherwise see torch's half of it."""

    @functools.wraps(register)
    def serialized(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return register(*args, **kwargs)

    return serialized  # type: ignore[return-value]


def registered_ops() -> dict[str, Registration]:
    """A snapshot of kernelop's registrations, by op name."""
    return dict(_registry)


def record(registration: Registration) -> None:
    _registry[registration.op_name] = registration


def already_registered(where: Where, op_name: str, fingerprint: tuple) -> bool:
    """True for the same arguments again; raises for different ones under a registered name."""
    existing = _registry.get(op_name)
    if existing is None:
        return False
    if existing.fingerprint == fingerprint:
        return True
    where.fail(
        f"op {op_name} is already registered with a different kernel or spec; kernelop never replaces a "
        "registered op, since compiled graphs may still call it. Register the new kernel under a new name."
    )
