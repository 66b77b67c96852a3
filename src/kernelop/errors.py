"""The one shape of kernelop's error messages: ``kernelop.<api>(<op>): <what is wrong>``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn


@dataclass(frozen=True)
class Where:
    """The API and op an error belongs to, so every message starts the same way."""

    api: str
    op: str

    def fail(self, message: str, exc: type[Exception] = ValueError) -> NoReturn:
        raise exc(f"kernelop.{self.api}({self.op}): {message}")
