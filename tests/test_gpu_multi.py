"""Several GPUs: one process using two devices, and two torch.distributed ranks (NCCL).

Needs a machine with at least 2 GPUs; skipped otherwise.
"""
import itertools
import os
import tempfile
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

import kernelop as ttk
from kernelop.compiler.cache import KernelCache
from kernelop.cli.examples import EXAMPLES, RELU
from conftest import module_loads

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs"),
]

_names = itertools.count()


def relu_spec() -> ttk.KernelSpec:
    return ttk.KernelSpec(
        kernel_source=RELU,
        kernel_name="my_relu",
        inputs=[ttk.InputDecl("x")],
        outputs=[ttk.OutputDecl("y", shape=ttk.SameAs(0))],
        extras=[ttk.Numel("x")],
        geometry=ttk.Elementwise(block=(256,)),
    )


def test_one_op_on_two_devices_in_any_order(tmp_path):
    name = f"kmulti::relu_{next(_names)}"
    ttk.cuda_kernel_op(name, relu_spec(), cache=KernelCache(tmp_path))
    op = getattr(torch.ops.kmulti, name.split("::")[1])
    loads = module_loads()
    for device in ["cuda:1", "cuda:0", "cuda:1", "cuda:0"]:
        x = torch.randn(5000, device=device)
        y = op(x)
        assert y.device == x.device
        torch.testing.assert_close(y, torch.relu(x), rtol=0, atol=0)
    assert module_loads() - loads == 2  # one module per device, loaded once
    binaries = ttk.registered_ops()[name].binaries
    contexts = {fn.context for fn in binaries._functions.values()}
    assert len(contexts) == 2


def test_launches_go_to_each_devices_current_stream(tmp_path):
    name = f"kmulti::relu_{next(_names)}"
    ttk.cuda_kernel_op(name, relu_spec(), cache=KernelCache(tmp_path))
    op = getattr(torch.ops.kmulti, name.split("::")[1])
    streams = [torch.cuda.Stream(device=d) for d in (0, 1)]
    xs = [torch.randn(1 << 20, device=f"cuda:{d}") for d in (0, 1)]
    for d in (0, 1):
        torch.cuda.synchronize(d)
    ys = []
    with torch.cuda.stream(streams[0]), torch.cuda.stream(streams[1]):
        for d in (1, 0):
            ys.append((d, op(xs[d])))
    for d, y in ys:
        streams[d].synchronize()
        torch.testing.assert_close(y, torch.relu(xs[d]), rtol=0, atol=0)


def _rank_main(rank: int, world: int, store: str, cache_dir: str, results: dict) -> None:
    import torch.distributed as dist

    os.environ["KERNELOP_CACHE_DIR"] = cache_dir
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        for example in EXAMPLES:
            ttk.cuda_kernel_op(example.op_name, example.spec, meta_fn=example.meta_fn)
        generator = torch.Generator(device="cuda").manual_seed(rank)
        x = torch.randn(16, 64, device="cuda", generator=generator)
        y = torch.randn(16, 64, device="cuda", generator=generator)
        weight = torch.ones(64, device="cuda", requires_grad=True)
        features = torch.ops.kernelop_demo.relu(torch.ops.kernelop_demo.axpy(x, y, 0.5))
        loss = (features * weight).sum()
        loss.backward()
        dist.all_reduce(weight.grad)
        reference = torch.zeros(64, device="cuda")
        for r in range(world):
            g = torch.Generator(device="cuda").manual_seed(r)
            xr = torch.randn(16, 64, device="cuda", generator=g)
            yr = torch.randn(16, 64, device="cuda", generator=g)
            reference += torch.relu(0.5 * xr + yr).sum(0)
        results[rank] = bool(torch.allclose(weight.grad, reference, rtol=1e-5, atol=1e-4))
    finally:
        dist.destroy_process_group()


def test_two_ranks_share_one_cold_cache_in_a_data_parallel_step():
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = os.path.join(tmp, "cache")
        results = mp.Manager().dict()
        mp.spawn(_rank_main, args=(2, os.path.join(tmp, "store"), cache_dir, results), nprocs=2, join=True)
        assert dict(results) == {0: True, 1: True}
        cache = KernelCache(Path(cache_dir))
        entries = cache.entries()
        assert len(entries) == len(EXAMPLES)
        for entry in entries:
            assert cache.get(entry.stem) is not None, f"{entry} is not a valid cache entry"
