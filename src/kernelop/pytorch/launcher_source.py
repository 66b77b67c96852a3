"""The text of an op's eager impl: straight-line Python generated once per op from its plan.

The op's tensor count, each output's allocation rule and the parameter layout are written in,
so a call does no per-argument looping or dispatch on kinds. The names it uses (``memos``,
``launch``, ``refuse_tensors``, ...) are bound by ``EagerLauncher``.
"""
from __future__ import annotations

from typing import Any

from ..plan.launch_plan import LaunchPlan


def launcher_source(plan: LaunchPlan, tensor_rules: tuple, has_meta_fn: bool, sync: bool) -> str:
    """``def call(...)`` for ``plan``: ``tensor_rules`` are (index, allowed dtypes or None) per
    tensor input; with ``has_meta_fn`` the outputs come from ``meta_outputs``; with ``sync``
    every launch is followed by a stream synchronisation (unless the stream is being captured)."""
    params = plan.tensor_params
    tensors = [f"t{i}" for i in range(len(params))]
    shapes = [f"s{i}" for i in range(len(tensors))]
    outputs = [f"o{k}" for k in range(plan.num_outputs)]
    n_extras = len(plan.extras)
    args = [f"t{p.tensor_index}" if p.is_tensor else f"a{p.position}" for p in plan.params]
    args_tuple = f"({', '.join(args)},)"
    present = lambda i, test: f"({tensors[i]} is not None and {test})" if params[i].optional else test  # noqa: E731
    first = plan.first_required
    lines = [f"def call({', '.join(args)}):", "    try:", f"        d = t{first}.get_device()"]
    checks = ["d < 0"] + [present(i, f"t{i}.get_device() != d") for i in range(len(tensors)) if i != first]
    checks += [present(i, f"t{i}.dtype not in allowed{i}") for i, allowed in tensor_rules if allowed is not None]
    for group in plan.template.type_tensors if plan.template is not None else ():
        checks += [present(j, f"t{j}.dtype is not t{group[0]}.dtype") for j in group[1:]]
    refuse = f"refuse_tensors([{', '.join(tensors)}])"
    lines += [f"        failed = {' or '.join(checks)}", "    except AttributeError:  # None where a tensor is required",
              f"        {refuse}", "    if failed:", f"        {refuse}"]
    unsigned_or_not = [f"a{s.index} < 0" for s in plan.arg_layout if s.kind == "scalar" and s.ctype in ("x32", "x64")]
    if unsigned_or_not:  # packing would pass a negative int as is; the kernel may read it unsigned
        lines += [f"    if {' or '.join(unsigned_or_not)}:", f"        refuse_values({args_tuple})"]
    for i, (t, s) in enumerate(zip(tensors, shapes)):
        if params[i].mutates:  # written through a contiguous copy, then copied back
            lines += [f"    w{i} = {t}", f"    if not {t}.is_contiguous() and overlaps({t}) == 1:", f"        refuse_overlap({i})"]
        indent = "    "
        if params[i].optional:
            lines += [f"    {s} = ()", f"    if {t} is not None:"]
            indent = "        "
        lines += [f"{indent}if not {t}.is_contiguous():", f"{indent}    {t} = {t}.contiguous()", f"{indent}{s} = {t}.shape"]
    ins = f"({', '.join(shapes)},)"
    key = "d"
    if plan.template is not None:  # the instantiation: one dtype per type parameter
        key = f"(d, {', '.join(f't{g[0]}.dtype' for g in plan.template.type_tensors)},)"
    lines.append(f"    k = {key}")
    if not has_meta_fn:
        shape_key = shapes[0] if len(shapes) == 1 else ins
        lines.append(f"    v = (memos.get(k) or memo_for(k)).get({shape_key}) or dims_for({shape_key}, {ins}, None, k)")
        sized = 7 + n_extras
        for k, rule in enumerate(plan.outputs):  # type: ignore[arg-type]
            shape = f"t{rule.source}.shape"
            if not rule.like_input:
                shape = f"v[{sized}]"
                sized += 1
            lines.append(f"    o{k} = {_allocation(k, rule, shape, first)}")
    else:
        lines.append(f"    {', '.join(outputs)}, = meta_outputs({args_tuple})")
        outs = f"({', '.join(f'{o}.shape' for o in outputs)},)"
        lines.append(f"    key = ({ins}, {outs})")
        lines.append(f"    v = (memos.get(k) or memo_for(k)).get(key) or dims_for(key, {ins}, {outs}, k)")
    pointer = {i: (f"(t{i}.data_ptr() if t{i} is not None else 0)" if p.optional else f"t{i}.data_ptr()") for i, p in enumerate(params)}
    source = {"tensor": lambda i: pointer[i], "scalar": "a{}".format, "extra": lambda i: f"v[{7 + i}]", "output": "o{}.data_ptr()".format}
    values = ", ".join(source[s.kind](s.index) for s in plan.arg_layout)
    lines += [
        "    if v[0]:",
        "        handle = handles.get(k) or load(k)",
        "        stream = raw_stream(d)",
        "        try:",
        f"            result = launch(handle, v, stream, layout, {values})",
        "        except pack_errors:",
        f"            refuse_values({args_tuple})",
        "            raise",
        "        if result:" if not sync else "        if True:  # KERNELOP_SYNC=1",
        "            try:",
        f"                finish_launch(functions[k], result, v, stream, layout, ({values},), {sync})",
        "            except DriverError as exc:",
        "                launch_failed(exc)",
    ]
    for param in plan.mutated:
        i = param.tensor_index
        lines += [f"    if t{i} is not w{i}:", f"        w{i}.copy_(t{i})"]
    returned = "None" if not outputs else outputs[0] if len(outputs) == 1 else "(" + ", ".join(outputs) + ")"
    return "\n".join(lines) + f"\n    return {returned}\n"


def _allocation(k: int, rule: Any, shape: str, like: int) -> str:
    """How output ``k`` is made: uninitialised, filled with ``fill<k>``, or a copy of an input
    (already contiguous)."""
    if rule.copy_of is not None:
        return f"t{rule.copy_of}.clone()"
    if rule.like_input:
        return f"empty_like(t{rule.source})" if rule.init is None else f"full_like(t{rule.source}, fill{k})"
    dtype = f"t{rule.dtype_source}.dtype"
    return f"t{like}.new_empty({shape}, dtype={dtype})" if rule.init is None else f"t{like}.new_full({shape}, fill{k}, dtype={dtype})"
