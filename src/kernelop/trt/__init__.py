"""The TensorRT side: status, the AOT/JIT decision, lowering, tracing, plugin building, the backend.

Everything here but ``installed`` imports without TensorRT: each piece that touches
``tensorrt.plugin`` takes the module as an argument (a ``Backend``), so tests drive the same code
with strict stand-ins."""
