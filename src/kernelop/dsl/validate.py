"""Registration-time checks: every authoring mistake becomes an error naming the field."""
from __future__ import annotations

import re
from typing import Mapping, Sequence

import torch

from ..errors import Where
from .spec import (
    Custom,
    DimSize,
    Elementwise,
    InputDecl,
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
from .validate_options import check_arch, check_flag, is_identifier
from .validate_sizes import (
    MAX_SHARED_MEM_BYTES,
    MAX_THREADS_PER_BLOCK,
    check_launch,
    check_output_shape,
    check_param_order,
    check_requirements,
    check_size_arg,
    is_int,
)

SCALAR_TYPES = (float, int, bool)


def _check_text(where: Where, field_name: str, text: str) -> None:
    """Text NVRTC reads whole: a NUL would end it early, a lone surrogate cannot be encoded."""
    if "\0" in text:
        where.fail(f"{field_name} contains a NUL character at offset {text.index(chr(0))}; NVRTC would stop reading there")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        where.fail(f"{field_name} is not valid Unicode text at offset {exc.start} ({exc.reason}: {text[exc.start]!r})")


def _check_name(where: Where, field_name: str, name: object, seen: dict[str, str]) -> None:
    if not isinstance(name, str):
        where.fail(f"{field_name} must be a str (got {type(name).__name__})", TypeError)
    if not name:
        where.fail(f"{field_name} is empty. Give it a Python identifier such as 'x'.")
    if not is_identifier(name):
        where.fail(f"{field_name} must be a Python identifier and not a keyword (got {name!r})")
    if name in seen:
        where.fail(f"{field_name} {name!r} duplicates {seen[name]}. Names must be unique.")
    seen[name] = field_name


def tensor_names(spec: KernelSpec) -> list[str]:
    return [d.name for d in spec.inputs or () if isinstance(d, InputDecl)]


def required_tensor_names(spec: KernelSpec) -> list[str]:
    """Tensor inputs that are never None: the only ones sizes and shapes may refer to."""
    return [d.name for d in spec.inputs or () if isinstance(d, InputDecl) and not d.optional]


def scalar_names(spec: KernelSpec) -> list[str]:
    return [d.name for d in spec.inputs or () if isinstance(d, ScalarInput)]


def sized_names(spec: KernelSpec) -> list[str]:
    """What launch sizes may refer to: required tensor inputs and declared outputs."""
    return required_tensor_names(spec) + [o.name for o in spec.outputs or () if isinstance(o, OutputDecl)]


def resolve_tensor(where: Where, spec: KernelSpec, field_name: str, ref: object) -> int:
    """Index into the tensor-only input list for an int position or an input name."""
    names = tensor_names(spec)
    if is_int(ref):
        if not 0 <= ref < len(names):
            where.fail(
                f"{field_name} is out of range (got {ref}; tensor inputs are {names}, "
                "scalar inputs are not counted). Prefer the input's name."
            )
        if names[ref] not in required_tensor_names(spec):
            where.fail(f"{field_name} refers to optional input {names[ref]!r}, which may be None; refer to a required tensor input")
        return ref
    if isinstance(ref, str):
        if ref in names and ref not in required_tensor_names(spec):
            where.fail(f"{field_name} names optional input {ref!r}, which may be None; refer to a required tensor input")
        if ref in names:
            return names.index(ref)
        if ref in scalar_names(spec):
            where.fail(f"{field_name} names scalar input {ref!r}; it must name a tensor input {names}")
        where.fail(f"{field_name} names unknown input {ref!r} (tensor inputs are {names})")
    where.fail(f"{field_name} must be a tensor input's position or name (got {ref!r})", TypeError)


def check_spec(
    where: Where,
    spec: object,
    *,
    has_meta_fn: bool,
    has_eager_fn: bool,
    has_aot_fn: bool,
) -> KernelSpec:
    """Every check that needs no compiler; the plan builder resolves references afterwards."""
    if not isinstance(spec, KernelSpec):
        where.fail(f"spec must be a KernelSpec (got {type(spec).__name__})", TypeError)
    check_source(where, spec)
    seen: dict[str, str] = {}
    _check_inputs(where, spec, seen, needs_inputs=not has_eager_fn)
    _check_outputs(where, spec, seen, has_meta_fn)
    _check_extras(where, spec, seen)
    _check_geometry(where, spec, has_eager_fn and has_aot_fn)
    check_requirements(where, spec.requires, required_tensor_names(spec))
    _check_template_args(where, spec)
    check_param_order(where, spec)
    return spec


def check_source(where: Where, spec: KernelSpec) -> None:
    """The fields that decide what NVRTC compiles: source, name, folders, standard, arch, options."""
    if not isinstance(spec.kernel_source, str) or not spec.kernel_source.strip():
        where.fail("kernel_source must be non-empty CUDA C++ source text", TypeError)
    if not isinstance(spec.kernel_name, str) or not spec.kernel_name.strip():
        where.fail(f"kernel_name must be a non-empty str (got {spec.kernel_name!r})", TypeError)
    for field_name in ("kernel_source", "kernel_name"):
        _check_text(where, field_name, getattr(spec, field_name))
    if spec.include_paths is not None and not (
        isinstance(spec.include_paths, (list, tuple)) and all(isinstance(p, str) for p in spec.include_paths)
    ):
        where.fail(f"include_paths must be a list of str (got {spec.include_paths!r})", TypeError)
    if not isinstance(spec.compile_std, str) or not re.match(r"c\+\+\d\d\Z", spec.compile_std):
        where.fail(f"compile_std must look like 'c++17' (got {spec.compile_std!r})")
    check_arch(where, "arch_override", spec.arch_override)
    _check_compile_options(where, spec)


_OWN_OPTIONS = re.compile(r"(--gpu-architecture|-arch|--std|-std)\b")
"""NVRTC options kernelop sets from the spec (arch_override, compile_std)."""


def _check_compile_options(where: Where, spec: KernelSpec) -> None:
    defines = spec.defines
    if defines is not None:
        if not isinstance(defines, Mapping):
            where.fail(f"defines must be a dict of macro names to values (got {type(defines).__name__})", TypeError)
        for name, value in defines.items():
            if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z_]\w*", name)):
                where.fail(f"defines has a key that is not a macro name (got {name!r})")
            if not (value is None or isinstance(value, str) or is_int(value)) or (isinstance(value, str) and "\n" in value):
                where.fail(f"defines[{name!r}] must be a str, an int or None (got {value!r})", TypeError)
    if isinstance(spec.options, (str, bytes)) or not isinstance(spec.options, Sequence):
        where.fail(f"options must be a list of NVRTC options (got {spec.options!r})", TypeError)
    for i, option in enumerate(spec.options):
        if not (isinstance(option, str) and option.startswith("-")):
            where.fail(f"options[{i}] must be an NVRTC option such as '--use_fast_math' (got {option!r})", TypeError)
        if _OWN_OPTIONS.match(option):
            where.fail(f"options[{i}] {option!r} is set by kernelop; use arch_override= or compile_std= instead")
    check_flag(where, "host_shims", spec.host_shims)


