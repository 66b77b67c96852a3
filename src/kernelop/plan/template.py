"""Template instantiation: which C++ name expression a call's input dtypes select.

A templated kernel is one op; each combination of dtypes for its ``TypeParam``s is a separate
instantiation (``bias_gelu<__half, 256>``), compiled on first use and cached by that name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch

from ..dsl.spec import TypeParam

CPP_TYPES: dict[torch.dtype, str] = {
    torch.float32: "float", torch.float64: "double", torch.float16: "__half", torch.bfloat16: "__nv_bfloat16",
    torch.int8: "signed char", torch.uint8: "unsigned char", torch.int16: "short", torch.int32: "int",
    torch.int64: "long long", torch.bool: "bool",
}
"""The C++ type a ``TypeParam`` stands for, per dtype (``__half``/``__nv_bfloat16`` need
``<cuda_fp16.h>``/``<cuda_bf16.h>`` in the source)."""

TemplateArg = Union[TypeParam, int, bool, str]


@dataclass(frozen=True)
class TemplatePlan:
    """``kernel_name<args...>``; ``type_params`` lists each distinct ``TypeParam`` once, in order,
    and ``type_tensors`` the tensor inputs (by tensor index) typed by each."""

    kernel_name: str
    args: tuple[TemplateArg, ...]
    type_params: tuple[TypeParam, ...]
    type_tensors: tuple[tuple[int, ...], ...]

    @property
    def default_key(self) -> tuple[torch.dtype, ...]:
        """The first dtype of each type parameter: the instantiation compiled at registration."""
        return tuple(p.dtypes[0] for p in self.type_params)

    def name_for(self, key: tuple[torch.dtype, ...]) -> str:
        """The name expression for one dtype per type parameter."""
        chosen = dict(zip(self.type_params, key))
        return f"{self.kernel_name}<{', '.join(_cpp(arg, chosen) for arg in self.args)}>"

    def key_of(self, dtypes: tuple[torch.dtype, ...]) -> tuple[torch.dtype, ...]:
        """The instantiation key from the dtypes of all tensor inputs."""
        return tuple(dtypes[tensors[0]] for tensors in self.type_tensors)


def _cpp(arg: TemplateArg, chosen: dict[TypeParam, torch.dtype]) -> str:
    if isinstance(arg, TypeParam):
        return CPP_TYPES[chosen[arg]]
    if isinstance(arg, bool):
        return "true" if arg else "false"
    return str(arg)
