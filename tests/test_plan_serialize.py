"""The launch plan as plain data and back: every plan the corpus and the written kernels register
survives JSON unchanged, its interpreters give the same values, and a reader builds nothing but
plan types."""
from __future__ import annotations

import json
import re

import pytest

import kernelop as ttk
from kernelop.plan.serialize import FORMAT, plan_from_data, plan_to_data
from kernelop.pytorch.launcher import EagerLauncher
from kernel_corpus import CORPUS
from written_kernels import add_bias_spec, add_positive_spec, axpby_spec, row_sums_spec

SPECS = {k.name: k.spec for k in CORPUS if k.meta_fn is None} | {
    "axpby": axpby_spec(), "add_bias": add_bias_spec(), "row_sums": row_sums_spec(), "add_positive": add_positive_spec(),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_registered_plan_survives_json_unchanged(name, op_name, register):
    op = op_name(name)
    register(op, SPECS[name])
    plan = ttk.registered_ops()[op].plan
    again = plan_from_data(json.loads(json.dumps(plan_to_data(plan))))
    assert again == plan and again.template == plan.template and again.arg_layout == plan.arg_layout


def test_the_round_tripped_plan_gives_the_same_launch_values(op_name, register):
    op = op_name("axpby")
    register(op, axpby_spec())
    plan = ttk.registered_ops()[op].plan
    again = plan_from_data(json.loads(json.dumps(plan_to_data(plan))))
    for shapes in [((5, 3), (15,)), ((0,), (0,)), ((1, 2, 3, 4), (24,))]:
        assert EagerLauncher(again, None, None).launch_values(shapes) == EagerLauncher(plan, None, None).launch_values(shapes)


def test_a_seed_plan_with_each_geometry_survives(op_name, relu_spec, register):
    for geometry, outputs in [
        (ttk.Elementwise(block=(32, 8), layout="nd"), [ttk.OutputDecl("y", ttk.SameAs("x"))]),
        (ttk.Reduction((-1,), block_size=128), [ttk.OutputDecl("y", ttk.ReduceDims("x", (-1,), keepdim=True))]),
    ]:
        op = op_name("seed")
        register(op, relu_spec(geometry=geometry, outputs=outputs))
        plan = ttk.registered_ops()[op].plan
        assert plan_from_data(json.loads(json.dumps(plan_to_data(plan)))) == plan


@pytest.mark.parametrize("data, message", [
    ({"kernelop-plan": FORMAT + 1, "plan": None}, "expected a kernelop plan of format 1 (got 2)"),
    ([], "expected a kernelop plan of format 1 (got 'list')"),
    ({"kernelop-plan": FORMAT, "plan": {"type": "Popen", "fields": {"args": ["true"]}}}, "not a plan value"),
    ({"kernelop-plan": FORMAT, "plan": {"type": "ConstSize", "fields": {"value": 3}}}, "the data holds a ConstSize, not a LaunchPlan"),
    ({"kernelop-plan": FORMAT, "plan": {"type": "ConstSize", "fields": {"value": 3, "evil": 1}}}, "ConstSize has no fields ['evil']"),
])
def test_the_reader_builds_only_plan_types(data, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        plan_from_data(data)


def test_a_custom_geometry_has_no_plain_form(op_name, relu_spec, register):
    op = op_name("custom")
    register(op, relu_spec(geometry=ttk.Custom(lambda inputs, outputs, tactic: None)), eager_fn=lambda x: x, aot_fn=None)
    with pytest.raises(ValueError, match=rf"kernelop.serialize\({op}\): geometry Custom is Python code"):
        plan_to_data(ttk.registered_ops()[op].plan)


def test_a_missing_field_is_a_value_error_and_non_finite_floats_stay_json(op_name, register):
    with pytest.raises(ValueError, match=r"kernelop.serialize: Param cannot be built from its fields"):
        plan_from_data({"kernelop-plan": FORMAT, "plan": {"type": "Param", "fields": {}}})
    spec = row_sums_spec()
    spec.outputs = [ttk.OutputDecl("out", (ttk.dim("x", 0),), init=float("-inf"))]
    op = op_name("row_max")
    register(op, spec)
    plan = ttk.registered_ops()[op].plan
    assert plan_from_data(json.loads(json.dumps(plan_to_data(plan), allow_nan=False))) == plan
