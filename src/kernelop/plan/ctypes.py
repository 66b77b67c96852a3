"""The C types of kernel parameters, as the plan names them, with their sizes and value ranges.

``x32``/``x64`` are integers whose signedness could not be read from the kernel's source (a
template or macro type): only values valid both signed and unsigned (``0..INT_MAX``) pass, so a
value is never reinterpreted.
"""
from __future__ import annotations

CTYPE_SIZES = {"ptr": 8, "i32": 4, "u32": 4, "x32": 4, "i64": 8, "u64": 8, "x64": 8, "f32": 4, "f64": 8, "bool": 1}
INT_RANGES = {
    "i32": (-(2**31), 2**31 - 1),
    "u32": (0, 2**32 - 1),
    "x32": (0, 2**31 - 1),
    "i64": (-(2**63), 2**63 - 1),
    "u64": (0, 2**64 - 1),
    "x64": (0, 2**63 - 1),
}
FLOAT_MAX = {"f32": 3.4028234663852886e38, "f64": float("inf")}
C_NAMES = {
    "ptr": "pointer", "i32": "int", "u32": "unsigned int", "x32": "integer of unknown sign", "i64": "long long",
    "u64": "unsigned long long", "x64": "integer of unknown sign", "f32": "float", "f64": "double", "bool": "bool",
}
SEED_SCALAR_CTYPES = {float: "f32", int: "i32", bool: "bool"}
"""A scalar input's C type until the kernel's own parameter says otherwise (the seed convention)."""
SEED_EXTRA_CTYPE = "i32"
