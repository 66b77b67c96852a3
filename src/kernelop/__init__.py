"""kernelop: a hand-written CUDA C++ kernel as a PyTorch op (and TensorRT plugin) from one spec.

The public API mirrors ``torch_tensorrt.kernels``: ``import kernelop as ttk``.
"""
from .compiler.nvrtc import CompileError
from .cuda import driver
from .dsl.sizes import cdiv, dim, maximum, minimum, numel
from .dsl.spec import (
    ConverterPriority,
    Custom,
    DimSize,
    Divisible,
    Elementwise,
    Equal,
    InputDecl,
    InRange,
    KernelSpec,
    Launch,
    Numel,
    OutputDecl,
    ReduceDims,
    Reduction,
    SameAs,
    ScalarInput,
    SizeArg,
    TypeParam,
)
from .frontend.cuda_kernel import CudaKernel
from .frontend.cuda_kernel_op import cuda_kernel_op
from .frontend.ptx_op import ptx_op
from .frontend.registry import registered_ops
from .trt.status import TensorRTStatus, tensorrt_status

__all__ = [
    "CompileError",
    "ConverterPriority",
    "CudaKernel",
    "Custom",
    "DimSize",
    "Divisible",
    "Elementwise",
    "Equal",
    "InRange",
    "InputDecl",
    "KernelSpec",
    "Launch",
    "Numel",
    "OutputDecl",
    "ReduceDims",
    "Reduction",
    "SameAs",
    "ScalarInput",
    "SizeArg",
    "TensorRTStatus",
    "TypeParam",
    "cdiv",
    "cuda_kernel_op",
    "dim",
    "driver",
    "maximum",
    "minimum",
    "numel",
    "ptx_op",
    "registered_ops",
    "tensorrt_status",
]
