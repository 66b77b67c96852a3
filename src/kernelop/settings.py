"""Environment-driven settings, read once into one frozen object."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"kernelop: environment variable {name} must be 0 or 1 (got {raw!r})")


def _default_cache_dir() -> Path:
    """The platform's per-user cache folder (XDG on Linux), plus ``kernelop``."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "kernelop" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "kernelop"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kernelop"


@dataclass(frozen=True)
class Settings:
    cache_enabled: bool
    cache_dir: Path
    sync_after_launch: bool
    native_launch: bool
    native_runtime: bool  # ops called through the native runtime (C++, no Python per call) where it builds

    @staticmethod
    def from_environment() -> "Settings":
        cache_dir = os.environ.get("KERNELOP_CACHE_DIR")
        return Settings(
            cache_enabled=_flag("KERNELOP_CACHE", True),
            cache_dir=Path(cache_dir) if cache_dir else _default_cache_dir(),
            sync_after_launch=_flag("KERNELOP_SYNC", False),
            native_launch=_flag("KERNELOP_NATIVE_LAUNCH", True),
            native_runtime=_flag("KERNELOP_NATIVE_RUNTIME", True),
        )


SETTINGS = Settings.from_environment()
