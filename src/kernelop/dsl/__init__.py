"""The declarative description of a kernel (the ``torch_tensorrt.kernels`` DSL) and its validation."""
