"""Bind a plan's parameter slots to the compiled kernel's own parameter list.

At registration, with or without a GPU: the PTX ``.param`` list must match the plan's slots in
count, size and kind (pointer-sized integer, integer, float, bool), and where the source can be
read, pointer-ness, ``const`` (a kernel cannot write an output through ``const T*``) and names
(a spec name found at another position of the kernel is a misordered parameter). The kernel's
types then replace the seed's defaults: a ``size_t`` extra is packed as 64 bits, a ``double``
scalar as a double.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from ..compiler.signature import KernelSignature, PtxParam, SourceParam
from ..errors import Where
from .ctypes import CTYPE_SIZES
from .describe import describe_slot, slot_name
from .launch_plan import ArgSlot, LaunchPlan

_INTEGER_FOR = {1: "bool", 4: "x32", 8: "x64"}
_FLOAT_FOR = {4: "f32", 8: "f64"}


def bind_kernel(where: Where, plan: LaunchPlan, kernel_name: str, signature: KernelSignature) -> LaunchPlan:
    """The plan with the kernel's C types and pointee sizes, or ``ValueError`` showing both layouts."""
    source, ptx = signature.source, signature.ptx
    count = len(plan.arg_layout)
    if source is not None and len(source) != count and ptx is None:
        _refuse(where, plan, kernel_name, signature, f"the kernel declares {len(source)} parameters, the spec {count}")
    if ptx is not None and len(ptx) != count:
        _refuse(where, plan, kernel_name, signature, f"the kernel has {len(ptx)} parameters, the spec {count}")
    if source is not None and len(source) != count:
        source = None  # a declaration the reader split differently (macros): trust the PTX alone
    slots = []
    for i, slot in enumerate(plan.arg_layout):
        declared = source[i] if source is not None else None
        compiled = ptx[i] if ptx is not None else None
        problem = _slot_problem(plan, slot, declared, compiled) or _name_problem(plan, i, slot, source)
        if problem is not None:
            _refuse(where, plan, kernel_name, signature, f"parameter {i}: {problem}")
        slots.append(_typed(slot, declared, compiled))
    return dataclasses.replace(plan, arg_layout=tuple(slots), _memo={})


_FITS = {
    "pointer": lambda p: p.kind == "int" and p.size == 8,
    "bool": lambda p: p.kind == "int" and p.size == 1,
    "int": lambda p: p.kind == "int" and p.size in (4, 8),
    "float": lambda p: p.kind == "float" and p.size in (4, 8),
}
"""What PTX parameter each kind of slot can bind to."""


def _slot_problem(plan: LaunchPlan, slot: ArgSlot, declared: Optional[SourceParam], compiled: Optional[PtxParam]) -> Optional[str]:
    name = slot_name(plan, slot)
    wants_pointer = slot.kind in ("tensor", "output")
    kind = "pointer" if wants_pointer else _kind_of(slot, plan)
    if compiled is not None and not _FITS[kind](compiled):
        what = "aggregate" if compiled.kind == "bytes" else compiled.kind
        return f"the spec passes {name!r} as a {kind}, but the kernel's parameter is a {compiled.size}-byte {what} ({compiled.text})"
    if declared is not None:
        if declared.is_pointer is not None and wants_pointer != declared.is_pointer:
            what = "a pointer" if wants_pointer else "a value"
            return f"the spec passes {name!r} as {what}, but the kernel declares {declared.text!r}"
        if slot.kind == "output" and declared.pointee_const:
            return f"output {name!r} is the kernel's {declared.text!r}, which is const: the kernel cannot write it"
    return None


def _name_problem(plan: LaunchPlan, i: int, slot: ArgSlot, source: Optional[tuple[SourceParam, ...]]) -> Optional[str]:
    """A spec name that the kernel gives to another position is a misordered parameter."""
    if source is None:
        return None
    name = slot_name(plan, slot)
    positions = [j for j, p in enumerate(source) if p.name == name]
    if positions and i not in positions:
        return (f"the spec puts {name!r} here, but the kernel names parameter {positions[0]} {name!r} "
                f"(here it declares {source[i].text!r}); the order differs")
    return None


def _kind_of(slot: ArgSlot, plan: LaunchPlan) -> str:
    if slot.kind == "extra":
        return "int"
    py_type = plan.params[slot.index].py_type
    return {float: "float", int: "int", bool: "bool"}[py_type]  # type: ignore[index]


def _typed(slot: ArgSlot, declared: Optional[SourceParam], compiled: Optional[PtxParam]) -> ArgSlot:
    """The slot with the kernel's own C type and pointee size where known."""
    if slot.ctype == "ptr":
        return dataclasses.replace(slot, pointee_size=declared.pointee_size if declared is not None else None)
    if slot.ctype == "bool":
        return slot
    return dataclasses.replace(slot, ctype=kernel_ctype(declared, compiled) or slot.ctype)


def kernel_ctype(declared: Optional[SourceParam], compiled: Optional[PtxParam]) -> Optional[str]:
    """The C type the kernel gives a by-value parameter: its declared type where the source can
    be read and agrees with the PTX's size, else the PTX's kind and size (an integer of unknown
    sign as ``x32``/``x64``); None where neither says."""
    ctype = declared.ctype if declared is not None else None
    if ctype is not None and (compiled is None or CTYPE_SIZES[ctype] == compiled.size):
        return ctype
    if compiled is None:
        return None
    return (_FLOAT_FOR if compiled.kind == "float" else _INTEGER_FOR).get(compiled.size)


def _refuse(where: Where, plan: LaunchPlan, kernel_name: str, signature: KernelSignature, problem: str) -> None:
    order = "param_order" if not plan.seed_order else "(inputs..., extras..., outputs...)"
    spec_side = "\n".join(f"    {i}: {describe_slot(plan, s)}" for i, s in enumerate(plan.arg_layout))
    where.fail(
        f"kernel {kernel_name!r} does not take the parameters the spec describes: {problem}.\n"
        f"  spec, in {order}:\n{spec_side}\n"
        f"  kernel:\n{_kernel_side(signature)}\n"
        "Fix the kernel signature or the KernelSpec (param_order, inputs, extras, outputs)."
    )


def _kernel_side(signature: KernelSignature) -> str:
    source, ptx = signature.source or (), signature.ptx or ()
    lines = []
    for i in range(max(len(source), len(ptx))):
        declared = source[i].text if i < len(source) else "?"
        compiled = f"{ptx[i].text}, {ptx[i].size} bytes" if i < len(ptx) else "not in the PTX"
        lines.append(f"    {i}: {declared} (PTX {compiled})")
    return "\n".join(lines) or "    (no parameters)"
