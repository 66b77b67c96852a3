"""What the examples share: a comparison with PyTorch, its error measure, and the report."""
from __future__ import annotations

import sys
from typing import Iterable, NamedTuple

import torch


class Check(NamedTuple):
    """One comparison with PyTorch: the largest error seen and the largest allowed."""

    name: str
    max_error: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_error <= self.tolerance

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAIL"
        return f"{self.name:<34} max error {self.max_error:.2e} (tolerance {self.tolerance:.0e})  {verdict}"


def max_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """max |got - expected| / (1 + |expected|): absolute for small values, relative for large
    ones, as the rounding of a floating-point result is."""
    expected = expected.detach().double()
    return ((got.detach().double() - expected).abs() / (1 + expected.abs())).max().item()


def report(checks: Iterable[Check]) -> None:
    """Print one line per check; exit with status 1 if any failed."""
    checks = list(checks)
    for check in checks:
        print(check)
    if not all(check.ok for check in checks):
        sys.exit(1)
