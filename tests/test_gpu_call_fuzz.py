"""Call fuzz on the GPU: many random calls of registered ops, each checked against PyTorch.

Ops: the seed relu (``conftest``), the four ops of ``written_kernels`` (a template over four
dtypes, an in-place op with an optional input, a zero-initialised accumulating output, an output
copied from an input) and fourteen kernels of ``kernel_corpus``. Each call is drawn with a seeded
``random.Random``: an op; valid arguments of random ranks (0 to 5 where the op allows them) and
sizes (0, 1, odd, ...); a layout per tensor (contiguous, transposed, sliced with a step, at a
storage offset, expanded, channels-last); in about a third of the calls one defect (a wrong
dtype, a CPU tensor, shapes that break a requirement or the op's ranks, a float scalar beyond a C
float, an argument too many or too few, an argument of the wrong type); and a mode: the current
stream, a side ``torch.cuda.Stream`` whose inputs are written late (a launch on another stream
would read stale values), or a ``torch.cuda.CUDAGraph`` captured once and replayed on new inputs.

The property: a valid call returns the reference result (tolerances per op and dtype) and writes
its in-place arguments, whatever their layout; a call with a defect raises the ``ValueError`` or
``TypeError`` of kernelop (message ``kernelop.call(<op>): ...``), or for a wrong argument count or
type torch's dispatcher error naming the op, and writes nothing. Nothing may hang (a watchdog
ends the process) or raise a CUDA error.

``KERNELOP_FUZZ_CALLS`` (default 600) and ``KERNELOP_FUZZ_SEED`` (default 0) choose the calls;
call ``i`` draws from its own ``random.Random(f"{seed}/{i}")``, so a failure names the call that
reproduces it. ``benchmarks/soak.py`` runs the same ops from several threads for minutes.

Three cases the fuzz found, each fixed and pinned by a test at the end of this file: ``None`` for
a required tensor, a wrong dtype beside ``None`` for an optional tensor, and an expanded view
written in place.
"""
from __future__ import annotations

import faulthandler
import math
import os
import random
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import pytest
import torch

import kernelop as ttk
from conftest import op_packet, seed_relu_fields
from kernel_corpus import CORPUS
from kernelop.compiler.cache import KernelCache
from written_kernels import add_bias_spec, add_positive_spec, axpby_spec, row_sums_spec

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

CALLS = int(os.environ.get("KERNELOP_FUZZ_CALLS", "600"))
SEED = int(os.environ.get("KERNELOP_FUZZ_SEED", "0"))
NAMESPACE = "kofuzzcall"
"""The torch.ops namespace of this file's ops (used by no other test)."""
CALL_TIMEOUT_S = 120
"""A call (with its reference and checks) that takes longer is taken for a hang: the process ends
with exit status 1, the threads' tracebacks on the original stderr."""
SMALL_NUMEL = 1 << 15
"""The most elements of one tensor in a fuzz call: enough for partial blocks and several tiles."""
LATE_INPUT_CYCLES = 1_000_000
"""GPU cycles a side stream sleeps before its inputs are written (about half a millisecond)."""

# -- random arguments ------------------------------------------------------------------------------

SIZES = (0, 1, 1, 2, 3, 5, 7, 8, 16, 31, 32, 33, 64, 127, 128, 255, 256, 257, 1000, 1023, 1025)
"""Axis sizes drawn most often: empty, one, odd, around warp, block and tile sizes."""
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
DTYPES = (*FLOAT_DTYPES, torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64, torch.bool)
"""The dtypes a wrong-dtype defect picks from."""
TOLERANCE = {torch.float32: (1e-5, 1e-5), torch.float64: (1e-12, 1e-12), torch.float16: (2e-3, 2e-3), torch.bfloat16: (2e-2, 2e-2)}
"""(atol, rtol) of an op computed in its own dtype; integers compare exactly."""


def f32(value: float) -> float:
    """``value`` rounded to a C float, so that a kernel's float parameter holds it exactly."""
    return struct.unpack("f", struct.pack("f", value))[0]