def _check_inputs(where: Where, spec: KernelSpec, seen: dict[str, str], needs_inputs: bool) -> None:
    if spec.inputs is None:
        if needs_inputs:
            where.fail("KernelSpec.inputs is missing; declare the inputs or pass eager_fn=")
        return
    if isinstance(spec.inputs, (str, bytes)) or not isinstance(spec.inputs, Sequence):
        where.fail(f"inputs must be a list of InputDecl/ScalarInput (got {type(spec.inputs).__name__})", TypeError)
    if not spec.inputs:
        where.fail("inputs is empty; a kernel needs at least one tensor input")
    for i, decl in enumerate(spec.inputs):
        field_name = f"inputs[{i}]"
        if not isinstance(decl, (InputDecl, ScalarInput)):
            where.fail(f"{field_name} must be an InputDecl or ScalarInput (got {decl!r})", TypeError)
        _check_name(where, f"{field_name}.name", decl.name, seen)
        if isinstance(decl, InputDecl):
            _check_input_decl(where, field_name, decl)
        if isinstance(decl, ScalarInput) and decl.py_type not in SCALAR_TYPES:
            where.fail(f"{field_name}.py_type must be float, int or bool (got {decl.py_type!r})")
    if not tensor_names(spec):
        where.fail(
            "inputs has no tensor input (InputDecl); shapes, devices and extras are derived from "
            f"tensor inputs (got only scalars {[d.name for d in spec.inputs]})"
        )
    if not required_tensor_names(spec):
        where.fail("every tensor input is optional; the device and shapes come from a tensor input that is never None")


