"""A launch plan as plain data (JSON types), and back: the form a native runtime or an export
bundle reads, so that they interpret exactly the plan Python built.

Only the plan's own types are written and read back, by name from a closed list: a bundle can
never make Python instantiate anything else. A ``Custom`` geometry is Python code and has no
plain form.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch

from ..dsl.sizes import AxisSize, BinarySize, ConstSize, NumelSize
from ..dsl.spec import Custom, Divisible, Elementwise, Equal, InRange, Launch, Reduction, TypeParam
from .launch_plan import ArgSlot, ExtraRule, LaunchPlan, OutputRule, Param
from .template import TemplatePlan

FORMAT = 1
"""Bump when the data's meaning changes; a reader refuses other formats."""
_TYPES = {cls.__name__: cls for cls in (
    LaunchPlan, Param, OutputRule, ExtraRule, ArgSlot, TemplatePlan, TypeParam,
    Elementwise, Reduction, Launch, Divisible, InRange, Equal,
    AxisSize, NumelSize, ConstSize, BinarySize,
)}
_PY_TYPES = {"float": float, "int": int, "bool": bool}
_DTYPES = {str(d).removeprefix("torch."): d for d in vars(torch).values() if isinstance(d, torch.dtype)}


def plan_to_data(plan: LaunchPlan) -> dict[str, Any]:
    """The plan as nested dicts, lists, strings, numbers, bools and None."""
    if isinstance(plan.geometry, Custom):
        raise ValueError(f"kernelop.serialize({plan.op_name}): geometry Custom is Python code; a plan with it has no plain form")
    return {"kernelop-plan": FORMAT, "plan": _encode(plan)}


def plan_from_data(data: dict[str, Any]) -> LaunchPlan:
    """The plan ``plan_to_data`` wrote; ``ValueError`` for anything else."""
    if not isinstance(data, dict) or data.get("kernelop-plan") != FORMAT:
        got = data.get("kernelop-plan") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"kernelop.serialize: expected a kernelop plan of format {FORMAT} (got {got!r})")
    plan = _decode(data["plan"])
    if not isinstance(plan, LaunchPlan):
        raise ValueError(f"kernelop.serialize: the data holds a {type(plan).__name__}, not a LaunchPlan")
    return plan


def _encode(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}  # JSON has no inf or nan
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (tuple, list)):
        return [_encode(v) for v in value]
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).removeprefix("torch.")}
    if isinstance(value, type) and value.__name__ in _PY_TYPES:
        return {"py_type": value.__name__}
    name = type(value).__name__
    if _TYPES.get(name) is not type(value):
        raise ValueError(f"kernelop.serialize: a plan holds no {name} ({value!r})")
    fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value) if not f.name.startswith("_")}
    return {"type": name, "fields": fields}


def _decode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    if isinstance(value, dict) and set(value) == {"float"} and value["float"] in ("inf", "-inf", "nan"):
        return float(value["float"])
    if isinstance(value, dict) and set(value) == {"dtype"} and value["dtype"] in _DTYPES:
        return _DTYPES[value["dtype"]]
    if isinstance(value, dict) and set(value) == {"py_type"} and value["py_type"] in _PY_TYPES:
        return _PY_TYPES[value["py_type"]]
    if isinstance(value, dict) and set(value) == {"type", "fields"} and value["type"] in _TYPES and isinstance(value["fields"], dict):
        cls = _TYPES[value["type"]]
        known = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
        if not set(value["fields"]) <= known:
            raise ValueError(f"kernelop.serialize: {cls.__name__} has no fields {sorted(set(value['fields']) - known)}")
        try:
            return cls(**{k: _decode(v) for k, v in value["fields"].items()})
        except TypeError as exc:  # a field missing
            raise ValueError(f"kernelop.serialize: {cls.__name__} cannot be built from its fields ({exc})") from None
    raise ValueError(f"kernelop.serialize: not a plan value: {value!r:.200}")
