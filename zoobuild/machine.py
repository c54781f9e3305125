"""The machine a measurement ran on: what a benchmark's figures are a function of besides its
inputs.  A benchmark keyed on it is shared only between machines of the same kind; a cached
result of another CPU is never reported as this one's.

Reads /proc/cpuinfo; ZOOBUILD_CPU_FLAGS (space or comma separated) overrides the feature flags,
so tests can play another CPU.  Standard library only: task creators call it at load time.
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpuinfo_field(name: str, cpuinfo: str | None = None) -> str:
    """The first value of a /proc/cpuinfo field ("" when absent)."""
    for line in (_cpuinfo() if cpuinfo is None else cpuinfo).splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def host_features(cpuinfo: str | None = None) -> frozenset[str]:
    """CPU feature flags of this host (the first `flags` line of /proc/cpuinfo, or `Features`)."""
    override = os.environ.get("ZOOBUILD_CPU_FLAGS")
    if override is not None and cpuinfo is None:
        return frozenset(override.replace(",", " ").split())
    text = _cpuinfo() if cpuinfo is None else cpuinfo
    return frozenset((cpuinfo_field("flags", text) or cpuinfo_field("Features", text)).split())


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity, which containers and numactl narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def identity() -> str:
    """One readable line naming the machine kind: CPU model, usable CPUs, a digest of the
    feature flags.  `doit why` shows it when it changes."""
    model = cpuinfo_field("model name") or cpuinfo_field("Model") or "unknown cpu"
    flags = hashlib.sha256(" ".join(sorted(host_features())).encode()).hexdigest()[:12]
    return f"{' '.join(model.split())} x{cpu_count()} flags:{flags}"
