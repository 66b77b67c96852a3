"""What a plugin is built from and registered through: the TensorRT modules, the op, the result.
"""
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from ..plan.launch_plan import LaunchPlan
from .decision import PluginPath


@dataclass(frozen=True)
class Backend:
    """The TensorRT-facing modules a plugin registers through; ``installed.py`` builds the real one.

    ``trtp`` is ``tensorrt.plugin``; ``data_type`` is ``tensorrt.DataType``; ``registry`` is
    ``tensorrt.plugin._lib.QDP_REGISTRY``; ``generate_converter`` is Torch-TensorRT's
    ``generate_plugin_converter``; ``prevalidate(plugin_id, descriptor, impl, aot)`` runs
    TensorRT's own checks on the functions before anything is registered, where it can;
    ``attribute_style`` is how scalar attributes are annotated (``attribute_style()``).
    """

    trtp: Any
    data_type: Any
    registry: Mapping[str, Any]
    generate_converter: Callable[..., Any]
    aot_supported: bool
    gpu_arch: Optional[str] = None
    driver_version: Optional[int] = None
    prevalidate: Optional[Callable[[str, Callable[..., Any], Callable[..., Any], bool], None]] = None
    attribute_style: str = "ndarray"


@dataclass(frozen=True)
class PluginRequest:
    """What ``cuda_kernel_op`` / ``ptx_op`` know about an op that its plugin is derived from."""

    op_name: str
    schema: Any  # the parsed torch FunctionSchema
    path: PluginPath  # AOT or JIT, decided from the spec (``decision.plugin_path``)
    plan: Optional[LaunchPlan]  # None for ptx_op
    binaries: Any  # KernelBinaries, None for ptx_op
    ptx: Optional[bytes]  # ptx_op's PTX
    kernel_name: str
    meta_fn: Optional[Callable[..., Any]]
    aot_fn: Optional[Callable[..., Any]]
    supports_dynamic_shapes: bool
    requires_output_allocator: bool
    priority: Any
    capability_validator: Optional[Callable[..., Any]]
    require_aot: bool = False


@dataclass
class PreparedPlugin:
    """A plugin whose functions are built and checked; ``register`` hands them to TensorRT."""

    op_name: str
    backend: Backend
    path: PluginPath
    descriptor: Callable[..., Any]
    impl: Callable[..., Any]  # the aot_impl or the JIT impl
    converter_options: Mapping[str, Any]

    def register(self) -> None:
        """Descriptor, then the implementation, then the converter (which fixes AOT/JIT when generated)."""
        trtp = self.backend.trtp
        trtp.register(self.op_name)(self.descriptor)
        if self.path.aot:
            trtp.aot_impl(self.op_name)(self.impl)
        else:
            trtp.impl(self.op_name)(self.impl)
        self.backend.generate_converter(self.op_name, **self.converter_options)
