"""Output shapes of ops described by ``meta_fn``, traced with symbolic sizes for TensorRT."""
import logging
import threading
from dataclasses import dataclass
from typing import Any, Dict, Tuple

import torch

from ..errors import Where

log = logging.getLogger("kernelop")

META_HINT = 8
"""The size every traced input axis is assumed to have (>= 2, so no axis specializes to 0 or 1)."""


@dataclass(frozen=True)
class TracedOutput:
    dtype: torch.dtype
    shape: Tuple[Any, ...]  # ints and sympy expressions over the traced symbols


class MetaTracer:
    """Output shapes and dtypes of a registered op, traced once per input ranks, dtypes and scalars.

    Each input axis becomes its own symbol, so a size formula (``2*s0``, ``s0 + s1``) comes out
    whole; the op's fake impl (its ``meta_fn``) runs under ``FakeTensorMode``.
    """

    def __init__(self, where: Where, op_name: str):
        self.where = where
        self.op_name = op_name
        self._memo: Dict[tuple, Tuple[Tuple[TracedOutput, ...], Dict[Any, Tuple[int, int]]]] = {}
        self._lock = threading.Lock()

    def trace(self, ranks: Tuple[int, ...], dtypes: Tuple[torch.dtype, ...], scalars: Tuple[Any, ...]):
        key = (ranks, dtypes, scalars)
        with self._lock:
            if key not in self._memo:
                self._memo[key] = self._trace(ranks, dtypes, scalars)
            return self._memo[key]

    def _trace(self, ranks: Tuple[int, ...], dtypes: Tuple[torch.dtype, ...], scalars: Tuple[Any, ...]):
        import sympy
        from torch._dynamo.source import LocalSource
        from torch._subclasses.fake_tensor import FakeTensorMode
        from torch.fx.experimental.symbolic_shapes import DimDynamic, ShapeEnv

        namespace, name = self.op_name.split("::")
        op = getattr(getattr(torch.ops, namespace), name).default
        env = ShapeEnv(duck_shape=False)
        leaves: Dict[Any, Tuple[int, int]] = {}
        sizes = []
        for index, rank in enumerate(ranks):
            dims = []
            for axis in range(rank):
                source = LocalSource(f"in{index}_{axis}")
                symbol = env.create_symbol(META_HINT, source=source, dynamic_dim=DimDynamic.DYNAMIC)
                leaves[symbol] = (index, axis)
                dims.append(env.create_symintnode(symbol, hint=META_HINT, source=source))
            sizes.append(dims)
        with FakeTensorMode(shape_env=env):
            fakes = [torch.empty(dims, dtype=dtype, device="cuda") for dims, dtype in zip(sizes, dtypes)]
            result = op(*fakes, *scalars)
        outputs = list(result) if isinstance(result, (tuple, list)) else [result]
        traced = []
        for k, out in enumerate(outputs):
            shape = []
            for axis, size in enumerate(out.shape):
                if isinstance(size, torch.SymInt):
                    expr = env.replace(size.node.expr)
                    unknown = [s for s in expr.free_symbols if s not in leaves]
                    if unknown:
                        self.where.fail(
                            f"output {k} axis {axis} has the data-dependent size {expr}; TensorRT plugins built by "
                            "kernelop need sizes computed from the input sizes"
                        )
                    shape.append(expr)
                else:
                    shape.append(int(size))
            traced.append(TracedOutput(out.dtype, tuple(shape)))
        branches = [str(g.expr) for g in env.guards if not isinstance(g.expr, sympy.Eq)]
        if branches:
            log.warning(
                "kernelop.call(%s): meta_fn compared input sizes (%s) while its output shapes were traced for "
                "TensorRT; the shape formulas hold where those comparisons do.",
                self.op_name,
                ", ".join(branches),
            )
        return tuple(traced), leaves
