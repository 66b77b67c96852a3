"""A corpus of CUDA kernels written the way people already write them, with their specs.

Each entry is a kernel in the style of well-known public CUDA code (CUDA samples, llm.c-style
training kernels, GEMM and flash-attention tutorials) with its own parameter order and C size
types, the ``KernelSpec`` that registers it unchanged, a PyTorch reference, argument makers
(odd sizes included) and, where the spec declares requirements, argument makers that violate
one so that the call must raise ``ValueError``.

Use it from the tests with ``from kernel_corpus import CORPUS``. Shape makers take a device
string and return the op's arguments; the data is seeded, so a failure reproduces.

Signatures: entries whose outputs are declared (``OutputDecl``) give ``param_order`` in the
kernel's own order, outputs first where that is the common style. Entries whose output shape
comes from ``meta_fn`` declare no ``OutputDecl`` and therefore have no output name that
``param_order`` could use: their kernels take the seed order (inputs, then sizes, then the
output pointer).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

import kernelop as ttk


@dataclass(frozen=True)
class CorpusKernel:
    name: str  # short id, also the op name suffix
    spec: ttk.KernelSpec
    reference: Callable[..., Any]  # op arguments -> expected output(s), computed with PyTorch
    shapes: tuple  # argument makers: device -> op arguments
    bad_shapes: tuple = ()  # argument makers violating a declared requirement (ValueError)
    meta_fn: Optional[Callable[..., Any]] = None
    atol: float = 1e-5
    rtol: float = 1e-5


# --------------------------------------------------------------------------------------------
# Argument helpers: seeded CPU data moved to the device, so every run sees the same numbers.
# --------------------------------------------------------------------------------------------

def _gen(*key: Any) -> torch.Generator:
    seed = 0
    for part in key:
        for ch in repr(part):
            seed = (seed * 131 + ord(ch)) % (2**31 - 1)
    return torch.Generator().manual_seed(seed)


def _randn(device: str, *shape: int, dtype: torch.dtype = torch.float32, scale: float = 1.0, key: Any = 0) -> torch.Tensor:
    x = torch.randn(*shape, generator=_gen("randn", shape, key)) * scale
    return x.to(dtype=dtype, device=device)


def _rand(device: str, *shape: int, low: float = 0.0, high: float = 1.0, key: Any = 0) -> torch.Tensor:
    x = torch.rand(*shape, generator=_gen("rand", shape, key)) * (high - low) + low
    return x.to(device=device)


def _randint(device: str, high: int, *shape: int, dtype: torch.dtype = torch.int64, key: Any = 0) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=_gen("randint", shape, high, key), dtype=dtype).to(device)


# ============================================================================================
# 1. GELU (tanh approximation), bf16, output first, 8 elements per thread through 16-byte loads.
# ============================================================================================

GELU_BF16 = r"""
#include <cuda_bf16.h>

#define GELU_SCALING_FACTOR 0.7978845608028654f  // sqrt(2 / pi)

// Eight bf16 values travel as one 16-byte vector.
struct __align__(16) Packed128 {
  __nv_bfloat16 v[8];
};

extern "C" __global__ void gelu_forward_bf16(__nv_bfloat16* __restrict__ out,
                                             const __nv_bfloat16* __restrict__ inp, int N) {
  const int idx = (blockIdx.x * blockDim.x + threadIdx.x) * 8;
  if (idx >= N) return;
  const Packed128 packed_in = *reinterpret_cast<const Packed128*>(inp + idx);
  Packed128 packed_out;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    const float x = __bfloat162float(packed_in.v[k]);
    const float cube = 0.044715f * x * x * x;
    packed_out.v[k] = __float2bfloat16(0.5f * x * (1.0f + tanhf(GELU_SCALING_FACTOR * (x + cube))));
  }
  *reinterpret_cast<Packed128*>(out + idx) = packed_out;
}
"""

_GELU_SPEC = ttk.KernelSpec(
    kernel_source=GELU_BF16,
    kernel_name="gelu_forward_bf16",
    inputs=[ttk.InputDecl("inp", dtype=torch.bfloat16)],
    outputs=[ttk.OutputDecl("out", shape=ttk.SameAs("inp"))],
    extras=[ttk.SizeArg("N", ttk.numel("inp"))],
    geometry=ttk.Launch(grid=(ttk.cdiv(ttk.numel("inp"), 256 * 8),), block=(256,)),
    param_order=("out", "inp", "N"),
    requires=[ttk.Divisible(ttk.numel("inp"), 8)],
)


def _gelu_reference(inp: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.gelu(inp.float(), approximate="tanh").to(torch.bfloat16)


# ============================================================================================
# 2. Row softmax: one block per row, the row cached in dynamic shared memory, online max/sum.
# ============================================================================================

SOFTMAX_ROWS = r"""
extern "C" __global__ void softmax_forward_kernel(float* __restrict__ out, const float* __restrict__ inp,
                                                  int N, int C) {
  extern __shared__ float row_cache[];  // C floats
  __shared__ float warp_max[32];
  __shared__ float warp_sum[32];
  const int row = blockIdx.x;
  if (row >= N) return;
  const float* x = inp + (size_t)row * C;
  float* y = out + (size_t)row * C;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const int num_warps = blockDim.x / 32;

  // One pass: each thread keeps a running maximum and a sum rescaled to it.
  float maxval = -3.402823466e+38f;
  float sumval = 0.0f;
  for (int i = threadIdx.x; i < C; i += blockDim.x) {
    const float v = x[i];
    row_cache[i] = v;
    if (v > maxval) {
      sumval *= expf(maxval - v);
      maxval = v;
    }
    sumval += expf(v - maxval);
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float other_max = __shfl_xor_sync(0xffffffffu, maxval, offset);
    const float other_sum = __shfl_xor_sync(0xffffffffu, sumval, offset);
    const float m = fmaxf(maxval, other_max);
    sumval = sumval * expf(maxval - m) + other_sum * expf(other_max - m);
    maxval = m;
  }
  if (lane == 0) {
    warp_max[warp] = maxval;
    warp_sum[warp] = sumval;
  }
  __syncthreads();
  if (warp == 0) {
    maxval = lane < num_warps ? warp_max[lane] : -3.402823466e+38f;
    sumval = lane < num_warps ? warp_sum[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset >>= 1) {
      const float other_max = __shfl_xor_sync(0xffffffffu, maxval, offset);
      const float other_sum = __shfl_xor_sync(0xffffffffu, sumval, offset);
      const float m = fmaxf(maxval, other_max);
      sumval = sumval * expf(maxval - m) + other_sum * expf(other_max - m);
      maxval = m;
    }
    if (lane == 0) {
      warp_max[0] = maxval;
      warp_sum[0] = sumval;
    }
  }
  __syncthreads();
  const float row_max = warp_max[0];
  const float inv_sum = 1.0f / warp_sum[0];
  for (int i = threadIdx.x; i < C; i += blockDim.x) {
    y[i] = expf(row_cache[i] - row_max) * inv_sum;
  }
}
"""

_SOFTMAX_ROWS_EXPR = ttk.numel("inp") // ttk.dim("inp", -1)

_SOFTMAX_SPEC = ttk.KernelSpec(
    kernel_source=SOFTMAX_ROWS,
    kernel_name="softmax_forward_kernel",
    inputs=[ttk.InputDecl("inp", dtype=torch.float32)],
    outputs=[ttk.OutputDecl("out", shape=ttk.SameAs("inp"))],
    extras=[ttk.SizeArg("N", _SOFTMAX_ROWS_EXPR), ttk.SizeArg("C", ttk.dim("inp", -1))],
    # C * sizeof(float) of dynamic shared memory, plus 256 bytes of static shared memory.
    geometry=ttk.Launch(grid=(_SOFTMAX_ROWS_EXPR,), block=(256,), shared_mem_bytes=ttk.dim("inp", -1) * 4),
    param_order=("out", "inp", "N", "C"),
    requires=[ttk.InRange(ttk.dim("inp", -1), min=1, max=16384)],
)


def _softmax_reference(inp: torch.Tensor) -> torch.Tensor:
    return torch.softmax(inp.double(), dim=-1).float()


# ============================================================================================
# 3. LayerNorm forward: fp16 in/out, fp32 weight/bias, fp32 mean and rstd (three outputs of two
#    dtypes); a warp per row, 8 rows per (32, 8) block.
# ============================================================================================

LAYERNORM_FP16 = r"""
#include <cuda_fp16.h>

