"""The kernelop command and cross-process behaviour, run as a user would: in fresh processes."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")

RELU = r"""
extern "C" __global__ void my_relu(const float* x, int n, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
"""


def run(args, cache_dir, **env):
    environment = {**os.environ, "PYTHONPATH": SRC, "KERNELOP_CACHE_DIR": str(cache_dir), "CUDA_VISIBLE_DEVICES": "", **env}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=environment, timeout=300)


def test_compile_prints_resource_report(tmp_path):
    kernel = tmp_path / "relu.cu"
    kernel.write_text(RELU)
    result = run(["-m", "kernelop", "compile", str(kernel), "--name", "my_relu", "--arch", "sm_90"], tmp_path / "c")
    assert result.returncode == 0, result.stderr
    assert "arch:       sm_90" in result.stdout
    assert "registers" in result.stdout
    assert "PTX ISA:    " in result.stdout and "unknown" not in result.stdout


def test_compile_error_exits_1_with_user_line_number(tmp_path):
    kernel = tmp_path / "broken.cu"
    kernel.write_text('extern "C" __global__ void k(float* y) {\n  y[0] = 1.f\n}\n')
    result = run(["-m", "kernelop", "compile", str(kernel), "--name", "k", "--arch", "sm_90"], tmp_path / "c")
    assert result.returncode == 1
    assert "broken.cu(3)" in result.stderr or "broken.cu(2)" in result.stderr


def test_compile_missing_file_exits_2(tmp_path):
    result = run(["-m", "kernelop", "compile", str(tmp_path / "nope.cu"), "--name", "k"], tmp_path / "c")
    assert result.returncode == 2 and "cannot read" in result.stderr


REGISTER = textwrap.dedent(
    f"""
    import kernelop as ttk
    from kernelop.compiler import nvrtc
    ttk.cuda_kernel_op("clitest::relu", ttk.KernelSpec(
        kernel_source={RELU!r}, kernel_name="my_relu",
        inputs=[ttk.InputDecl("x")], outputs=[ttk.OutputDecl("y", shape=ttk.SameAs(0))],
        extras=[ttk.Numel("x")], geometry=ttk.Elementwise(block=(256,))))
    print("compiles", nvrtc.COMPILE_COUNTER.count)
    """
)


def test_second_process_registers_without_nvrtc_and_cache_cli(tmp_path):
    cache_dir = tmp_path / "cache"
    first = run(["-c", REGISTER], cache_dir)
    second = run(["-c", REGISTER], cache_dir)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "compiles 1" in first.stdout
    assert "compiles 0" in second.stdout

    info = run(["-m", "kernelop", "cache", "info"], cache_dir)
    assert f"cache: {cache_dir}" in info.stdout and "entries: 1" in info.stdout
    cleared = run(["-m", "kernelop", "cache", "clear"], cache_dir)
    assert "removed 1 entries" in cleared.stdout
    assert "compiles 1" in run(["-c", REGISTER], cache_dir).stdout


def test_cache_disabled_writes_nothing(tmp_path):
    cache_dir = tmp_path / "cache"
    result = run(["-c", REGISTER], cache_dir, KERNELOP_CACHE="0")
    assert result.returncode == 0, result.stderr
    assert not cache_dir.exists() or not any(cache_dir.iterdir())
    assert "disabled" in run(["-m", "kernelop", "cache", "info"], cache_dir, KERNELOP_CACHE="0").stdout


def test_bad_cache_flag_is_refused(tmp_path):
    result = run(["-m", "kernelop", "cache", "info"], tmp_path, KERNELOP_CACHE="maybe")
    assert result.returncode != 0 and "KERNELOP_CACHE must be 0 or 1" in result.stderr


def test_demo_exits_0_without_gpu(tmp_path):
    result = run(["-m", "kernelop", "demo"], tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "7 of 7 examples compiled" in result.stdout
    assert "kernelop_demo::axpy(Tensor x, Tensor y, float alpha) -> Tensor" in result.stdout
    assert "torch.ops.kernelop_demo.row_sum.default" in result.stdout
    assert "registers" in result.stdout
