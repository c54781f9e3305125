"""The inference benchmark's defaults: is the result valid (every flag, p99.9 included) and
what does it cost?  Runs `slim.benchmark` with the default BenchConfig (1024 queries and at
least 1 s per phase) on an ONNX model and reports the wall time of the whole run.

    .venv/bin/python bench/inference_default.py [--model FILE.onnx] [--size 64]

Without --model a small generated CNN (bench/harness.py's, 3x64x64 input, the size of the main
job's mobilenet_v1_025) stands in, so the bench needs no training run.  Target: valid, and
under 5 s for both phases on a small model.  Writes build/bench/inference_default.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TARGET_S = 5.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="an .onnx file (default: a small generated CNN)")
    ap.add_argument("--size", type=int, default=64, help="input size of the generated CNN")
    a = ap.parse_args(argv)

    from harness import small_cnn

    from slim import benchmark as bm
    from zoobuild.atomic import write_json

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(a.model) if a.model else small_cnn(Path(tmp) / "small_cnn.onnx", size=a.size)
        cfg = bm.BenchConfig(model_path=str(model), backend="onnx")
        t0 = time.perf_counter()
        res = bm.run(cfg, Path(tmp) / "out", chart_png=False)
        wall = time.perf_counter() - t0
    s, o = res["single_stream"], res["offline"]
    valid = all(res["validity"].values())
    result = {
        "bench": "inference_default",
        "model": str(a.model) if a.model else f"generated small CNN 3x{a.size}x{a.size} -> 1000",
        "config": res["config"], "validity": res["validity"], "validity_checks": res["validity_checks"],
        "valid": valid, "wall_s": wall, "target_s": TARGET_S, "within_target": valid and wall <= TARGET_S,
        "single_stream": {k: s[k] for k in ("queries", "wall_s", "latency_ms")},
        "offline": {k: o[k] for k in ("batch", "queries", "wall_s", "throughput_ips")},
        "host": {"cpus_allowed": len(os.sched_getaffinity(0)), "load_avg_1m": os.getloadavg()[0]},
    }
    out = ROOT / "build" / "bench" / "inference_default.json"
    write_json(out, result)
    bad = [k for k, v in res["validity"].items() if not v]
    print(f"default benchmark: {'valid' if valid else 'INVALID (' + ', '.join(bad) + ')'}, "
          f"{wall:.2f} s wall (target <= {TARGET_S:g} s); single-stream {s['queries']} queries "
          f"p99.9 {s['latency_ms']['p99.9']:.3f} ms, offline {o['queries']} queries "
          f"{o['throughput_ips']:.0f} images/s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
