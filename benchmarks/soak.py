"""Soak: the call fuzz's ops from several threads for minutes; results, memory and compiles hold still.

The ops, their argument generators and PyTorch references are those of the call fuzz
(``tests/test_gpu_call_fuzz.py``): the seed relu, the ops of ``tests/written_kernels.py`` and
thirteen kernels of ``tests/kernel_corpus.py``. A warm-up calls each op once per dtype it is
drawn in, so that every template instantiation is compiled and every module loaded before the
threads start. Each thread then runs on its own CUDA stream: it draws an op, arguments of random
ranks, sizes and layouts (rarely tens of millions of elements; a few deliberately invalid shapes,
which must be refused with kernelop's ``ValueError``), calls the op, computes the reference on
the same stream and compares. Every few seconds all threads park at a barrier with their tensors
freed, and the main thread synchronises and samples ``torch.cuda.memory_allocated()``.

It fails (exit status 1) on a wrong result, an unexpected error or refusal, an accepted invalid
call, a shared one-byte ``bytes`` object of the interpreter overwritten (C code writing into
immutable memory), memory that grows by more than ``--memory-margin-mib`` after the warm-up, an NVRTC compile
(``kernelop.compiler.nvrtc.COMPILE_COUNTER``) or module load (by the Python launcher or the native runtime)
after the warm-up, or a thread that stops answering (a hung call).

    PYTHONPATH=src python benchmarks/soak.py --seconds 570 --threads 4
    PYTHONPATH=src python benchmarks/soak.py --dry-run   # draws and references on the CPU, no GPU
"""
from __future__ import annotations

import argparse
import gc
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the call fuzz's ops, the corpus

import kernelop  # noqa: E402
from kernelop.compiler import nvrtc  # noqa: E402
from kernelop.compiler.cache import KernelCache  # noqa: E402
from kernelop.cuda import driver  # noqa: E402
from kernelop.native import runtime as native_runtime  # noqa: E402
from conftest import overwritten_shared_bytes  # noqa: E402
from test_gpu_call_fuzz import Draw, RegisteredOp, describe, refusal_problem, register_ops, relayout_args, result_problem  # noqa: E402

MIB = 1 << 20
SMALL_NUMEL = 1 << 16
"""The most elements of one tensor in an ordinary call."""
BARRIER_TIMEOUT_S = 300.0
"""How long the main thread waits for every worker to park: longer means a hung call."""
KEPT_FAILURES = 20
"""Failure messages kept per thread (all failures are counted)."""


