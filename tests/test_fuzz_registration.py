"""Property-based fuzz of registration (``ttk.cuda_kernel_op``).

Measured: property 1, 660 examples (22 parametrizations x 30; 840 registrations, since the
valid and random sites try 4 specs per example); property 2, 180 examples (up to 720 fake/meta
calls); 37-38 s for the file on a CPU (2 cores, no GPU), date 2026-11-25.

Hypothesis builds KernelSpecs from a small model (inputs, outputs, extras, geometry, requires,
param_order), the keyword arguments of ``cuda_kernel_op`` and an op name, and writes the CUDA
source from the same model, so that a spec without an injected defect has a kernel whose parameter
list matches. Each example injects zero, one or two *defects* (a malformed name, a broken
reference, a mismatching kernel, a schema that does not parse, ...), each with the exception the
README promises for it. The properties:

1. Registration succeeds exactly when no defect was injected; otherwise it raises ``ValueError``,
   ``TypeError`` or ``kernelop.CompileError`` (of a type one of the defects predicts) whose
   message names the op (when the op name is a str), and leaves nothing behind: not in
   ``ttk.registered_ops()``, not in torch (``conftest.assert_left_nothing``); an op name that
   plain ``torch.library`` already defined is refused and that op keeps no kernelop impl. A
   registered op has the derived schema, can be registered again with the same arguments (a
   no-op) and is never replaced by a different spec under its name. A few inputs have no
   predicted outcome (``Case.uncertain``: schemas with alias annotations or varargs, a
   mismatching kernel under a ``Custom`` geometry, which is not bound to the plan): for them only
   the exception types, the op name and the clean failure are checked. The test runs once per
   defect site, so each gets its share of examples.
2. For a registered declarative spec (no ``meta_fn``), the fake impl's output shapes, dtypes and
   devices, on fake CUDA tensors or meta tensors, equal a reference computed here from the rules
   of the README (``SameAs``, ``ReduceDims`` through ``torch.sum`` on meta tensors, sizes
   evaluated here, ``dtype_from``); inputs of a wrong declared dtype are refused with
   ``TypeError``, and inputs that break ``requires`` (or whose ranks the spec's axes do not fit)
   with ``ValueError``, both naming the op.

Compiled kernels go to the session's temporary ``KernelCache`` (``conftest.kernel_cache``), so a
source seen before skips NVRTC.

An output size that divides by zero or is negative must be refused with ``ValueError`` naming
the op, as the eager launch refuses it (README: "a ValueError otherwise"), never as a bare
``ZeroDivisionError`` or torch's ``RuntimeError`` ("Trying to create tensor with negative
dimension").
"""
from __future__ import annotations

import dataclasses
import inspect
import itertools
import math
import os
import traceback
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch._subclasses.fake_tensor import FakeTensorMode

import kernelop as ttk
from conftest import op_packet
from kernelop.dsl.sizes import AxisSize, BinarySize, ConstSize, NumelSize, Size, as_size

NAMESPACE = "kofuzz"
"""The torch.ops namespace of this file's ops (used by no other test)."""

EXAMPLES_PER_SITE = 30
CASES_PER_EXAMPLE = {None: 4, "random": 4}
EXAMPLES_FAKE = 180
CALLS_PER_OP = 4

_SETTINGS = dict(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,  # assert_left_nothing holds no state
    ],
)

_counter = itertools.count()

# -- names ---------------------------------------------------------------------------------------

PLAIN_NAMES = (
    "x", "w", "b", "a", "src", "idx", "val", "m", "n2", "alpha", "beta", "gain", "inp", "out1", "res",
    "lhs", "rhs", "q", "k2", "v", "mask", "bias", "z", "t3", "acc", "scale", "h", "cols", "rows", "eps",
)
"""Identifiers valid in Python, torch schemas and C++."""
TRICKY_VALID_NAMES = ("_x", "__y", "x_", "Tensor", "self", "out", "str", "SymInt", "Scalar", "stream", "outputs", "tactic", "int", "new", "float", "default")
"""Valid for kernelop (Python identifiers, not keywords) but odd: torch type names, TensorRT's
reserved argument names, C++ keywords. The kernel source never uses them verbatim (only the
``cxx_keyword`` defect does)."""
CXX_KEYWORDS = ("int", "new", "float", "default", "this", "bool", "char", "auto", "template", "typename", "union")
_CXX_RESERVED = set(CXX_KEYWORDS) | {"uint", "ushort", "for", "do", "if", "case", "long", "void", "true", "false", "goto", "enum", "try", "asm", "and", "or", "not", "xor"}
TRT_RESERVED = {"outputs", "stream", "tactic"}
INVALID_NAMES = (
    ("", ValueError), ("my-x", ValueError), ("1x", ValueError), ("class", ValueError), ("lambda", ValueError),
    ("None", ValueError), ("a b", ValueError), ("\u00f1x", ValueError), ("x.y", ValueError),
    (7, TypeError), (None, TypeError), (b"x", TypeError),
)

DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.int64)
_POINTEE = {4: "float", 2: "unsigned short", 8: "double"}
_POINTEE_OF = {torch.int32: "int", torch.int64: "long long"}
SCALAR_CTYPES = {float: ("float", "double"), int: ("int", "long long", "unsigned int"), bool: ("bool",)}
SCHEMA_TYPE = {float: "float", int: "int", bool: "bool"}
SCALAR_VALUE = {float: 1.5, int: 3, bool: True}
SCALAR_DEFAULT = {float: "0.5", int: "2", bool: "False"}
KERNEL_NAMES = ("fz_k", "fz_kernel", "fz_scale_rows", "fzOp")


def c_safe(name: object) -> bool:
    return isinstance(name, str) and name.isascii() and name.isidentifier() and name.islower() and name not in _CXX_RESERVED


# -- the model a case is built from ---------------------------------------------------------------


@dataclass
class Param:
    """One kernel parameter: ``klass`` is ptr, int, float or bool (what PTX can tell apart)."""

    name: Optional[str]  # the spec's name (None: an unnamed extra or a meta_fn output)
    ctype: str
    klass: str
    const: bool = False
    verbatim: bool = False  # the source uses the spec's name
    role: str = ""  # tensor, scalar, extra, output

    def text(self, position: int) -> str:
        cname = self.name if self.verbatim else f"P{position}_"
        if self.klass == "ptr":
            return f"{'const ' if self.const else ''}{self.ctype}* {cname}"
        return f"{self.ctype} {cname}"


@dataclass
class Case:
    op_kind: str
    spec: Any
    kwargs: dict
    defects: list = field(default_factory=list)  # (label, expected exception type or None)
    uncertain: list = field(default_factory=list)  # why the outcome is not predicted
    declarative: bool = False  # no meta_fn, outputs declared: property 2 applies
    expected_schema: Optional[str] = None  # the derived schema, where it is derived

    def expected_types(self) -> tuple:
        types = {t for _, t in self.defects}
        if None in types or self.uncertain:
            return (ValueError, TypeError, ttk.CompileError)
        return tuple(types)


class Defects:
    def __init__(self, sites: frozenset):
        self.sites = sites
        self.found: list = []

    def wants(self, site: str) -> bool:
        return site in self.sites

    def add(self, label: str, exc: Optional[type]) -> None:
        self.found.append((label, exc))


DEFECT_SITES = (
    "op_name", "input_name", "dup_name", "input_field", "no_tensor", "outputs", "output_shape", "dtype_from", "extras",
    "geometry", "requires", "param_order", "signature", "compile", "source_field", "schema", "meta_fn", "flags",
    "spec_type", "cxx_keyword",
)


