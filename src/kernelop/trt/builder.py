"""The descriptor, AOT implementation and JIT implementation of one op's plugin.

This module builds functions whose annotations TensorRT reads as objects, so it must not use
``from __future__ import annotations``.
"""
import warnings
from types import MappingProxyType
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..dsl.spec import Custom
from ..errors import Where
from ..plan.expr import INPUT
from ..pytorch.launcher import EagerLauncher
from .backend import Backend, PluginRequest
from .functions import attribute_annotation, make_function, scalar_value
from .lowering import ShapeExprAlgebra, UnsupportedShape, from_sympy, launch_params, lower_launch, lower_output_shapes
from .ptx import aot_arch, ptx_driver_problem
from .tracing import MetaTracer

TRT_DTYPE_NAMES: Mapping[torch.dtype, str] = MappingProxyType(
    {
        torch.float32: "FLOAT",
        torch.float16: "HALF",
        torch.bfloat16: "BF16",
        torch.int8: "INT8",
        torch.int32: "INT32",
        torch.int64: "INT64",
        torch.bool: "BOOL",
        torch.uint8: "UINT8",
        torch.float8_e4m3fn: "FP8",
    }
)
"""torch dtype -> name of the ``tensorrt.DataType`` member of the same element type."""
_TORCH_DTYPES = {name: dtype for dtype, name in TRT_DTYPE_NAMES.items()}


