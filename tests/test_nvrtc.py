"""NVRTC compilation: outputs, name lookup, error messages and header discovery (no GPU)."""
from __future__ import annotations

import importlib.metadata
import site
import sysconfig
from pathlib import Path

import pytest

from kernelop.compiler import nvrtc
from kernelop.compiler.nvrtc import COMPILE_COUNTER, CompileError, CompileRequest, compile_kernel
from conftest import overwritten_shared_bytes

RELU = """extern "C" __global__ void my_relu(const float* x, int n, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
"""

TEMPLATES = """template <typename T>
__global__ void scale(T* x, T factor, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) x[i] *= factor;
}
extern "C" __global__ void other(float* x) { x[0] = 1.f; }
"""


@pytest.fixture
def no_toolkit(monkeypatch: pytest.MonkeyPatch):
    """Hide every CUDA toolkit so only the NVIDIA wheels can supply headers."""
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(nvrtc, "_SYSTEM_CUDA_ROOTS", ())
    nvrtc.cuda_include_dirs.cache_clear()
    yield
    nvrtc.cuda_include_dirs.cache_clear()


def _site_dirs() -> list[Path]:
    dirs = [*site.getsitepackages(), site.getusersitepackages(), sysconfig.get_paths()["purelib"]]
    return [Path(d).resolve() for d in dirs]


def _include_options(options: tuple[str, ...]) -> list[str]:
    return [option[2:] for option in options if option.startswith("-I")]


def test_relu_gives_cubin_and_ptx_from_one_run() -> None:
    before = COMPILE_COUNTER.count
    kernel = compile_kernel(CompileRequest(RELU, "my_relu", "sm_90"))
    assert COMPILE_COUNTER.count == before + 1
    assert kernel.cubin.startswith(b"\x7fELF")
    assert b".entry my_relu" in kernel.ptx
    assert b".target sm_90" in kernel.ptx
    assert not kernel.ptx.endswith(b"\x00")
    assert kernel.lowered_name == "my_relu"
    assert kernel.arch == "sm_90"
    assert kernel.nvrtc_version == nvrtc.nvrtc_version()
    assert "--gpu-architecture=sm_90" in kernel.options
    assert "--ptxas-options=-v" in kernel.options
    assert ("--no-cache" in kernel.options) == (nvrtc.nvrtc_version() >= (12, 9))  # every report a real ptxas run


def test_an_empty_log_is_read_without_touching_the_interpreters_shared_bytes() -> None:
    """NVRTC writes its log into the buffer it is given, one NUL byte when the log is empty; were
    that buffer a one-byte ``bytes``, it would be the interpreter's shared ``b" "``, and every later
    ``" ".encode()`` (a separate ``print`` argument, generated code written piecewise) would give NUL."""
    result, program = nvrtc._nvrtc.nvrtcCreateProgram(RELU.encode(), b"quiet.cu", 0, [], [])
    try:
        (compiled,) = nvrtc._nvrtc.nvrtcCompileProgram(program, 1, [b"--gpu-architecture=sm_90"])  # no ptxas -v: an empty log
        assert compiled == nvrtc._nvrtc.nvrtcResult.NVRTC_SUCCESS
        assert nvrtc._program_log(program, "my_relu") == ""
    finally:
        nvrtc._nvrtc.nvrtcDestroyProgram(program)
    assert overwritten_shared_bytes() == []


def test_template_name_expression_is_lowered_to_its_mangled_symbol() -> None:
    kernel = compile_kernel(CompileRequest(TEMPLATES, "scale<float>", "sm_90"))
    assert kernel.lowered_name.startswith("_Z")
    assert "scale" in kernel.lowered_name
    assert f".entry {kernel.lowered_name}(".encode() in kernel.ptx


def _skip_without_ptxas_log(kernel) -> None:
    """NVRTC 13.0 was seen to return an empty log for the same compile under pytest's fd capture
    that gave a full ptxas report in a plain process; 13.5 reports in both."""
    if "ptxas" not in kernel.log and nvrtc.nvrtc_version() < (13, 5):
        pytest.skip(f"NVRTC {nvrtc.nvrtc_version()} returned no ptxas report in this process")


def test_resource_report_covers_only_the_requested_kernel() -> None:
    kernel = compile_kernel(CompileRequest(TEMPLATES, "scale<float>", "sm_90"))
    _skip_without_ptxas_log(kernel)
    report = kernel.resource_report()
    assert "registers" in report, kernel.log
    assert kernel.lowered_name in report
    assert "'other'" not in report
    assert "Compile time" not in report


def test_resource_report_lists_registers_and_shared_memory() -> None:
    source = """extern "C" __global__ void staged(float* y) {
  __shared__ float tile[256];
  tile[threadIdx.x] = y[threadIdx.x];
  __syncthreads();
  y[threadIdx.x] = tile[255 - threadIdx.x];
}
"""
    kernel = compile_kernel(CompileRequest(source, "staged", "sm_90"))
    _skip_without_ptxas_log(kernel)
    report = kernel.resource_report()
    assert "registers" in report
    assert "1024 bytes smem" in report
    assert "spill" in report


def test_syntax_error_names_op_arch_and_user_line() -> None:
    source = 'extern "C" __global__ void f(float* y) {\n  float a = 1.f;\n  y[0] = a +* ;\n}\n'
    request = CompileRequest(source, "f", "sm_90", program_name="myns_relu.cu")
    with pytest.raises(CompileError) as caught:
        compile_kernel(request, op_name="myns::relu")
    error = caught.value
    message = str(error)
    assert "kernelop.compile_kernel(myns::relu)" in message
    assert "sm_90" in message
    assert "myns_relu.cu(3): error" in message  # nothing was prepended to the source
    assert "> 3 |   y[0] = a +* ;" in message
    assert "1 | extern" in message
    assert error.op_name == "myns::relu"
    assert error.arch == "sm_90"
    assert error.source == source
    assert "myns_relu.cu(3)" in error.log
    assert "--gpu-architecture=sm_90" in error.options