def _check_input_decl(where: Where, field_name: str, decl: InputDecl) -> None:
    dtype = decl.dtype
    if isinstance(dtype, TypeParam):
        if not is_identifier(dtype.name):
            where.fail(f"{field_name}.dtype TypeParam name must be an identifier such as 'T' (got {dtype.name!r})")
        if not (isinstance(dtype.dtypes, tuple) and dtype.dtypes and all(isinstance(d, torch.dtype) for d in dtype.dtypes)):
            where.fail(f"{field_name}.dtype TypeParam {dtype.name!r}: dtypes must be a non-empty tuple of torch.dtype (got {dtype.dtypes!r})", TypeError)
    elif dtype is not None and not isinstance(dtype, torch.dtype):
        where.fail(f"{field_name}.dtype must be a torch.dtype, a TypeParam or None (got {dtype!r})", TypeError)
    check_flag(where, f"{field_name}.mutates", decl.mutates)
    check_flag(where, f"{field_name}.optional", decl.optional)
    if decl.mutates and decl.optional:
        where.fail(f"{field_name} {decl.name!r} is both mutates=True and optional=True; a written argument must be a tensor")


def _check_template_args(where: Where, spec: KernelSpec) -> None:
    """Template arguments, and the ``TypeParam``s of the inputs agreeing with them."""
    typed = {d.dtype for d in spec.inputs or () if isinstance(d, InputDecl) and isinstance(d.dtype, TypeParam)}
    args = spec.template_args
    if args is None:
        if typed:
            where.fail(f"inputs are typed by TypeParam {sorted(t.name for t in typed)} but template_args is missing; "
                       "pass template_args=(T, ...) in the kernel template's order")
        return
    if isinstance(args, (str, bytes)) or not isinstance(args, Sequence) or not args:
        where.fail(f"template_args must be a non-empty list of TypeParam, int, bool or str (got {args!r})", TypeError)
    if "<" in spec.kernel_name:
        where.fail(f"kernel_name must be the template's name alone when template_args is given (got {spec.kernel_name!r})")
    names: dict[str, TypeParam] = {}
    for t in [*typed, *(a for a in args if isinstance(a, TypeParam))]:
        if names.setdefault(t.name, t) != t:
            where.fail(f"two different TypeParams are named {t.name!r} (dtypes {names[t.name].dtypes} and {t.dtypes}); use one TypeParam object")
    for i, arg in enumerate(args):
        if isinstance(arg, TypeParam):
            if arg not in typed:
                where.fail(f"template_args[{i}] TypeParam {arg.name!r} types no required tensor input; "
                           f"declare InputDecl(name, dtype={arg.name}) for the inputs of that type")
        elif isinstance(arg, str):
            if not arg.strip() or any(c in arg for c in "\0\n;{}"):
                where.fail(f"template_args[{i}] must be C++ text for one template argument (got {arg!r})")
        elif not is_int(arg) and not isinstance(arg, bool):
            where.fail(f"template_args[{i}] must be a TypeParam, an int, a bool or C++ text (got {arg!r})", TypeError)
    for t in typed - set(args):
        where.fail(f"inputs are typed by TypeParam {t.name!r}, which template_args does not list")
    required = set(required_tensor_names(spec))
    for t in typed:
        if not any(d.dtype == t and d.name in required for d in spec.inputs or () if isinstance(d, InputDecl)):
            where.fail(f"TypeParam {t.name!r} types only optional inputs; a call could not choose its dtype")