class PluginBuilder:
    """Builds the descriptor, aot_impl and JIT impl of one op from its plan and schema."""

    def __init__(self, where: Where, request: PluginRequest, backend: Backend):
        self.where = where
        self.request = request
        self.backend = backend
        self.trtp = backend.trtp
        args = list(request.schema.arguments)
        self.tensor_names = [a.name for a in args if str(a.type) == "Tensor"]
        self.attr_kinds = [(a.name, str(a.type)) for a in args if str(a.type) != "Tensor"]
        self.num_outputs = len(request.schema.returns)
        self.stem = "kernelop_" + request.op_name.replace("::", "_")
        self.attr_annotations = {name: attribute_annotation(kind, backend.attribute_style) for name, kind in self.attr_kinds}

    # descriptor ---------------------------------------------------------------------------

    def descriptor(self) -> Callable[..., Any]:
        trtp = self.trtp
        n = len(self.tensor_names)
        plan = self.request.plan
        describe = self._declared_outputs if plan is not None and plan.outputs is not None else self._traced_outputs()
        single = self.num_outputs == 1

        def body(args: tuple) -> Any:
            outputs = describe(args[:n], args[n:])
            return outputs[0] if single else tuple(outputs)

        annotations: Dict[str, Any] = {name: trtp.TensorDesc for name in self.tensor_names}
        annotations.update(self.attr_annotations)
        annotations["return"] = trtp.TensorDesc if single else Tuple[(trtp.TensorDesc,) * self.num_outputs]
        return make_function(f"{self.stem}_descriptor", self.tensor_names + [a for a, _ in self.attr_kinds], body, annotations)

    def _declared_outputs(self, inputs: Sequence[Any], attrs: Sequence[Any]) -> List[Any]:
        plan = self.request.plan
        assert plan is not None and plan.outputs is not None
        self._check_input_dtypes(inputs)
        ranks = tuple(len(d.shape_expr) for d in inputs)
        shapes = lower_output_shapes(plan, ranks, ShapeExprAlgebra(self.trtp, inputs))
        outputs = []
        for rule, shape in zip(plan.outputs, shapes):
            out = inputs[rule.dtype_source].like()  # dtype_from: the dtype of that input
            exprs = self.trtp.ShapeExprs(len(shape))  # replaced, never mutated: like() may share it
            for axis, size in enumerate(shape):
                exprs[axis] = size
            out.shape_expr = exprs
            outputs.append(out)
        return outputs

    def _traced_outputs(self) -> Callable[[Sequence[Any], Sequence[Any]], List[Any]]:
        tracer = MetaTracer(self.where, self.request.op_name)
        kinds = [kind for _, kind in self.attr_kinds]
        py_types = {"float": float, "int": int, "bool": bool}

        def describe(inputs: Sequence[Any], attrs: Sequence[Any]) -> List[Any]:
            self._check_input_dtypes(inputs)
            ranks = tuple(len(d.shape_expr) for d in inputs)
            dtypes = tuple(self._torch_dtype(d.dtype) for d in inputs)
            scalars = tuple(scalar_value(v, py_types[k]) for v, k in zip(attrs, kinds))
            traced, leaves = tracer.trace(ranks, dtypes, scalars)
            if len(traced) != self.num_outputs:
                self.where.fail(f"meta_fn returned {len(traced)} tensors; the schema declares {self.num_outputs}")
            algebra = ShapeExprAlgebra(self.trtp, inputs)
            leaf = lambda symbol: algebra.dim(INPUT, *leaves[symbol])  # noqa: E731
            outputs = []
            for k, out in enumerate(traced):
                try:
                    shape = tuple(from_sympy(size, leaf, algebra) for size in out.shape)
                except UnsupportedShape as exc:
                    self.where.fail(f"output {k} of meta_fn has a size TensorRT cannot express: {exc}")
                outputs.append(self.trtp.from_shape_expr(shape, self._trt_dtype(out.dtype)))
            return outputs

        return describe

    def _torch_dtype(self, trt_dtype: Any) -> torch.dtype:
        name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
        if name not in _TORCH_DTYPES:
            self.where.fail(f"TensorRT data type {name} has no torch equivalent kernelop knows")
        return _TORCH_DTYPES[name]

    def _trt_dtype(self, dtype: torch.dtype) -> Any:
        if dtype not in TRT_DTYPE_NAMES:
            self.where.fail(f"output dtype {dtype} has no TensorRT data type")
        return getattr(self.backend.data_type, TRT_DTYPE_NAMES[dtype])

    def _check_input_dtypes(self, inputs: Sequence[Any]) -> None:
        """Declared ``InputDecl.dtype``s and ``TypeParam``s, as the eager launch checks them (the
        JIT launch does not)."""
        plan = self.request.plan
        if plan is None:
            return
        problem = plan.dtype_problem(tuple(self._torch_dtype(d.dtype) for d in inputs))
        if problem is not None:
            self.where.fail(f"{problem} (as TensorRT gives it)", TypeError)

    # AOT ----------------------------------------------------------------------------------

    def aot_impl(self) -> Callable[..., Any]:
        trtp = self.trtp
        n = len(self.tensor_names)
        kernels = {None: self._kernel()}  # the registered instantiation; a template's others on first use
        launch = self._user_launch() or self._plan_launch()

        def body(args: tuple) -> Any:
            inputs, outputs, tactic = args[:n], args[-2], args[-1]
            key = self._type_key(inputs)
            kernel_name, ptx = kernels.get(key) or kernels.setdefault(key, self._kernel(key))
            params, extras = launch(inputs, outputs, tactic)
            return kernel_name, ptx, params, extras

        annotations: Dict[str, Any] = {name: trtp.TensorDesc for name in self.tensor_names}
        annotations.update(self.attr_annotations)
        annotations["outputs"] = Tuple[(trtp.TensorDesc,) * self.num_outputs]
        annotations["tactic"] = int
        annotations["return"] = Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymIntExprs]
        params = self.tensor_names + [a for a, _ in self.attr_kinds] + ["outputs", "tactic"]
        return make_function(f"{self.stem}_aot_impl", params, body, annotations)

    def _plan_launch(self) -> Callable[[Sequence[Any], Sequence[Any], int], Tuple[Any, Any]]:
        plan = self.request.plan
        assert plan is not None
        trtp = self.trtp

        def launch(inputs: Sequence[Any], outputs: Sequence[Any], tactic: int) -> Tuple[Any, Any]:
            in_ranks = tuple(len(d.shape_expr) for d in inputs)
            out_ranks = tuple(len(d.shape_expr) for d in outputs)
            lowered = lower_launch(plan, in_ranks, out_ranks, ShapeExprAlgebra(trtp, inputs, outputs))
            return launch_params(trtp, lowered)

        return launch

    def _user_launch(self) -> Optional[Callable[[Sequence[Any], Sequence[Any], int], Tuple[Any, Any]]]:
        request = self.request
        fn = request.aot_fn
        label = "aot_fn"
        if fn is None and request.plan is not None and isinstance(request.plan.geometry, Custom):
            fn, label = request.plan.geometry.fn, "geometry Custom.fn"
        if fn is None:
            return None
        trtp, where = self.trtp, self.where

        def launch(inputs: Sequence[Any], outputs: Sequence[Any], tactic: int) -> Tuple[Any, Any]:
            result = fn(list(inputs), outputs, tactic)
            params, extras = result if isinstance(result, tuple) and len(result) == 2 else (result, None)
            if not isinstance(params, trtp.KernelLaunchParams):
                where.fail(f"{label} must return (KernelLaunchParams, SymExprs or None) (got {type(params).__name__} first)", TypeError)
            if extras is None:
                extras = trtp.SymIntExprs(0)
            if not isinstance(extras, trtp.SymExprs):
                where.fail(f"{label} must return (KernelLaunchParams, SymExprs or None) (got {type(extras).__name__} second)", TypeError)
            return params, extras

        return launch

    def _type_key(self, inputs: Sequence[Any]) -> Optional[tuple]:
        """The template instantiation for these input descriptors; None (the registered one) for
        a kernel that is not a template, or before the dtypes are known."""
        plan = self.request.plan
        if plan is None or plan.template is None or not inputs:
            return None
        return plan.template.key_of(tuple(self._torch_dtype(d.dtype) for d in inputs))

    def _kernel(self, key: Optional[tuple] = None) -> Tuple[str, bytes]:
        """The kernel's entry name and PTX for the engine, warning when this driver cannot load the PTX."""
        request = self.request
        if request.ptx is not None:
            name, ptx = request.kernel_name, bytes(request.ptx)
        else:
            compiled = request.binaries.for_arch(aot_arch(request.binaries.arch_override, self.backend.gpu_arch), key)
            name, ptx = compiled.lowered_name, compiled.ptx
        problem = ptx_driver_problem(ptx, self.backend.driver_version)
        if problem is not None:
            warnings.warn(f"kernelop.{self.where.api}({self.where.op}): {problem}", RuntimeWarning, stacklevel=2)
        return name, ptx

    # JIT ----------------------------------------------------------------------------------

    def jit_impl(self) -> Callable[..., Any]:
        trtp = self.trtp
        request = self.request
        plan = request.plan
        assert plan is not None
        launcher = EagerLauncher(plan, request.binaries, request.meta_fn if plan.outputs is None else None)
        n = len(self.tensor_names)
        py_types = [{"float": float, "int": int, "bool": bool}[kind] for _, kind in self.attr_kinds]

        def body(args: tuple) -> None:
            tensors, attrs, outputs, stream = args[:n], args[n:-2], args[-2], args[-1]
            launcher.launch_into(
                current_device(),
                dtypes=tuple(self._torch_dtype(t.dtype) for t in tensors),
                inputs=[(t.data_ptr, tuple(t.shape)) for t in tensors],
                scalars=[scalar_value(v, t) for v, t in zip(attrs, py_types)],
                outputs=[(o.data_ptr, tuple(o.shape)) for o in outputs],
                stream=stream,
            )

        annotations: Dict[str, Any] = {name: trtp.Tensor for name in self.tensor_names}
        annotations.update(self.attr_annotations)
        annotations["outputs"] = Tuple[(trtp.Tensor,) * self.num_outputs]
        annotations["stream"] = int
        annotations["return"] = None
        params = self.tensor_names + [a for a, _ in self.attr_kinds] + ["outputs", "stream"]
        fn = make_function(f"{self.stem}_impl", params, body, annotations)
        fn.launcher = launcher  # type: ignore[attr-defined]
        return fn


def current_device() -> int:
    """The CUDA device TensorRT enqueues on (the calling thread's current device)."""
    return torch.cuda.current_device()