def test_long_source_shows_the_lines_around_the_first_error() -> None:
    before = "".join(f"  float v{i} = {i}.f;\n" for i in range(2, 60))
    after = "".join(f"  float w{i} = {i}.f;\n" for i in range(60))
    source = f'extern "C" __global__ void f(float* y) {{\n{before}  y[0] = v2 +* ;\n{after}}}\n'
    error_line = source.splitlines().index("  y[0] = v2 +* ;") + 1
    with pytest.raises(CompileError) as caught:
        compile_kernel(CompileRequest(source, "f", "sm_90", program_name="long.cu"))
    message = str(caught.value)
    assert f"long.cu({error_line}): error" in message
    assert f">  {error_line} |   y[0] = v2 +* ;" in message
    assert f"   {error_line - 4} |   float v" in message
    assert f"   {error_line + 4} |   float w" in message
    assert "| extern" not in message
    assert f"({error_line - 5} lines above)" in message
    assert "more lines below" in message


def test_unknown_kernel_name_says_it_is_not_defined() -> None:
    with pytest.raises(CompileError) as caught:
        compile_kernel(CompileRequest(RELU, "foo", "sm_90"), op_name="demo")
    message = str(caught.value)
    assert "kernel 'foo' is not defined in the source" in message
    assert "__nv_name_map" in message  # the NVRTC log is kept for the details


def test_template_name_without_arguments_points_at_name_expressions() -> None:
    with pytest.raises(CompileError) as caught:
        compile_kernel(CompileRequest(TEMPLATES, "scale", "sm_90"))
    message = str(caught.value)
    assert "kernel 'scale' is not defined in the source" in message
    assert "scale<float>" in message


def test_device_function_name_is_not_a_kernel() -> None:
    source = RELU + "__device__ float helper(float v) { return v; }\n"
    with pytest.raises(CompileError, match="kernel 'helper' is not defined"):
        compile_kernel(CompileRequest(source, "helper", "sm_90"))


def test_rejected_option_is_reported_as_such() -> None:
    request = CompileRequest(RELU, "my_relu", "sm_90", extra_options=("--no-such-flag",))
    with pytest.raises(CompileError) as caught:
        compile_kernel(request)
    assert "rejected the options" in str(caught.value)
    assert "--no-such-flag" in caught.value.log


@pytest.mark.parametrize("arch", ["compute_90", "sm90", "90", "sm_90x", "sm_", "SM_90", ""])
def test_invalid_arch_string_is_rejected(arch: str) -> None:
    with pytest.raises(ValueError, match="arch") as caught:
        CompileRequest(RELU, "my_relu", arch)
    assert repr(arch) in str(caught.value)


def test_arch_suffixes_compile() -> None:
    kernel = compile_kernel(CompileRequest(RELU, "my_relu", "sm_90a"))
    assert b".target sm_90a" in kernel.ptx
    assert kernel.cubin.startswith(b"\x7fELF")


def test_cuda_headers_come_from_the_wheels_without_a_toolkit(no_toolkit: None) -> None:
    for wheel in ("nvidia-cuda-runtime", "nvidia-cuda-cccl"):
        try:
            importlib.metadata.version(wheel)
        except importlib.metadata.PackageNotFoundError:
            pytest.skip(f"{wheel} is not installed here (kernelop depends on it; this environment lacks it)")
    dirs = nvrtc.cuda_include_dirs()
    assert dirs, "the nvidia-cuda-runtime and nvidia-cuda-cccl wheels provide headers"
    sites = _site_dirs()
    for directory in dirs:
        assert any(Path(directory).resolve().is_relative_to(s) for s in sites), directory
    source = """#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <cuda/std/cstdint>
extern "C" __global__ void mix(const __half* a, const __nv_bfloat16* b, float* out) {
  cuda::std::int32_t i = threadIdx.x;
  out[i] = __half2float(a[i]) + __bfloat162float(b[i]);
}
"""
    kernel = compile_kernel(CompileRequest(source, "mix", "sm_90"))
    assert b".entry mix" in kernel.ptx
    assert _include_options(kernel.options) == [*dirs, str(nvrtc.SHIM_DIR)]  # kernelop's stand-ins come last


def test_toolkit_from_environment_comes_after_the_wheels(
    no_toolkit: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wheel_dirs = nvrtc.cuda_include_dirs()
    (tmp_path / "include").mkdir()
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.setenv("CUDA_PATH", str(tmp_path / "missing"))
    nvrtc.cuda_include_dirs.cache_clear()
    assert nvrtc.cuda_include_dirs() == (*wheel_dirs, str(tmp_path / "include"))


def test_user_include_paths_come_first(tmp_path: Path) -> None:
    (tmp_path / "act.h").write_text("__device__ inline float act(float v) { return v * 2.f; }\n")
    source = '#include "act.h"\nextern "C" __global__ void k(float* y) { y[0] = act(y[0]); }\n'
    kernel = compile_kernel(CompileRequest(source, "k", "sm_90", include_paths=(str(tmp_path),)))
    assert _include_options(kernel.options)[0] == str(tmp_path)
    assert b".entry k" in kernel.ptx
