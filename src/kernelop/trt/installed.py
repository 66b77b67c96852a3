"""The real TensorRT behind kernelop's plugins: ``tensorrt.plugin`` and Torch-TensorRT's converter helper.

Imported only after ``tensorrt_status()`` found TensorRT and Torch-TensorRT usable. Everything
that decides what a plugin looks like lives in the other modules of this package (which need no
TensorRT and are tested with stand-ins); this module only gathers the modules, the GPU's architecture and the
driver version, and runs TensorRT's own signature checks before anything is registered.

No ``from __future__ import annotations`` here: TensorRT reads plugin annotations as objects.
"""
import importlib
import inspect
import threading
from types import SimpleNamespace
from typing import Any, Callable, Optional

import tensorrt
import tensorrt.plugin as trtp
import torch
from tensorrt.plugin._lib import QDP_REGISTRY
from torch_tensorrt.dynamo.conversion.plugins import generate_plugin_converter

from ..compiler.target import device_arch
from .backend import Backend
from .functions import attribute_style

_lock = threading.Lock()
_backend: Optional[Backend] = None


def backend() -> Backend:
    """The process's TensorRT backend, built on first use."""
    global _backend
    with _lock:
        if _backend is None:
            _backend = Backend(
                trtp=trtp,
                data_type=tensorrt.DataType,
                registry=QDP_REGISTRY,
                generate_converter=generate_plugin_converter,
                aot_supported=hasattr(trtp, "KernelLaunchParams") and hasattr(trtp, "aot_impl"),
                gpu_arch=_gpu_arch(),
                driver_version=_driver_version(),
                prevalidate=prevalidate,
                attribute_style=attribute_style(_converter_takes_array()),
            )
        return _backend


def _converter_takes_array() -> Optional[Callable[[Any], bool]]:
    """The converter's test of whether it passes an attribute as an array (None: it passes values through)."""
    try:
        converter = importlib.import_module("torch_tensorrt.dynamo.conversion.plugins._generate_plugin_converter")
    except ImportError:
        return None
    return getattr(converter, "_is_numpy_attr_annotation", None)


def _gpu_arch() -> Optional[str]:
    if not torch.cuda.is_available():
        return None
    return device_arch(torch.cuda.current_device())


def _driver_version() -> Optional[int]:
    """``cuDriverGetVersion`` (e.g. 12080), or None without a GPU."""
    if not torch.cuda.is_available():
        return None
    from cuda.bindings import driver

    err, version = driver.cuDriverGetVersion()
    return int(version) if err == driver.CUresult.CUDA_SUCCESS else None


def prevalidate(plugin_id: str, descriptor: Callable[..., Any], impl: Callable[..., Any], aot: bool) -> None:
    """Run TensorRT's own validators on the plugin functions without registering them.

    They are private (``tensorrt.plugin._validate``); a TensorRT whose validators have other
    names or arities is skipped here and checked by registration itself.
    """
    try:
        from tensorrt.plugin import _validate
    except ImportError:
        return
    parse_inputs = getattr(_validate, "_parse_register_inputs", None)
    parse_return = getattr(_validate, "_parse_register_return", None)
    check_impl = getattr(_validate, "_validate_aot_impl" if aot else "_validate_impl", None)
    if not (_arity(parse_inputs) == 2 and _arity(parse_return) == 1 and _arity(check_impl) == 2):
        return
    namespace, name = plugin_id.split("::")
    check_name = getattr(_validate, "_validate_name_and_namespace", None)
    if _arity(check_name) == 2:
        check_name(namespace, name)
    tensor_names, input_attrs = parse_inputs(descriptor, False)[:2]
    parse_return(descriptor)
    check_impl(impl, SimpleNamespace(input_tensor_names=tensor_names, input_attrs=input_attrs))


def _arity(fn: Optional[Callable[..., Any]]) -> int:
    if fn is None:
        return -1
    try:
        return len(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return -1
