"""Registration cost: cold (no kernel in the cache), warm (a second process, cache hit), raw
NVRTC, first-call load, and the native runtime's one-time build.

Each phase runs in its own process, timed after imports (and, with a GPU, after CUDA's one-time
initialisation, which any GPU program pays), as a user's program would start. The native runtime
is built once per machine, torch version and cache folder, in a phase of its own, so that the registration
phases time the kernels alone. With a GPU, each registration phase then times its first call
(module load and parameter check; on the Python call path, in a cold cache, also the launch
shim's build) against the second.

    PYTHONPATH=src python benchmarks/compile_time.py
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

KERNELS = 20
SOURCE = r"""
extern "C" __global__ void scale_{k}(const float* x, int n, float* y) {{
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i] * {k}.0f;
}}
"""


def child(phase: str) -> dict:
    import torch

    import kernelop as ttk
    from kernelop.compiler import nvrtc
    from kernelop.compiler.target import target_arch
    from kernelop.native import build, runtime

    result: dict = {}
    if torch.cuda.is_available():  # a GPU program pays this once, whatever it registers
        start = time.perf_counter()
        torch.cuda.init()
        torch.cuda.get_device_capability()
        result["cuda_init"] = time.perf_counter() - start
    if phase == "runtime":
        start = time.perf_counter()
        loaded = runtime.runtime()
        result["seconds"] = time.perf_counter() - start
        result["builds"] = build.BUILD_COUNTER.count
        result["status"] = loaded.reason if loaded is not None else f"unavailable: {runtime.unavailable_reason()}"
        return result
    if phase == "raw":
        start = time.perf_counter()
        for k in range(KERNELS):
            nvrtc.compile_kernel(nvrtc.CompileRequest(SOURCE.format(k=k), f"scale_{k}", target_arch(None)))
        result["seconds"] = time.perf_counter() - start
        return result
    start = time.perf_counter()
    for k in range(KERNELS):
        ttk.cuda_kernel_op(
            f"compile_bench::scale_{k}",
            ttk.KernelSpec(
                kernel_source=SOURCE.format(k=k),
                kernel_name=f"scale_{k}",
                inputs=[ttk.InputDecl("x")],
                outputs=[ttk.OutputDecl("y", shape=ttk.SameAs(0))],
                extras=[ttk.Numel("x")],
                geometry=ttk.Elementwise(block=(256,)),
            ),
        )
    result["seconds"] = time.perf_counter() - start
    result["nvrtc_runs"] = nvrtc.COMPILE_COUNTER.count
    result["runtime_builds"] = build.BUILD_COUNTER.count
    if torch.cuda.is_available():
        result["call_path"] = ttk.registered_ops()["compile_bench::scale_0"].call_path
        x = torch.randn(1024, device="cuda")
        op = torch.ops.compile_bench.scale_0
        torch.cuda.synchronize()
        start = time.perf_counter()
        op(x)
        torch.cuda.synchronize()
        result["first_call"] = time.perf_counter() - start
        start = time.perf_counter()
        op(x)
        torch.cuda.synchronize()
        result["second_call"] = time.perf_counter() - start
    return result


def run_phase(phase: str, cache_dir: str) -> dict:
    env = {**os.environ, "KERNELOP_CACHE_DIR": cache_dir}
    out = subprocess.run([sys.executable, __file__, "--child", phase], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2])))
        return 0
    with tempfile.TemporaryDirectory() as cache_dir:
        raw = run_phase("raw", cache_dir)
        native = run_phase("runtime", cache_dir)
        cold = run_phase("cold", cache_dir)
        warm = run_phase("warm", cache_dir)
    ms = lambda s: f"{s * 1e3:8.1f} ms"  # noqa: E731
    print(f"{KERNELS} kernels, one process per phase")
    print(f"raw NVRTC, {KERNELS} compiles:            {ms(raw['seconds'])}")
    print(f"native runtime build (once):          {ms(native['seconds'])}  ({native['builds']} builds; {native['status']})")
    for label, phase in (("cold registration (no kernel cached):", cold), ("warm registration (second process):  ", warm)):
        print(f"{label} {ms(phase['seconds'])}  ({phase['nvrtc_runs']} NVRTC runs, {phase['runtime_builds']} runtime builds)")
    if "cuda_init" in warm:
        print(f"CUDA initialisation (not included):   {ms(warm['cuda_init'])}")
    if "first_call" in warm:
        print(f"call path:                              {warm['call_path']}")
        print(f"first call, cold (module load + check): {ms(cold['first_call'])}")
        print(f"first call, warm (module load + check): {ms(warm['first_call'])}")
        print(f"second call:                            {ms(warm['second_call'])}")
    print(f"warm / cold = {warm['seconds'] / cold['seconds']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
