"""Where the measurement runs on this machine: in this process, or in one pinned worker
process per instance (`python -m slim.benchmark --worker CONFIG OUT`), started together and
merged (throughput summed, latencies pooled, validity judged on the pooled run)."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from slim.benchmark import backends, measurement, placement, validity
from slim.benchmark.config import BenchConfig
from zoobuild.atomic import write_json
from zoobuild.errors import UserError

ROOT = Path(__file__).resolve().parents[2]      # the directory holding slim/ (the repository)


def run_in_process(cfg: BenchConfig) -> dict:
    threads = len(cfg.cpus) if cfg.cpus else 0
    backend = backends.load(cfg, threads=threads)
    body = measurement.measure(cfg, backend) if cfg.mode == "benchmark" else measurement.accuracy(cfg, backend)
    body["threads"] = {"intra_op": threads or "default", "inter_op": 1 if threads else "default"}
    body["cpus"] = cfg.cpus or sorted(os.sched_getaffinity(0))
    return body


def worker_main(config_path, out_path) -> int:
    """One pinned instance: the config run_workers wrote in, the measurement out."""
    cfg = BenchConfig.from_json(json.loads(Path(config_path).read_text()))
    write_json(out_path, run_in_process(cfg), indent=None)
    return 0


def run_workers(cfg: BenchConfig, workdir: Path) -> dict:
    """One pinned worker process per instance, started together; results merged."""
    procs = []
    for i, cpus in enumerate(placement.plan_placement(cfg)):
        wcfg = dataclasses.replace(cfg, instances=1, cpus=cpus)
        cfg_path, out_path = workdir / f"worker{i}.config.json", workdir / f"worker{i}.json"
        write_json(cfg_path, wcfg.to_json())
        cmd = placement.pin_prefix(cpus, cfg.socket_id) + [
            sys.executable, "-m", "slim.benchmark", "--worker", str(cfg_path), str(out_path)]
        env = dict(os.environ, OMP_NUM_THREADS=str(len(cpus)), TF_CPP_MIN_LOG_LEVEL="2")
        procs.append((cmd, out_path, subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                                                      stderr=subprocess.STDOUT, text=True)))
    parts = []
    for cmd, out_path, p in procs:
        log, _ = p.communicate()
        if p.returncode != 0 or not out_path.exists():
            tail = (log or "").strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"benchmark worker `{' '.join(cmd[:4])} ...` failed: {tail[0]}")
        part = json.loads(out_path.read_text())
        part["command"] = cmd
        parts.append(part)
    return merge(cfg, parts)


def merge(cfg: BenchConfig, parts: list[dict]) -> dict:
    if cfg.mode == "accuracy":
        return {**parts[0], "instances": parts}
    lat = [x for p in parts for x in p["latencies_ms"]]
    single = dict(parts[0]["single_stream"], latency_ms=measurement.percentiles(lat),
                  queries=sum(p["single_stream"]["queries"] for p in parts))
    offline = dict(parts[0]["offline"],
                   throughput_ips=sum(p["offline"]["throughput_ips"] for p in parts),
                   images=sum(p["offline"]["images"] for p in parts))
    # each instance's phases must meet the minimums on their own; percentiles use the pool
    phases = [p[name] for p in parts for name in ("single_stream", "offline")]
    flags, checks = validity.assess(cfg, phases, len(lat))
    return {"single_stream": single, "offline": offline, "validity": flags, "validity_checks": checks,
            "latencies_ms": lat,
            "instances": [{k: p[k] for k in ("cpus", "threads", "command", "offline", "single_stream", "validity")}
                          for p in parts]}


def run_here(cfg: BenchConfig, workdir: Path) -> dict:
    """In this process, or through pinned workers when placement asks for them."""
    return run_workers(cfg, workdir) if placement.needs_workers(cfg) else run_in_process(cfg)
