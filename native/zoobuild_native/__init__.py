"""zoobuild_native: float32 kernels compiled for one CPU target.

The wheel records the CPU features its machine code needs in
``zoobuild_isa.json``.  Importing on a CPU that lacks one raises ImportError
with one line instead of dying of SIGILL inside the extension.
"""
import json
import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def build_info():
    """What this build was compiled for: target, label, cflags, required CPU features."""
    path = _HERE / "zoobuild_isa.json"
    if not path.exists():
        return {"target": "unknown", "label": "", "cflags": "", "required": []}
    return json.loads(path.read_text())


def cpu_flags():
    """The CPU feature flags of this machine (env ZOOBUILD_CPU_FLAGS overrides, for tests)."""
    override = os.environ.get("ZOOBUILD_CPU_FLAGS")
    if override is not None:
        return set(override.replace(",", " ").split())
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _check_cpu():
    info = build_info()
    missing = sorted(set(info.get("required", [])) - cpu_flags())
    if missing:
        raise ImportError(
            f"zoobuild_native built for target {info.get('target')} needs CPU features "
            f"{', '.join(missing)} which this CPU lacks; install a wheel built for a lower target "
            f"(e.g. target=x86-64)"
        )


_check_cpu()

from ._kernels import dot, saxpy  # noqa: E402  (after the CPU check, on purpose)

__all__ = ["dot", "saxpy", "build_info", "cpu_flags"]
