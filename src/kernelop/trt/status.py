"""Whether TensorRT is usable here: the probe, its verdict, and the one notice when it is not."""
import importlib
import logging
import re
import threading
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Dict, Mapping, Optional

log = logging.getLogger("kernelop")

MIN_TENSORRT = (10, 7)
"""The first TensorRT whose Quick Deployable Plugins Torch-TensorRT supports."""
EXCLUDED_TENSORRT = ((10, 14),)
"""Release series on which Torch-TensorRT turns Quick Deployable Plugins off."""


@dataclass(frozen=True)
class TensorRTStatus:
    """Whether kernelop registers TensorRT plugins in this process, and why not.

    ``versions`` maps ``"tensorrt"`` / ``"torch_tensorrt"`` to the versions found, when found.
    """

    available: bool
    reason: str
    versions: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def tensorrt_version_problem(version: str, package_name: Optional[str] = None) -> Optional[str]:
    """Why this TensorRT cannot host kernelop's plugins, or None when it can."""
    if package_name == "tensorrt_rtx":
        return f"TensorRT-RTX {version} has no Quick Deployable Plugins"
    match = re.match(r"(\d+)\.(\d+)", version or "")
    if match is None:
        return f"the TensorRT version is not understood (got {version!r})"
    series = (int(match.group(1)), int(match.group(2)))
    if series < MIN_TENSORRT:
        return f"TensorRT {version} is older than {MIN_TENSORRT[0]}.{MIN_TENSORRT[1]}, the first with Quick Deployable Plugins"
    if series in EXCLUDED_TENSORRT:
        return f"TensorRT {version} is a {series[0]}.{series[1]}.x release, on which Torch-TensorRT disables Quick Deployable Plugins"
    return None


def probe_tensorrt(import_module: Callable[[str], Any] = importlib.import_module) -> TensorRTStatus:
    """Import TensorRT, its plugin package and Torch-TensorRT's plugin helpers, and say what was found."""
    versions: Dict[str, str] = {}

    def result(available: bool, reason: str) -> TensorRTStatus:
        return TensorRTStatus(available, reason, MappingProxyType(dict(versions)))

    try:
        trt = import_module("tensorrt")
    except Exception as exc:  # a missing package, or a stub whose libraries cannot load
        return result(False, f"tensorrt is not importable ({type(exc).__name__}: {exc})")
    version = str(getattr(trt, "__version__", ""))
    versions["tensorrt"] = version
    problem = tensorrt_version_problem(version, getattr(trt, "_package_name", None))
    if problem is not None:
        return result(False, problem)
    for module in ("tensorrt.plugin", "tensorrt.plugin._lib"):
        try:
            import_module(module)
        except Exception as exc:
            return result(False, f"{module} is not importable ({type(exc).__name__}: {exc})")
    try:
        torch_tensorrt = import_module("torch_tensorrt")
        versions["torch_tensorrt"] = str(getattr(torch_tensorrt, "__version__", "unknown"))
        plugins = import_module("torch_tensorrt.dynamo.conversion.plugins")
    except Exception as exc:
        return result(False, f"Torch-TensorRT is not importable ({type(exc).__name__}: {exc})")
    if not callable(getattr(plugins, "generate_plugin_converter", None)):
        return result(False, "torch_tensorrt.dynamo.conversion.plugins has no generate_plugin_converter")
    return result(True, f"TensorRT {version} with Torch-TensorRT {versions['torch_tensorrt']}")


_status_lock = threading.Lock()
_status: Optional[TensorRTStatus] = None


def tensorrt_status() -> TensorRTStatus:
    """Whether kernelop registers TensorRT plugins in this process (probed once, then remembered)."""
    global _status
    with _status_lock:
        if _status is None:
            _status = probe_tensorrt()
        return _status


class OnceNotice:
    """Logs its message the first time only: one line per process says the TensorRT side is off."""

    def __init__(self) -> None:
        self._done = False
        self._lock = threading.Lock()

    def emit(self, status: TensorRTStatus) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done = True
        log.info(
            "kernelop: TensorRT plugins are not registered in this process (%s); the PyTorch ops are complete. "
            "kernelop.tensorrt_status() says why.",
            status.reason,
        )
        return True


skip_notice = OnceNotice()
