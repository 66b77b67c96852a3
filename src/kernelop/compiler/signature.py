"""Element sizes of a kernel's pointer parameters, read from its CUDA C++ source.

The driver reports only each parameter's size (8 bytes for every pointer), so the pointee type,
which decides whether a float64 tensor may be handed to a ``const float*``, comes from the source.
Anything the reader cannot parse with certainty (templates, macros, typedefs) is left unchecked.
"""
from __future__ import annotations

import re
from typing import Optional

import torch

_ELEMENT_SIZES = {
    "float": 4, "double": 8, "half": 2, "__half": 2, "__nv_bfloat16": 2, "nv_bfloat16": 2,
    "__nv_fp8_e4m3": 1, "__nv_fp8_e5m2": 1,
    "int": 4, "unsigned": 4, "unsigned int": 4, "signed int": 4, "int32_t": 4, "uint32_t": 4,
    "long long": 8, "unsigned long long": 8, "long long int": 8, "int64_t": 8, "uint64_t": 8,
    "short": 2, "unsigned short": 2, "int16_t": 2, "uint16_t": 2,
    "char": 1, "signed char": 1, "unsigned char": 1, "int8_t": 1, "uint8_t": 1, "bool": 1,
    "half2": 4, "__half2": 4, "__nv_bfloat162": 4, "float2": 8, "float4": 16, "double2": 16,
    "int2": 8, "int4": 16,
}
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict", "struct"}


def pointer_element_sizes(source: str, kernel_name: str) -> Optional[tuple[Optional[int], ...]]:
    """Per parameter: the pointee size for a pointer of a known type, else None.

    Returns None when the kernel's parameter list cannot be found unambiguously.
    """
    if not re.fullmatch(r"[A-Za-z_]\w*", kernel_name):
        return None
    text = _strip_comments(source)
    pattern = re.compile(r"__global__[^;{}]*?\b" + re.escape(kernel_name) + r"\s*\(")
    matches = list(pattern.finditer(text))
    if len(matches) != 1:
        return None
    params = _parameter_list(text, matches[0].end())
    if params is None:
        return None
    return tuple(_pointee_size(p) for p in params)


def dtypes_of_size(size: int) -> frozenset[torch.dtype]:
    """Every torch dtype whose elements are ``size`` bytes."""
    return frozenset(d for d in vars(torch).values() if isinstance(d, torch.dtype) and d.itemsize == size)


def _strip_comments(source: str) -> str:
    source = re.sub(r"/\*.*?\*/", " ", source, flags=re.S)
    return re.sub(r"//[^\n]*", " ", source)


def _parameter_list(text: str, start: int) -> Optional[list[str]]:
    depth, params, current = 1, [], []
    for ch in text[start:]:
        if ch in "([<":
            depth += 1
        elif ch in ")]>":
            depth -= 1
            if depth == 0:
                params.append("".join(current).strip())
                return [p for p in params if p and p != "void"]
        if ch == "," and depth == 1:
            params.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    return None


def _pointee_size(param: str) -> Optional[int]:
    if param.count("*") != 1:
        return None
    base = param.split("*")[0]
    words = [w for w in re.findall(r"[A-Za-z_]\w*", base) if w not in _QUALIFIERS]
    return _ELEMENT_SIZES.get(" ".join(words))