def defect_sites(primary: Optional[str]):
    """``primary`` (None: no defect; "random": zero to two sites), sometimes with a second site."""
    if primary is None:
        return st.just(frozenset())
    if primary == "random":
        return st.integers(0, 2).flatmap(lambda k: st.frozensets(st.sampled_from(DEFECT_SITES), min_size=k, max_size=k))
    return st.one_of(st.just(frozenset({primary})), st.sampled_from(DEFECT_SITES).map(lambda s: frozenset({primary, s})))


# -- sizes ---------------------------------------------------------------------------------------


_SIZE_OPS = {
    "+": lambda a, b: as_size(a) + b, "-": lambda a, b: as_size(a) - b, "*": lambda a, b: as_size(a) * b,
    "//": lambda a, b: as_size(a) // b, "cdiv": ttk.cdiv, "min": ttk.minimum, "max": ttk.maximum,
}


def size_exprs(names: list, depth: int = 2):
    """Size expressions over ``names`` (``dim``, ``numel``, ints) with every operator, ``depth``
    operators deep at most."""
    leaf = st.one_of(
        st.integers(0, 8),
        st.builds(ttk.dim, st.sampled_from(names), st.integers(-3, 2)),
        st.builds(ttk.numel, st.sampled_from(names)),
    )
    if depth == 0:
        return leaf
    sub = size_exprs(names, depth - 1)
    return st.one_of(leaf, st.tuples(st.sampled_from(sorted(_SIZE_OPS)), sub, sub).map(lambda t: _SIZE_OPS[t[0]](t[1], t[2])))


def _all_outputs(outputs: Any) -> bool:
    """A non-empty list of OutputDecl (not already broken by another defect)."""
    return isinstance(outputs, list) and bool(outputs) and all(isinstance(o, ttk.OutputDecl) for o in outputs)


def _not_constant(size: Any) -> bool:
    """Not an int or a ConstSize (registration checks those against the block limits)."""
    return isinstance(size, Size) and not isinstance(size, ConstSize)


def _custom_launch(inputs, outputs, tactic):  # a Custom geometry's fn; never called here
    raise AssertionError("not called without TensorRT")


# -- the case strategy ---------------------------------------------------------------------------


