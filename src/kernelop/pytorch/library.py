"""PyTorch op registration: schema, impls by dispatch key and fake impl, all or nothing.

Registration goes straight through ``torch.library.Library`` (define + impl): the
``torch.library.custom_op`` decorator wraps every call in Python layers that cost several
microseconds, which a kernel launch path cannot afford.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from ..errors import Where
from .autograd import AutogradFunctions


def register(
    where: Where,
    namespace: str,
    name: str,
    schema: str,
    impls: dict[str, Callable[..., Any]],
    fake_impl: Callable[..., Any],
    autograd: Optional[AutogradFunctions] = None,
) -> torch.library.Library:
    """Define the op and attach its impls (by dispatch key), fake impl and autograd; all or nothing."""
    if torch._C._jit_get_schemas_for_operator(f"{namespace}::{name}"):
        where.fail(f"an op named {namespace}::{name} is already defined outside kernelop. Choose another name.")
    lib = torch.library.Library(namespace, "FRAGMENT")
    try:
        lib.define(f"{name}{schema}")
        for dispatch_key, impl in impls.items():
            lib.impl(name, impl, dispatch_key)
        torch.library.register_fake(f"{namespace}::{name}", fake_impl, lib=lib)
        if autograd is not None:
            torch.library.register_autograd(f"{namespace}::{name}", autograd.backward, setup_context=autograd.setup_context, lib=lib)
    except Exception:
        lib._destroy()
        raise
    return lib
