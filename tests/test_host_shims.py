"""Sources as they are: the host headers and macros CUDA code uses and NVRTC lacks, ``defines``
and NVRTC ``options`` on the spec, and all of it in the compile cache's key."""
from __future__ import annotations

import re

import pytest
import torch

import kernelop as ttk
from kernelop.compiler.cache import request_key
from kernelop.compiler.nvrtc import CompileError, CompileRequest
from conftest import op_packet

USES = {
    "stdio.h": ('#include <stdio.h>', 'if (n == 7) printf("%f\\n", x[0]);'),
    "cstdio": ('#include <cstdio>', 'if (n == 7) printf("%d\\n", n);'),
    "assert.h": ('#include <assert.h>', "assert(n >= 0);"),
    "cassert": ('#include <cassert>', "assert(n >= 0);"),
    "math.h": ('#include <math.h>', "v = sqrtf(fabsf(v)) + HUGE_VALF * 0.f;"),
    "cmath": ('#include <cmath>', "v = std::sqrt(std::fabs(v)) + std::fmax(v, 0.f) + std::tanh(v);"),
    "stdint.h": ('#include <stdint.h>', "int64_t w = (int64_t)n + INT32_MAX; uint8_t b = 1; v += (float)(w - INT32_MAX + b - 1);"),
    "cstdint": ('#include <cstdint>', "std::int64_t w = n; std::uint32_t u = UINT32_MAX; v += (float)(w - n) + (float)(u - UINT32_MAX);"),
    "float.h": ('#include <float.h>', "v = fminf(v, FLT_MAX) + 0.f * FLT_EPSILON;"),
    "cfloat": ('#include <cfloat>', "v = fminf(v, FLT_MAX);"),
    "limits.h": ('#include <limits.h>', "v += (float)(INT_MAX - INT_MAX);"),
    "INFINITY": ("", "v = fminf(v, INFINITY);"),
    "NAN": ("", "v = isnan(NAN) ? v : -1.f;"),
    "M_PI": ("", "v = v + 0.f * (float)M_PI;"),
    "uint": ("", "uint i = (uint)threadIdx.x; v += (float)(i - i);"),
}


def source_using(include: str, statement: str) -> str:
    return f"""{include}
extern "C" __global__ void k(const float* x, int n, float* y) {{
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {{ float v = x[i]; {statement} y[i] = v; }}
}}
"""


def spec_with(source: str, **fields) -> ttk.KernelSpec:
    return ttk.KernelSpec(source, "k", inputs=[ttk.InputDecl("x", dtype=torch.float32)],
                          outputs=[ttk.OutputDecl("y", ttk.SameAs("x"))], extras=[ttk.Numel("x")],
                          geometry=ttk.Elementwise(block=(128,)), **fields)


@pytest.mark.parametrize("what", sorted(USES))
def test_each_host_header_and_macro_compiles_unchanged(what, op_name, register, assert_left_nothing):
    source = source_using(*USES[what])
    register(op_name("shim"), spec_with(source))
    refused = op_name("noshim")
    with pytest.raises(CompileError, match=r"cannot open source file|is undefined|does not apply here"):
        register(refused, spec_with(source, host_shims=False))  # NVRTC alone lacks it
    assert_left_nothing(refused)


def test_defines_and_options_reach_nvrtc(op_name, register):
    source = """#ifndef SCALE
#error SCALE must be defined
#endif
extern "C" __global__ void k(const float* x, int n, float* y) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
#ifdef NEGATE
  if (i < n) y[i] = -SCALE * x[i];
#else
  if (i < n) y[i] = SCALE * x[i];
#endif
}
"""
    with pytest.raises(CompileError, match="SCALE must be defined"):
        register(op_name("nodefine"), spec_with(source))
    name = op_name("define")
    register(name, spec_with(source, defines={"SCALE": "2.5f", "NEGATE": None}, options=["--use_fast_math"]))
    compiled = ttk.registered_ops()[name].binaries.for_arch(ttk.registered_ops()[name].binaries.request.arch)
    assert {"-DSCALE=2.5f", "-DNEGATE", "--use_fast_math"} <= set(compiled.options)


def test_defines_options_and_shims_are_part_of_the_cache_key():
    base = CompileRequest("k", "k", "sm_90")
    keys = {
        request_key(base),
        request_key(CompileRequest("k", "k", "sm_90", defines=(("A", "1"),))),
        request_key(CompileRequest("k", "k", "sm_90", defines=(("A", "2"),))),
        request_key(CompileRequest("k", "k", "sm_90", extra_options=("--use_fast_math",))),
        request_key(CompileRequest("k", "k", "sm_90", host_shims=False)),
    }
    assert len(keys) == 5


@pytest.mark.parametrize(
    "fields, exc, message",
    [
        ({"defines": ["SCALE=2"]}, TypeError, r"defines must be a dict"),
        ({"defines": {"2X": 1}}, ValueError, r"defines has a key that is not a macro name \(got '2X'\)"),
        ({"defines": {"X": 1.5}}, TypeError, r"defines\['X'\] must be a str, an int or None"),
        ({"options": "--use_fast_math"}, TypeError, r"options must be a list of NVRTC options"),
        ({"options": ["use_fast_math"]}, TypeError, r"options\[0\] must be an NVRTC option"),
        ({"options": ["-std=c++20"]}, ValueError, r"options\[0\] '-std=c\+\+20' is set by kernelop; use arch_override= or compile_std="),
        ({"options": ["--gpu-architecture=sm_90"]}, ValueError, r"is set by kernelop"),
        ({"host_shims": 1}, TypeError, r"host_shims must be a bool"),
    ],
)
def test_compile_option_mistakes_name_the_field(fields, exc, message, op_name, register, assert_left_nothing):
    name = op_name("badopt")
    with pytest.raises(exc, match=re.escape(f"kernelop.cuda_kernel_op({name}): ") + r".*" + message):
        register(name, spec_with(source_using(*USES["INFINITY"]), **fields))
    assert_left_nothing(name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_host_macros_have_their_c_values_on_the_gpu(op_name, register):
    source = """#include <math.h>
#include <cmath>
#include <cstdint>
#include <float.h>
#include <limits.h>
extern "C" __global__ void consts(const float* x, int n, float* y) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    uint u = 3u;
    y[0] = INFINITY; y[1] = -INFINITY; y[2] = NAN; y[3] = (float)M_PI; y[4] = FLT_MAX;
    y[5] = (float)INT32_MAX; y[6] = (float)INT_MAX; y[7] = std::sqrt(x[0]) * SCALE + (float)u;
  }
}
"""
    name = op_name("consts")
    register(name, ttk.KernelSpec(source, "consts", inputs=[ttk.InputDecl("x", dtype=torch.float32)],
                                  outputs=[ttk.OutputDecl("y", ttk.SameAs("x"))], extras=[ttk.Numel("x")],
                                  geometry=ttk.Launch(grid=(1,), block=(32,)), defines={"SCALE": 2}))
    y = op_packet(name)(torch.full((8,), 16.0, device="cuda")).cpu()
    assert y[0] == float("inf") and y[1] == float("-inf") and torch.isnan(y[2])
    assert y[3].item() == pytest.approx(3.14159265, rel=1e-6) and y[4].item() == pytest.approx(3.4028234663852886e38)
    assert y[5].item() == y[6].item() == float(2**31)  # 2147483647 rounds to 2**31 in float32
    assert y[7].item() == 4.0 * 2 + 3
