"""The CUDA driver: module loads per device, parameter packing and the native launch."""