extern "C" __global__ void layernorm_forward_kernel(__half* __restrict__ out, float* __restrict__ mean,
                                                    float* __restrict__ rstd, const __half* __restrict__ inp,
                                                    const float* __restrict__ weight,
                                                    const float* __restrict__ bias, int N, int C) {
  const int row = blockIdx.x * blockDim.y + threadIdx.y;  // one warp per row
  const int lane = threadIdx.x;
  if (row >= N) return;
  const __half* x = inp + (size_t)row * C;

  float sum = 0.0f;
  for (int i = lane; i < C; i += 32) sum += __half2float(x[i]);
  for (int offset = 16; offset > 0; offset >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  const float m = sum / C;

  float sq = 0.0f;
  for (int i = lane; i < C; i += 32) {
    const float d = __half2float(x[i]) - m;
    sq += d * d;
  }
  for (int offset = 16; offset > 0; offset >>= 1) sq += __shfl_xor_sync(0xffffffffu, sq, offset);
  const float s = rsqrtf(sq / C + 1e-5f);

  if (lane == 0) {
    mean[row] = m;
    rstd[row] = s;
  }
  __half* y = out + (size_t)row * C;
  for (int i = lane; i < C; i += 32) {
    const float n = (__half2float(x[i]) - m) * s;
    y[i] = __float2half(n * weight[i] + bias[i]);
  }
}
"""

_LN_ROWS = ttk.numel("inp") // ttk.dim("inp", -1)

_LAYERNORM_SPEC = ttk.KernelSpec(
    kernel_source=LAYERNORM_FP16,
    kernel_name="layernorm_forward_kernel",
    inputs=[
        ttk.InputDecl("inp", dtype=torch.float16),
        ttk.InputDecl("weight", dtype=torch.float32),
        ttk.InputDecl("bias", dtype=torch.float32),
    ],
    outputs=[
        ttk.OutputDecl("out", shape=ttk.SameAs("inp"), dtype_from="inp"),
        ttk.OutputDecl("mean", shape=ttk.ReduceDims("inp", (-1,)), dtype_from="weight"),
        ttk.OutputDecl("rstd", shape=ttk.ReduceDims("inp", (-1,)), dtype_from="weight"),
    ],
    extras=[ttk.SizeArg("N", _LN_ROWS), ttk.SizeArg("C", ttk.dim("inp", -1))],
    geometry=ttk.Launch(grid=(ttk.cdiv(_LN_ROWS, 8),), block=(32, 8)),
    param_order=("out", "mean", "rstd", "inp", "weight", "bias", "N", "C"),
    requires=[
        ttk.Equal(ttk.dim("weight", 0), ttk.dim("inp", -1)),
        ttk.Equal(ttk.dim("bias", 0), ttk.dim("inp", -1)),
    ],
)


def _layernorm_reference(inp: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
    x = inp.double()
    mean = x.mean(-1)
    var = x.var(-1, unbiased=False)
    rstd = torch.rsqrt(var + 1e-5)
    out = (x - mean[..., None]) * rstd[..., None] * weight.double() + bias.double()
    return out.half(), mean.float(), rstd.float()


def _layernorm_args(*shape: int):
    def make(device: str):
        C = shape[-1]
        return (
            _randn(device, *shape, dtype=torch.float16, scale=2.0, key="ln"),
            _randn(device, C, key="ln_w") * 0.5 + 1.0,
            _randn(device, C, key="ln_b") * 0.1,
        )

    return make


# ============================================================================================
# 4. Tiled transpose (CUDA samples style): 32x32 tiles, 32x8 threads, padded shared tile.
# ============================================================================================

TRANSPOSE = r"""
#define TILE_DIM 32
#define BLOCK_ROWS 8

extern "C" __global__ void transpose_coalesced(const float* __restrict__ idata, int rows, int cols,
                                               float* __restrict__ odata) {
  __shared__ float tile[TILE_DIM][TILE_DIM + 1];  // +1 column: no bank conflicts on the transposed read

  int x = blockIdx.x * TILE_DIM + threadIdx.x;  // column of idata
  int y = blockIdx.y * TILE_DIM + threadIdx.y;  // row of idata
  for (int j = 0; j < TILE_DIM; j += BLOCK_ROWS) {
    if (x < cols && y + j < rows) tile[threadIdx.y + j][threadIdx.x] = idata[(size_t)(y + j) * cols + x];
  }
  __syncthreads();

  x = blockIdx.y * TILE_DIM + threadIdx.x;  // column of odata
  y = blockIdx.x * TILE_DIM + threadIdx.y;  // row of odata
  for (int j = 0; j < TILE_DIM; j += BLOCK_ROWS) {
    if (x < rows && y + j < cols) odata[(size_t)(y + j) * rows + x] = tile[threadIdx.x][threadIdx.y + j];
  }
}
"""

_TRANSPOSE_SPEC = ttk.KernelSpec(
    kernel_source=TRANSPOSE,
    kernel_name="transpose_coalesced",
    inputs=[ttk.InputDecl("idata", dtype=torch.float32)],
    outputs=[ttk.OutputDecl("odata", shape=(ttk.dim("idata", 1), ttk.dim("idata", 0)))],
    extras=[ttk.SizeArg("rows", ttk.dim("idata", 0)), ttk.SizeArg("cols", ttk.dim("idata", 1))],
    geometry=ttk.Launch(
        grid=(ttk.cdiv(ttk.dim("idata", 1), 32), ttk.cdiv(ttk.dim("idata", 0), 32)),
        block=(32, 8),
    ),
    requires=[ttk.InRange(ttk.dim("idata", 0), max=65535 * 32)],
)


# ============================================================================================
# 5. Naive SGEMM: one thread per element of C, 16x16 blocks on a 2-D grid.
# ============================================================================================

SGEMM_NAIVE = r"""
extern "C" __global__ void sgemm_naive(const float* __restrict__ A, const float* __restrict__ B,
                                       int M, int N, int K, float* __restrict__ C) {
  const int row = blockIdx.y * blockDim.y + threadIdx.y;
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (row < M && col < N) {
    float acc = 0.0f;
    for (int k = 0; k < K; ++k) acc += A[(size_t)row * K + k] * B[(size_t)k * N + col];
    C[(size_t)row * N + col] = acc;
  }
}
"""

_GEMM_M = ttk.dim("A", 0)
_GEMM_N = ttk.dim("B", 1)
_GEMM_K = ttk.dim("A", 1)

_SGEMM_NAIVE_SPEC = ttk.KernelSpec(
    kernel_source=SGEMM_NAIVE,
    kernel_name="sgemm_naive",
    inputs=[ttk.InputDecl("A", dtype=torch.float32), ttk.InputDecl("B", dtype=torch.float32)],
    outputs=[ttk.OutputDecl("C", shape=(ttk.dim("A", 0), ttk.dim("B", 1)))],
    extras=[ttk.SizeArg("M", _GEMM_M), ttk.SizeArg("N", _GEMM_N), ttk.SizeArg("K", _GEMM_K)],
    geometry=ttk.Launch(grid=(ttk.cdiv(_GEMM_N, 16), ttk.cdiv(_GEMM_M, 16)), block=(16, 16)),
    requires=[
        ttk.Equal(ttk.dim("A", 1), ttk.dim("B", 0)),
        ttk.InRange(ttk.dim("A", 0), max=65535 * 16),
    ],
)


def _matmul_meta(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    return A.new_empty((A.shape[0], B.shape[1]))


def _matmul_reference(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    return (A.double() @ B.double()).float()


def _gemm_args(M: int, K: int, N: int, K2: Optional[int] = None):
    return lambda device: (_randn(device, M, K, key="A"), _randn(device, K if K2 is None else K2, N, key="B"))


# ============================================================================================
# 6. Shared-memory tiled GEMM, a C++ template instantiated by name (matmul_tiled<32>); ragged
#    edges are padded with zeros in the tiles.
# ============================================================================================

MATMUL_TILED = r"""
template <int TILE>
__global__ void matmul_tiled(const float* __restrict__ A, const float* __restrict__ B, int M, int N, int K,
                             float* __restrict__ C) {
  __shared__ float As[TILE][TILE];
  __shared__ float Bs[TILE][TILE];
  const int tx = threadIdx.x;
  const int ty = threadIdx.y;
  const int row = blockIdx.y * TILE + ty;
  const int col = blockIdx.x * TILE + tx;
  float acc = 0.0f;
  for (int t = 0; t < K; t += TILE) {
    As[ty][tx] = (row < M && t + tx < K) ? A[(size_t)row * K + t + tx] : 0.0f;
    Bs[ty][tx] = (t + ty < K && col < N) ? B[(size_t)(t + ty) * N + col] : 0.0f;
    __syncthreads();
#pragma unroll
    for (int k = 0; k < TILE; ++k) acc += As[ty][k] * Bs[k][tx];
    __syncthreads();
  }
  if (row < M && col < N) C[(size_t)row * N + col] = acc;
}
"""

_MATMUL_TILED_SPEC = ttk.KernelSpec(
    kernel_source=MATMUL_TILED,
    kernel_name="matmul_tiled<32>",
    inputs=[ttk.InputDecl("A", dtype=torch.float32), ttk.InputDecl("B", dtype=torch.float32)],
    extras=[ttk.SizeArg("M", _GEMM_M), ttk.SizeArg("N", _GEMM_N), ttk.SizeArg("K", _GEMM_K)],
    geometry=ttk.Launch(grid=(ttk.cdiv(_GEMM_N, 32), ttk.cdiv(_GEMM_M, 32)), block=(32, 32)),
    requires=[
        ttk.Equal(ttk.dim("A", 1), ttk.dim("B", 0)),
        ttk.InRange(ttk.dim("A", 0), max=65535 * 32),
    ],
)


# ============================================================================================
# 7. Block reduction: each block of 256 threads sums 1024 consecutive elements (4 per thread,
#    coalesced) and writes one partial sum; `long long` element count.
# ============================================================================================

REDUCE_PARTIALS = r"""
#define BLOCK_SIZE 256
#define ITEMS_PER_THREAD 4

extern "C" __global__ void reduce_sum_partials(const float* __restrict__ x, long long n,
                                               float* __restrict__ partial) {
  __shared__ float sdata[BLOCK_SIZE];
  const unsigned int tid = threadIdx.x;
  const long long base = (long long)blockIdx.x * (BLOCK_SIZE * ITEMS_PER_THREAD) + tid;
  float sum = 0.0f;
#pragma unroll
  for (int k = 0; k < ITEMS_PER_THREAD; ++k) {
    const long long i = base + (long long)k * BLOCK_SIZE;
    if (i < n) sum += x[i];
  }
  sdata[tid] = sum;
  __syncthreads();
  for (unsigned int s = BLOCK_SIZE / 2; s > 32; s >>= 1) {
    if (tid < s) sdata[tid] += sdata[tid + s];
    __syncthreads();
  }
  if (tid < 32) {
    float v = sdata[tid] + sdata[tid + 32];
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (tid == 0) partial[blockIdx.x] = v;
  }
}
"""

_REDUCE_ITEMS_PER_BLOCK = 256 * 4

_REDUCE_SPEC = ttk.KernelSpec(
    kernel_source=REDUCE_PARTIALS,
    kernel_name="reduce_sum_partials",
    inputs=[ttk.InputDecl("x", dtype=torch.float32)],
    outputs=[ttk.OutputDecl("partial", shape=(ttk.cdiv(ttk.numel("x"), _REDUCE_ITEMS_PER_BLOCK),))],
    extras=[ttk.SizeArg("n", ttk.numel("x"))],
    geometry=ttk.Launch(grid=(ttk.cdiv(ttk.numel("x"), _REDUCE_ITEMS_PER_BLOCK),), block=(256,)),
)


def _reduce_reference(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(-1).double()
    blocks = (flat.numel() + _REDUCE_ITEMS_PER_BLOCK - 1) // _REDUCE_ITEMS_PER_BLOCK
    padded = torch.nn.functional.pad(flat, (0, blocks * _REDUCE_ITEMS_PER_BLOCK - flat.numel()))
    return padded.reshape(blocks, _REDUCE_ITEMS_PER_BLOCK).sum(1).float()


# ============================================================================================
# 8. Flash-attention-1 style forward: grid (batch * heads, query tiles), one thread per query row,
#    Q/K/V tiles and the score tile in dynamic shared memory sized from the head dim (over 48 KB
#    from d = 128), online softmax, Tc = cdiv(N, Bc) passed as a derived size.
# ============================================================================================

FLASH_ATTN = r"""
extern "C" __global__ void flash_attn_forward(const float* __restrict__ Q, const float* __restrict__ K,
                                              const float* __restrict__ V, const int N, const int d,
                                              const int Tc, const int Bc, const int Br,
                                              const float softmax_scale, float* __restrict__ O) {
  extern __shared__ float sram[];
  float* Qi = sram;            // Br * d
  float* Kj = Qi + Br * d;     // Bc * d
  float* Vj = Kj + Bc * d;     // Bc * d
  float* S = Vj + Bc * d;      // Br * Bc

  const int tx = threadIdx.x;  // blockDim.x == Br: one query row per thread
  const size_t qkv_offset = (size_t)blockIdx.x * N * d;
  const int row = blockIdx.y * Br + tx;
  const bool valid = row < N;
  float* o = O + qkv_offset + (size_t)row * d;

  for (int x = 0; x < d; ++x) {
    Qi[tx * d + x] = valid ? Q[qkv_offset + (size_t)row * d + x] : 0.0f;
    if (valid) o[x] = 0.0f;
  }

  float m = -3.402823466e+38f;  // running row maximum
  float l = 0.0f;               // running row sum
  for (int j = 0; j < Tc; ++j) {
    __syncthreads();  // every thread is done with the previous K/V tile
    for (int idx = tx; idx < Bc * d; idx += blockDim.x) {
      const bool in_range = j * Bc + idx / d < N;
      Kj[idx] = in_range ? K[qkv_offset + (size_t)j * Bc * d + idx] : 0.0f;
      Vj[idx] = in_range ? V[qkv_offset + (size_t)j * Bc * d + idx] : 0.0f;
    }
    __syncthreads();
    if (!valid) continue;

    const int cols = min(Bc, N - j * Bc);
    float row_max = -3.402823466e+38f;
    for (int c = 0; c < cols; ++c) {
      float s = 0.0f;
      for (int x = 0; x < d; ++x) s += Qi[tx * d + x] * Kj[c * d + x];
      s *= softmax_scale;
      S[tx * Bc + c] = s;
      row_max = fmaxf(row_max, s);
    }
    const float m_new = fmaxf(m, row_max);
    const float alpha = expf(m - m_new);
    float row_sum = 0.0f;
    for (int c = 0; c < cols; ++c) {
      const float p = expf(S[tx * Bc + c] - m_new);
      S[tx * Bc + c] = p;
      row_sum += p;
    }
    for (int x = 0; x < d; ++x) {
      float pv = 0.0f;
      for (int c = 0; c < cols; ++c) pv += S[tx * Bc + c] * Vj[c * d + x];
      o[x] = o[x] * alpha + pv;
    }
    l = l * alpha + row_sum;
    m = m_new;
  }
  if (valid) {
    const float inv_l = 1.0f / l;
    for (int x = 0; x < d; ++x) o[x] *= inv_l;
  }
}
"""

_FA_BR = 32
_FA_BC = 32
_FA_N = ttk.dim("Q", 2)
_FA_D = ttk.dim("Q", 3)

_FLASH_ATTN_SPEC = ttk.KernelSpec(
    kernel_source=FLASH_ATTN,
    kernel_name="flash_attn_forward",
    inputs=[
        ttk.InputDecl("Q", dtype=torch.float32),
        ttk.InputDecl("K", dtype=torch.float32),
        ttk.InputDecl("V", dtype=torch.float32),
        ttk.ScalarInput("softmax_scale", float),
    ],
    outputs=[ttk.OutputDecl("O", shape=ttk.SameAs("Q"))],
    extras=[
        ttk.SizeArg("N", _FA_N),
        ttk.SizeArg("d", _FA_D),
        ttk.SizeArg("Tc", ttk.cdiv(_FA_N, _FA_BC)),
        ttk.SizeArg("Bc", _FA_BC),
        ttk.SizeArg("Br", _FA_BR),
    ],
    geometry=ttk.Launch(
        grid=(ttk.dim("Q", 0) * ttk.dim("Q", 1), ttk.cdiv(_FA_N, _FA_BR)),
        block=(_FA_BR,),
        # Qi + Kj + Vj + S: (Br * d + 2 * Bc * d + Br * Bc) floats; 53248 bytes at d = 128.
        shared_mem_bytes=(_FA_BR * _FA_D + 2 * _FA_BC * _FA_D + _FA_BR * _FA_BC) * 4,
    ),
    param_order=("Q", "K", "V", "N", "d", "Tc", "Bc", "Br", "softmax_scale", "O"),
    requires=[
        ttk.Equal(ttk.numel("Q"), ttk.numel("K")),
        ttk.Equal(ttk.numel("K"), ttk.numel("V")),
        ttk.Equal(ttk.dim("Q", 2), ttk.dim("K", 2)),
        ttk.Equal(ttk.dim("Q", 3), ttk.dim("K", 3)),
        ttk.Equal(ttk.dim("K", 3), ttk.dim("V", 3)),
        ttk.InRange(ttk.dim("Q", 3), min=1, max=256),
        ttk.InRange(ttk.dim("Q", 2), min=1, max=65535 * _FA_BR),
    ],
)


def _attention_reference(Q: torch.Tensor, K: torch.Tensor, V: torch.Tensor, softmax_scale: float) -> torch.Tensor:
    scores = (Q.double() @ K.double().transpose(-2, -1)) * softmax_scale
    return (torch.softmax(scores, dim=-1) @ V.double()).float()


def _attention_args(B: int, H: int, N: int, d: int, kv: Optional[tuple] = None, v: Optional[tuple] = None):
    def make(device: str):
        kv_shape = kv if kv is not None else (B, H, N, d)
        v_shape = v if v is not None else kv_shape
        return (
            _randn(device, B, H, N, d, key="Q"),
            _randn(device, *kv_shape, key="K"),
            _randn(device, *v_shape, key="V"),
            1.0 / math.sqrt(d),
        )

    return make


# ============================================================================================
# 9. AdamW step (llm.c style) with a `size_t` parameter count and seven float hyperparameters;
#    the three updated tensors are written to fresh outputs (no in-place arguments).
# ============================================================================================

ADAMW = r"""
extern "C" __global__ void adamw_kernel(float* __restrict__ params_out, float* __restrict__ m_out,
                                        float* __restrict__ v_out, const float* __restrict__ params,
                                        const float* __restrict__ grads, const float* __restrict__ m_in,
                                        const float* __restrict__ v_in, size_t num_parameters,
                                        float learning_rate, float beta1, float beta2, float beta1_correction,
                                        float beta2_correction, float eps, float weight_decay) {
  const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= num_parameters) return;
  const float grad = grads[i];
  const float m = beta1 * m_in[i] + (1.0f - beta1) * grad;
  const float v = beta2 * v_in[i] + (1.0f - beta2) * grad * grad;
  m_out[i] = m;
  v_out[i] = v;
  const float m_hat = m / beta1_correction;
  const float v_hat = v / beta2_correction;
  const float p = params[i];
  params_out[i] = p - learning_rate * (m_hat / (sqrtf(v_hat) + eps) + weight_decay * p);
}
"""

_ADAMW_SPEC = ttk.KernelSpec(
    kernel_source=ADAMW,
    kernel_name="adamw_kernel",
    inputs=[
        ttk.InputDecl("params", dtype=torch.float32),
        ttk.InputDecl("grads", dtype=torch.float32),
        ttk.InputDecl("m_in", dtype=torch.float32),
        ttk.InputDecl("v_in", dtype=torch.float32),
        ttk.ScalarInput("learning_rate", float),
        ttk.ScalarInput("beta1", float),
        ttk.ScalarInput("beta2", float),
        ttk.ScalarInput("beta1_correction", float),
        ttk.ScalarInput("beta2_correction", float),
        ttk.ScalarInput("eps", float),
        ttk.ScalarInput("weight_decay", float),
    ],
    outputs=[
        ttk.OutputDecl("params_out", shape=ttk.SameAs("params")),
        ttk.OutputDecl("m_out", shape=ttk.SameAs("params")),
        ttk.OutputDecl("v_out", shape=ttk.SameAs("params")),
    ],
    extras=[ttk.SizeArg("num_parameters", ttk.numel("params"))],
    geometry=ttk.Launch(grid=(ttk.cdiv(ttk.numel("params"), 512),), block=(512,)),
    param_order=(
        "params_out", "m_out", "v_out", "params", "grads", "m_in", "v_in", "num_parameters",
        "learning_rate", "beta1", "beta2", "beta1_correction", "beta2_correction", "eps", "weight_decay",
    ),
    requires=[
        ttk.Equal(ttk.numel("grads"), ttk.numel("params")),
        ttk.Equal(ttk.numel("m_in"), ttk.numel("params")),
        ttk.Equal(ttk.numel("v_in"), ttk.numel("params")),
    ],
)


def _adamw_reference(params, grads, m_in, v_in, learning_rate, beta1, beta2, beta1_correction,
                     beta2_correction, eps, weight_decay):
    p, g, m0, v0 = (t.double() for t in (params, grads, m_in, v_in))
    m = beta1 * m0 + (1.0 - beta1) * g
    v = beta2 * v0 + (1.0 - beta2) * g * g
    update = (m / beta1_correction) / (torch.sqrt(v / beta2_correction) + eps) + weight_decay * p
    return (p - learning_rate * update).float(), m.float(), v.float()


def _adamw_args(*shape: int, grads_shape: Optional[tuple] = None):
    def make(device: str):
        step = 3
        return (
            _randn(device, *shape, key="p"),
            _randn(device, *(grads_shape or shape), key="g"),
            _randn(device, *shape, scale=0.1, key="m"),
            _rand(device, *shape, low=0.0, high=0.5, key="v"),
            1e-3, 0.9, 0.999, 1.0 - 0.9**step, 1.0 - 0.999**step, 1e-8, 0.01,
        )

    return make


# ============================================================================================
# 10. SAXPY with the classic BLAS-like order: size first, then the scalar, then the vectors; a
#     grid-stride loop over a grid capped at 1024 blocks.
# ============================================================================================

SAXPY = r"""
extern "C" __global__ void saxpy(int n, float a, const float* __restrict__ x, const float* __restrict__ y,
                                 float* __restrict__ out) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += blockDim.x * gridDim.x) {
    out[i] = a * x[i] + y[i];
  }
}
"""

_SAXPY_SPEC = ttk.KernelSpec(
    kernel_source=SAXPY,
    kernel_name="saxpy",
    inputs=[ttk.InputDecl("x", dtype=torch.float32), ttk.InputDecl("y", dtype=torch.float32), ttk.ScalarInput("a", float)],
    outputs=[ttk.OutputDecl("out", shape=ttk.SameAs("x"))],
    extras=[ttk.SizeArg("n", ttk.numel("x"))],
    geometry=ttk.Launch(grid=(ttk.minimum(ttk.cdiv(ttk.numel("x"), 256), 1024),), block=(256,)),
    param_order=("n", "a", "x", "y", "out"),
    requires=[ttk.Equal(ttk.numel("x"), ttk.numel("y"))],
)


# ============================================================================================
# 11. Bias + ReLU over rows with `ptrdiff_t` sizes (a 1-D grid over every element).
# ============================================================================================

BIAS_RELU = r"""
extern "C" __global__ void bias_relu_rows(float* __restrict__ out, const float* __restrict__ inp,
                                          const float* __restrict__ bias, ptrdiff_t rows, ptrdiff_t cols) {
  const ptrdiff_t i = (ptrdiff_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < rows * cols) {
    const float v = inp[i] + bias[i % cols];
    out[i] = v > 0.0f ? v : 0.0f;
  }
}
"""

_BIAS_RELU_SPEC = ttk.KernelSpec(
    kernel_source=BIAS_RELU,
    kernel_name="bias_relu_rows",
    inputs=[ttk.InputDecl("inp", dtype=torch.float32), ttk.InputDecl("bias", dtype=torch.float32)],
    outputs=[ttk.OutputDecl("out", shape=ttk.SameAs("inp"))],
    extras=[
        ttk.SizeArg("rows", ttk.numel("inp") // ttk.dim("inp", -1)),
        ttk.SizeArg("cols", ttk.dim("inp", -1)),
    ],
    geometry=ttk.Launch(grid=(ttk.cdiv(ttk.numel("inp"), 128),), block=(128,)),
    param_order=("out", "inp", "bias", "rows", "cols"),
    requires=[ttk.Equal(ttk.dim("bias", 0), ttk.dim("inp", -1))],
)


def _bias_relu_args(*shape: int, bias_len: Optional[int] = None):
    return lambda device: (_randn(device, *shape, key="x"), _randn(device, bias_len or shape[-1], key="b"))


# ============================================================================================
# 12. Per-head RMSNorm (QK-norm style), bf16: a 2-D grid over (rows, heads), a warp per head
#     vector; `double eps` scalar parameter.
# ============================================================================================

RMSNORM_HEADS = r"""
#include <cuda_bf16.h>

