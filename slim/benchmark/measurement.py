"""The timed loops (after MLPerf LoadGen's scenarios), their percentiles, and accuracy mode.

* single-stream: one query in flight, batch 1 or the model's fixed batch; latency percentiles.
* offline: queries of `batch_size` back to back; images/s.
* Each phase runs `warmup` untimed queries, then until both `min_duration` seconds and
  `min_queries` queries are reached (or exactly `steps` queries when steps > 0).
* accuracy: top-1/top-5 over the validation split through the data set reader.

Inputs are a few seeded synthetic batches (or reader batches when `data_dir` is given), made
before the clock starts and cycled, so input generation stays out of the timing.
"""
from __future__ import annotations

import time
from pathlib import Path

from slim.benchmark import validity
from slim.benchmark.config import PERCENTILES, BenchConfig
from zoobuild.errors import UserError
from zoobuild.progress import progress

PROGRESS_CHUNK = 64     # queries between progress updates: the bar stays out of each query's timing


def percentiles(lat_ms) -> dict:
    """p50/p90/p99/p99.9 (the sample at or above each rank), min, mean, max, count."""
    import numpy as np

    a = np.asarray(lat_ms, dtype="float64")
    if not a.size:
        return {}
    out = {f"p{p:g}": float(np.percentile(a, p, method="higher")) for p in PERCENTILES}
    out.update(min=float(a.min()), mean=float(a.mean()), max=float(a.max()), count=int(a.size))
    return out


def input_pool(cfg: BenchConfig, hw, batch: int, n: int = 4) -> list:
    """A few NHWC float32 input batches for the timed loops to cycle through."""
    from slim import convert

    if cfg.data_dir:
        batches = convert.reader_batches(cfg.data_dir, "validation", batch, hw, n, preprocessing=cfg.preprocessing)
        if batches:
            return batches
    return [convert.seeded_inputs(batch, *hw, seed=cfg.seed + i) for i in range(n)]


def timed_loop(predict, feeds, *, warmup: int, min_duration: float, min_queries: int, steps: int,
               bar=None) -> tuple[list[int], float]:
    """One query in flight at a time; returns (latencies in ns, wall seconds).

    Per query the loop reads the clock, calls, reads the clock and appends: that is the whole
    harness overhead bench/harness.py measures against a bare loop.  `bar` (a progress bar)
    advances once per PROGRESS_CHUNK queries, outside every query's two clock reads.
    """
    clock = time.perf_counter_ns
    nfeeds = len(feeds)
    for i in range(warmup):
        predict(feeds[i % nfeeds])
    lat = []
    append = lat.append
    deadline = min_duration * 1e9
    start = clock()
    i = 0
    while True:
        done = i
        if steps or i < min_queries:            # a count still to reach: no stop test per query
            stop = min(i + PROGRESS_CHUNK, steps or min_queries)
            for j in range(i, stop):
                t0 = clock()
                predict(feeds[j % nfeeds])
                append(clock() - t0)
            i = stop
            finished = i >= steps if steps else (i >= min_queries and clock() - start >= deadline)
        else:                                   # the count is met: stop as soon as the time is
            stop = i + PROGRESS_CHUNK
            finished = False
            while i < stop:
                t0 = clock()
                predict(feeds[i % nfeeds])
                t1 = clock()
                append(t1 - t0)
                i += 1
                if t1 - start >= deadline:
                    finished = True
                    break
        if bar is not None:
            bar.advance(i - done)
        if finished:
            break
    return lat, (clock() - start) / 1e9


def _phase(cfg: BenchConfig, backend, name: str, batch: int) -> tuple[list[int], float]:
    feeds = [backend.prepare(b) for b in input_pool(cfg, backend.hw, batch)]
    label = cfg.model or Path(cfg.model_path).name
    with progress(f"benchmark {label} {name} (batch {batch})", total=cfg.steps or cfg.min_queries,
                  unit="queries") as bar:
        return timed_loop(backend.predict, feeds, warmup=cfg.warmup, min_duration=cfg.min_duration,
                          min_queries=cfg.min_queries, steps=cfg.steps, bar=bar)


def measure(cfg: BenchConfig, backend) -> dict:
    """Single-stream then offline, in this process, with the validity of what was measured."""
    fixed = backend.fixed_batch
    stream_batch = fixed or 1
    offline_batch = fixed or cfg.batch_size
    lat, wall = _phase(cfg, backend, "single-stream", stream_batch)
    lat_ms = [x / 1e6 for x in lat]
    single = {"query_batch": stream_batch, "latency_ms": percentiles(lat_ms), "wall_s": wall,
              "queries": len(lat)}
    olat, owall = _phase(cfg, backend, "offline", offline_batch)
    offline = {"batch": offline_batch, "queries": len(olat), "images": len(olat) * offline_batch,
               "wall_s": owall, "throughput_ips": len(olat) * offline_batch / owall if owall else 0.0,
               "batch_latency_ms": percentiles([x / 1e6 for x in olat])}
    flags, checks = validity.assess(cfg, [single, offline], len(lat_ms))
    return {"single_stream": single, "offline": offline, "validity": flags, "validity_checks": checks,
            "latencies_ms": lat_ms}


def accuracy(cfg: BenchConfig, backend) -> dict:
    """top-1/top-5 over the validation split; the reader subtracts labels_offset."""
    import numpy as np

    from slim import convert

    batch = backend.fixed_batch or cfg.batch_size
    seen = top1 = top5 = 0
    t0 = time.perf_counter()
    label = cfg.model or Path(cfg.model_path).name
    with progress(f"accuracy {label}", total=cfg.max_images or None, unit="images") as bar:
        for images, labels in convert.iter_batches(cfg.data_dir, "validation", batch, backend.hw,
                                                   preprocessing=cfg.preprocessing,
                                                   labels_offset=cfg.labels_offset):
            n = len(images)
            if n < batch:       # fixed-batch models: pad the last batch, score only the real rows
                images = np.concatenate([images, np.repeat(images[-1:], batch - n, axis=0)])
            scores = np.asarray(backend.scores(backend.predict(backend.prepare(images))))[:n]
            top = np.argsort(-scores, axis=1)[:, :5]
            top1 += int(np.sum(top[:, 0] == labels))
            top5 += int(np.sum(np.any(top == labels[:, None], axis=1)))
            seen += n
            bar.advance(n, top1=top1 / seen)
            if cfg.max_images and seen >= cfg.max_images:
                break
    if not seen:
        raise UserError(f"data_dir={cfg.data_dir}: the reader gave no validation images")
    return {"images": seen, "top1": top1 / seen, "top5": top5 / seen, "wall_s": time.perf_counter() - t0}