@dataclass
class Tally:
    """One thread's counts, merged by the main thread after the run."""

    calls: Counter = field(default_factory=Counter)  # per op
    invalid: int = 0  # calls made with deliberately invalid shapes
    refused: int = 0  # of those, refused as they must be
    wrong: int = 0  # results that differ from the reference
    errors: int = 0  # anything else unexpected: an exception, a refused valid call, an accepted invalid one
    big: int = 0
    largest: int = 0  # elements of the largest tensor argument
    failures: list[str] = field(default_factory=list)

    def fail(self, message: str) -> None:
        if len(self.failures) < KEPT_FAILURES:
            self.failures.append(message)

    def merge(self, other: Tally) -> None:
        self.calls.update(other.calls)
        for name in ("invalid", "refused", "wrong", "errors", "big"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.largest = max(self.largest, other.largest)
        self.failures.extend(other.failures)


@dataclass
class Shared:
    """What the main thread tells the workers between barriers."""

    barrier: threading.Barrier
    deadline: float = 0.0  # time.monotonic() at which the workers park
    stop: bool = False


def draw_args(rop: RegisteredOp, rng: random.Random, device: str, options: argparse.Namespace, invalid: bool,
              big: bool) -> tuple:
    """Arguments for ``rop`` in random layouts: big (up to ``--max-numel`` elements) or small,
    invalid when asked."""
    d = Draw(rng, device, max_numel=options.max_numel if big else SMALL_NUMEL, big=big)
    return relayout_args(rop.fuzz, rng.choice(rop.fuzz.bad)(d) if invalid else rop.fuzz.make(d), rng)


def one_call(rop: RegisteredOp, rng: random.Random, options: argparse.Namespace, tally: Tally) -> None:
    """Draw, call and check one call on the current stream; every tensor is freed on return."""
    op = rop.fuzz
    invalid = bool(op.bad) and rng.random() < options.invalid_fraction
    big = rng.random() < options.big_fraction
    args = draw_args(rop, rng, "cuda", options, invalid, big)
    tally.calls[op.name] += 1
    tally.invalid += invalid
    tally.big += big
    tally.largest = max([tally.largest] + [a.numel() for a in args if isinstance(a, torch.Tensor)])
    expected = None if invalid else op.reference(*args)  # before the call: an in-place op writes its arguments
    try:
        result = rop.packet(*args)
    except (ValueError, TypeError) as exc:
        problem = refusal_problem(exc, rop.name, ValueError) if invalid else f"refused a valid call: {type(exc).__name__}: {exc}"
        if problem is None:
            tally.refused += 1
        else:
            tally.errors += 1
            tally.fail(f"{rop.name} {describe(args)}: {problem}")
        return
    if invalid:
        tally.errors += 1
        tally.fail(f"{rop.name} {describe(args)}: accepted invalid arguments")
        return
    problem = result_problem(op, args, result, expected)
    if problem is not None:
        tally.wrong += 1
        tally.fail(f"{rop.name} {describe(args)}: {problem}")


def worker(index: int, ops: list[RegisteredOp], options: argparse.Namespace, shared: Shared, tally: Tally) -> None:
    """Calls on this thread's own stream until each deadline, parking at the barrier in between."""
    rng = random.Random(f"{options.seed}/{index}")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        while True:
            try:
                shared.barrier.wait(BARRIER_TIMEOUT_S)  # go
            except threading.BrokenBarrierError:
                return
            if shared.stop:
                return
            while time.monotonic() < shared.deadline:
                rop = rng.choice(ops)
                try:
                    one_call(rop, rng, options, tally)
                except Exception as exc:  # a CUDA error, a bug in a reference: counted, and the soak goes on
                    tally.errors += 1
                    tally.fail(f"{rop.name}: {type(exc).__name__}: {exc}")
            try:
                shared.barrier.wait(BARRIER_TIMEOUT_S)  # parked, nothing held
            except threading.BrokenBarrierError:
                return


def warm_up(ops: list[RegisteredOp], rng: random.Random) -> None:
    """One checked call of each op per dtype it is drawn in, each launching a kernel: compiles
    every template instantiation and loads every module (one device) before the clock starts."""
    for rop in ops:
        for dtype in dict.fromkeys(rop.fuzz.dtypes or (None,)):
            for _ in range(100):
                args = rop.fuzz.make(Draw(rng, "cuda", want=dtype))
                if all(a.numel() for a in args if isinstance(a, torch.Tensor)):
                    break
            else:
                raise RuntimeError(f"warm-up: no non-empty arguments drawn for {rop.name} in 100 tries")
            expected = rop.fuzz.reference(*args)
            problem = result_problem(rop.fuzz, args, rop.packet(*args), expected)
            if problem is not None:
                raise RuntimeError(f"warm-up: {rop.name} {describe(args)}: {problem}")
    torch.cuda.synchronize()


def run_epochs(shared: Shared, options: argparse.Namespace, samples: list[tuple[float, int]]) -> Optional[str]:
    """Release the workers for epochs of ``--sample-every`` seconds; between epochs, with every
    worker parked, sample the allocated memory. Returns why the run ended early, or None."""
    start = time.monotonic()
    end = start + options.seconds
    shared.deadline = min(start + options.sample_every, end)
    try:
        shared.barrier.wait(BARRIER_TIMEOUT_S)
        while True:
            shared.barrier.wait(BARRIER_TIMEOUT_S)
            torch.cuda.synchronize()
            gc.collect()  # cycles (a caught exception's frames) are garbage, not leaks
            now = time.monotonic()
            samples.append((now - start, torch.cuda.memory_allocated()))
            shared.stop = now >= end
            shared.deadline = min(now + options.sample_every, end)
            shared.barrier.wait(BARRIER_TIMEOUT_S)
            if shared.stop:
                return None
    except threading.BrokenBarrierError:
        return f"a thread did not park within {BARRIER_TIMEOUT_S:.0f} s: a hung call?"
    except RuntimeError as exc:  # from synchronize: a kernel faulted, the context is unusable
        shared.stop = True
        shared.barrier.abort()
        return f"CUDA error: {exc}"


def memory_verdict(samples: list[tuple[float, int]], options: argparse.Namespace) -> tuple[str, Optional[str]]:
    """The report line on memory after the warm-up, and the failure if it grew."""
    after = [allocated for elapsed, allocated in samples if elapsed >= options.warmup]
    if len(after) < 2:
        return f"memory_allocated: {len(after)} sample(s) after the {options.warmup:.0f} s warm-up; run longer", "too few memory samples"
    growth = max(after[-3:]) - after[0]
    line = (f"memory_allocated after the {options.warmup:.0f} s warm-up ({len(after)} samples, every {options.sample_every:.0f} s): "
            f"min {min(after) / MIB:.1f} MiB, max {max(after) / MIB:.1f} MiB, first {after[0] / MIB:.1f} MiB, "
            f"last {after[-1] / MIB:.1f} MiB (allowed growth {options.memory_margin_mib} MiB)")
    problem = f"memory grew by {growth / MIB:.1f} MiB" if growth > options.memory_margin_mib * MIB else None
    return line, problem


def counts() -> tuple[int, int]:
    native = native_runtime.runtime()
    return nvrtc.COMPILE_COUNTER.count, driver.MODULE_LOAD_COUNTER.count + (native.module_loads if native is not None else 0)


def soak(ops: list[RegisteredOp], options: argparse.Namespace) -> int:
    registered = counts()
    start = time.perf_counter()
    warm_up(ops, random.Random(f"{options.seed}/warm-up"))
    warmed = counts()
    print(f"warm-up: {len(ops)} ops, every dtype, in {time.perf_counter() - start:.1f} s")

    shared = Shared(threading.Barrier(options.threads + 1))
    tallies = [Tally() for _ in range(options.threads)]
    threads = [threading.Thread(target=worker, args=(i, ops, options, shared, tallies[i]), name=f"soak-{i}", daemon=True)
               for i in range(options.threads)]
    for thread in threads:
        thread.start()
    samples: list[tuple[float, int]] = []
    start = time.perf_counter()
    stopped = run_epochs(shared, options, samples)
    duration = time.perf_counter() - start
    if stopped is None:
        for thread in threads:
            thread.join()
    final = counts()

    total = Tally()
    for tally in tallies:
        total.merge(tally)
    calls = sum(total.calls.values())
    memory_line, memory_problem = memory_verdict(samples, options)
    overwritten = overwritten_shared_bytes()
    problems = [p for p in (
        stopped,
        f"{total.wrong} wrong results" if total.wrong else None,
        f"{total.errors} unexpected errors or refusals" if total.errors else None,
        memory_problem,
        f"NVRTC compiles after the warm-up: {final[0] - warmed[0]}" if final[0] != warmed[0] else None,
        f"module loads after the warm-up: {final[1] - warmed[1]}" if final[1] != warmed[1] else None,
        "no calls" if not calls else None,
        f"the interpreter's shared one-byte bytes objects for {overwritten} were overwritten" if overwritten else None,
    ) if p]

    backend = driver.launch_backend()
    print(f"\nsoak: {duration:.1f} s on {torch.cuda.get_device_name()}, torch {torch.__version__}, launch path {backend.name}, "
          f"{options.threads} threads, seed {options.seed}")
    print(f"calls: {calls} ({calls / max(duration, 1e-9):.0f}/s), {total.big} big (up to {options.max_numel} elements a "
          f"tensor; largest drawn {total.largest})")
    print("per op: " + ", ".join(f"{name} {n}" for name, n in sorted(total.calls.items())))
    print(f"wrong results: {total.wrong}; unexpected errors or refusals: {total.errors}; "
          f"refused as they must be: {total.refused} of {total.invalid} invalid calls")
    print(memory_line)
    print(f"NVRTC compiles: {registered[0]} after registration, {warmed[0]} after warm-up, {final[0]} at the end; "
          f"module loads: {registered[1]}, {warmed[1]}, {final[1]}")
    for message in total.failures[:KEPT_FAILURES]:
        print(f"  FAILED {message[:1500]}")
    print("FAIL: " + "; ".join(problems) if problems else "PASS")
    if stopped is not None:  # a worker may be stuck inside CUDA: do not wait for it at exit
        sys.stdout.flush()
        os._exit(1)
    return 1 if problems else 0


def dry_run(ops: list[RegisteredOp], options: argparse.Namespace) -> int:
    """Draw each op's arguments on the CPU (small, big and invalid) and compute the references of
    the valid ones: checks the generators and references where there is no GPU."""
    rng = random.Random(f"{options.seed}/dry-run")
    largest, drawn = 0, 0
    for rop in ops:
        for big in [False] * 20 + [True]:
            args = draw_args(rop, rng, "cpu", options, invalid=False, big=big)
            rop.fuzz.reference(*args)
            largest = max([largest] + [a.numel() for a in args if isinstance(a, torch.Tensor)])
            drawn += 1
        for _ in rop.fuzz.bad:
            draw_args(rop, rng, "cpu", options, invalid=True, big=False)
            drawn += 1
    print(f"dry run: {drawn} argument sets for {len(ops)} ops drawn on the CPU, references computed; "
          f"largest tensor {largest} elements")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=float, default=None, help="seconds before memory is tracked (default: min(30, seconds / 4))")
    parser.add_argument("--sample-every", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--memory-margin-mib", type=int, default=64)
    parser.add_argument("--max-numel", type=int, default=30_000_000, help="elements of a big call's largest tensor")
    parser.add_argument("--big-fraction", type=float, default=0.002)
    parser.add_argument("--invalid-fraction", type=float, default=0.03)
    parser.add_argument("--dry-run", action="store_true", help="no GPU: draw arguments and compute references on the CPU")
    options = parser.parse_args()
    if options.warmup is None:
        options.warmup = min(30.0, options.seconds / 4)
    if not options.dry_run and not torch.cuda.is_available():
        print("soak needs a CUDA GPU (or --dry-run)")
        return 1
    with tempfile.TemporaryDirectory() as cache_dir:  # a cold cache: registration compiles, the warm-up too
        start = time.perf_counter()
        ops = register_ops("soak", KernelCache(cache_dir))
        paths = Counter(kernelop.registered_ops()[op.name].call_path for op in ops)
        print(f"registered {len(ops)} ops in {time.perf_counter() - start:.1f} s; call paths: "
              + ", ".join(f"{count} {path}" for path, count in sorted(paths.items())))
        return dry_run(ops, options) if options.dry_run else soak(ops, options)


if __name__ == "__main__":
    sys.exit(main())