extern "C" __global__ void rmsnorm_heads_kernel(__nv_bfloat16* __restrict__ out, const __nv_bfloat16* __restrict__ x,
                                                const __nv_bfloat16* __restrict__ weight, int num_heads,
                                                int head_dim, double eps) {
  const size_t base = ((size_t)blockIdx.x * num_heads + blockIdx.y) * head_dim;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < head_dim; i += 32) {
    const float v = __bfloat162float(x[base + i]);
    ss += v * v;
  }
  for (int offset = 16; offset > 0; offset >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, offset);
  const float scale = rsqrtf(ss / head_dim + (float)eps);
  for (int i = threadIdx.x; i < head_dim; i += 32) {
    out[base + i] = __float2bfloat16(__bfloat162float(x[base + i]) * scale * __bfloat162float(weight[i]));
  }
}
"""

_RMS_HEADS = ttk.dim("x", -2)
_RMS_DIM = ttk.dim("x", -1)

_RMSNORM_HEADS_SPEC = ttk.KernelSpec(
    kernel_source=RMSNORM_HEADS,
    kernel_name="rmsnorm_heads_kernel",
    inputs=[
        ttk.InputDecl("x", dtype=torch.bfloat16),
        ttk.InputDecl("weight", dtype=torch.bfloat16),
        ttk.ScalarInput("eps", float),
    ],
    outputs=[ttk.OutputDecl("out", shape=ttk.SameAs("x"))],
    extras=[ttk.SizeArg("num_heads", _RMS_HEADS), ttk.SizeArg("head_dim", _RMS_DIM)],
    geometry=ttk.Launch(grid=(ttk.numel("x") // (_RMS_HEADS * _RMS_DIM), _RMS_HEADS), block=(32,)),
    param_order=("out", "x", "weight", "num_heads", "head_dim", "eps"),
    requires=[
        ttk.Equal(ttk.dim("weight", 0), ttk.dim("x", -1)),
        ttk.InRange(ttk.dim("x", -2), min=1, max=65535),
    ],
)


def _rmsnorm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    xf = x.double()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.double()).to(torch.bfloat16)


def _rmsnorm_args(*shape: int, weight_len: Optional[int] = None, eps: float = 1e-6):
    return lambda device: (
        _randn(device, *shape, dtype=torch.bfloat16, key="x"),
        _randn(device, weight_len or shape[-1], dtype=torch.bfloat16, scale=0.2, key="w") + 1.0,
        eps,
    )


# ============================================================================================
# 13. Rotary embedding (interleaved pairs), a plain C++ kernel: blockIdx.x = batch,
#     blockIdx.y = head, threads over (time, pair).
# ============================================================================================

ROPE = r"""
__global__ void rope_forward(float* __restrict__ out, const float* __restrict__ inp,
                             const float* __restrict__ freqs_cis, int T, int HS) {
  const int b = blockIdx.x;
  const int h = blockIdx.y;
  const int NH = gridDim.y;
  const size_t base = ((size_t)b * NH + h) * T * HS;
  const int half = HS / 2;
  for (int idx = threadIdx.x; idx < T * half; idx += blockDim.x) {
    const int t = idx / half;
    const int p = idx % half;
    const float c = freqs_cis[(t * half + p) * 2 + 0];
    const float s = freqs_cis[(t * half + p) * 2 + 1];
    const float x0 = inp[base + (size_t)t * HS + 2 * p];
    const float x1 = inp[base + (size_t)t * HS + 2 * p + 1];
    out[base + (size_t)t * HS + 2 * p] = x0 * c - x1 * s;
    out[base + (size_t)t * HS + 2 * p + 1] = x0 * s + x1 * c;
  }
}
"""

_ROPE_SPEC = ttk.KernelSpec(
    kernel_source=ROPE,
    kernel_name="rope_forward",
    inputs=[ttk.InputDecl("inp", dtype=torch.float32), ttk.InputDecl("freqs_cis", dtype=torch.float32)],
    outputs=[ttk.OutputDecl("out", shape=ttk.SameAs("inp"))],
    extras=[ttk.SizeArg("T", ttk.dim("inp", 2)), ttk.SizeArg("HS", ttk.dim("inp", 3))],
    geometry=ttk.Launch(grid=(ttk.dim("inp", 0), ttk.dim("inp", 1)), block=(128,)),
    param_order=("out", "inp", "freqs_cis", "T", "HS"),
    requires=[
        ttk.Equal(ttk.dim("freqs_cis", 0), ttk.dim("inp", 2)),
        ttk.Equal(ttk.dim("freqs_cis", 1) * 2, ttk.dim("inp", 3)),
        ttk.InRange(ttk.dim("freqs_cis", 2), min=2, max=2),
        ttk.InRange(ttk.dim("inp", 1), min=1, max=65535),
    ],
)


def _rope_freqs(T: int, half: int) -> torch.Tensor:
    inv_freq = 1.0 / (10000.0 ** (torch.arange(half, dtype=torch.float64) / max(half, 1)))
    angles = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]
    return torch.stack((torch.cos(angles), torch.sin(angles)), dim=-1).float()  # (T, half, 2)


def _rope_reference(inp: torch.Tensor, freqs_cis: torch.Tensor) -> torch.Tensor:
    x = inp.double().reshape(*inp.shape[:-1], inp.shape[-1] // 2, 2)
    c, s = freqs_cis.double()[..., 0], freqs_cis.double()[..., 1]
    x0, x1 = x[..., 0], x[..., 1]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).reshape(inp.shape).float()


def _rope_args(B: int, NH: int, T: int, HS: int, freqs_shape: Optional[tuple] = None):
    def make(device: str):
        freqs = _rope_freqs(T, HS // 2) if freqs_shape is None else _randn("cpu", *freqs_shape, key="f")
        return _randn(device, B, NH, T, HS, key="x"), freqs.to(device)

    return make


# ============================================================================================
# 14. SwiGLU (silu(gate) * up), fp16 through half2 loads: the kernel takes the number of
#     half2 pairs as an `unsigned int`, so the element count must be even.
# ============================================================================================

SWIGLU_HALF2 = r"""
#include <cuda_fp16.h>