@st.composite
def cases(draw, primary: Optional[str] = "random", allow_meta: bool = True) -> Case:
    """A case with defects at ``primary`` (see ``defect_sites``); ``primary=None``: none at all,
    and nothing whose outcome is not predicted."""
    allow_defects = primary is not None
    bad = Defects(draw(defect_sites(primary)))
    uncertain: list = []
    pool = list(draw(st.permutations(PLAIN_NAMES)))
    if draw(st.integers(0, 3)) == 0:
        tricky = draw(st.sampled_from(TRICKY_VALID_NAMES))
        pool[draw(st.integers(0, 5))] = tricky
    keyword_name = None
    if bad.wants("cxx_keyword"):
        keyword_name = draw(st.sampled_from(CXX_KEYWORDS))
        pool = [n for n in pool if n != keyword_name]
        pool[0] = keyword_name
    fresh = iter(pool)
    verbatim = draw(st.booleans())

    # inputs
    n_in = draw(st.integers(1, 4))
    inputs: list = []
    for _ in range(n_in):
        name = next(fresh)
        if draw(st.integers(0, 2)) == 0:
            py = draw(st.sampled_from((float, int, bool)))
            inputs.append(ttk.ScalarInput(name, py))
        else:
            inputs.append(ttk.InputDecl(name, draw(st.one_of(st.none(), st.sampled_from(DTYPES)))))
    if not any(isinstance(d, ttk.InputDecl) for d in inputs):
        inputs[0] = ttk.InputDecl(inputs[0].name)
    tensors = [d.name for d in inputs if isinstance(d, ttk.InputDecl)]
    scalars = [d.name for d in inputs if isinstance(d, ttk.ScalarInput)]

    # meta_fn and outputs
    meta = allow_meta and draw(st.integers(0, 3)) == 0
    declare_outputs = not meta or draw(st.booleans())
    use_param_order = declare_outputs and draw(st.integers(0, 3)) == 0
    outputs: Optional[list] = None
    n_meta_out = draw(st.integers(1, 2))
    if declare_outputs:
        outputs = []
        for _ in range(draw(st.integers(1, 3))):
            ref = draw(st.one_of(st.integers(0, len(tensors) - 1), st.sampled_from(tensors)))
            kind = draw(st.sampled_from(("same", "reduce", "sizes", "sizes", "edge")))
            if kind == "same":
                shape: Any = ttk.SameAs(ref)
            elif kind == "reduce":
                dims = draw(st.lists(st.integers(-3, 2), min_size=1, max_size=3, unique=True))
                shape = ttk.ReduceDims(ref, tuple(dims) if draw(st.booleans()) else dims, draw(st.booleans()))
            elif kind == "sizes":
                sizes = draw(st.lists(size_exprs(tensors), max_size=3))
                shape = tuple(sizes) if draw(st.booleans()) else sizes
            else:  # sizes that often divide by zero or go negative
                a, b = (ttk.dim(draw(st.sampled_from(tensors)), draw(st.integers(-2, 1))) for _ in range(2))
                shape = (a, draw(st.sampled_from((a - b, a // b, ttk.cdiv(a, b), a - draw(st.integers(0, 6))))))
            dtype_from = draw(st.one_of(st.none(), st.sampled_from(tensors)))
            outputs.append(ttk.OutputDecl(next(fresh), shape, dtype_from))
    out_names = [o.name for o in outputs or ()]
    sized = tensors + out_names

    # extras
    extras: list = []
    extra_ctypes: list = []
    for _ in range(draw(st.integers(0, 3))):
        kind = "sizearg" if use_param_order else draw(st.sampled_from(("numel", "dim", "sizearg")))
        if kind == "numel":
            extras.append(ttk.Numel(draw(st.sampled_from(tensors))))
        elif kind == "dim":
            axis = draw(st.integers(-3, 2))
            extras.append(ttk.DimSize(draw(st.sampled_from(tensors)), **({"dim": axis} if draw(st.booleans()) else {"axis": axis})))
        else:
            extras.append(ttk.SizeArg(next(fresh), draw(size_exprs(sized))))
        extra_ctypes.append(draw(st.sampled_from(("int", "int", "unsigned int", "long long", "size_t"))))

    # geometry
    gkind = draw(st.sampled_from(("flat", "nd", "reduction", "launch", "custom")))
    shared = draw(st.sampled_from((0, 0, 1024, 49152)))
    if gkind == "flat":
        geometry: Any = ttk.Elementwise(block=(draw(st.integers(1, 1024)),), layout="flat", shared_mem_bytes=shared)
    elif gkind == "nd":
        block = _within_1024(draw(st.lists(st.sampled_from((1, 2, 4, 8, 16, 32)), min_size=1, max_size=3)))
        geometry = ttk.Elementwise(block=block, layout="nd", shared_mem_bytes=shared)
    elif gkind == "reduction":
        rdims = draw(st.lists(st.integers(-3, 2), min_size=1, max_size=2, unique=True))
        rin = draw(st.one_of(st.integers(0, len(tensors) - 1), st.sampled_from(tensors)))
        geometry = ttk.Reduction(tuple(rdims), draw(st.integers(1, 1024)), rin, shared)
    elif gkind == "launch":
        grid = draw(st.lists(size_exprs(sized), min_size=1, max_size=3))
        block_consts = _within_1024([draw(st.sampled_from((1, 2, 32, 64, 256))) for _ in range(draw(st.integers(1, 3)))])
        block = [c if draw(st.integers(0, 3)) else draw(size_exprs(sized).filter(_not_constant)) for c in block_consts]
        shm = draw(st.one_of(st.sampled_from((0, 4096)), size_exprs(sized)))
        geometry = ttk.Launch(tuple(grid), tuple(block), shm)
    else:
        geometry = ttk.Custom(_custom_launch)

    # requires
    requires: list = []
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(("divisible", "inrange", "equal")))
        size = draw(size_exprs(tensors))
        if kind == "divisible":
            requires.append(ttk.Divisible(size, draw(st.integers(1, 4))))
        elif kind == "inrange":
            lo = draw(st.one_of(st.none(), st.integers(0, 4)))
            hi = draw(st.one_of(st.none(), st.integers(4, 64))) if lo is not None else draw(st.integers(0, 64))
            requires.append(ttk.InRange(size, min=lo, max=hi))
        else:
            requires.append(ttk.Equal(size, draw(size_exprs(tensors))))

    # the kernel's parameters, in the seed convention's order, then param_order's
    params: list = []
    for d in inputs:
        if isinstance(d, ttk.InputDecl):
            pointee = _POINTEE_OF.get(d.dtype) or _POINTEE[d.dtype.itemsize if d.dtype is not None else 4]
            params.append(Param(d.name, pointee, "ptr", const=True, role="tensor"))
        else:
            ctype = draw(st.sampled_from(SCALAR_CTYPES[d.py_type]))
            params.append(Param(d.name, ctype, {float: "float", int: "int", bool: "bool"}[d.py_type], role="scalar"))
    for e, ctype in zip(extras, extra_ctypes):
        params.append(Param(getattr(e, "name", None), ctype, "int", role="extra"))
    if outputs is not None:
        for o in outputs:
            params.append(Param(o.name, "float", "ptr", role="output"))
    else:
        params += [Param(None, "float", "ptr", role="output") for _ in range(n_meta_out)]
    seed_names = [p.name for p in params]
    param_order = None
    if use_param_order:
        param_order = list(draw(st.permutations(seed_names)))
        params = [params[seed_names.index(n)] for n in param_order]
    for p in params:
        p.verbatim = p.name is not None and ((verbatim and c_safe(p.name)) or p.name == keyword_name)
    if keyword_name is not None:
        bad.add(f"C++ keyword {keyword_name!r} as a kernel parameter name", ttk.CompileError)

    # signature defects: the kernel disagrees with the spec (checked only where kernelop launches
    # from the plan, i.e. not for a Custom geometry)
    if bad.wants("signature"):
        how = draw(st.sampled_from(("drop", "add", "const_out", "swap", "retype")))
        params = [dataclasses.replace(p) for p in params]
        if how == "const_out" and any(p.role == "output" for p in params):
            next(p for p in params if p.role == "output").const = True
        elif how == "swap" and _swappable(params):
            i, j = draw(st.sampled_from(_swappable(params)))
            params[i], params[j] = params[j], params[i]
        elif how == "retype":
            i = draw(st.integers(0, len(params) - 1))
            p = params[i]
            params[i] = dataclasses.replace(p, klass="int", ctype="int", const=False) if p.klass != "int" else dataclasses.replace(p, klass="float", ctype="float")
        elif how == "add":
            params.insert(draw(st.integers(0, len(params))), Param("fzextra", "int", "int", verbatim=True))
        else:
            how = "drop"
            del params[draw(st.integers(0, len(params) - 1))]
        if gkind == "custom":
            uncertain.append(f"signature {how} with a Custom geometry (not bound to the plan)")
        else:
            bad.add(f"kernel signature: {how}", ValueError)

    kernel_name = draw(st.sampled_from(KERNEL_NAMES))
    writes = [i for i, p in enumerate(params) if p.role == "output" and not p.const]
    body = draw(st.sampled_from(("", "trivial"))) if writes else ""
    if body:
        w = writes[0]
        target = params[w].name if params[w].verbatim else f"P{w}_"
        body = f"\n  if (blockIdx.x > 65535u) {target}[threadIdx.x] = 0;\n"
    header = draw(st.sampled_from(("", "#include <cstdint>\n", "// fuzz\n")))
    source = f'{header}extern "C" __global__ void {kernel_name}({", ".join(p.text(i) for i, p in enumerate(params))}) {{{body}}}\n'
    if bad.wants("compile"):
        how = draw(st.sampled_from(("syntax", "undeclared", "error", "name")))
        if how == "syntax":
            source += "this is not C++\n"
        elif how == "undeclared":
            source = source.replace("{" + body, "{ fz_undeclared_identifier = 1;" + body, 1)
        elif how == "error":
            source = "#error fuzzed compile error\n" + source
        else:
            kernel_name = "fz_absent"
        bad.add(f"compile: {how}", ttk.CompileError)

    # spec fields, then the defects that break them
    spec_inputs: Any = list(inputs)
    spec_outputs: Any = None if outputs is None else list(outputs)
    spec_extras: Any = list(extras)
    spec_requires: Any = list(requires)
    spec_order: Any = param_order

    if bad.wants("input_name"):
        i = draw(st.integers(0, len(spec_inputs) - 1))
        name, exc = draw(st.sampled_from(INVALID_NAMES))
        spec_inputs[i] = dataclasses.replace(spec_inputs[i], name=name)
        bad.add(f"inputs[{i}].name = {name!r}", exc)
    named = [("in", i) for i in range(len(spec_inputs))] + [("out", i) for i in range(len(spec_outputs or ()))]
    named += [("extra", i) for i, e in enumerate(spec_extras) if isinstance(e, ttk.SizeArg)]
    if bad.wants("dup_name") and len(named) >= 2:
        (ka, ia), (kb, ib) = sorted(draw(st.lists(st.sampled_from(named), min_size=2, max_size=2, unique=True)))
        holders = {"in": spec_inputs, "out": spec_outputs, "extra": spec_extras}
        holders[kb][ib] = dataclasses.replace(holders[kb][ib], name=holders[ka][ia].name)
        bad.add(f"{kb}[{ib}] duplicates the name of {ka}[{ia}]", ValueError)
    if bad.wants("input_field"):
        how = draw(st.sampled_from(("dtype", "py_type", "not_decl", "str", "empty", "none")))
        tensor_at = [i for i, d in enumerate(spec_inputs) if isinstance(d, ttk.InputDecl)]
        scalar_at = [i for i, d in enumerate(spec_inputs) if isinstance(d, ttk.ScalarInput)]
        if how == "dtype":
            i = draw(st.sampled_from(tensor_at))
            spec_inputs[i] = dataclasses.replace(spec_inputs[i], dtype=draw(st.sampled_from(("float32", 4, float))))
            bad.add("InputDecl.dtype not a torch.dtype", TypeError)
        elif how == "py_type" and scalar_at:
            i = draw(st.sampled_from(scalar_at))
            spec_inputs[i] = dataclasses.replace(spec_inputs[i], py_type=draw(st.sampled_from((str, complex, None, torch.Tensor))))
            bad.add("ScalarInput.py_type not float/int/bool", ValueError)
        elif how == "not_decl":
            spec_inputs.insert(draw(st.integers(0, len(spec_inputs))), draw(st.sampled_from(("x", ttk.SameAs(0), 3))))
            bad.add("inputs holds a non-declaration", TypeError)
        elif how == "str":
            spec_inputs = "x"
            bad.add("inputs is a str", TypeError)
        elif how == "empty":
            spec_inputs = []
            bad.add("inputs is empty", ValueError)
        else:
            spec_inputs = None
            bad.add("inputs is None", ValueError)
    if bad.wants("no_tensor") and isinstance(spec_inputs, list) and spec_inputs:
        spec_inputs = [ttk.ScalarInput(d.name, float) if isinstance(d, ttk.InputDecl) else d for d in spec_inputs]
        bad.add("no tensor input", ValueError)
    if bad.wants("outputs"):
        how = draw(st.sampled_from(("empty", "none", "not_decl", "single", "name")))
        if how == "none" and not meta:
            spec_outputs = None
            bad.add("outputs is None without meta_fn", ValueError)
        elif how == "not_decl" and spec_outputs:
            spec_outputs[0] = ttk.SameAs(0)
            bad.add("outputs holds a non-OutputDecl", TypeError)
        elif how == "single" and spec_outputs:
            spec_outputs = spec_outputs[0]
            bad.add("outputs is one OutputDecl, not a list", TypeError)
        elif how == "name" and spec_outputs:
            name, exc = draw(st.sampled_from(INVALID_NAMES))
            spec_outputs[0] = dataclasses.replace(spec_outputs[0], name=name)
            bad.add(f"outputs[0].name = {name!r}", exc)
        else:
            spec_outputs = []
            bad.add("outputs is empty", ValueError)
    if bad.wants("output_shape") and _all_outputs(spec_outputs):
        i = draw(st.integers(0, len(spec_outputs) - 1))
        shape, label, exc = draw(_bad_shapes(tensors, scalars, out_names))
        spec_outputs[i] = dataclasses.replace(spec_outputs[i], shape=shape)
        bad.add(f"outputs[{i}].shape: {label}", exc)
    if bad.wants("dtype_from") and _all_outputs(spec_outputs):
        i = draw(st.integers(0, len(spec_outputs) - 1))
        ref = draw(st.sampled_from(["nosuch", 0] + scalars + out_names))
        spec_outputs[i] = dataclasses.replace(spec_outputs[i], dtype_from=ref)
        bad.add(f"outputs[{i}].dtype_from = {ref!r}", ValueError)
    if bad.wants("extras"):
        extra, label, exc = draw(_bad_extras(tensors, scalars))
        if extra == "str":
            spec_extras = "n"
        else:
            spec_extras.insert(draw(st.integers(0, len(spec_extras))), extra)
        bad.add(f"extras: {label}", exc)
    if bad.wants("geometry"):
        geometry, label, exc = draw(_bad_geometries(tensors, sized))
        bad.add(f"geometry: {label}", exc)
    if bad.wants("requires"):
        rule, label, exc = draw(_bad_requires(tensors, scalars, out_names))
        if rule == "str":
            spec_requires = "x"
        else:
            spec_requires.insert(draw(st.integers(0, len(spec_requires))), rule)
        bad.add(f"requires: {label}", exc)
    if bad.wants("param_order"):
        how = draw(st.sampled_from(("drop", "repeat", "unknown", "str", "not_str", "unnamed_extra")))
        order = list(spec_order or [n for n in seed_names if n is not None])
        if outputs is None:
            spec_order = [n for n in seed_names if n is not None]
            bad.add("param_order without declared outputs", ValueError)
        elif how == "unnamed_extra" and any(not isinstance(e, ttk.SizeArg) for e in extras):
            spec_order = [n for n in seed_names if n is not None]
            bad.add("param_order with a Numel/DimSize extra", ValueError)
        elif how == "str":
            spec_order = "".join(str(n) for n in order)
            bad.add("param_order is a str", TypeError)
        elif how == "not_str":
            spec_order = order + [3]
            bad.add("param_order holds a non-str", TypeError)
        elif how == "repeat":
            spec_order = order + [order[0]]
            bad.add("param_order repeats a name", ValueError)
        elif how == "unknown":
            spec_order = order + ["nosuch"]
            bad.add("param_order names an unknown parameter", ValueError)
        else:
            spec_order = order[:-1]
            bad.add("param_order leaves a parameter out", ValueError)

    fields = dict(
        kernel_source=source, kernel_name=kernel_name, inputs=spec_inputs, outputs=spec_outputs, extras=spec_extras,
        geometry=geometry, requires=spec_requires, param_order=spec_order,
    )
    if draw(st.integers(0, 4)) == 0:
        fields["arch_override"] = draw(st.sampled_from(("sm_80", "sm_90")))
    if draw(st.integers(0, 4)) == 0:
        fields["defines"] = {"FZ_TILE": draw(st.integers(1, 64)), "FZ_FLAG": None}
    if draw(st.integers(0, 4)) == 0:
        fields["options"] = ["--use_fast_math"]
    if bad.wants("source_field"):
        key, value, label, exc = draw(_bad_source_fields(source))
        fields[key] = value
        bad.add(f"{key}: {label}", exc)

    # keyword arguments
    kwargs: dict = {}
    arg_types = [("Tensor" if isinstance(d, ttk.InputDecl) else SCHEMA_TYPE[d.py_type]) for d in inputs]
    n_returns = len(outputs) if outputs is not None else n_meta_out
    returns = "Tensor" if n_returns == 1 else "(" + ", ".join(["Tensor"] * n_returns) + ")"
    schema_names = [d.name for d in inputs]
    defaulted: list = []
    expected_schema = None
    if outputs is not None:
        expected_schema = f"({', '.join(f'{t} {n}' for t, n in zip(arg_types, schema_names))}) -> {returns}"
    schema_kind = draw(st.sampled_from(("none", "none", "none", "exact", "spaced", "alt_names", "defaults")))
    odd_schema = None
    if not bad.wants("schema") and allow_defects and draw(st.integers(0, 9)) == 0:
        odd_schema = draw(st.sampled_from(_ODD_SCHEMAS))
    explicit_schema = bad.wants("schema") or odd_schema is not None or schema_kind != "none"
    if meta:
        meta_names = [n if n in PLAIN_NAMES else f"a{i}" for i, n in enumerate(schema_names)]
        meta_hints = [(None if t == "Tensor" and draw(st.booleans()) else _HINTS[t]) for t in arg_types]
        meta_return: Any = torch.Tensor if n_returns == 1 else tuple.__class_getitem__((torch.Tensor,) * n_returns)
        hints_used = outputs is None and not explicit_schema
        if bad.wants("meta_fn"):
            how = draw(st.sampled_from(("not_callable", "hints", "no_return", "int_return", "arity")))
            if how == "not_callable":
                kwargs["meta_fn"] = draw(st.sampled_from((42, "meta")))
                bad.add("meta_fn is not callable", TypeError)
            elif hints_used and how == "no_return":
                meta_return = inspect.Signature.empty
                bad.add("meta_fn has no return annotation", ValueError)
            elif hints_used and how == "int_return":
                meta_return = int
                bad.add("meta_fn returns int", ValueError)
            elif hints_used and how == "arity":
                meta_names.append("extra_arg")
                meta_hints.append(None)
                bad.add("meta_fn has one parameter more", ValueError)
            elif hints_used and any(t != "Tensor" for t in arg_types):
                i = next(i for i, t in enumerate(arg_types) if t != "Tensor")
                meta_hints[i] = draw(st.sampled_from([None] + [h for t, h in _HINTS.items() if t != arg_types[i]]))
                bad.add("meta_fn hints a scalar with the wrong type", ValueError)
        kwargs.setdefault("meta_fn", _meta_fn(meta_names, meta_hints, meta_return, n_returns))
        if hints_used:
            schema_names = meta_names
    elif bad.wants("meta_fn"):
        kwargs["meta_fn"] = draw(st.sampled_from((42, "meta")))
        bad.add("meta_fn is not callable", TypeError)
    if bad.wants("schema"):
        text, label, exc = draw(_bad_schemas(arg_types, returns, outputs is not None))
        kwargs["schema"] = text
        bad.add(f"schema {text!r}: {label}", exc)
    elif odd_schema is not None:
        kwargs["schema"] = odd_schema(arg_types, schema_names, returns)
        uncertain.append(f"odd schema {kwargs['schema']!r}")
    elif schema_kind != "none":
        if schema_kind == "alt_names":
            schema_names = [f"s{i}" for i in range(len(arg_types))]
        args = [f"{t} {n}" for t, n in zip(arg_types, schema_names)]
        if schema_kind == "defaults":
            trailing = len(arg_types) - next((i for i in range(len(arg_types), 0, -1) if arg_types[i - 1] == "Tensor"), 0)
            k = draw(st.integers(0, trailing))
            for i in range(len(args) - k, len(args)):
                args[i] += "=" + SCALAR_DEFAULT[inputs[i].py_type]
                defaulted.append(i)
        text = f"({', '.join(args)}) -> {returns}"
        kwargs["schema"] = f"  {text.replace(', ', ' ,  ')}  \n" if schema_kind == "spaced" else text
    kwargs["supports_dynamic_shapes"] = draw(st.booleans())
    require_aot = draw(st.integers(0, 5)) == 0
    aot_problem = _aot_problem(inputs, arg_types, schema_names, defaulted, extra_ctypes, gkind, param_order, seed_names)
    if require_aot and aot_problem is not None:
        if allow_defects:
            bad.add(f"require_aot=True but {aot_problem}", ValueError)
        else:
            require_aot = False
    kwargs["require_aot"] = require_aot
    if bad.wants("flags"):
        key, value, exc = draw(st.sampled_from((
            ("supports_dynamic_shapes", "yes", TypeError), ("supports_dynamic_shapes", 1, TypeError),
            ("require_aot", 1, TypeError), ("require_aot", None, TypeError), ("cache", "/tmp/kernelop-cache", TypeError),
            ("requires_output_allocator", None, TypeError), ("priority", "HIGH", TypeError),
            ("capability_validator", 5, TypeError), ("eager_fn", 3, TypeError), ("aot_fn", "launch", TypeError),
        )))
        kwargs[key] = value
        bad.add(f"{key}={value!r}", exc)

    spec: Any = ttk.KernelSpec(**fields)
    if bad.wants("spec_type"):
        spec = draw(st.sampled_from((None, "spec", fields, dataclasses.astuple(spec))))
        bad.add(f"spec is a {type(spec).__name__}", TypeError)

    op_kind = "valid"
    if bad.wants("op_name"):
        op_kind = draw(st.sampled_from(sorted(_BAD_OP_NAMES)))
        bad.add(f"op name {op_kind}", _BAD_OP_NAMES[op_kind][1])

    return Case(op_kind, spec, kwargs, bad.found, uncertain, declarative=not meta and outputs is not None,
                expected_schema=expected_schema if "schema" not in kwargs else None)


def _within_1024(block: list) -> tuple:
    """``block`` with trailing entries set to 1 until it has at most 1024 threads."""
    block = list(block)
    for i in range(len(block) - 1, 0, -1):
        if math.prod(block) > 1024:
            block[i] = 1
    return tuple(block)


def _swappable(params: list) -> list:
    """Pairs of parameters whose exchange the registration must notice: different classes, an
    input pointer with an output pointer (const), or two names the source spells out."""
    pairs = []
    for i, j in itertools.combinations(range(len(params)), 2):
        a, b = params[i], params[j]
        if a.klass != b.klass or a.const != b.const or (a.verbatim and b.verbatim):
            pairs.append((i, j))
    return pairs


_HINTS = {"Tensor": torch.Tensor, "float": float, "int": int, "bool": bool}


def _meta_fn(names: list, hints: list, return_hint: Any, n_out: int):
    """A meta_fn with exactly this signature (names, hints, return), as a user would write it."""

    def meta(*args):
        t = next(a for a in args if isinstance(a, torch.Tensor))
        outs = tuple(t.new_empty(t.shape) for _ in range(n_out))
        return outs[0] if n_out == 1 else outs

    empty = inspect.Parameter.empty
    meta.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=empty if h is None else h) for n, h in zip(names, hints)],
        return_annotation=return_hint,
    )
    return meta