class Draw:
    """The random choices of one call (``rng``) and its random tensors (``gen``, on ``device``).

    Choices come from ``rng`` alone, so that ``redraw`` can replay them (same shapes and
    scalars, new tensor values). ``max_numel`` caps each tensor's elements; with ``big``, one
    free axis of ``shape`` grows to fill most of the cap; ``want`` makes ``dtype`` pick that
    dtype where it is offered (the soak's warm-up).
    """

    def __init__(self, rng: random.Random, device: Any, max_numel: int = SMALL_NUMEL, big: bool = False,
                 want: Optional[torch.dtype] = None):
        self.rng, self.device = rng, torch.device(device)
        self.gen = torch.Generator(device=self.device)
        self.gen.manual_seed(rng.getrandbits(62))
        self.max_numel, self.big, self.want = max_numel, big, want

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, options: Sequence[Any]) -> Any:
        return options[self.rng.randrange(len(options))]

    def dtype(self, options: Sequence[torch.dtype]) -> torch.dtype:
        return self.want if self.want in options else self.pick(options)

    def rank(self, low: int = 0, high: int = 5) -> int:
        return self.rng.randint(low, high)

    def size(self, low: int = 0, high: int = 1100) -> int:
        fits = [s for s in SIZES if low <= s <= high]
        return self.pick(fits) if fits and self.chance(0.8) else self.rng.randint(low, high)

    def shape(self, rank: int, low: int = 0, budget: Optional[int] = None) -> tuple[int, ...]:
        """``rank`` free axes of at least ``low``, at most ``budget`` (default ``max_numel``) elements,
        not counting empty axes (an empty tensor's other axes stay within the budget too)."""
        cap = max(1, min(self.max_numel if budget is None else budget, self.max_numel))
        dims = [self.size(low) for _ in range(rank)]
        if self.big and rank:
            dims = [max(d, 1) for d in dims]
            axis = self.rng.randrange(rank)
            rest = math.prod(dims) // dims[axis]
            dims[axis] = max(low, 1, self.rng.randint(cap // 2, cap) // rest)
        floor = max(low, 1)
        while math.prod(max(x, 1) for x in dims) > cap and max(dims) > floor:
            axis = dims.index(max(dims))
            dims[axis] = max(floor, dims[axis] // 2)
        return tuple(dims)

    def same_numel(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Another shape with as many elements (a flat, reversed or padded view of ``shape``)."""
        n = math.prod(shape)
        options = [shape, (n,), tuple(reversed(shape))] + [(*shape, 1), (1, *shape)] * (len(shape) < 5)
        return self.pick(options + [()] if n == 1 else options)

    def other_numel(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A shape with a different number of elements, not many more."""
        n = math.prod(shape) + self.pick((1, 2, 7))
        longer = shape and 0 < math.prod(shape[:-1]) <= max(8, math.prod(shape) // 4)
        return self.pick([(n,), (*shape[:-1], shape[-1] + 1)] if longer else [(n,)])

    def scalar(self) -> float:
        """A float argument a C float holds exactly; sometimes a Python int (the schema converts it)."""
        return self.rng.randint(-3, 3) if self.chance(0.15) else f32(self.rng.uniform(-2.0, 2.0))

    def randn(self, shape: Sequence[int], dtype: torch.dtype = torch.float32, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(tuple(shape), generator=self.gen, device=self.device) * scale).to(dtype)

    def rand(self, shape: Sequence[int], low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return torch.rand(tuple(shape), generator=self.gen, device=self.device) * (high - low) + low

    def randint(self, low: int, high: int, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        return torch.randint(low, high, tuple(shape), generator=self.gen, device=self.device, dtype=dtype)


# -- the ops ----------------------------------------------------------------------------------------

Tolerance = Callable[[tuple], tuple[float, float]]


def by_dtype(args: tuple) -> tuple[float, float]:
    """The tolerance of the first tensor argument's dtype."""
    first = next(a for a in args if isinstance(a, torch.Tensor))
    return TOLERANCE.get(first.dtype, (0.0, 0.0))


def fixed(atol: float, rtol: float) -> Tolerance:
    return lambda args: (atol, rtol)


@dataclass(frozen=True)
class FuzzOp:
    """An op, how to call it validly and invalidly, and what it must return.

    ``make`` draws valid arguments (contiguous tensors on the draw's device); each of ``bad``
    draws arguments that a requirement of the spec, or the ranks its sizes need, refuse with
    ``ValueError``. ``reference`` returns the expected output(s), or for an op with ``mutates``
    (the positions of arguments written in place) the expected values of those arguments.
    ``float_scalars`` are the positions of arguments the kernel takes as a C ``float``; ``dtypes``
    the dtypes ``make`` chooses between (``Draw.dtype``).
    """

    name: str
    spec: ttk.KernelSpec
    reference: Callable[..., Any]
    make: Callable[[Draw], tuple]
    bad: tuple[Callable[[Draw], tuple], ...] = ()
    tolerance: Tolerance = by_dtype
    meta_fn: Optional[Callable[..., Any]] = None
    mutates: tuple[int, ...] = ()
    float_scalars: tuple[int, ...] = ()
    dtypes: tuple[torch.dtype, ...] = ()


_CORPUS = {kernel.name: kernel for kernel in CORPUS}
RELU_DTYPES = (torch.float32, torch.float32, torch.float32, torch.int32)
"""The seed relu declares no dtype: any 4-byte dtype passes (its kernel reads ``const float*``)."""


def _corpus(name: str, make: Callable[[Draw], tuple], bad: tuple = (), reference: Optional[Callable[..., Any]] = None,
            tolerance: Optional[Tolerance] = None, **fields: Any) -> FuzzOp:
    """A corpus kernel with its spec, meta_fn, reference and tolerance."""
    kernel = _CORPUS[name]
    return FuzzOp(name, kernel.spec, reference or kernel.reference, make, bad, tolerance or fixed(kernel.atol, kernel.rtol),
                  kernel.meta_fn, **fields)


def _relu(d: Draw) -> tuple:
    shape = d.shape(d.rank())
    dtype = d.dtype(RELU_DTYPES)
    return (d.randn(shape) if dtype.is_floating_point else d.randint(-1000, 1000, shape, dtype),)


def _axpby(d: Draw) -> tuple:
    dtype = d.dtype(FLOAT_DTYPES)
    shape = d.shape(d.rank())
    return d.randn(shape, dtype), d.randn(d.same_numel(shape), dtype), d.scalar(), d.scalar()


def _axpby_bad(d: Draw) -> tuple:
    dtype = d.dtype(FLOAT_DTYPES)
    shape = d.shape(d.rank())
    return d.randn(shape, dtype), d.randn(d.other_numel(shape), dtype), 1.0, 1.0


def _axpby_reference(x: torch.Tensor, y: torch.Tensor, a: float, b: float) -> torch.Tensor:
    return (a * x.double() + b * y.double().reshape(x.shape)).to(x.dtype)


def _add_bias(d: Draw) -> tuple:
    shape = d.shape(d.rank(1))
    return d.randn(shape), d.randn(shape[-1:]) if d.chance(0.7) else None, d.scalar()


def _add_bias_reference(x: torch.Tensor, bias: Optional[torch.Tensor], alpha: float) -> torch.Tensor:
    return x + alpha * (bias if bias is not None else torch.ones_like(x))


def _row_sums(d: Draw) -> tuple:
    return (d.randn(d.shape(2)),)


def _row_sums_tolerance(args: tuple) -> tuple[float, float]:
    """Float32 atomic adds in any order, each rounding: a row of n values may be off by up to
    n * 2**-24 * sum|x|. Random values mostly cancel; alike ones (an expanded row) reach the bound."""
    x = args[0]
    n = x.shape[1] if x.dim() == 2 else 1
    bound = n * 2.0**-24 * x.double().abs().sum(-1).max().item() if x.numel() else 0.0
    return max(1e-4 * max(1.0, math.sqrt(n)), bound), 1e-4


def _add_positive(d: Draw) -> tuple:
    shape = d.shape(d.rank())
    return d.randn(shape), d.randn(d.same_numel(shape))


def _pair_bad(dtype: torch.dtype) -> Callable[[Draw], tuple]:
    """Two tensors whose element counts differ (a spec requiring them equal refuses)."""

    def make(d: Draw) -> tuple:
        shape = d.shape(d.rank())
        return d.randn(shape, dtype), d.randn(d.other_numel(shape), dtype)

    return make


def _rank(rank: int, dtype: torch.dtype = torch.float32, *rest: Callable[[Draw], Any]) -> Callable[[Draw], tuple]:
    """A tensor of a rank the op's sizes cannot use (then the ``rest`` arguments)."""
    return lambda d: (d.randn(d.shape(rank), dtype), *(r(d) for r in rest))


def _vector(dtype: torch.dtype) -> Callable[[Draw], torch.Tensor]:
    """A one-element vector (beside a tensor of a rank the op cannot use)."""
    return lambda d: d.randn((1,), dtype)


def _gelu(d: Draw) -> tuple:
    k = d.shape(1, budget=d.max_numel // 8)[0]
    lead = d.shape(d.rank(1) - 1, budget=d.max_numel // (8 * max(k, 1)))
    return (d.randn((*lead, 8 * k), torch.bfloat16, scale=3.0),)


def _gelu_bad(d: Draw) -> tuple:
    """An odd number of elements (not a multiple of 8); rank 0 holds one."""
    odd = tuple(d.pick((1, 3, 5, 7, 33)) for _ in range(d.rank(0, 2)))
    return (d.randn(odd + ((8 * d.size(0, 64) + d.pick((1, 3, 5, 7)),) if odd or d.chance(0.5) else ()), torch.bfloat16),)


def _softmax(d: Draw) -> tuple:
    C = d.size(1, 16384)
    return (d.randn((*d.shape(d.rank(1) - 1, budget=d.max_numel // C), C), scale=d.pick((1.0, 4.0))),)


def _softmax_bad(d: Draw) -> tuple:
    C = d.pick((0, 16385, 16385 + d.size(1, 4000)))
    return (d.randn((*d.shape(d.rank(0, 2), budget=4), C)),)


def _layernorm(d: Draw, C: Optional[int] = None, weight: Optional[int] = None, bias: Optional[int] = None) -> tuple:
    C = d.size(1, 4096) if C is None else C
    inp = d.randn((*d.shape(d.rank(1) - 1, budget=d.max_numel // C), C), torch.float16, scale=2.0)
    return inp, d.randn((C if weight is None else weight,)) * 0.5 + 1.0, d.randn((C if bias is None else bias,)) * 0.1


def _layernorm_bad(d: Draw) -> tuple:
    C = d.size(1, 512)
    wrong = C + d.pick((1, 2, 5))
    return _layernorm(d, C, weight=wrong) if d.chance(0.5) else _layernorm(d, C, bias=wrong)


def _transpose(d: Draw) -> tuple:
    rows, cols = d.shape(2)
    return (d.randn((min(rows, 65535 * 32), cols)),)


def _matmul(d: Draw, K2: Optional[int] = None) -> tuple:
    M, K, N = d.shape(3, budget=min(d.max_numel, 1 << 30))
    M, N, K = min(M, 4096), min(N, 4096), min(K, 1024)
    return d.randn((M, K)), d.randn((K if K2 is None else K2, N))


def _matmul_tolerance(args: tuple) -> tuple[float, float]:
    K = args[0].shape[-1] if args[0].dim() else 1
    return 1e-4 * max(1.0, math.sqrt(K / 256)), 1e-4


def _reduce(d: Draw) -> tuple:
    return (d.randn(d.shape(d.rank())),)


def _adamw(d: Draw, wrong: Optional[int] = None) -> tuple:
    shape = d.shape(d.rank())
    shapes = [shape] + [d.same_numel(shape) for _ in range(3)]
    if wrong is not None:
        shapes[wrong] = d.other_numel(shape)
    step = d.rng.randint(1, 10)
    return (
        d.randn(shapes[0]), d.randn(shapes[1]), d.randn(shapes[2], scale=0.1), d.rand(shapes[3], 0.0, 0.5),
        f32(d.rng.uniform(1e-4, 1e-2)), f32(0.9), f32(0.999), f32(1 - 0.9**step), f32(1 - 0.999**step), f32(1e-8),
        f32(d.rng.uniform(0.0, 0.1)),
    )


def _adamw_reference(params: torch.Tensor, *rest: Any) -> tuple:
    tensors = [t.reshape(params.shape) for t in rest[:3]]
    return _CORPUS["adamw_size_t"].reference(params, *tensors, *rest[3:])


def _saxpy(d: Draw) -> tuple:
    shape = d.shape(d.rank())
    return d.randn(shape), d.randn(d.same_numel(shape)), d.scalar()


def _saxpy_bad(d: Draw) -> tuple:
    return (*_pair_bad(torch.float32)(d), 1.0)


def _bias_relu(d: Draw, wrong: bool = False) -> tuple:
    shape = d.shape(d.rank(1))
    return d.randn(shape), d.randn((shape[-1] + (d.pick((1, 2)) if wrong else 0),))


def _swiglu(d: Draw) -> tuple:
    k = d.shape(1, budget=d.max_numel // 2)[0]
    shape = (*d.shape(d.rank(1) - 1, budget=d.max_numel // (2 * max(k, 1))), 2 * k)  # whole half2 pairs
    return d.randn(shape, torch.float16, scale=2.0), d.randn(d.same_numel(shape), torch.float16)


def _swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return _CORPUS["swiglu_half2"].reference(gate, up.reshape(gate.shape))


def _swiglu_bad(d: Draw) -> tuple:
    if d.chance(0.5):
        return _pair_bad(torch.float16)(d)
    odd = tuple(d.pick((1, 3, 5, 7, 33, 1001)) for _ in range(d.rank(0, 2)))
    return d.randn(odd, torch.float16), d.randn(d.same_numel(odd), torch.float16)


def _encoder(d: Draw, wider_wpe: int = 0, missing_positions: int = 0) -> tuple:
    """Tokens (B, T), token table (V, C), position table (max_T, C); the bad variants widen the
    position table or give it fewer than T rows."""
    C = d.size(0, 1024)
    B, T = d.shape(2, budget=d.max_numel // max(C, 1))
    T, V = max(T, missing_positions), d.size(1, max(1, min(1000, d.max_numel // max(C, 1))))
    max_T = T - missing_positions if missing_positions else T + d.rng.randint(0, 5)
    return d.randint(0, V, (B, T), torch.int32), d.randn((V, C)), d.randn((max_T, C + wider_wpe))


def _crossentropy(d: Draw, wrong: bool = False) -> tuple:
    V = d.size(1, 2048)
    lead = d.shape(d.rank(1) - 1, budget=d.max_numel // V)
    probs = torch.softmax(d.randn((*lead, V), torch.float64, scale=2.0), dim=-1).float()
    targets = d.same_numel(lead) if not wrong else d.other_numel(lead)
    return probs, d.randint(0, V, targets, torch.int64)


def _rmsnorm(d: Draw, H: Optional[int] = None, weight: Optional[int] = None) -> tuple:
    D = d.size(0, 512)
    H = d.size(1, 64) if H is None else H
    lead = d.shape(d.rank(2) - 2, budget=d.max_numel // max(1, H * D))
    x = d.randn((*lead, H, D), torch.bfloat16)
    return x, d.randn((D if weight is None else weight,), torch.bfloat16, scale=0.2) + 1.0, d.pick((1e-6, 1e-5))


def _rmsnorm_bad(d: Draw) -> tuple:
    if d.chance(0.5):
        return _rmsnorm(d, H=0)
    x, _, eps = _rmsnorm(d)
    return x, d.randn((x.shape[-1] + 1,), torch.bfloat16), eps


def _residual(d: Draw) -> tuple:
    shape = d.shape(d.rank())
    return d.randn(shape, torch.float16), d.randn(d.same_numel(shape), torch.float16)


OPS: tuple[FuzzOp, ...] = (
    FuzzOp("relu", ttk.KernelSpec(**seed_relu_fields()), lambda x: torch.clamp(x, min=0), _relu, dtypes=RELU_DTYPES),
    FuzzOp("axpby", axpby_spec(), _axpby_reference, _axpby, (_axpby_bad,), float_scalars=(2, 3), dtypes=FLOAT_DTYPES),
    FuzzOp("add_bias_", add_bias_spec(), _add_bias_reference, _add_bias, (lambda d: (d.randn(()), None, 1.0),),
           mutates=(0,), float_scalars=(2,)),
    FuzzOp("row_sums", row_sums_spec(), lambda x: x.double().sum(1).float(), _row_sums, (_rank(0), _rank(1)),
           tolerance=_row_sums_tolerance),
    FuzzOp("add_positive", add_positive_spec(), lambda x, y: x + y.reshape(x.shape).clamp(min=0), _add_positive,
           (_pair_bad(torch.float32),), tolerance=fixed(1e-6, 1e-6)),
    _corpus("gelu_bf16_vec8", _gelu, (_gelu_bad,)),
    _corpus("softmax_rows", _softmax, (_softmax_bad, _rank(0))),
    _corpus("layernorm_fp16_3out", _layernorm, (_layernorm_bad, _rank(0, torch.float16, _vector(torch.float32), _vector(torch.float32)))),
    _corpus("transpose_tiled", _transpose, (_rank(0), _rank(1))),
    _corpus("sgemm_tiled_template", _matmul, (lambda d: _matmul(d, K2=d.size(0, 64) * 2 + 1025),), tolerance=_matmul_tolerance),
    _corpus("reduce_block_partials", _reduce),
    _corpus("adamw_size_t", _adamw, (lambda d: _adamw(d, wrong=d.rng.randint(1, 3)),), reference=_adamw_reference,
            float_scalars=tuple(range(4, 11))),
    _corpus("saxpy_scalar_first", _saxpy, (_saxpy_bad,), float_scalars=(2,)),
    _corpus("bias_relu_ptrdiff", _bias_relu, (lambda d: _bias_relu(d, wrong=True), _rank(0, torch.float32, _vector(torch.float32)))),
    _corpus("swiglu_half2", _swiglu, (_swiglu_bad,), reference=_swiglu_reference),
    _corpus("encoder_int32_tokens", _encoder, (lambda d: _encoder(d, wider_wpe=d.pick((1, 2))),
                                              lambda d: _encoder(d, missing_positions=d.pick((1, 3))))),
    _corpus("crossentropy_int64_targets", _crossentropy, (lambda d: _crossentropy(d, wrong=True),)),
    _corpus("rmsnorm_heads_bf16", _rmsnorm, (_rmsnorm_bad, _rank(1, torch.bfloat16, _vector(torch.bfloat16), lambda d: 1e-6))),
    _corpus("residual_template_half", _residual, (_pair_bad(torch.float16),)),
)


@dataclass(frozen=True)
class RegisteredOp:
    fuzz: FuzzOp
    name: str  # qualified: ``<namespace>::<fuzz.name>``
    packet: Any  # ``torch.ops.<namespace>.<name>``


def register_ops(namespace: str, cache: KernelCache) -> list[RegisteredOp]:
    """Every op of ``OPS`` as ``<namespace>::<name>`` (again: a no-op)."""
    registered = []
    for op in OPS:
        name = f"{namespace}::{op.name}"
        ttk.cuda_kernel_op(name, op.spec, meta_fn=op.meta_fn, cache=cache)
        registered.append(RegisteredOp(op, name, op_packet(name)))
    return registered


# -- layouts, defects and checks (shared with benchmarks/soak.py) ------------------------------------

LAYOUTS = ("transposed", "strided", "offset", "expanded", "channels_last")


def relayout(t: torch.Tensor, how: str, rng: random.Random) -> torch.Tensor:
    """``t``'s values in another layout (``expanded``: a view repeating one slice of ``t``)."""
    if how == "transposed" and t.dim() >= 2:
        i, j = rng.sample(range(t.dim()), 2)
        return t.transpose(i, j).contiguous().transpose(i, j)
    if how == "strided" and t.dim() >= 1:
        axis, step = rng.randrange(t.dim()), rng.choice((2, 3))
        return t.repeat_interleave(step, dim=axis)[(slice(None),) * axis + (slice(None, None, step),)]
    if how == "offset":  # contiguous, at a storage offset that keeps 16-byte alignment (vector loads)
        pad = 16 // t.element_size() * rng.randint(1, 3)
        view = torch.empty(t.numel() + pad, dtype=t.dtype, device=t.device)[pad:].view(t.shape)
        return view.copy_(t)
    if how == "expanded" and t.dim() >= 1 and t.numel() > 0:
        axis = rng.randrange(t.dim())
        return t.narrow(axis, 0, 1).expand(t.shape)
    if how == "channels_last" and t.dim() == 4:
        return t.contiguous(memory_format=torch.channels_last)
    return t


def relayout_args(op: FuzzOp, args: tuple, rng: random.Random, p: float = 0.4) -> tuple:
    """Each tensor argument in a random layout with probability ``p`` (never an expanded view
    for an argument written in place: torch refuses writes to overlapping memory)."""
    out = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor) and rng.random() < p:
            a = relayout(a, rng.choice(LAYOUTS[:3] + LAYOUTS[4:] if i in op.mutates else LAYOUTS), rng)
        out.append(a)
    return tuple(out)


def overlapping(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and any(stride == 0 and size > 1 for stride, size in zip(t.stride(), t.shape))


def refusal_problem(exc: BaseException, op_name: str, expected: type) -> Optional[str]:
    """Why ``exc`` is not kernelop's refusal of a call of ``op_name`` with ``expected`` type, or None."""
    prefix = f"kernelop.call({op_name}): "
    if type(exc) is expected and str(exc).startswith(prefix):
        return None
    return f"expected {expected.__name__} starting {prefix!r}, got {type(exc).__name__}: {str(exc)[:400]}"


def dispatcher_problem(exc: BaseException, op_name: str) -> Optional[str]:
    """Why ``exc`` is not torch's refusal of a wrong argument count or type for ``op_name``, or None."""
    if isinstance(exc, (RuntimeError, NotImplementedError)) and op_name in str(exc) and "CUDA" not in str(exc):
        return None
    return f"expected torch's argument error naming {op_name}, got {type(exc).__name__}: {str(exc)[:400]}"


def result_problem(op: FuzzOp, args: tuple, result: Any, expected: Any) -> Optional[str]:
    """Why ``result`` (for an in-place op: the written arguments) differs from ``expected``, or None."""
    if op.mutates:
        if result is not None:
            return f"an in-place op returned {type(result).__name__}, not None"
        result = args[op.mutates[0]] if len(op.mutates) == 1 else tuple(args[i] for i in op.mutates)
    atol, rtol = op.tolerance(args)
    try:
        torch.testing.assert_close(result, expected, atol=atol, rtol=rtol)
    except AssertionError as exc:
        return f"wrong result: {str(exc)[:600]}"
    return None


def describe(args: tuple) -> str:
    def one(a: Any) -> str:
        if isinstance(a, torch.Tensor):
            return f"{str(a.dtype).replace('torch.', '')}{list(a.shape)} strides {a.stride()} offset {a.storage_offset()} on {a.device}"
        return repr(a)

    return "(" + ", ".join(one(a) for a in args) + ")"


# -- one fuzz call ----------------------------------------------------------------------------------

OK = "ok"
DISPATCH = "dispatch"
"""Outcomes besides ``ValueError`` and ``TypeError``: the reference result; torch's argument error."""


@dataclass
class Call:
    op: RegisteredOp
    args: tuple
    expect: frozenset  # of OK, DISPATCH, ValueError, TypeError
    defect: str
    mode: str  # "eager", "stream" or "graph"
    redraw: Callable[[], tuple]  # the same valid arguments' shapes and scalars with new values (contiguous)

    def label(self, index: int) -> str:
        return f"call {index} (seed {SEED}): {self.op.name} [{self.defect}, {self.mode}] args {describe(self.args)}"


def accepted_dtypes(op: FuzzOp, position: int, t: torch.Tensor) -> set[torch.dtype]:
    """The dtypes argument ``position`` may have in this call: the declared one; for a template
    parameter, the one the call's other arguments of that type have; else any of its element size."""
    declared = op.spec.inputs[position].dtype
    if isinstance(declared, torch.dtype):
        return {declared}
    if isinstance(declared, ttk.TypeParam):
        return {t.dtype}
    return {dtype for dtype in DTYPES if dtype.itemsize == t.element_size()}


def draw_call(rop: RegisteredOp, rng: random.Random, device: str) -> Call:
    """One call of ``rop``: valid arguments in random layouts, at most one defect (and the
    outcomes it allows), and the mode to call in."""
    op, d = rop.fuzz, Draw(rng, device)
    defects = ["dtype", "device", "arity", "type"] + ["requires"] * bool(op.bad) + ["scalar"] * bool(op.float_scalars)
    defect = rng.choice(defects) if rng.random() < 0.35 else "none"
    state = rng.getstate()
    args = rng.choice(op.bad)(d) if defect == "requires" else op.make(d)
    after = rng.getstate()

    def redraw() -> tuple:
        rng.setstate(state)
        fresh = op.make(d)
        rng.setstate(after)
        return fresh

    args = list(relayout_args(op, args, rng))
    tensors = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
    expect: frozenset = frozenset({OK})
    if defect == "dtype":
        i = rng.choice(tensors)
        accepted = accepted_dtypes(op, i, args[i])
        args[i] = args[i].to(rng.choice([t for t in DTYPES if t not in accepted]))
        expect = frozenset({TypeError})
    elif defect == "device":
        i = rng.choice(tensors)
        args[i] = args[i].cpu()
        expect = frozenset({ValueError})
    elif defect == "requires":
        expect = frozenset({ValueError})
    elif defect == "scalar":  # packing refuses it: only a launch packs (an empty input launches nothing)
        args[rng.choice(op.float_scalars)] = rng.choice((1e39, -1e39, 3.5e38))
        empty = any(args[i].numel() == 0 for i in tensors)
        expect = frozenset({ValueError, OK}) if empty else frozenset({ValueError})
    elif defect == "arity":
        args = args[:-1] if rng.random() < 0.5 else args + [rng.choice((1.0, args[tensors[0]]))]
        expect = frozenset({DISPATCH})
    elif defect == "type":
        i = rng.randrange(len(args))
        args[i] = rng.choice(([1.0, 2.0], "x", 3) if i in tensors or args[i] is None else ("x", [1.0], None))
        expect = frozenset({DISPATCH})
    graph_ok = defect == "none" and all(args[i].numel() for i in tensors)
    mode = rng.choice(["eager"] * 6 + ["stream"] * 2 + ["graph"] * (2 if graph_ok else 0))
    return Call(rop, tuple(args), expect, defect, mode, redraw)


def refill(args: tuple, fresh: tuple) -> tuple:
    """Write ``fresh``'s values into ``args``' tensors in place (not into expanded views, which
    overlap); returns the arguments as the op now sees them, for the reference."""
    seen = []
    for a, f in zip(args, fresh):
        if isinstance(a, torch.Tensor) and not overlapping(a):
            a.copy_(f)
            a = f
        seen.append(a)
    return tuple(seen)


def refill_view(args: tuple, fresh: tuple) -> tuple:
    """The arguments as ``refill`` will leave them, without writing them yet."""
    return tuple(f if isinstance(a, torch.Tensor) and not overlapping(a) else a for a, f in zip(args, fresh))


def run_call(call: Call) -> str:
    """Make the call in its mode and check it; returns OK or "refused", raises AssertionError."""
    op, packet, args = call.op.fuzz, call.op.packet, call.args
    if call.mode == "graph":
        return _run_graph(call)
    written = {i: args[i].clone() for i in op.mutates if isinstance(args[i], torch.Tensor)}
    expected, late = None, None
    if OK in call.expect:
        late = call.redraw() if call.mode == "stream" else None
        expected = op.reference(*(args if late is None else refill_view(args, late)))
    current = torch.cuda.current_stream()
    stream = torch.cuda.Stream() if call.mode == "stream" else current
    stream.wait_stream(current)
    try:
        with torch.cuda.stream(stream):
            if late is not None:
                torch.cuda._sleep(LATE_INPUT_CYCLES)  # inputs written late: a launch on another stream reads stale ones
                refill(args, late)
            result = packet(*args)
        current.wait_stream(stream)
        torch.cuda.synchronize()
    except Exception as exc:  # a refusal, checked below; a CUDA error raises again from synchronize
        torch.cuda.synchronize()
        problem = _refused_problem(call, exc)
        assert problem is None, problem
        for i, before in written.items():
            assert torch.equal(args[i], before), f"refused, but argument {i} was written"
        return "refused"
    assert OK in call.expect, f"expected {sorted(map(str, call.expect))}, but the call returned"
    problem = result_problem(op, args, result, expected)
    assert problem is None, problem
    return OK


def _refused_problem(call: Call, exc: BaseException) -> Optional[str]:
    """Why ``exc`` is none of the refusals the call allows, or None."""
    problems = []
    for outcome in call.expect - {OK}:
        problem = dispatcher_problem(exc, call.op.name) if outcome == DISPATCH else refusal_problem(exc, call.op.name, outcome)
        if problem is None:
            return None
        problems.append(problem)
    return "; ".join(problems) or f"expected the reference result, got {type(exc).__name__}: {str(exc)[:400]}"


def _run_graph(call: Call) -> str:
    """Capture the call once (after an eager warm-up outside the capture), then replay it twice
    on new input values written in place."""
    op, packet, args = call.op.fuzz, call.op.packet, call.args
    packet(*args)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        result = packet(*args)
    for _ in range(2):
        expected = op.reference(*refill(args, call.redraw()))
        graph.replay()
        torch.cuda.synchronize()
        problem = result_problem(op, args, result, expected)
        assert problem is None, f"replay: {problem}"
    return OK


def cuda_works() -> bool:
    """Whether the CUDA context still runs work (a fault in a kernel poisons it for good)."""
    try:
        torch.cuda.synchronize()
    except RuntimeError:
        return False
    return True


# -- the tests --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_ops(tmp_path_factory: pytest.TempPathFactory) -> list[RegisteredOp]:
    namespace = f"{NAMESPACE}{os.getpid()}"
    return register_ops(namespace, KernelCache(tmp_path_factory.mktemp("kernelop-call-fuzz")))


def test_every_call_returns_the_reference_or_is_refused_by_name(fuzz_ops, capsys):
    """The property of the module docstring, over ``KERNELOP_FUZZ_CALLS`` calls; prints a summary."""
    outcomes: Counter = Counter()
    per_op: dict[str, Counter] = {rop.fuzz.name: Counter() for rop in fuzz_ops}
    failures: list[str] = []
    start = time.perf_counter()
    try:
        for index in range(CALLS):
            rng = random.Random(f"{SEED}/{index}")
            call = draw_call(rng.choice(fuzz_ops), rng, "cuda")
            faulthandler.dump_traceback_later(CALL_TIMEOUT_S, exit=True, file=sys.__stderr__)  # a hang ends the process
            try:
                outcome = run_call(call)
            except Exception as exc:  # AssertionError: the property broke; else a CUDA error, or a bug here
                failures.append(f"{call.label(index)}: {'' if isinstance(exc, AssertionError) else type(exc).__name__ + ': '}{exc}")
                outcome = "failed"
                if not cuda_works():
                    break
            outcomes[outcome] += 1
            outcomes[call.mode] += 1
            per_op[call.op.fuzz.name][outcome] += 1
        torch.cuda.synchronize()
    finally:
        faulthandler.cancel_dump_traceback_later()
    ops = ", ".join(f"{name} {c[OK]}/{c['refused']}" for name, c in per_op.items())
    with capsys.disabled():
        print(f"\ncall fuzz, seed {SEED}: {sum(per_op[n].total() for n in per_op)} calls in {time.perf_counter() - start:.1f} s: "
              f"{outcomes[OK]} ok, {outcomes['refused']} refused, {len(failures)} failed "
              f"(eager {outcomes['eager']}, side stream {outcomes['stream']}, graph {outcomes['graph']}); "
              f"ok/refused per op: {ops}")
    assert not failures, f"{len(failures)} calls broke the property:\n" + "\n".join(failures[:25])


def test_none_for_a_required_tensor_is_refused_by_name(fuzz_ops):
    """The dispatcher passes None for a ``Tensor`` argument through; the fake impl refuses it
    with kernelop's TypeError, the eager launch should too."""
    axpby = next(rop for rop in fuzz_ops if rop.fuzz.name == "axpby")
    with pytest.raises(TypeError, match=rf"^kernelop\.call\({axpby.name}\): argument 'y' must be a Tensor"):
        axpby.packet(torch.ones(4, device="cuda"), None, 1.0, 1.0)


def test_a_wrong_dtype_beside_a_none_optional_input_is_refused_by_name(fuzz_ops):
    add_bias = next(rop for rop in fuzz_ops if rop.fuzz.name == "add_bias_")
    with pytest.raises(TypeError, match=rf"^kernelop\.call\({add_bias.name}\): argument 'x' must have dtype torch.float32"):
        add_bias.packet(torch.ones(4, 3, device="cuda", dtype=torch.float64), None, 1.0)


def test_an_expanded_view_written_in_place_is_refused_before_launch(fuzz_ops):
    add_bias = next(rop for rop in fuzz_ops if rop.fuzz.name == "add_bias_")
    row = torch.zeros(1, 3, device="cuda")
    with pytest.raises(ValueError, match=rf"^kernelop\.call\({add_bias.name}\): argument 'x' is written in place, but some of its elements share memory"):
        add_bias.packet(row.expand(4, 3), torch.ones(3, device="cuda"), 1.0)
    assert not row.any()
