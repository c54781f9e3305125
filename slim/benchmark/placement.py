"""CPU placement: `socket_id`, `cores` (per instance) and `instances` become one cpu list per
instance, and the command prefix that pins a worker to it (numactl when a socket is named and
numactl exists, since it also binds memory; taskset otherwise)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from slim.benchmark.config import BenchConfig
from zoobuild.errors import UserError

_NODES = Path("/sys/devices/system/node")


def parse_cpulist(text: str) -> list[int]:
    """The kernel's cpulist format ("0-3,8,10-11") -> [0, 1, 2, 3, 8, 10, 11]."""
    out = []
    for part in text.strip().split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def socket_cpus(socket_id: int) -> list[int]:
    """CPUs of a NUMA node (socket), or every CPU this process may use when -1."""
    allowed = sorted(os.sched_getaffinity(0))
    if socket_id < 0:
        return allowed
    path = _NODES / f"node{socket_id}" / "cpulist"
    if not path.exists():
        nodes = sorted(p.name for p in _NODES.glob("node[0-9]*"))
        raise UserError(f"socket_id={socket_id}: no such NUMA node; have {', '.join(nodes) or 'none'}")
    return [c for c in parse_cpulist(path.read_text()) if c in allowed]


def plan_placement(cfg: BenchConfig, available: list[int] | None = None) -> list[list[int]]:
    """One cpu list per instance: consecutive slices of `cores` cpus of the chosen socket."""
    available = socket_cpus(cfg.socket_id) if available is None else available
    per = cfg.cores or max(1, len(available) // cfg.instances)
    need = per * cfg.instances
    if need > len(available):
        raise UserError(f"cores={per} x instances={cfg.instances} needs {need} cpus; "
                        f"socket {cfg.socket_id if cfg.socket_id >= 0 else '(any)'} has {len(available)}")
    return [available[i * per:(i + 1) * per] for i in range(cfg.instances)]


def _numactl(cpus: list[int], socket_id: int) -> list[str]:
    cmd = ["numactl", f"--physcpubind={','.join(map(str, cpus))}"]
    return cmd + ([f"--membind={socket_id}"] if socket_id >= 0 else [])


def _taskset(cpus: list[int], socket_id: int) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, cpus))]


PINNERS = {"numactl": _numactl, "taskset": _taskset}


def pin_prefix(cpus: list[int], socket_id: int, which=shutil.which) -> list[str]:
    """The command prefix that pins a worker to `cpus`."""
    order = ("numactl", "taskset") if socket_id >= 0 else ("taskset", "numactl")
    for name in order:
        if which(name):
            return PINNERS[name](cpus, socket_id)
    raise UserError("CPU pinning needs numactl or taskset on PATH (apt-get install numactl util-linux)")


def needs_workers(cfg: BenchConfig) -> bool:
    """Pinned or multi-instance runs go through worker processes; others run in this one."""
    return cfg.instances > 1 or cfg.cores > 0 or cfg.socket_id >= 0
