"""The native runtime on a GPU: the same results and refusals as the Python path, opcheck on
both, CUDA graphs, ``torch.compile(cpp_wrapper=True)`` calling it, a bundle's library serving the
ops in a process without kernelop, a C++ program calling them through the dispatcher with no
Python in the process, and an AOTInductor package (where this torch can load one), run from
Python without kernelop and from a C++ program without Python."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

import kernelop as ttk
from kernelop import settings
from kernelop.export.bundle import LIBRARY, export_bundle, not_built_for
from kernelop.native import runtime as native_runtime
from conftest import op_packet
from written_kernels import add_bias_spec, add_positive_spec, axpby_spec, row_sums_spec

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(not settings.SETTINGS.native_runtime, reason="KERNELOP_NATIVE_RUNTIME=0: ops are kept on Python"),
    pytest.mark.skipif(native_runtime.runtime() is None, reason=f"the native runtime is unavailable ({native_runtime.unavailable_reason()})"),
]
REPO = Path(__file__).resolve().parents[1]
TORCH = Path(torch.__file__).parent


@pytest.fixture
def both(op_name, register, monkeypatch):
    """Register a spec twice: on the native runtime and on the Python launcher; their ops."""

    def make(spec_fn):
        native = op_name("native")
        register(native, spec_fn())
        with monkeypatch.context() as patch:
            patch.setattr(settings, "SETTINGS", dataclasses.replace(settings.SETTINGS, native_runtime=False))
            python = op_name("python")
            register(python, spec_fn())
        assert (ttk.registered_ops()[native].call_path, ttk.registered_ops()[python].call_path) == ("native", "python")
        return op_packet(native), op_packet(python)

    return make


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_a_template_gives_identical_results_on_both_paths(both, dtype):
    native, python = both(axpby_spec)
    calls = native_runtime.runtime().calls
    for shape in [(1000,), (3, 5, 7), (0,), ()]:
        x, y = torch.randn(shape, device="cuda", dtype=dtype), torch.randn(shape, device="cuda", dtype=dtype)
        torch.testing.assert_close(native(x, y, 2.0, -0.5), python(x, y, 2.0, -0.5), rtol=0, atol=0)
    assert native_runtime.runtime().calls - calls == 4


def test_in_place_optional_accumulating_and_copied_outputs_match(both):
    add_native, add_python = both(add_bias_spec)
    base = torch.randn(64, 48, device="cuda")
    bias = torch.randn(64, device="cuda")
    for op in (add_native, add_python):
        op(x := base.clone().t(), bias, 0.5)  # non-contiguous: through a copy, copied back
        torch.testing.assert_close(x, base.t() + 0.5 * bias, rtol=0, atol=0)
        op(x := base.clone(), None, 2.0)
        torch.testing.assert_close(x, base + 2.0, rtol=0, atol=0)
    sums_native, sums_python = both(row_sums_spec)
    x = torch.randn(37, 1000, device="cuda")
    torch.testing.assert_close(sums_native(x), sums_python(x), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(sums_native(x), x.sum(1), rtol=1e-5, atol=1e-4)
    pos_native, pos_python = both(add_positive_spec)
    x, y = torch.randn(5000, device="cuda"), torch.randn(5000, device="cuda")
    torch.testing.assert_close(pos_native(x, y), pos_python(x, y), rtol=0, atol=0)


BAD_CALLS = {
    "an int32 input to a float template": (axpby_spec, lambda: (torch.ones(8, device="cuda", dtype=torch.int32),) * 2 + (1.0, 1.0)),
    "two dtypes for one type parameter": (axpby_spec, lambda: (torch.ones(8, device="cuda"), torch.ones(8, device="cuda", dtype=torch.half), 1.0, 1.0)),
    "a broken requirement": (axpby_spec, lambda: (torch.ones(8, device="cuda"), torch.ones(9, device="cuda"), 1.0, 1.0)),
    "a CPU tensor beside a CUDA one": (add_bias_spec, lambda: (torch.ones(4, 8, device="cuda"), torch.ones(8), 1.0)),
    "an expanded view written in place": (add_bias_spec, lambda: (torch.ones(1, 8, device="cuda").expand(4, 8), None, 1.0)),
    "an axis beyond the rank": (row_sums_spec, lambda: (torch.ones(8, device="cuda"),)),
    "a float32 scalar that overflows": (axpby_spec, lambda: (torch.ones(8, device="cuda"), torch.ones(8, device="cuda"), 1e39, 1.0)),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_a_refusal_reads_the_same_on_both_paths(both, case):
    spec_fn, args = BAD_CALLS[case]
    native, python = both(spec_fn)
    outcomes = []
    for op in (native, python):
        with pytest.raises((ValueError, TypeError)) as caught:
            op(*args())
        outcomes.append((type(caught.value).__name__, str(caught.value).replace(op._qualified_op_name, "OP")))
    assert outcomes[0] == outcomes[1]
    torch.cuda.synchronize()


def test_opcheck_passes_on_both_paths(both):
    for spec_fn, args in [(axpby_spec, lambda: (torch.randn(33, device="cuda"), torch.randn(33, device="cuda"), 1.5, 2.0)),
                          (add_bias_spec, lambda: (torch.randn(4, 8, device="cuda"), torch.randn(8, device="cuda"), 0.5))]:
        for op in both(spec_fn):
            torch.library.opcheck(op.default, args())


def test_a_native_op_records_into_a_cuda_graph(both):
    native, _ = both(axpby_spec)
    x, y = torch.randn(4096, device="cuda"), torch.randn(4096, device="cuda")
    native(x, y, 1.0, 1.0)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = native(x, y, 3.0, 1.0)
    x.copy_(torch.randn(4096, device="cuda"))
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(out, 3.0 * x + y, rtol=1e-6, atol=1e-6)


def test_torch_compile_with_cpp_wrapper_calls_the_native_runtime(both):
    native, _ = both(axpby_spec)
    compiled = torch.compile(lambda x, y: native(x, y, 2.0, 1.0).relu() + 1, fullgraph=True, options={"cpp_wrapper": True})
    x, y = torch.randn(2048, device="cuda"), torch.randn(2048, device="cuda")
    compiled(x, y)
    calls = native_runtime.runtime().calls
    for _ in range(3):
        out = compiled(x, y)
    assert native_runtime.runtime().calls - calls == 3
    torch.testing.assert_close(out, (2.0 * x + y).relu() + 1, rtol=1e-6, atol=1e-6)


def bundle_of(op: str, directory: Path) -> Path:
    arch = "sm_{}{}".format(*torch.cuda.get_device_capability())
    return export_bundle(directory, [op], [arch]) / LIBRARY


def test_a_bundle_serves_its_ops_in_a_process_without_kernelop(op_name, register, tmp_path):
    op = op_name("axpby")
    register(op, axpby_spec())
    library = bundle_of(op, tmp_path / "bundle")
    script = textwrap.dedent(f"""
        import sys, torch
        torch.ops.load_library({str(library)!r})
        assert "kernelop" not in sys.modules
        op = torch.ops.{op.replace('::', '.')}
        for dtype in (torch.float32, torch.float16, torch.float64):
            x, y = torch.randn(3000, device="cuda", dtype=dtype), torch.randn(3000, device="cuda", dtype=dtype)
            out = op(x, y, 2.0, 3.0)
            torch.testing.assert_close(out, (2.0 * x.double() + 3.0 * y.double()).to(dtype), rtol=1e-2, atol=1e-2)
        try:
            op(torch.ones(4, device="cuda"), torch.ones(5, device="cuda"), 1.0, 1.0)
        except ValueError as error:
            print(error)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[-1] == "ok" and lines[0].startswith(f"kernelop.call({op}): numel(x) is 4, but requires[0] requires it to equal numel(y)")


