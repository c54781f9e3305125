"""Benchmark harness overhead: slim.benchmark's timed loop against a bare session loop.

Same onnxruntime session, same model, same batch, same number of calls; rounds are
interleaved (bare, harness, bare, harness, ...) so drift on a shared machine hits both.
The figure is the median over rounds of harness wall / bare wall - 1; the target is <= 2 %.
On a shared machine one round can swing by tens of per cent either way, so the bench also
reports best-round vs best-round and the harness's own cost per query (the same two loops
around a no-op call), which no other load can inflate.

    .venv/bin/python bench/harness.py [--model FILE.onnx] [--batch 8] [--calls 100] [--rounds 20]

Without --model a small CNN (two convolutions, 112x112 input, 1000 classes) is built
with onnx.helper, so the bench needs no training run.  Writes build/bench/harness.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def small_cnn(path: Path, size: int = 112, classes: int = 1000) -> Path:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype("float32"), name)

    nodes = [
        helper.make_node("Conv", ["images", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "w3"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "small_cnn",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [None, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, classes]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, classes])],
        [w("w1", 32, 3, 3, 3), w("w2", 64, 32, 3, 3), w("w3", 64, classes)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="an .onnx file (default: a small generated CNN)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads for both loops")
    a = ap.parse_args(argv)

    from slim import benchmark as bm
    from slim import convert
    from zoobuild.atomic import write_json

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(a.model) if a.model else small_cnn(Path(tmp) / "small_cnn.onnx")
        cfg = bm.BenchConfig(model_path=str(model), backend="onnx", batch_size=a.batch)
        backend = bm.ONNXBackend(cfg, threads=a.threads)
        batch = backend.fixed_batch or a.batch
        feed = backend.prepare(convert.seeded_inputs(batch, *backend.hw, seed=0))
        sess = backend.session

        def bare():
            t0 = time.perf_counter_ns()
            for _ in range(a.calls):
                sess.run(None, feed)
            return (time.perf_counter_ns() - t0) / 1e9

        def harness():
            _, wall = bm.timed_loop(backend.predict, [feed], warmup=0, min_duration=0, min_queries=0,
                                    steps=a.calls)
            return wall

        for _ in range(20):                       # warm both paths
            sess.run(None, feed)
        bare_s, harness_s = [], []
        for r in range(a.rounds):                 # ABBA order: slow drift cancels within a pair
            if r % 2 == 0:
                bare_s.append(bare())
                harness_s.append(harness())
            else:
                harness_s.append(harness())
                bare_s.append(bare())
        # the harness's own cost per query, free of model-time noise: the same loops around a no-op
        noop_calls = 200_000

        def nothing(_feed):
            return None

        t0 = time.perf_counter_ns()
        for _ in range(noop_calls):
            nothing(feed)
        bare_noop = time.perf_counter_ns() - t0
        _, wall = bm.timed_loop(nothing, [feed], warmup=0, min_duration=0, min_queries=0, steps=noop_calls)
        per_query_ns = max(0.0, (wall * 1e9 - bare_noop) / noop_calls)
    b, h = statistics.median(bare_s), statistics.median(harness_s)
    # paired: each round's harness time against the bare time measured right beside it
    overhead = statistics.median(hs / bs for hs, bs in zip(harness_s, bare_s)) - 1
    overhead_min = min(harness_s) / min(bare_s) - 1         # least-disturbed round of each
    intrinsic = per_query_ns / (b / a.calls * 1e9)
    result = {
        "bench": "harness",
        "model": str(a.model) if a.model else "generated small CNN 3x112x112 -> 1000",
        "batch": batch, "calls_per_round": a.calls, "rounds": a.rounds, "threads": a.threads,
        "bare_s": bare_s, "harness_s": harness_s,
        "bare_median_s": b, "harness_median_s": h,
        "per_call_ms": b / a.calls * 1e3,
        "overhead_pct": overhead * 100, "overhead_min_pct": overhead_min * 100,
        "harness_ns_per_query": per_query_ns, "intrinsic_overhead_pct": intrinsic * 100,
        "target_pct": 2.0, "within_target": overhead <= 0.02,
        "host": {"cpus_allowed": len(os.sched_getaffinity(0)), "load_avg_1m": os.getloadavg()[0]},
    }
    out = ROOT / "build" / "bench" / "harness.json"
    write_json(out, result)
    print(f"harness overhead: {overhead * 100:+.2f}% median of paired rounds, {overhead_min * 100:+.2f}% "
          f"best round vs best round (target <= 2%); harness cost {per_query_ns:.0f} ns/query = "
          f"{intrinsic * 100:.4f}% of a {b * 1e3 / a.calls:.3f} ms query; batch {batch}, "
          f"{a.calls} calls x {a.rounds} rounds -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
