"""Plugin functions with the exact signatures TensorRT reads, and their scalar attributes.

This module builds functions whose annotations TensorRT reads as objects, so it must not use
``from __future__ import annotations``.
"""
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

_BODY = "_kernelop_body"


def make_function(name: str, params: Sequence[str], body: Callable[[tuple], Any], annotations: Mapping[str, Any]) -> Callable[..., Any]:
    """A function with exactly ``params`` (TensorRT reads names, order and annotations) calling ``body(args)``."""
    arglist = ", ".join(params)
    source = f"def {name}({arglist}):\n    return {_BODY}(({arglist},))\n"
    namespace: Dict[str, Any] = {_BODY: body}
    exec(compile(source, f"<kernelop {name}>", "exec"), namespace)  # noqa: S102 - names are checked identifiers
    fn = namespace[name]
    fn.__annotations__ = dict(annotations)
    return fn


def attribute_annotation(kind: str, style: str = "ndarray") -> Any:
    """A scalar argument's plugin attribute annotation, in one of two styles (see ``attribute_style``).

    ``"ndarray"``: ``NDArray[float64 | int64 | bool_]``, the form Torch-TensorRT's own generated
    plugins use; its converter passes such attributes as 0-d arrays of that dtype.
    ``"builtin"``: ``float``, ``int``, ``bool``; the converter passes Python values of the schema type.
    """
    if style == "builtin":
        return {"float": float, "int": int, "bool": bool}[kind]
    import numpy as np
    import numpy.typing as npt

    return {"float": npt.NDArray[np.float64], "int": npt.NDArray[np.int64], "bool": npt.NDArray[np.bool_]}[kind]


def attribute_style(converter_takes_array: Optional[Callable[[Any], bool]]) -> str:
    """``"ndarray"`` when the installed converter turns scalars for an ``NDArray`` annotation into arrays.

    ``converter_takes_array`` is the converter's own test of an annotation (None where it has none,
    as in converters that pass FX values through). NumPy 2.5 made ``NDArray`` a type alias that
    this test does not recognise; then TensorRT would get a Python float for an array attribute
    and refuse it, so the attributes are annotated with the builtin types instead.
    """
    if converter_takes_array is None:
        return "builtin"
    try:
        return "ndarray" if converter_takes_array(attribute_annotation("float", "ndarray")) else "builtin"
    except Exception:
        return "builtin"


def scalar_value(value: Any, py_type: type) -> Any:
    """A plugin attribute (a one-element array, a NumPy scalar or a Python scalar) as ``py_type``."""
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"kernelop: a scalar plugin attribute must have one element (got shape {value.shape})")
        value = value.reshape(()).item()
    elif isinstance(value, np.generic):
        value = value.item()
    return py_type(value)