def test_a_bundle_for_another_architecture_is_refused_by_its_library_naming_both(op_name, register, tmp_path):
    op = op_name("axpby")
    register(op, axpby_spec())
    here = "sm_{}{}".format(*torch.cuda.get_device_capability())
    other = "sm_80" if here != "sm_80" else "sm_90"
    library = export_bundle(tmp_path / "bundle", [op], [other]) / LIBRARY
    script = textwrap.dedent(f"""
        import sys, torch
        torch.ops.load_library({str(library)!r})
        x = torch.ones(8, device="cuda")
        try:
            torch.ops.{op.replace('::', '.')}(x, x, 1.0, 1.0)
        except ValueError as error:
            print(error)
        assert "kernelop" not in sys.modules
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[0] == not_built_for(op, other, here)


CPP_PROGRAM = r"""
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <dlfcn.h>
#include <cstdio>

// Loads a kernelop bundle's library and calls one of its ops through the dispatcher.
int main(int argc, char** argv) {
  if (!dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL)) {
    std::fprintf(stderr, "%s\n", dlerror());
    return 2;
  }
  auto op = c10::Dispatcher::singleton().findSchemaOrThrow(argv[2], "");
  auto x = at::randn({5000}, at::device(at::kCUDA));
  auto y = at::randn({5000}, at::device(at::kCUDA));
  std::vector<c10::IValue> stack{x, y, 2.0, 3.0};
  op.callBoxed(&stack);
  auto error = (stack.at(0).toTensor() - (2.0 * x + 3.0 * y)).abs().max().item<double>();
  std::printf("max error %g\n", error);
  return error < 1e-5 ? 0 : 1;
}
"""


def build_cpp_program(source: str, directory: Path, compiler: str = "c++") -> Path:
    """A program built against the torch wheel's libtorch (CUDA included), as a deployment is."""
    (directory / "main.cpp").write_text(source)
    include, lib = TORCH / "include", TORCH / "lib"
    build = subprocess.run(
        [compiler, "-O1", "-std=c++17", f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}", f"-I{include}",
         f"-I{include / 'torch/csrc/api/include'}", "main.cpp", "-o", "main", f"-L{lib}", "-Wl,--no-as-needed", "-ltorch_cuda",
         "-ltorch", "-ltorch_cpu", "-lc10", f"-Wl,-rpath,{lib}", "-ldl"],
        capture_output=True, text=True, cwd=directory, timeout=400)
    assert build.returncode == 0, build.stderr[-3000:]
    return directory / "main"