def _check_outputs(where: Where, spec: KernelSpec, seen: dict[str, str], has_meta_fn: bool) -> None:
    if spec.outputs is None:
        if not has_meta_fn:
            where.fail("KernelSpec.outputs is missing; declare the outputs or pass meta_fn=")
        return
    if isinstance(spec.outputs, (str, bytes)) or not isinstance(spec.outputs, Sequence):
        where.fail(f"outputs must be a list of OutputDecl (got {type(spec.outputs).__name__})", TypeError)
    if not spec.outputs and not any(isinstance(d, InputDecl) and d.mutates for d in spec.inputs or ()):
        where.fail("outputs is empty and no input has mutates=True; a kernel needs an output or an argument it writes")
    if spec.inputs is None:
        where.fail("outputs are declared but inputs are not; output shapes derive from tensor inputs")
    names = tensor_names(spec)
    for i, out in enumerate(spec.outputs):
        field_name = f"outputs[{i}]"
        if not isinstance(out, OutputDecl):
            where.fail(f"{field_name} must be an OutputDecl (got {out!r})", TypeError)
        _check_name(where, f"{field_name}.name", out.name, seen)
        if not isinstance(out.shape, (SameAs, ReduceDims)):
            check_output_shape(where, f"{field_name}.shape", out.shape, names)
        else:
            resolve_tensor(where, spec, f"{field_name}.shape.input_idx", out.shape.input_idx)
        if isinstance(out.shape, ReduceDims):
            check_dims(where, f"{field_name}.shape.dims", out.shape.dims)
            check_flag(where, f"{field_name}.shape.keepdim", out.shape.keepdim)
        if out.dtype_from is not None and out.dtype_from not in names:
            where.fail(f"{field_name}.dtype_from names unknown tensor input {out.dtype_from!r} (tensor inputs are {names})")
        if out.init is not None and has_meta_fn:
            where.fail(f"{field_name}.init is given with meta_fn=, which allocates the outputs; initialise them in meta_fn instead")
        _check_init(where, spec, field_name, out)


def _check_init(where: Where, spec: KernelSpec, field_name: str, out: OutputDecl) -> None:
    """``init``: a number to fill with, or the name of an input the output starts as a copy of
    (then the output has that input's shape and dtype)."""
    init = out.init
    if init is None or (isinstance(init, (int, float)) and not isinstance(init, bool)):
        return
    if not isinstance(init, str):
        where.fail(f"{field_name}.init must be a number to fill with or an input's name to copy (got {init!r})", TypeError)
    resolve_tensor(where, spec, f"{field_name}.init", init)
    same_shape = isinstance(out.shape, SameAs) and out.shape.input_idx in (init, tensor_names(spec).index(init))
    same_dtype = (out.dtype_from or required_tensor_names(spec)[0]) == init
    if not (same_shape and same_dtype):
        where.fail(f"{field_name}.init copies input {init!r}, so the output must have its shape and dtype: "
                   f"declare shape=SameAs({init!r}) and dtype_from={init!r}")


def check_dims(where: Where, field_name: str, dims: object) -> tuple[int, ...]:
    if not isinstance(dims, (tuple, list)) or not all(is_int(d) for d in dims):
        where.fail(f"{field_name} must be a tuple of ints (got {dims!r})", TypeError)
    if not dims:
        where.fail(f"{field_name} is empty; name at least one axis to reduce")
    if len(set(dims)) != len(dims):
        where.fail(f"{field_name} repeats an axis (got {tuple(dims)})")
    return tuple(dims)


