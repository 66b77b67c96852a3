"""A kernel's parameter list, as its source declares it and as its compiled PTX lays it out.

The PTX ``.entry`` gives every parameter's size, alignment and kind (integer or float) for any
kernel, templates and macros included. The source adds what PTX loses: names, pointer-ness,
``const`` on pointees, the pointee type and the signedness of integers. Anything the source
reader cannot parse with certainty (a template parameter, a macro, a typedef) is left unknown.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import torch

_ELEMENT_SIZES = {
    "float": 4, "double": 8, "half": 2, "__half": 2, "__nv_bfloat16": 2, "nv_bfloat16": 2,
    "__nv_fp8_e4m3": 1, "__nv_fp8_e5m2": 1,
    "int": 4, "unsigned": 4, "unsigned int": 4, "signed int": 4, "int32_t": 4, "uint32_t": 4,
    "long long": 8, "unsigned long long": 8, "long long int": 8, "int64_t": 8, "uint64_t": 8,
    "short": 2, "unsigned short": 2, "int16_t": 2, "uint16_t": 2,
    "char": 1, "signed char": 1, "unsigned char": 1, "int8_t": 1, "uint8_t": 1, "bool": 1,
    "half2": 2, "__half2": 2, "__nv_bfloat162": 2, "float2": 4, "float4": 4, "double2": 8,
    "int2": 4, "int4": 4,
}
"""Element size of a pointee type; a vector type (``__half2``, ``float4``) reads tensors of its
scalar element, so it counts as that element's size."""
_VALUE_CTYPES = {
    "int": "i32", "signed": "i32", "signed int": "i32", "int32_t": "i32",
    "unsigned": "u32", "unsigned int": "u32", "uint32_t": "u32", "uint": "u32",
    "long long": "i64", "long long int": "i64", "signed long long": "i64", "int64_t": "i64", "ptrdiff_t": "i64",
    "long": "i64", "long int": "i64", "intptr_t": "i64", "ssize_t": "i64",
    "unsigned long long": "u64", "unsigned long long int": "u64", "uint64_t": "u64", "size_t": "u64",
    "unsigned long": "u64", "uintptr_t": "u64",
    "float": "f32", "double": "f64", "bool": "bool",
}
"""C types of by-value parameters (64-bit ``long``, as on Linux) -> the plan's C type names."""
_QUALIFIERS = {"const", "volatile", "__restrict__", "__restrict", "restrict", "struct"}


@dataclass(frozen=True)
class SourceParam:
    """One parameter as the source declares it."""

    text: str  # the declaration, whitespace collapsed
    name: Optional[str]
    is_pointer: Optional[bool]  # None: a type the reader does not know (a typedef, a macro)
    pointee_const: bool
    pointee_size: Optional[int]  # pointers of a known element type
    ctype: Optional[str]  # by-value parameters of a known type (the plan's names: i32, u64, f32, ...)


@dataclass(frozen=True)
class PtxParam:
    """One ``.param`` of the kernel's PTX entry."""

    text: str  # e.g. ".u64" or ".align 8 .b8 [16]"
    size: int
    align: int
    kind: str  # "int", "float" or "bytes" (an aggregate)


@dataclass(frozen=True)
class KernelSignature:
    """Both readings of the parameter list; either may be None where it could not be read."""

    source: Optional[tuple[SourceParam, ...]]
    ptx: Optional[tuple[PtxParam, ...]]


def read_signature(source: str, kernel_name: str, ptx: bytes, lowered_name: str) -> KernelSignature:
    return KernelSignature(source_params(source, kernel_name), ptx_params(ptx, lowered_name))


def source_params(source: str, kernel_name: str) -> Optional[tuple[SourceParam, ...]]:
    """The kernel's parameters as declared, or None when its declaration cannot be found once.

    ``kernel_name`` may be a C++ name expression (``ns::k<float>``): the declaration of its last
    identifier is read.
    """
    base = re.match(r"(?:[A-Za-z_]\w*::)*([A-Za-z_]\w*)\s*(?:<.*>)?\s*\Z", kernel_name.strip())
    if base is None:
        return None
    text = _strip_comments(source)
    pattern = re.compile(r"__global__[^;{}]*?\b" + re.escape(base.group(1)) + r"\s*\(")
    matches = list(pattern.finditer(text))
    if len(matches) != 1:
        return None
    params = _parameter_list(text, matches[0].end())
    if params is None:
        return None
    return tuple(_source_param(p) for p in params)