def _aot_problem(inputs, arg_types, schema_names, defaulted, extra_ctypes, gkind, param_order, seed_names) -> Optional[str]:
    """Why ``require_aot=True`` must refuse the spec (README, TensorRT: AOT or JIT / What
    TensorRT refuses), or None."""
    custom = gkind == "custom"
    if not custom and any(t != "Tensor" for t in arg_types):
        return "scalar inputs make the plugin JIT"
    if not custom and param_order is not None and list(param_order) != seed_names:
        return "param_order differs from (inputs, extras, outputs)"
    if not custom and any(c in ("long long", "size_t") for c in extra_ctypes):
        return "a 64-bit extra"
    first_scalar = next((i for i, t in enumerate(arg_types) if t != "Tensor"), None)
    if first_scalar is not None and "Tensor" in arg_types[first_scalar:]:
        return "a tensor input follows a scalar input"
    if any(n in TRT_RESERVED for n in schema_names):
        return "an argument is named outputs, stream or tactic"
    scalars = [i for i, t in enumerate(arg_types) if t != "Tensor"]
    if defaulted and len(defaulted) != len(scalars):
        return "only some scalar arguments have defaults"
    return None


# -- defect catalogues -----------------------------------------------------------------------------


@st.composite
def _bad_shapes(draw, tensors, scalars, out_names):
    ref = draw(st.sampled_from(tensors))
    options = [
        (ttk.SameAs(len(tensors)), "SameAs index past the tensor inputs", ValueError),
        (ttk.SameAs(-1), "SameAs(-1)", ValueError),
        (ttk.SameAs("nosuch"), "SameAs of an unknown name", ValueError),
        (ttk.SameAs(1.0), "SameAs(1.0)", TypeError),
        (ttk.SameAs(True), "SameAs(True)", TypeError),
        (ttk.ReduceDims(ref, ()), "ReduceDims with no dims", ValueError),
        (ttk.ReduceDims(ref, (1, 1)), "ReduceDims repeating an axis", ValueError),
        (ttk.ReduceDims(ref, (0.5,)), "ReduceDims with a float axis", TypeError),
        (ttk.ReduceDims(ref, 1), "ReduceDims dims not a tuple", TypeError),
        (ttk.ReduceDims(ref, (0,), keepdim=1), "ReduceDims keepdim=1", TypeError),
        ((ttk.dim("nosuch", 0),), "size of an unknown name", ValueError),
        ((2.0,), "a float size", TypeError),
        ("abc", "a str shape", TypeError),
        (5, "an int shape", TypeError),
        ((ttk.dim(ref, 1.5),), "a float axis", TypeError),
    ]
    if scalars:
        options += [
            (ttk.SameAs(scalars[0]), "SameAs of a scalar input", ValueError),
            ((ttk.numel(scalars[0]),), "numel of a scalar input", ValueError),
        ]
    if out_names:
        options.append(((ttk.dim(out_names[0], 0) + 1,), "size of an output", ValueError))
    return draw(st.sampled_from(options))