extern "C" __global__ void swiglu_forward_half2(__half* __restrict__ out, const __half* __restrict__ gate,
                                                const __half* __restrict__ up, unsigned int n_pairs) {
  const unsigned int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n_pairs) return;
  const float2 g = __half22float2(reinterpret_cast<const __half2*>(gate)[i]);
  const float2 u = __half22float2(reinterpret_cast<const __half2*>(up)[i]);
  const float r0 = g.x / (1.0f + expf(-g.x)) * u.x;
  const float r1 = g.y / (1.0f + expf(-g.y)) * u.y;
  reinterpret_cast<__half2*>(out)[i] = __floats2half2_rn(r0, r1);
}
"""

_SWIGLU_PAIRS = ttk.numel("gate") // 2

_SWIGLU_SPEC = ttk.KernelSpec(
    kernel_source=SWIGLU_HALF2,
    kernel_name="swiglu_forward_half2",
    inputs=[ttk.InputDecl("gate", dtype=torch.float16), ttk.InputDecl("up", dtype=torch.float16)],
    outputs=[ttk.OutputDecl("out", shape=ttk.SameAs("gate"))],
    extras=[ttk.SizeArg("n_pairs", _SWIGLU_PAIRS)],
    geometry=ttk.Launch(grid=(ttk.cdiv(_SWIGLU_PAIRS, 256),), block=(256,)),
    param_order=("out", "gate", "up", "n_pairs"),
    requires=[ttk.Divisible(ttk.numel("gate"), 2), ttk.Equal(ttk.numel("gate"), ttk.numel("up"))],
)


def _swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return (torch.nn.functional.silu(gate.float()) * up.float()).half()


def _swiglu_args(*shape: int, up_shape: Optional[tuple] = None):
    return lambda device: (
        _randn(device, *shape, dtype=torch.float16, scale=2.0, key="gate"),
        _randn(device, *(up_shape or shape), dtype=torch.float16, key="up"),
    )


# ============================================================================================
# 15. Token + position embedding (llm.c encoder forward): int32 token ids, output (B, T, C)
#     from meta_fn, one thread per output element.
# ============================================================================================

ENCODER = r"""
extern "C" __global__ void encoder_forward_kernel(const int* __restrict__ inp, const float* __restrict__ wte,
                                                  const float* __restrict__ wpe, int B, int T, int C,
                                                  float* __restrict__ out) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * T * C) return;
  const int bt = idx / C;
  const int c = idx % C;
  const int t = bt % T;
  const int token = inp[bt];
  out[idx] = wte[(size_t)token * C + c] + wpe[(size_t)t * C + c];
}
"""

_ENC_TOTAL = ttk.numel("inp") * ttk.dim("wte", 1)

_ENCODER_SPEC = ttk.KernelSpec(
    kernel_source=ENCODER,
    kernel_name="encoder_forward_kernel",
    inputs=[
        ttk.InputDecl("inp", dtype=torch.int32),
        ttk.InputDecl("wte", dtype=torch.float32),
        ttk.InputDecl("wpe", dtype=torch.float32),
    ],
    extras=[
        ttk.SizeArg("B", ttk.dim("inp", 0)),
        ttk.SizeArg("T", ttk.dim("inp", 1)),
        ttk.SizeArg("C", ttk.dim("wte", 1)),
    ],
    geometry=ttk.Launch(grid=(ttk.cdiv(_ENC_TOTAL, 256),), block=(256,)),
    requires=[
        ttk.Equal(ttk.dim("wte", 1), ttk.dim("wpe", 1)),
        ttk.InRange(ttk.dim("wpe", 0) - ttk.dim("inp", 1), min=0),  # T <= max positions
        ttk.InRange(_ENC_TOTAL, max=2**31 - 1),  # the kernel indexes with int
    ],
)


def _encoder_meta(inp: torch.Tensor, wte: torch.Tensor, wpe: torch.Tensor) -> torch.Tensor:
    return wte.new_empty((inp.shape[0], inp.shape[1], wte.shape[1]))


def _encoder_reference(inp: torch.Tensor, wte: torch.Tensor, wpe: torch.Tensor) -> torch.Tensor:
    T = inp.shape[1]
    return wte[inp.long()] + wpe[:T][None, :, :]


def _encoder_args(B: int, T: int, C: int, V: int = 50, max_T: Optional[int] = None, wpe_C: Optional[int] = None):
    return lambda device: (
        _randint(device, V, B, T, dtype=torch.int32, key="tok"),
        _randn(device, V, C, key="wte"),
        _randn(device, max_T or T + 3, wpe_C or C, key="wpe"),
    )


# ============================================================================================
# 16. Residual add, a C++ template instantiated for __half (residual_forward_kernel<__half>).
# ============================================================================================

RESIDUAL = r"""
#include <cuda_fp16.h>