def plain_kernel_names(source: str) -> tuple[str, ...]:
    """The names of the source's ``__global__`` functions that are not templates, as read
    without preprocessing (a name NVRTC then cannot lower is dropped by the compiler)."""
    return tuple(dict.fromkeys(name for name, template in _kernels(source) if not template))


def first_kernel_name(source: str) -> Optional[str]:
    """The source's first ``__global__`` function: the program's name, shared by every op of the source."""
    return next((name for name, _ in _kernels(source)), None)


def _kernels(source: str) -> list[tuple[str, bool]]:
    """(name, is a template) of each ``__global__`` function, in source order."""
    text = re.sub(r"\b__\w+__\s*\([^()]*\)", " ", _strip_comments(source))  # __launch_bounds__(256) & co.
    kernels = []
    for match in re.finditer(r"__global__[^;{}()]*?\b([A-Za-z_]\w*)\s*\(", text):
        before = text[max(text.rfind(";", 0, match.start()), text.rfind("}", 0, match.start())) + 1 : match.start()]
        kernels.append((match.group(1), "template" in before))
    return kernels


_PTX_TYPES = {"u": "int", "s": "int", "b": "int", "f": "float"}


def ptx_params(ptx: bytes, lowered_name: str) -> Optional[tuple[PtxParam, ...]]:
    """The ``.param`` list of the ``.entry`` named ``lowered_name``, or None if it is not there."""
    text = ptx.decode("utf-8", errors="replace")
    entry = re.search(r"\.entry\s+" + re.escape(lowered_name) + r"\s*\(([^)]*)\)", text)
    if entry is None:
        entry = re.search(r"\.entry\s+" + re.escape(lowered_name) + r"\s*(?=\{)", text)
        return () if entry is not None else None
    params = []
    for declaration in (d.strip() for d in entry.group(1).split(",")):
        if not declaration:
            continue
        parsed = _ptx_param(declaration)
        if parsed is None:
            return None
        params.append(parsed)
    return tuple(params)


def _ptx_param(declaration: str) -> Optional[PtxParam]:
    """``.param .u64 k_param_0``, ``.param .u64 .ptr .global .align 4 k_param_0`` or
    ``.param .align 8 .b8 k_param_1[16]``."""
    tokens = declaration.split()
    if not tokens or tokens[0] != ".param":
        return None
    align = None
    kind = width = None
    for i, token in enumerate(tokens[1:-1], start=1):
        if token == ".align" and i + 1 < len(tokens):
            if align is None and kind is None:
                align = int(tokens[i + 1])
        match = re.fullmatch(r"\.([usbf])(8|16|32|64)", token)
        if match and kind is None:
            kind, width = match.group(1), int(match.group(2)) // 8
    if kind is None or width is None:
        return None
    array = re.search(r"\[(\d+)\]\s*\Z", tokens[-1])
    text = " ".join(tokens[1:-1])
    if array:
        return PtxParam(text, int(array.group(1)), align or width, "bytes")
    return PtxParam(text, width, width, _PTX_TYPES[kind])


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


def _source_param(param: str) -> SourceParam:
    text = " ".join(param.split())
    if "=" in text:  # a default argument
        text = text.split("=")[0].strip()
    stars = text.count("*")
    words = re.findall(r"[A-Za-z_]\w*", text.replace("*", " * "))
    name = words[-1] if len(words) >= 2 and words[-1] not in _QUALIFIERS and not text.rstrip().endswith("*") else None
    array = re.search(r"\[\s*\]\s*\Z", text)
    if (stars == 1 and "[" not in text) or (stars == 0 and array):
        base = text.partition("*")[0] if stars else text[: array.start()]  # type: ignore[union-attr]
        base_words = [w for w in re.findall(r"[A-Za-z_]\w*", base) if w not in _QUALIFIERS]
        if array and base_words:
            base_words = base_words[:-1]  # the parameter's name
        return SourceParam(text, name, True, "const" in re.findall(r"\w+", base), _ELEMENT_SIZES.get(" ".join(base_words)), None)
    if stars > 1 or "&" in text or "[" in text:
        return SourceParam(text, name, stars > 0 or None, False, None, None)
    type_words = [w for w in (words[:-1] if name else words) if w not in _QUALIFIERS]
    ctype = _VALUE_CTYPES.get(" ".join(type_words))
    known = ctype is not None or " ".join(type_words) in _ELEMENT_SIZES
    return SourceParam(text, name, False if known else None, False, None, ctype)
