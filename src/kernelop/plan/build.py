"""KernelSpec -> LaunchPlan, before the kernel is compiled: names resolved, the parameter order fixed.

Parameter C types start as the seed convention's (``float``, ``int``, ``bool``, pointers);
``binding.bind_kernel`` replaces them with the compiled kernel's own.
"""
from __future__ import annotations

from typing import Any, Optional

from ..dsl.sizes import as_size, dim, numel
from ..dsl.spec import DimSize, InputDecl, KernelSpec, Numel, ReduceDims, Reduction, SameAs, ScalarInput, SizeArg, TypeParam
from ..dsl.validate import resolve_tensor
from ..errors import Where
from .ctypes import SEED_EXTRA_CTYPE, SEED_SCALAR_CTYPES
from .launch_plan import ArgSlot, ExtraRule, LaunchPlan, OutputRule, Param
from .template import CPP_TYPES, TemplatePlan


def build_plan(op_name: str, spec: KernelSpec, num_outputs: int) -> LaunchPlan:
    """Derive the plan from an already validated spec."""
    where = Where("cuda_kernel_op", op_name)
    params = params_of(spec)
    outputs = None
    if spec.outputs is not None:
        first_required = next(p.tensor_index for p in params if p.is_tensor and not p.optional)  # the default dtype source
        outputs = tuple(_output_rule(where, spec, i, out, first_required) for i, out in enumerate(spec.outputs))
        num_outputs = len(outputs)
    extras = tuple(_extra_rule(extra) for extra in spec.extras)
    seed_layout = (
        tuple(ArgSlot("tensor", p.tensor_index, "ptr") if p.is_tensor else ArgSlot("scalar", p.position, SEED_SCALAR_CTYPES[p.py_type]) for p in params)  # type: ignore[arg-type, index]
        + tuple(ArgSlot("extra", i, SEED_EXTRA_CTYPE) for i in range(len(extras)))
        + tuple(ArgSlot("output", i, "ptr") for i in range(num_outputs))
    )
    layout = seed_layout
    if spec.param_order is not None:  # validation made every name unique and every extra a SizeArg
        names = [p.name for p in params] + [rule.label for rule in extras] + [rule.name for rule in outputs or ()]
        layout = tuple(seed_layout[names.index(name)] for name in spec.param_order)
    reduced_input = None
    if isinstance(spec.geometry, Reduction):
        reduced_input = resolve_tensor(where, spec, "geometry.input_idx", spec.geometry.input_idx)
    return LaunchPlan(op_name, params, outputs, num_outputs, extras, spec.geometry, layout, reduced_input,
                      tuple(spec.requires), layout == seed_layout, template_plan(where, spec, params))


def template_plan(where: Where, spec: KernelSpec, params: tuple[Param, ...]) -> Optional[TemplatePlan]:
    """The kernel template's arguments, each ``TypeParam`` with the tensors it types."""
    if spec.template_args is None:
        return None
    type_params = tuple(dict.fromkeys(a for a in spec.template_args if isinstance(a, TypeParam)))
    for t in type_params:
        unknown = [d for d in t.dtypes if d not in CPP_TYPES]
        if unknown:
            where.fail(
                f"TypeParam {t.name!r} lists {unknown}, which have no C++ type; supported are {sorted(map(str, CPP_TYPES))}")
    typed = [p for p in params if p.is_tensor and isinstance(p.dtype, TypeParam)]
    required_first = sorted(typed, key=lambda p: p.optional)  # a group's first tensor decides its dtype
    tensors = tuple(tuple(p.tensor_index for p in required_first if p.dtype == t) for t in type_params)
    return TemplatePlan(spec.kernel_name.strip(), tuple(spec.template_args), type_params, tensors)  # type: ignore[arg-type]


def params_of(spec: KernelSpec) -> tuple[Param, ...]:
    """The op's parameters in declaration order (what the schema lists)."""
    params = []
    tensor_index = 0
    for position, decl in enumerate(spec.inputs or ()):
        if isinstance(decl, InputDecl):
            params.append(Param(decl.name, position, tensor_index, dtype=decl.dtype, mutates=decl.mutates, optional=decl.optional))
            tensor_index += 1
        else:
            assert isinstance(decl, ScalarInput)
            params.append(Param(decl.name, position, None, py_type=decl.py_type))
    return tuple(params)


def _extra_rule(extra: Any) -> ExtraRule:
    """The seed's Numel and DimSize as the size expressions they stand for."""
    if isinstance(extra, SizeArg):
        return ExtraRule(extra.name, as_size(extra.value))
    if isinstance(extra, Numel):
        return ExtraRule(f"numel({extra.input_name})", numel(extra.input_name))
    assert isinstance(extra, DimSize)
    return ExtraRule(f"{extra.input_name}.shape[{extra.dim}]", dim(extra.input_name, extra.dim))


def _output_rule(where: Where, spec: KernelSpec, i: int, out: Any, first_required: int) -> OutputRule:
    dtype_source = first_required if out.dtype_from is None else resolve_tensor(where, spec, f"outputs[{i}].dtype_from", out.dtype_from)
    copy_of = resolve_tensor(where, spec, f"outputs[{i}].init", out.init) if isinstance(out.init, str) else None
    init = None if copy_of is not None else out.init
    if not isinstance(out.shape, (SameAs, ReduceDims)):
        return OutputRule(out.name, None, None, False, dtype_source, tuple(as_size(s) for s in out.shape), init, copy_of)
    source = resolve_tensor(where, spec, f"outputs[{i}].shape.input_idx", out.shape.input_idx)
    if isinstance(out.shape, ReduceDims):
        return OutputRule(out.name, source, tuple(out.shape.dims), out.shape.keepdim, dtype_source, None, init, copy_of)
    return OutputRule(out.name, source, None, False, dtype_source, None, init, copy_of)
