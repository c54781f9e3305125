"""Whether a measurement may be trusted, one named flag per requirement (after MLPerf LoadGen,
which marks a run INVALID when its minimum query count or duration was not reached).

    min_queries_met       every phase of every instance ran at least `min_queries` queries
    min_duration_met      every phase of every instance ran at least `min_duration` seconds
    p<P>_samples_met      the single-stream latencies hold enough samples for percentile P to
                          be a measured point rather than the largest sample: at least
                          TAIL_SAMPLES / (1 - P/100) of them (10 for p90, 1000 for p99.9)

`checks` gives each flag's need and have, so a reader sees by how much a run missed.
"""
from __future__ import annotations

import math
from fractions import Fraction

from slim.benchmark.config import PERCENTILES, BenchConfig

TAIL_SAMPLES = 1        # samples that must lie beyond the percentile's order statistic


def samples_needed(percentile: float) -> int:
    """Single-stream samples a percentile needs: 1000 for 99.9 (exact arithmetic, no 1001)."""
    beyond = 1 - Fraction(str(percentile)) / 100
    return math.ceil(TAIL_SAMPLES / beyond)


def assess(cfg: BenchConfig, phases: list[dict], latency_samples: int) -> tuple[dict, dict]:
    """phases: {"queries", "wall_s"} of each timed phase (of each instance).
    Returns (flags: name -> bool, checks: name -> {"need", "have"})."""
    checks = {
        "min_queries_met": {"need": cfg.min_queries, "have": min(p["queries"] for p in phases)},
        "min_duration_met": {"need": cfg.min_duration, "have": min(p["wall_s"] for p in phases)},
    }
    for p in PERCENTILES:
        checks[f"p{p:g}_samples_met"] = {"need": samples_needed(p), "have": latency_samples}
    flags = {name: c["have"] >= c["need"] for name, c in checks.items()}
    return flags, checks