@st.composite
def _bad_extras(draw, tensors, scalars):
    t = draw(st.sampled_from(tensors))
    options = [
        (ttk.Numel("nosuch"), "Numel of an unknown input", ValueError),
        (ttk.Numel(3), "Numel(3)", TypeError),
        (ttk.DimSize(t, 1.5), "DimSize axis 1.5", TypeError),
        (ttk.DimSize(t, "0"), "DimSize axis '0'", TypeError),
        (ttk.SizeArg("fzn", 1.5), "SizeArg of a float", TypeError),
        (ttk.SizeArg("fzn", ttk.dim("nosuch", 0)), "SizeArg of an unknown name", ValueError),
        (ttk.SizeArg("n-1", 4), "SizeArg named 'n-1'", ValueError),
        (ttk.InputDecl("fzx"), "an InputDecl among extras", TypeError),
        ("str", "extras is a str", TypeError),
    ]
    if scalars:
        options += [
            (ttk.Numel(scalars[0]), "Numel of a scalar input", ValueError),
            (ttk.SizeArg("fzn", ttk.numel(scalars[0])), "SizeArg of a scalar input", ValueError),
        ]
    return draw(st.sampled_from(options))


@st.composite
def _bad_geometries(draw, tensors, sized):
    t = draw(st.sampled_from(tensors))
    return draw(st.sampled_from([
        (None, "missing", ValueError),
        ("flat", "a str", TypeError),
        (ttk.Elementwise(block=(2048,)), "2048 threads", ValueError),
        (ttk.Elementwise(block=(64, 32), layout="nd"), "64*32 threads", ValueError),
        (ttk.Elementwise(block=(0,)), "block 0", ValueError),
        (ttk.Elementwise(block=(32.0,)), "float block", TypeError),
        (ttk.Elementwise(block=(16, 16)), "flat with a 2-d block", ValueError),
        (ttk.Elementwise(block=(1, 1, 1, 1), layout="nd"), "4-d block", ValueError),
        (ttk.Elementwise(block=(), layout="nd"), "empty block", ValueError),
        (ttk.Elementwise(layout="grid"), "layout 'grid'", ValueError),
        (ttk.Elementwise(shared_mem_bytes=-1), "negative shared memory", ValueError),
        (ttk.Elementwise(shared_mem_bytes=2**32), "shared memory past 32 bits", ValueError),
        (ttk.Reduction(()), "no reduce_dims", ValueError),
        (ttk.Reduction((0, 0)), "repeated reduce_dims", ValueError),
        (ttk.Reduction((0,), block_size=0), "block_size 0", ValueError),
        (ttk.Reduction((0,), block_size=2048), "block_size 2048", ValueError),
        (ttk.Reduction((0,), input_idx=len(tensors)), "input_idx out of range", ValueError),
        (ttk.Reduction((0,), input_idx="nosuch"), "input_idx unknown", ValueError),
        (ttk.Launch((), (32,)), "empty grid", TypeError),
        (ttk.Launch((1, 1, 1, 1), (32,)), "4-d grid", TypeError),
        (ttk.Launch((1,), (0,)), "block 0", ValueError),
        (ttk.Launch((-1,), (32,)), "grid -1", ValueError),
        (ttk.Launch((1,), (64, 32)), "64*32 threads", ValueError),
        (ttk.Launch((1,), (32,), -1), "negative shared memory", ValueError),
        (ttk.Launch((ttk.dim("nosuch", 0),), (32,)), "grid of an unknown name", ValueError),
        (ttk.Launch((1.5,), (32,)), "float grid", TypeError),
        (ttk.Launch((ttk.numel(t),), (32,), 2.0), "float shared memory", TypeError),
        (ttk.Custom(42), "Custom(42)", ValueError),
    ]))


