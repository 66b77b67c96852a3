"""Registration under concurrency: threads and processes registering the same spec all succeed;
different specs under one name give exactly one winner, and the others a clear ValueError."""
from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import kernelop as ttk
from kernelop.compiler.cache import KernelCache

from conftest import op_packet, seed_relu_fields

THREADS = 16
_SPAWN = multiprocessing.get_context("spawn")


def _relu_spec(block: int = 256) -> ttk.KernelSpec:
    return ttk.KernelSpec(**{**seed_relu_fields(), "geometry": ttk.Elementwise(block=(block,))})


def _race(register, count: int) -> list:
    """Run ``register(i)`` in ``count`` threads released together; each one's result or exception."""
    barrier = threading.Barrier(count)

    def attempt(i: int):
        barrier.wait()
        try:
            register(i)
            return None
        except Exception as exc:  # noqa: BLE001 - the outcome is what is checked
            return exc

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(attempt, range(count)))


def test_threads_registering_the_same_spec_all_succeed(op_name, kernel_cache):
    name = op_name("same")
    outcomes = _race(lambda i: ttk.cuda_kernel_op(name, _relu_spec(), cache=kernel_cache), THREADS)
    assert outcomes == [None] * THREADS
    assert name in ttk.registered_ops() and op_packet(name).default._schema is not None


def test_threads_registering_different_specs_under_one_name_give_one_winner(op_name, kernel_cache):
    name = op_name("different")
    blocks = [32 * (i + 1) for i in range(THREADS)]
    outcomes = _race(lambda i: ttk.cuda_kernel_op(name, _relu_spec(blocks[i]), cache=kernel_cache), THREADS)
    winners = [i for i, outcome in enumerate(outcomes) if outcome is None]
    assert len(winners) == 1
    for outcome in outcomes:
        if outcome is not None:
            assert isinstance(outcome, ValueError)
            assert str(outcome).startswith(f"kernelop.cuda_kernel_op({name}): op {name} is already registered with a different kernel or spec")
    assert ttk.registered_ops()[name].plan.geometry.block == (blocks[winners[0]],)


def _register_in_child(cache_dir: str, name: str, barrier, results) -> None:
    barrier.wait()
    try:
        ttk.cuda_kernel_op(name, _relu_spec(), cache=KernelCache(cache_dir))
        with torch._subclasses.fake_tensor.FakeTensorMode():
            shape = tuple(op_packet(name)(torch.empty(3, 5)).shape)
        results.put(("ok", shape))
    except Exception as exc:  # noqa: BLE001
        results.put(("error", repr(exc)))


@pytest.mark.parametrize("processes", [4])
def test_processes_registering_the_same_spec_with_one_cache_all_succeed(tmp_path, processes):
    barrier, results = _SPAWN.Barrier(processes), _SPAWN.Queue()
    children = [_SPAWN.Process(target=_register_in_child, args=(str(tmp_path), "kconcurrent::relu", barrier, results))
                for _ in range(processes)]
    for child in children:
        child.start()
    outcomes = [results.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
    assert outcomes == [("ok", (3, 5))] * processes
    cache = KernelCache(tmp_path)
    (entry,) = cache.entries()
    assert all(p.suffix == ".kobj" for p in tmp_path.iterdir())  # no temp file left behind
    assert cache.get(entry.stem) is not None
