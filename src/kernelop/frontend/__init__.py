"""The registration APIs, ``cuda_kernel_op`` and ``ptx_op``, and the registry of what they registered."""