@st.composite
def _bad_requires(draw, tensors, scalars, out_names):
    s = ttk.dim(draw(st.sampled_from(tensors)), 0)
    options = [
        (ttk.Divisible(s, 0), "Divisible by 0", ValueError),
        (ttk.Divisible(s, 2.0), "Divisible by 2.0", ValueError),
        (ttk.Divisible(1.5, 2), "Divisible(1.5)", TypeError),
        (ttk.InRange(s), "InRange without bounds", ValueError),
        (ttk.InRange(s, 5, 2), "InRange min > max", ValueError),
        (ttk.InRange(s, min=1.5), "InRange min 1.5", TypeError),
        (ttk.Equal(s, ttk.dim("nosuch", 0)), "Equal to an unknown name", ValueError),
        (3, "a non-rule", TypeError),
        ("str", "requires is a str", TypeError),
    ]
    if out_names:
        options.append((ttk.Equal(ttk.dim(out_names[0], 0), s), "Equal over an output", ValueError))
    if scalars:
        options.append((ttk.Divisible(ttk.numel(scalars[0]), 2), "Divisible over a scalar input", ValueError))
    return draw(st.sampled_from(options))


@st.composite
def _bad_source_fields(draw, source):
    return draw(st.sampled_from([
        ("kernel_source", "", "empty", TypeError),
        ("kernel_source", "  \n", "blank", TypeError),
        ("kernel_source", None, "None", TypeError),
        ("kernel_source", source.encode(), "bytes", TypeError),
        ("kernel_source", source + "\0", "a NUL", ValueError),
        ("kernel_source", source + "// \ud800\n", "a lone surrogate", ValueError),
        ("kernel_name", "", "empty", TypeError),
        ("kernel_name", 5, "an int", TypeError),
        ("kernel_name", "fz_k\0", "a NUL", ValueError),
        ("compile_std", "c++1z", "not c++NN", ValueError),
        ("arch_override", "sm80", "not sm_NN", ValueError),
        ("arch_override", 80, "an int", ValueError),
        ("arch_override", "sm_35", "an arch NVRTC no longer knows", ttk.CompileError),
        ("arch_override", "sm_999", "an arch NVRTC does not know", ttk.CompileError),
        ("compile_std", "c++98", "a standard NVRTC does not take", ttk.CompileError),
        ("options", ["--not-an-nvrtc-option"], "an option NVRTC rejects", ttk.CompileError),
        ("options", ["--maxrregcount=abc"], "an option value NVRTC rejects", ttk.CompileError),
        ("options", ["-std=c++14"], "sets the standard", ValueError),
        ("options", ["--gpu-architecture=sm_90"], "sets the arch", ValueError),
        ("options", ["fast"], "not an option", TypeError),
        ("options", "--use_fast_math", "a str", TypeError),
        ("defines", {"1A": 1}, "bad macro name", ValueError),
        ("defines", {"A": 1.5}, "float value", TypeError),
        ("defines", {"A": "1\n2"}, "newline in value", TypeError),
        ("defines", "A", "a str", TypeError),
        ("include_paths", "/tmp", "a str", TypeError),
        ("host_shims", "yes", "a str", TypeError),
    ]))


@st.composite
def _bad_schemas(draw, arg_types, returns, outputs_declared):
    args = ", ".join(f"{t} p{i}" for i, t in enumerate(arg_types))
    wrong = list(arg_types)
    wrong[0] = "float" if wrong[0] == "Tensor" else "Tensor"
    options = [
        (f"Tensor p0 -> {returns}", "no parentheses", ValueError),
        (f"{NAMESPACE}::x({args}) -> {returns}", "with an op name", ValueError),
        (f"({args} -> {returns}", "unbalanced", ValueError),
        ("", "empty", ValueError),
        (f"({args}) => {returns}", "bad arrow", ValueError),
        (f"({', '.join(f'{t} p{i}' for i, t in enumerate(wrong))}) -> {returns}", "a wrong argument type", ValueError),
        (f"({args}, Tensor extra) -> {returns}", "an argument too many", ValueError),
        (f"(*, {args}) -> {returns}", "keyword-only arguments", ValueError),
        (f"({args}) -> ()", "returns nothing", ValueError),
        (f"({args}) -> int", "returns an int", ValueError),
        (f"({args}) -> Tensor[]", "returns a list", ValueError),
        (5, "an int", TypeError),
        (f"({args}) -> {returns}".encode(), "bytes", TypeError),
    ]
    if len(arg_types) > 1:
        options.append((f"({', '.join(f'{t} p{i}' for i, t in enumerate(arg_types[:-1]))}) -> {returns}", "an argument too few", ValueError))
    if outputs_declared:
        options.append((f"({args}) -> ({', '.join(['Tensor'] * (returns.count('Tensor') + 1))})", "a return too many", ValueError))
    return draw(st.sampled_from(options))


