"""kernelop: a hand-written CUDA C++ kernel as a PyTorch op (and TensorRT plugin) from one spec.

The public API mirrors ``torch_tensorrt.kernels``: ``import kernelop as ttk``.
"""
from .nvrtc import CompileError
from .ops import cuda_kernel_op, ptx_op, registered_ops
from .trt_lowering import TensorRTStatus, tensorrt_status
from .spec import (
    ConverterPriority,
    Custom,
    DimSize,
    Elementwise,
    InputDecl,
    KernelSpec,
    Numel,
    OutputDecl,
    ReduceDims,
    Reduction,
    SameAs,
    ScalarInput,
)

__all__ = [
    "CompileError",
    "ConverterPriority",
    "Custom",
    "DimSize",
    "Elementwise",
    "InputDecl",
    "KernelSpec",
    "Numel",
    "OutputDecl",
    "ReduceDims",
    "Reduction",
    "SameAs",
    "ScalarInput",
    "TensorRTStatus",
    "cuda_kernel_op",
    "ptx_op",
    "registered_ops",
    "tensorrt_status",
]
