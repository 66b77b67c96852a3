"""Where the host time of one kernelop call goes, layer by layer, interleaved in one process.

Rows: torch.relu (the reference); torch.empty_like (the output allocation); a torch.library op
whose Python impl only calls empty_like (the price of any Python op); the kernelop op; its
generated impl called directly (no dispatcher); packing the parameters and one cuLaunchKernel,
through the native shim and through struct and cuda-bindings.

    PYTHONPATH=src python benchmarks/launch_breakdown.py
"""
from __future__ import annotations

import argparse
import statistics
import sys
from typing import Callable

import torch

import kernelop as ttk
from kernelop.cuda import driver
from kernelop.pytorch.launcher import EagerLauncher
from launch_overhead import BLOCK, N, kernelop_candidate, time_per_call


def rows_for(x: torch.Tensor) -> dict[str, Callable[[], object]]:
    call_op = kernelop_candidate(x)
    call_op()
    registration = ttk.registered_ops()["bench::relu"]
    eager = EagerLauncher(registration.plan, registration.binaries, None)
    floor = torch.library.Library("bench_floor", "DEF")
    floor.define("empty(Tensor x) -> Tensor")
    floor.impl("empty", lambda t: torch.empty_like(t), "CUDA")

    y = torch.empty_like(x)
    handle = registration.binaries.function(x.device.index).handle
    stream = torch._C._cuda_getCurrentRawStream(x.device.index)
    dims = (N // BLOCK, 1, 1, BLOCK, 1, 1, 0)
    layout, values = eager.layout, (x.data_ptr(), N, y.data_ptr())
    rows_for.keep_alive = (floor, y)

    rows = {
        "torch.relu": lambda: torch.relu(x),
        "torch.empty_like": lambda: torch.empty_like(x),
        "Library op whose impl is empty_like": lambda: torch.ops.bench_floor.empty(x),
        "kernelop op": call_op,
        "kernelop impl, no dispatcher": lambda: eager.call(x),
        "pack + cuLaunchKernel via struct and cuda-bindings": lambda: driver.bindings_launch(handle, dims, stream, layout, *values),
    }
    backend = driver.launch_backend()
    if backend.name == "native":
        rows["pack + cuLaunchKernel via the native shim"] = lambda: backend.launch(handle, dims, stream, layout, *values)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--calls", type=int, default=1000)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("launch_breakdown needs a CUDA GPU")
        return 1
    x = torch.randn(N, device="cuda")
    rows = rows_for(x)
    for fn in rows.values():
        fn()
    samples: dict[str, list[float]] = {label: [] for label in rows}
    for _ in range(args.rounds):
        for label, fn in rows.items():
            samples[label].append(time_per_call(fn, args.calls))
    medians = {label: statistics.median(values) for label, values in samples.items()}
    base = medians["torch.relu"]
    backend = driver.launch_backend()
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, launch path: {backend.name} ({backend.reason})")
    print(f"{'layer':45s} {'us/call':>9s} {'vs torch.relu':>14s}")
    for label, value in medians.items():
        print(f"{label:52s} {value:9.2f} {value / base:13.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