_ODD_SCHEMAS = (
    lambda types, names, returns: f"({', '.join(f'{t} {n}' for t, n in zip(types, names))}) -> {returns.replace('Tensor', 'Tensor(a)', 1)}",
    lambda types, names, returns: f"({', '.join(f'{t} {n}' for t, n in zip(types, names))}, ...) -> {returns}",
    lambda types, names, returns: f"({', '.join(f'{t}(a) {n}' if t == 'Tensor' else f'{t} {n}' for t, n in zip(types, names))}) -> {returns}",
    lambda types, names, returns: f"({', '.join(f'{t} {n}=None' for t, n in zip(types, names))}) -> {returns}",
)
"""Schemas torch parses whose meaning for a kernel is doubtful (aliases, varargs, None defaults):
only property 1's weak form is checked for them."""

_BAD_OP_NAMES = {
    "no_separator": (lambda n: f"{NAMESPACE}_op{n}", ValueError),
    "three_parts": (lambda n: f"{NAMESPACE}::a::op{n}", ValueError),
    "single_colon": (lambda n: f"{NAMESPACE}:op{n}", ValueError),
    "reserved_aten": (lambda n: f"aten::fz{n}", ValueError),
    "reserved_prims": (lambda n: f"prims::fz{n}", ValueError),
    "reserved_trt": (lambda n: f"tensorrt::fz{n}", ValueError),
    "reserved_std": (lambda n: f"std::fz{n}", ValueError),
    "underscore_ns": (lambda n: f"_{NAMESPACE}::op{n}", ValueError),
    "underscore_name": (lambda n: f"{NAMESPACE}::_op{n}", ValueError),
    "dunder_name": (lambda n: f"{NAMESPACE}::__doc__", ValueError),
    "keyword_name": (lambda n: f"{NAMESPACE}::lambda", ValueError),
    "dash": (lambda n: f"{NAMESPACE}::op-{n}", ValueError),
    "digit_first": (lambda n: f"{NAMESPACE}::{n}op", ValueError),
    "empty_name": (lambda n: f"{NAMESPACE}::", ValueError),
    "empty_ns": (lambda n: f"::op{n}", ValueError),
    "space": (lambda n: f"{NAMESPACE}:: op{n}", ValueError),
    "newline": (lambda n: f"{NAMESPACE}::op{n}\n", ValueError),
    "unicode": (lambda n: f"{NAMESPACE}::\u00f1op{n}", ValueError),
    "foreign": (lambda n: f"{NAMESPACE}::foreign{os.getpid()}_{n}", ValueError),  # defined by torch.library first
    "int": (lambda n: n, TypeError),
    "none": (lambda n: None, TypeError),
    "bytes": (lambda n: f"{NAMESPACE}::op{n}".encode(), TypeError),
    "tuple": (lambda n: (NAMESPACE, f"op{n}"), TypeError),
}


def make_op_name(kind: str) -> Any:
    n = next(_counter)
    if kind == "valid":
        return f"{NAMESPACE}::op{os.getpid()}_{n}"
    return _BAD_OP_NAMES[kind][0](n)


# -- property 1: registration ------------------------------------------------------------------


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


_FOREIGN_LIBRARIES: list = []
"""torch.library fragments defining ops outside kernelop (kept alive for the session)."""
FOREIGN_SCHEMA = "(Tensor self, int fz) -> Tensor"


def _define_foreign(op_name: str) -> None:
    """Define ``op_name`` with plain torch.library (schema only), as other code could have."""
    namespace, short = op_name.split("::")
    library = torch.library.Library(namespace, "FRAGMENT")
    library.define(short + FOREIGN_SCHEMA)
    _FOREIGN_LIBRARIES.append(library)


def _check_left_nothing(op_name: Any, before: dict, assert_left_nothing) -> None:
    assert set(ttk.registered_ops()) == set(before), f"registered_ops() changed: {set(ttk.registered_ops()) ^ set(before)}"
    if isinstance(op_name, str) and "::foreign" in op_name:  # the foreign op is kept, without kernelop's impls
        assert str(torch._C._get_schema(op_name, "")) == op_name + FOREIGN_SCHEMA
        for key in ("CUDA", "CPU", "Meta"):
            assert not torch._C._dispatch_has_kernel_for_dispatch_key(op_name, key), f"{op_name} got a {key} kernel"
        return
    if isinstance(op_name, str):
        assert op_name not in ttk.registered_ops()
        parts = op_name.split("::")
        # (torch._C._dispatch_has_kernel_for_dispatch_key, which assert_left_nothing asks, raises
        # UnicodeDecodeError for a non-ASCII name, its error message cut inside a UTF-8 character;
        # such names are checked without it)
        if len(parts) == 2 and all(p.isidentifier() and p.isascii() for p in parts) and not parts[1].startswith("__"):
            assert_left_nothing(op_name)
        elif len(parts) == 2 and all(p.isidentifier() for p in parts) and not parts[1].startswith("__"):
            assert not hasattr(getattr(torch.ops, parts[0]), parts[1]), f"torch.ops.{parts[0]}.{parts[1]} exists"


@pytest.mark.parametrize("primary", [None, "random", *DEFECT_SITES])
@settings(max_examples=EXAMPLES_PER_SITE, **_SETTINGS)
@given(data=st.data())
def test_registration_succeeds_or_fails_cleanly(primary, data, kernel_cache, assert_left_nothing):
    """Property 1, per defect site (``None``: valid specs; ``random``: zero to two sites)."""
    for _ in range(CASES_PER_EXAMPLE.get(primary, 1)):
        check_registration(data.draw(cases(primary), label="case"), kernel_cache, assert_left_nothing)


