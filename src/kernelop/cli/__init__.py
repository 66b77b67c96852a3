"""The ``kernelop`` command, the demo and its example kernels; nothing in the library imports them."""
