"""Launch values in the eager launcher: computed once per shape, checked before anything is kept."""
from __future__ import annotations

import pytest

import kernelop as ttk
from kernelop.pytorch import launcher as launcher_module
from kernelop.pytorch.launcher import EagerLauncher
from kernelop.plan.build import build_plan

OP = "kotest::launch_values"


def eager(geometry: ttk.Elementwise) -> EagerLauncher:
    spec = ttk.KernelSpec(
        kernel_source="", kernel_name="k",
        inputs=[ttk.InputDecl("x")],
        outputs=[ttk.OutputDecl("y", shape=ttk.SameAs(0))],
        extras=[ttk.Numel("x")],
        geometry=geometry,
    )
    return EagerLauncher(build_plan(OP, spec, num_outputs=1), None, None)


def test_values_are_computed_once_per_shape():
    launcher = eager(ttk.Elementwise(block=(256,), layout="flat"))
    first = launcher._dims_for((1000,), ((1000,),), None)
    assert first == (4, 1, 1, 256, 1, 1, 0, 1000)
    assert launcher.dims[None][(1000,)] is first
    assert launcher._dims_for((1000,), ((1000,),), None) == first


def test_an_empty_launch_is_kept_with_grid_x_zero():
    launcher = eager(ttk.Elementwise(block=(16, 16), layout="nd"))
    v = launcher._dims_for((3, 0, 5), ((3, 0, 5),), None)
    assert v[0] == 0 and launcher.launch_values([(3, 0, 5)])[0] != 0  # grid y is the empty one


def test_a_grid_over_the_limits_is_refused_and_not_kept():
    launcher = eager(ttk.Elementwise(block=(16, 16), layout="nd"))
    with pytest.raises(ValueError, match=r"kotest::launch_values.*launch grid \(1, 1, 70000\) exceeds"):
        launcher._dims_for((70000, 16, 16), ((70000, 16, 16),), None)
    assert launcher.dims.get(None, {}) == {}


def test_an_extra_over_int32_is_refused_and_not_kept():
    launcher = eager(ttk.Elementwise(block=(256,), layout="flat"))
    with pytest.raises(ValueError, match=r"2147483648 does not fit the kernel's 32-bit int parameter"):
        launcher._dims_for((2**31,), ((2**31,),), None)
    assert launcher.dims.get(None, {}) == {}


def test_the_memo_is_bounded(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(launcher_module, "MAX_REMEMBERED_SHAPES", 2)
    launcher = eager(ttk.Elementwise(block=(256,), layout="flat"))
    for n in range(1, 6):
        assert launcher._dims_for((n,), ((n,),), None)[7] == n
        assert len(launcher.dims[None]) <= 2