def check_registration(case: Case, kernel_cache, assert_left_nothing) -> None:
    op_name = make_op_name(case.op_kind)
    if case.op_kind == "foreign":
        _define_foreign(op_name)
    kwargs = {"cache": kernel_cache, **case.kwargs}
    before = ttk.registered_ops()
    try:
        ttk.cuda_kernel_op(op_name, case.spec, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the property is about which exceptions come out
        event(f"refused: {type(exc).__name__}")
        assert isinstance(exc, (ValueError, TypeError, ttk.CompileError)), f"unexpected exception type:\n{_describe(exc)}"
        if isinstance(op_name, str):
            assert op_name in str(exc), f"the message does not name the op {op_name!r}:\n{_describe(exc)}"
        if case.defects:
            assert isinstance(exc, case.expected_types()), (
                f"defects {case.defects} predict {case.expected_types()}, got:\n{_describe(exc)}"
            )
        else:
            assert case.uncertain, f"a spec without defects was refused:\n{_describe(exc)}"
        _check_left_nothing(op_name, before, assert_left_nothing)
        return

    event("registered")
    assert not case.defects, f"registration accepted defects {case.defects}"
    registration = ttk.registered_ops().get(op_name)
    assert registration is not None, f"{op_name} registered but not in registered_ops()"
    packet = op_packet(op_name)
    assert str(packet.default._schema).startswith(op_name + "(")
    if case.expected_schema is not None:
        assert registration.schema == case.expected_schema
    # the same arguments again: a no-op
    ttk.cuda_kernel_op(op_name, case.spec, **kwargs)
    assert ttk.registered_ops()[op_name] is registration
    # a different spec under the same name: refused, the registered op kept
    other = dataclasses.replace(case.spec, defines={"FZ_OTHER_SPEC": 1})
    with pytest.raises(ValueError) as info:
        ttk.cuda_kernel_op(op_name, other, **kwargs)
    assert op_name in str(info.value)
    assert ttk.registered_ops()[op_name] is registration
    assert op_packet(op_name).default._schema == packet.default._schema


# -- property 2: fake impl shapes and dtypes -----------------------------------------------------


class Refused(Exception):
    """The reference's verdict: kernelop must refuse the call with ``exc`` naming the op."""

    def __init__(self, exc: type, why: str):
        super().__init__(why)
        self.exc = exc


def _check_axes(size: Any, shapes: dict) -> None:
    """Refuse where an axis does not exist at these ranks (dim() of a rank-0 tensor included)."""
    if isinstance(size, AxisSize):
        rank = len(shapes[size.name])
        if not -rank <= size.axis < rank:
            raise Refused(ValueError, f"axis {size.axis} of {size.name!r} at rank {rank}")
    elif isinstance(size, BinarySize):
        _check_axes(size.a, shapes)
        _check_axes(size.b, shapes)


def _value(size: Any, shapes: dict) -> int:
    if isinstance(size, int):
        return size
    if isinstance(size, ConstSize):
        return size.value
    if isinstance(size, AxisSize):
        return shapes[size.name][size.axis]
    if isinstance(size, NumelSize):
        return math.prod(shapes[size.name])
    assert isinstance(size, BinarySize)
    a, b = _value(size.a, shapes), _value(size.b, shapes)
    if size.op in ("//", "cdiv") and b == 0:
        raise ZeroDivisionError
    return {
        "+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "//": lambda: a // b,
        "cdiv": lambda: -(-a // b), "min": lambda: min(a, b), "max": lambda: max(a, b),
    }[size.op]()


def reference_outputs(spec: ttk.KernelSpec, tensors: list) -> list:
    """[(shape, dtype)] per output from the README's rules, or raises ``Refused``."""
    decls = [d for d in spec.inputs if isinstance(d, ttk.InputDecl)]
    for d, t in zip(decls, tensors):
        if d.dtype is not None and t.dtype != d.dtype:
            raise Refused(TypeError, f"{d.name} has dtype {t.dtype}, declared {d.dtype}")
    shapes = {d.name: tuple(t.shape) for d, t in zip(decls, tensors)}
    names = [d.name for d in decls]

    def tensor(ref):
        return tensors[ref] if isinstance(ref, int) else tensors[names.index(ref)]

    for rule in spec.requires:
        sizes = [rule.a, rule.b] if isinstance(rule, ttk.Equal) else [rule.value]
        for s in sizes:
            _check_axes(s, shapes)
    for i, rule in enumerate(spec.requires):
        try:
            if isinstance(rule, ttk.Divisible):
                ok = _value(rule.value, shapes) % rule.by == 0
            elif isinstance(rule, ttk.InRange):
                v = _value(rule.value, shapes)
                ok = (rule.min is None or v >= rule.min) and (rule.max is None or v <= rule.max)
            else:
                ok = _value(rule.a, shapes) == _value(rule.b, shapes)
        except ZeroDivisionError:
            raise Refused(ValueError, f"requires[{i}] divides by zero") from None
        if not ok:
            raise Refused(ValueError, f"requires[{i}] does not hold")

    for out in spec.outputs:  # every shape is resolved for the ranks before any is evaluated
        if isinstance(out.shape, ttk.ReduceDims):
            try:
                torch.sum(torch.empty(tensor(out.shape.input_idx).shape, device="meta"), tuple(out.shape.dims), keepdim=out.shape.keepdim)
            except (IndexError, RuntimeError) as exc:
                raise Refused(ValueError, f"ReduceDims: torch.sum says {exc}") from None
        elif not isinstance(out.shape, ttk.SameAs):
            for s in out.shape:
                _check_axes(s, shapes)
    result = []
    for out in spec.outputs:
        if isinstance(out.shape, ttk.SameAs):
            shape = tuple(tensor(out.shape.input_idx).shape)
        elif isinstance(out.shape, ttk.ReduceDims):
            source = torch.empty(tensor(out.shape.input_idx).shape, device="meta")
            shape = tuple(torch.sum(source, tuple(out.shape.dims), keepdim=out.shape.keepdim).shape)
        else:
            try:
                shape = tuple(_value(s, shapes) for s in out.shape)
            except ZeroDivisionError:
                raise Refused(ValueError, f"output {out.name!r}: a size divides by zero") from None
            if any(v < 0 for v in shape):
                raise Refused(ValueError, f"output {out.name!r}: negative size in {shape}")
        dtype = tensor(out.dtype_from).dtype if out.dtype_from is not None else tensors[0].dtype
        result.append((shape, dtype))
    return result



@st.composite
def call_inputs(draw, spec: ttk.KernelSpec):
    """Shapes and dtypes for the tensor inputs: mostly the declared dtype, rarely another."""
    shapes, dtypes = [], []
    for d in spec.inputs:
        if isinstance(d, ttk.InputDecl):
            rank = draw(st.sampled_from((3, 3, 3, 2, 1, 0)))  # rank 3 fits every axis the specs name
            shapes.append(tuple(draw(st.lists(st.sampled_from((3, 4, 1, 2, 5, 6, 0)), min_size=rank, max_size=rank))))
            if d.dtype is not None and draw(st.sampled_from(("declared",) * 9 + ("other",))) == "declared":
                dtypes.append(d.dtype)
            else:
                dtypes.append(draw(st.sampled_from(DTYPES)))
    return shapes, dtypes


@settings(max_examples=EXAMPLES_FAKE, **_SETTINGS)
@given(case=cases(None, allow_meta=False), data=st.data())
def test_fake_impl_matches_reference(case: Case, data, kernel_cache):
    assert case.declarative and not case.defects and not case.uncertain
    op_name = make_op_name("valid")
    ttk.cuda_kernel_op(op_name, case.spec, cache=kernel_cache, **case.kwargs)
    op = op_packet(op_name)
    spec = case.spec
    for _ in range(CALLS_PER_OP):
        shapes, dtypes = data.draw(call_inputs(spec), label="inputs")
        mode = data.draw(st.sampled_from(("fake", "meta")), label="mode")
        device = "cuda" if mode == "fake" else "meta"
        with FakeTensorMode() if mode == "fake" else _no_mode():
            shapes_iter = iter(zip(shapes, dtypes))
            args = []
            for d in spec.inputs:
                if isinstance(d, ttk.InputDecl):
                    shape, dtype = next(shapes_iter)
                    args.append(torch.empty(shape, dtype=dtype, device=device))
                else:
                    args.append(SCALAR_VALUE[d.py_type])
            tensors = [a for a in args if isinstance(a, torch.Tensor)]
            try:
                expected = reference_outputs(spec, tensors)
            except Refused as refusal:
                event(f"refused: {refusal.exc.__name__}: {str(refusal).split(':')[0]}")
                with pytest.raises(refusal.exc) as info:
                    op(*args)
                assert op_name in str(info.value), f"the message does not name the op: {info.value}"
                continue
            got = op(*args)
        event("called")
        got = list(got) if isinstance(got, (tuple, list)) else [got]
        assert len(got) == len(expected)
        for i, (y, (shape, dtype)) in enumerate(zip(got, expected)):
            assert tuple(y.shape) == shape, f"output {i}: shape {tuple(y.shape)}, expected {shape} for inputs {shapes}"
            assert y.dtype == dtype, f"output {i}: dtype {y.dtype}, expected {dtype}"
            assert y.device == tensors[0].device, f"output {i}: device {y.device}, expected {tensors[0].device}"


class _no_mode:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
