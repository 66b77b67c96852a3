"""Event counters (NVRTC runs, module loads), so tests and benchmarks can prove a path has none."""
import threading
from dataclasses import dataclass, field


@dataclass
class Counter:
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def increment(self) -> None:
        with self._lock:
            self.count += 1