template <typename floatX>
__global__ void residual_forward_kernel(floatX* out, const floatX* inp1, const floatX* inp2, int N) {
  const int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx < N) {
    out[idx] = (floatX)((float)inp1[idx] + (float)inp2[idx]);
  }
}
"""

_RESIDUAL_SPEC = ttk.KernelSpec(
    kernel_source=RESIDUAL,
    kernel_name="residual_forward_kernel<__half>",
    inputs=[ttk.InputDecl("inp1", dtype=torch.float16), ttk.InputDecl("inp2", dtype=torch.float16)],
    outputs=[ttk.OutputDecl("out", shape=ttk.SameAs("inp1"))],
    extras=[ttk.SizeArg("N", ttk.numel("inp1"))],
    geometry=ttk.Launch(grid=(ttk.cdiv(ttk.numel("inp1"), 256),), block=(256,)),
    param_order=("out", "inp1", "inp2", "N"),
    requires=[ttk.Equal(ttk.numel("inp1"), ttk.numel("inp2"))],
)


def _residual_args(*shape: int, other: Optional[tuple] = None):
    return lambda device: (
        _randn(device, *shape, dtype=torch.float16, key="a"),
        _randn(device, *(other or shape), dtype=torch.float16, key="b"),
    )


# ============================================================================================
# 17. Cross-entropy forward from probabilities with int64 targets: one thread per (b, t),
#     output shape = probs without its last axis.
# ============================================================================================

CROSSENTROPY = r"""
extern "C" __global__ void crossentropy_forward_kernel(float* __restrict__ losses, const float* __restrict__ probs,
                                                       const long long* __restrict__ targets, int BT, int V) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < BT) {
    const long long ix = targets[i];
    losses[i] = -logf(probs[(size_t)i * V + ix]);
  }
}
"""

_CE_ROWS = ttk.numel("probs") // ttk.dim("probs", -1)

_CROSSENTROPY_SPEC = ttk.KernelSpec(
    kernel_source=CROSSENTROPY,
    kernel_name="crossentropy_forward_kernel",
    inputs=[ttk.InputDecl("probs", dtype=torch.float32), ttk.InputDecl("targets", dtype=torch.int64)],
    outputs=[ttk.OutputDecl("losses", shape=ttk.ReduceDims("probs", (-1,)), dtype_from="probs")],
    extras=[ttk.SizeArg("BT", _CE_ROWS), ttk.SizeArg("V", ttk.dim("probs", -1))],
    geometry=ttk.Launch(grid=(ttk.cdiv(_CE_ROWS, 128),), block=(128,)),
    param_order=("losses", "probs", "targets", "BT", "V"),
    requires=[ttk.Equal(ttk.numel("targets"), _CE_ROWS)],
)


def _crossentropy_reference(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    picked = probs.double().gather(-1, targets.reshape(*probs.shape[:-1], 1)).squeeze(-1)
    return (-torch.log(picked)).float()


def _crossentropy_args(*shape: int, targets_shape: Optional[tuple] = None):
    def make(device: str):
        probs = torch.softmax(_randn("cpu", *shape, scale=2.0, key="logits").double(), dim=-1).float()
        tshape = targets_shape if targets_shape is not None else shape[:-1]
        return probs.to(device), _randint(device, shape[-1], *tshape, key="t")

    return make


# ============================================================================================
# The corpus.
# ============================================================================================

CORPUS: tuple[CorpusKernel, ...] = (
    CorpusKernel(
        name="gelu_bf16_vec8",
        spec=_GELU_SPEC,
        reference=_gelu_reference,
        shapes=(
            lambda d: (_randn(d, 8, dtype=torch.bfloat16),),
            lambda d: (_randn(d, 3, 7, 8, dtype=torch.bfloat16, scale=3.0),),  # 168: one partial block
            lambda d: (_randn(d, 1000008, dtype=torch.bfloat16, scale=3.0),),  # not a multiple of 2048
            lambda d: (_randn(d, 4, 1024, dtype=torch.bfloat16),),
        ),
        bad_shapes=(
            lambda d: (_randn(d, 7, dtype=torch.bfloat16),),
            lambda d: (_randn(d, 1000003, dtype=torch.bfloat16),),
        ),
        atol=2e-2,
        rtol=2e-2,
    ),
    CorpusKernel(
        name="softmax_rows",
        spec=_SOFTMAX_SPEC,
        reference=_softmax_reference,
        shapes=(
            lambda d: (_randn(d, 7, 1),),
            lambda d: (_randn(d, 4, 3, 1000, scale=4.0),),
            lambda d: (_randn(d, 5, 257),),
            # 12250 floats: 49000 bytes dynamic + 256 static = over 48 KB together.
            lambda d: (_randn(d, 3, 12250),),
            lambda d: (_randn(d, 2, 16384),),  # 64 KB of dynamic shared memory
        ),
        bad_shapes=(lambda d: (_randn(d, 2, 16385),),),
        atol=1e-6,
        rtol=1e-4,
    ),
    CorpusKernel(
        name="layernorm_fp16_3out",
        spec=_LAYERNORM_SPEC,
        reference=_layernorm_reference,
        shapes=(
            _layernorm_args(1, 1),
            _layernorm_args(3, 5, 768),  # 15 rows: 2 blocks, the second partly empty
            _layernorm_args(7, 37),
            _layernorm_args(33, 1000),
        ),
        bad_shapes=(
            lambda d: (_randn(d, 4, 64, dtype=torch.float16), _randn(d, 63), _randn(d, 64)),
            lambda d: (_randn(d, 4, 64, dtype=torch.float16), _randn(d, 64), _randn(d, 65)),
        ),
        atol=1e-2,
        rtol=1e-2,
    ),
    CorpusKernel(
        name="transpose_tiled",
        spec=_TRANSPOSE_SPEC,
        reference=lambda idata: idata.t().contiguous(),
        shapes=(
            lambda d: (_randn(d, 1, 1),),
            lambda d: (_randn(d, 7, 1000),),
            lambda d: (_randn(d, 1023, 33),),
            lambda d: (_randn(d, 64, 64),),
        ),
        bad_shapes=(lambda d: (_randn(d, 65535 * 32 + 1, 1),),),
        atol=0.0,
        rtol=0.0,
    ),
    CorpusKernel(
        name="sgemm_naive",
        spec=_SGEMM_NAIVE_SPEC,
        reference=_matmul_reference,
        shapes=(
            _gemm_args(1, 1, 1),
            _gemm_args(7, 13, 1000),
            _gemm_args(33, 65, 17),
            _gemm_args(128, 256, 64),
        ),
        bad_shapes=(_gemm_args(3, 4, 2, K2=5),),
        atol=1e-4,
        rtol=1e-4,
    ),
    CorpusKernel(
        name="sgemm_tiled_template",
        spec=_MATMUL_TILED_SPEC,
        reference=_matmul_reference,
        shapes=(
            _gemm_args(1, 1, 1),
            _gemm_args(7, 13, 1000),
            _gemm_args(33, 65, 17),
            _gemm_args(128, 256, 64),
        ),
        bad_shapes=(_gemm_args(32, 32, 32, K2=31),),
        meta_fn=_matmul_meta,
        atol=1e-4,
        rtol=1e-4,
    ),
    CorpusKernel(
        name="reduce_block_partials",
        spec=_REDUCE_SPEC,
        reference=_reduce_reference,
        shapes=(
            lambda d: (_randn(d, 1),),
            lambda d: (_randn(d, 7),),
            lambda d: (_randn(d, 3, 1024),),
            lambda d: (_randn(d, 1000003),),
        ),
        atol=1e-4,
        rtol=1e-5,
    ),
    CorpusKernel(
        name="flash_attn_fwd",
        spec=_FLASH_ATTN_SPEC,
        reference=_attention_reference,
        shapes=(
            _attention_args(1, 1, 1, 32),
            _attention_args(2, 3, 77, 64),  # 28672 bytes of shared memory
            _attention_args(1, 2, 100, 128),  # 53248 bytes: over 48 KB
            _attention_args(1, 1, 65, 256),  # 102400 bytes
        ),
        bad_shapes=(
            _attention_args(1, 1, 8, 512),  # head dim over 256
            _attention_args(1, 2, 16, 32, kv=(1, 2, 17, 32)),  # K's sequence differs from Q's
            _attention_args(1, 2, 16, 32, v=(1, 2, 16, 16)),  # V's head dim differs
        ),
        atol=1e-4,
        rtol=1e-4,
    ),
    CorpusKernel(
        name="adamw_size_t",
        spec=_ADAMW_SPEC,
        reference=_adamw_reference,
        shapes=(
            _adamw_args(1),
            _adamw_args(7),
            _adamw_args(3, 333),
            _adamw_args(1000003),
        ),
        bad_shapes=(_adamw_args(8, grads_shape=(9,)),),
        atol=1e-5,
        rtol=1e-4,
    ),
    CorpusKernel(
        name="saxpy_scalar_first",
        spec=_SAXPY_SPEC,
        reference=lambda x, y, a: a * x + y.reshape(x.shape),
        shapes=(
            lambda d: (_randn(d, 1, key="x"), _randn(d, 1, key="y"), 2.0),
            lambda d: (_randn(d, 7, key="x"), _randn(d, 7, key="y"), -0.5),
            lambda d: (_randn(d, 1000003, key="x"), _randn(d, 1000003, key="y"), 1.25),  # grid capped: strided
            lambda d: (_randn(d, 3, 111, key="x"), _randn(d, 333, key="y"), 3.0),  # same numel, other shape
        ),
        bad_shapes=(lambda d: (_randn(d, 8, key="x"), _randn(d, 7, key="y"), 1.0),),
        atol=1e-6,
        rtol=1e-6,
    ),
    CorpusKernel(
        name="bias_relu_ptrdiff",
        spec=_BIAS_RELU_SPEC,
        reference=lambda inp, bias: torch.relu(inp + bias),
        shapes=(
            _bias_relu_args(1),
            _bias_relu_args(7, 1),
            _bias_relu_args(5, 3, 129),
            _bias_relu_args(1000003, 3),
        ),
        bad_shapes=(_bias_relu_args(4, 16, bias_len=15),),
        atol=1e-6,
        rtol=1e-6,
    ),
    CorpusKernel(
        name="rmsnorm_heads_bf16",
        spec=_RMSNORM_HEADS_SPEC,
        reference=_rmsnorm_reference,
        shapes=(
            _rmsnorm_args(1, 1, 1),
            _rmsnorm_args(5, 3, 64),
            _rmsnorm_args(2, 3, 4, 17, eps=1e-5),  # rows = 6 over two leading axes
            _rmsnorm_args(7, 12, 128),
        ),
        bad_shapes=(
            _rmsnorm_args(2, 3, 64, weight_len=32),
            lambda d: (_randn(d, 1, 65536, 1, dtype=torch.bfloat16), _randn(d, 1, dtype=torch.bfloat16), 1e-6),
        ),
        atol=2e-2,
        rtol=2e-2,
    ),
    CorpusKernel(
        name="rope_batch_heads",
        spec=_ROPE_SPEC,
        reference=_rope_reference,
        shapes=(
            _rope_args(1, 1, 1, 2),
            _rope_args(2, 3, 7, 16),
            _rope_args(3, 4, 33, 64),
            _rope_args(1, 5, 129, 10),  # T * HS / 2 = 645: over several block strides
        ),
        bad_shapes=(
            _rope_args(1, 2, 7, 16, freqs_shape=(6, 8, 2)),  # wrong T
            _rope_args(1, 2, 7, 16, freqs_shape=(7, 7, 2)),  # wrong half head size
            _rope_args(1, 2, 7, 16, freqs_shape=(7, 8, 3)),  # not (cos, sin) pairs
        ),
        atol=1e-5,
        rtol=1e-5,
    ),
    CorpusKernel(
        name="swiglu_half2",
        spec=_SWIGLU_SPEC,
        reference=_swiglu_reference,
        shapes=(
            _swiglu_args(2),
            _swiglu_args(7, 2),
            _swiglu_args(3, 5, 6),
            _swiglu_args(1000002),
        ),
        bad_shapes=(
            _swiglu_args(7),  # odd: no whole half2
            _swiglu_args(8, up_shape=(10,)),
        ),
        atol=1e-2,
        rtol=1e-2,
    ),
    CorpusKernel(
        name="encoder_int32_tokens",
        spec=_ENCODER_SPEC,
        reference=_encoder_reference,
        shapes=(
            _encoder_args(1, 1, 1),
            _encoder_args(2, 7, 33),
            _encoder_args(4, 64, 768, V=1000),
            _encoder_args(3, 5, 7, max_T=5),
        ),
        bad_shapes=(
            _encoder_args(2, 7, 32, wpe_C=16),
            _encoder_args(2, 9, 8, max_T=8),  # more positions than wpe has
        ),
        meta_fn=_encoder_meta,
        atol=1e-6,
        rtol=1e-6,
    ),
    CorpusKernel(
        name="residual_template_half",
        spec=_RESIDUAL_SPEC,
        reference=lambda inp1, inp2: (inp1.float() + inp2.float().reshape(inp1.shape)).half(),
        shapes=(
            _residual_args(1),
            _residual_args(7),
            _residual_args(1000003),
            _residual_args(4, 3, 5, other=(60,)),
        ),
        bad_shapes=(_residual_args(16, other=(15,)),),
        atol=1e-3,
        rtol=1e-3,
    ),
    CorpusKernel(
        name="crossentropy_int64_targets",
        spec=_CROSSENTROPY_SPEC,
        reference=_crossentropy_reference,
        shapes=(
            _crossentropy_args(1, 1),
            _crossentropy_args(4, 7, 50),
            _crossentropy_args(3, 129, 1000),
        ),
        bad_shapes=(_crossentropy_args(4, 7, 50, targets_shape=(4, 6)),),
        atol=1e-5,
        rtol=1e-5,
    ),
)