def _check_extras(where: Where, spec: KernelSpec, seen: dict[str, str]) -> None:
    if isinstance(spec.extras, (str, bytes)) or not isinstance(spec.extras, Sequence):
        where.fail(f"extras must be a list of Numel/DimSize/SizeArg (got {type(spec.extras).__name__})", TypeError)
    for i, extra in enumerate(spec.extras):
        field_name = f"extras[{i}]"
        if isinstance(extra, SizeArg):
            _check_name(where, f"{field_name}.name", extra.name, seen)
            check_size_arg(where, field_name, extra, sized_names(spec))
            continue
        if not isinstance(extra, (Numel, DimSize)):
            where.fail(f"{field_name} must be Numel, DimSize or SizeArg (got {extra!r})", TypeError)
        if not isinstance(extra.input_name, str):
            where.fail(f"{field_name} must name a tensor input by str (got {extra.input_name!r})", TypeError)
        if spec.inputs is None:
            where.fail(f"{field_name} refers to input {extra.input_name!r} but KernelSpec.inputs is missing")
        resolve_tensor(where, spec, f"{field_name}", extra.input_name)
        if isinstance(extra, DimSize) and not is_int(extra.dim):
            where.fail(f"{field_name}.dim must be an int (got {extra.dim!r})", TypeError)


def _check_geometry(where: Where, spec: KernelSpec, has_both_fns: bool) -> None:
    geometry = spec.geometry
    if geometry is None:
        if not has_both_fns:
            where.fail("KernelSpec.geometry is missing; declare it or pass both eager_fn= and aot_fn=")
        return
    if isinstance(geometry, Elementwise):
        _check_elementwise(where, geometry)
    elif isinstance(geometry, Reduction):
        check_dims(where, "geometry.reduce_dims", geometry.reduce_dims)
        _check_block_dim(where, "geometry.block_size", geometry.block_size)
        _check_shared_mem(where, geometry.shared_mem_bytes)
        if spec.inputs is not None:
            resolve_tensor(where, spec, "geometry.input_idx", geometry.input_idx)
    elif isinstance(geometry, Launch):
        check_launch(where, geometry, sized_names(spec))
    elif isinstance(geometry, Custom):
        if not callable(geometry.fn):
            where.fail(f"geometry.fn (Custom) must be callable (got {type(geometry.fn).__name__})")
    else:
        where.fail(f"geometry must be Elementwise, Reduction, Launch or Custom (got {geometry!r})", TypeError)


def _check_block_dim(where: Where, field_name: str, size: object) -> None:
    if not is_int(size):
        where.fail(f"{field_name} must be an int (got {size!r})", TypeError)
    if not 0 < size <= MAX_THREADS_PER_BLOCK:
        where.fail(f"{field_name} must be in 1..{MAX_THREADS_PER_BLOCK} (got {size})")


def _check_shared_mem(where: Where, size: object) -> None:
    if not is_int(size) or not 0 <= size <= MAX_SHARED_MEM_BYTES:
        where.fail(f"geometry.shared_mem_bytes must be an int in 0..{MAX_SHARED_MEM_BYTES} (got {size!r})")


def _check_elementwise(where: Where, geometry: Elementwise) -> None:
    block = geometry.block
    if not isinstance(block, tuple) or not 1 <= len(block) <= 3:
        where.fail(f"geometry.block must be a tuple of 1 to 3 ints (got {block!r})")
    for i, size in enumerate(block):
        _check_block_dim(where, f"geometry.block[{i}]", size)
    threads = 1
    for size in block:
        threads *= size
    if threads > MAX_THREADS_PER_BLOCK:
        where.fail(f"geometry.block has {threads} threads; CUDA allows at most {MAX_THREADS_PER_BLOCK} (got {block})")
    if geometry.layout not in ("flat", "nd"):
        where.fail(f"geometry.layout must be 'flat' or 'nd' (got {geometry.layout!r})")
    if geometry.layout == "flat" and len(block) != 1:
        where.fail(
            f"geometry.block must have one entry for layout='flat' (got {block}). "
            "Use layout='nd' for a multi-dimensional block."
        )
    _check_shared_mem(where, geometry.shared_mem_bytes)
