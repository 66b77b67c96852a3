"""Kernel parameters laid out as the driver reads them: one code per parameter, C alignment.

A layout is a ``bytes`` of ``struct`` codes, one per kernel parameter: ``Q`` (a pointer or
uint64), ``q`` (int64), ``i`` (int32), ``I`` (uint32), ``f`` (float32), ``d`` (float64), ``?``
(bool). Each parameter is aligned to its own size, as in C. The
native launch packs values from this layout in C; ``ParameterBuffers`` packs them here, for the
cuda-bindings launch and for launches that first push a context.
"""
from __future__ import annotations

import ctypes
import struct
import threading
from typing import Any, Sequence

from ..plan.ctypes import CTYPE_SIZES

CODES = {"ptr": "Q", "i32": "i", "u32": "I", "x32": "i", "i64": "q", "u64": "Q", "x64": "q", "f32": "f", "f64": "d", "bool": "?"}
"""The plan's C types as struct codes (``x32``/``x64`` values are range-checked before packing)."""
SIZES = {code: CTYPE_SIZES[name] for name, code in CODES.items()}

PACK_ERRORS = (struct.error, OverflowError, TypeError)
"""What packing a value that does not fit its parameter raises, here or in the native launch."""


def layout_of(ctypes_names: Sequence[str]) -> bytes:
    """The layout for parameters of these C types (``ptr``, ``i32``, ``f64``, ...; see ``plan.ctypes``)."""
    return "".join(CODES[name] for name in ctypes_names).encode()


def offsets_of(layout: bytes) -> list[int]:
    """Each parameter's byte offset: the running size rounded up to the parameter's own size."""
    offsets, offset = [], 0
    for code in layout.decode():
        size = SIZES[code]
        offset += -offset % size
        offsets.append(offset)
        offset += size
    return offsets


def struct_format(layout: bytes) -> str:
    """The same layout as a little-endian ``struct`` format with explicit padding."""
    fmt, end = "<", 0
    for code, offset in zip(layout.decode(), offsets_of(layout)):
        fmt += "x" * (offset - end) + code
        end = offset + SIZES[code]
    return fmt


class ParameterBuffers:
    """Per layout and per thread: the packed values and the ``void*`` array the driver reads."""

    def __init__(self, layout: bytes):
        self.packer = struct.Struct(struct_format(layout))
        self.offsets = offsets_of(layout)
        self.local = threading.local()

    def pack(self, values: Sequence[Any]) -> int:
        """Pack ``values`` into this thread's buffer; returns the address of its pointer array."""
        buffer = getattr(self.local, "buffer", None)
        if buffer is None:
            data = ctypes.create_string_buffer(max(self.packer.size, 1))
            base = ctypes.addressof(data)
            pointers = (ctypes.c_void_p * max(len(self.offsets), 1))(*[base + o for o in self.offsets])
            buffer = self.local.buffer = (data, pointers, ctypes.addressof(pointers))
        self.packer.pack_into(buffer[0], 0, *values)
        return buffer[2]


_buffers: dict[bytes, ParameterBuffers] = {}
_lock = threading.Lock()


def buffers_for(layout: bytes) -> ParameterBuffers:
    """The process's buffers for one layout (shared by every op with that layout)."""
    buffers = _buffers.get(layout)
    if buffers is None:
        with _lock:
            buffers = _buffers.setdefault(layout, ParameterBuffers(layout))
    return buffers