def run_cpp_program(program: Path, *args: str) -> subprocess.CompletedProcess:
    """Runs it with no Python variables in its environment (it has no interpreter to use them)."""
    return subprocess.run([str(program), *args], capture_output=True, text=True, timeout=300,
                          env={k: v for k, v in os.environ.items() if not k.startswith("PYTHON")})


def test_a_cpp_program_calls_bundle_ops_through_the_dispatcher(op_name, register, tmp_path):
    op = op_name("axpby")
    register(op, axpby_spec())
    library = bundle_of(op, tmp_path / "bundle")
    done = run_cpp_program(build_cpp_program(CPP_PROGRAM, tmp_path), str(library), op)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.startswith("max error ")


AOTI_PROBE = """
import torch
class M(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x) + 1
x = torch.randn(64, device="cuda")
path = torch._inductor.aoti_compile_and_package(torch.export.export(M(), (x,)), package_path={path!r})
torch.testing.assert_close(torch._inductor.aoti_load_package(path)(x), torch.relu(x) + 1)
print("ok")
"""


def aotinductor_compiler(tmp_path: Path) -> str:
    """The first C++ compiler (``CXX``, then ``g++`` on the PATH) whose ATen-only AOTInductor
    package loads here; skips where none does. A compiler that linked libstdc++ statically into
    packages made every load crash on one machine, in that copy's ``std::regex``."""
    failures = []
    for cxx in dict.fromkeys(shutil.which(c) or c for c in (os.environ.get("CXX"), "g++") if c):
        probe = subprocess.run([sys.executable, "-c", AOTI_PROBE.format(path=str(tmp_path / "probe.pt2"))],
                               env={**os.environ, "CXX": cxx}, capture_output=True, text=True, timeout=400)
        if probe.returncode == 0:
            return cxx
        failures.append(f"CXX={cxx}: exit status {probe.returncode}: {probe.stderr.strip()[-200:]}")
    pytest.skip(f"this torch ({torch.__version__}) cannot load even an ATen-only AOTInductor package here; " + "; ".join(failures or ["no C++ compiler"]))


CPP_AOTI_PROGRAM = r"""
#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <dlfcn.h>
#include <cstdio>

// Loads a kernelop bundle's library, then runs an AOTInductor package whose model calls its op.
int main(int argc, char** argv) {
  if (!dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL)) {
    std::fprintf(stderr, "%s\n", dlerror());
    return 2;
  }
  torch::inductor::AOTIModelPackageLoader loader(argv[2]);
  auto x = at::randn({4096}, at::device(at::kCUDA));
  auto y = at::randn({4096}, at::device(at::kCUDA));
  auto out = loader.run({x, y});
  auto error = (out.at(0) - (2.0 * x + 3.0 * y).relu()).abs().max().item<double>();
  std::printf("max error %g\n", error);
  return error < 1e-5 ? 0 : 1;
}
"""


def test_an_aotinductor_package_calls_the_ops_without_kernelop(op_name, register, tmp_path):
    """The package runs in a Python process that never imports kernelop, and in a C++ program
    with no Python at all; both load only the bundle's library."""
    cxx = aotinductor_compiler(tmp_path)
    op = op_name("axpby")
    register(op, axpby_spec())
    library = bundle_of(op, tmp_path / "bundle")
    packet = op_packet(op)

    class Model(torch.nn.Module):
        def forward(self, x, y):
            return packet(x, y, 2.0, 3.0).relu()

    x, y = torch.randn(4096, device="cuda"), torch.randn(4096, device="cuda")
    with torch._inductor.config.patch({"cpp.cxx": (None, cxx)}):
        package = torch._inductor.aoti_compile_and_package(torch.export.export(Model(), (x, y)), package_path=str(tmp_path / "model.pt2"))
    torch.save((x, y), tmp_path / "inputs.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        torch.ops.load_library({str(library)!r})
        x, y = torch.load({str(tmp_path / 'inputs.pt')!r})
        out = torch._inductor.aoti_load_package({package!r})(x, y)
        assert "kernelop" not in sys.modules
        torch.testing.assert_close(out, (2.0 * x + 3.0 * y).relu(), rtol=1e-6, atol=1e-6)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=400)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
    program = build_cpp_program(CPP_AOTI_PROGRAM, tmp_path, cxx)
    done = run_cpp_program(program, str(library), package)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.startswith("max error ")
