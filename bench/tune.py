"""Best-known parameters: sweep batch size and thread settings per model, precision and mode,
and write specs/tuned/<model>.yml (the fastest point of each) for `doit train` / `doit benchmark`.

    nice -n 10 .venv/bin/python bench/tune.py --model resnet_v1_50 --precisions fp32,bf16 \
        --modes training,inference --batch-sizes 8,16 [--steps 3 --warmup 1]

Every grid point runs in a fresh process (thread environment variables act only before
TensorFlow loads); the figure of a point is its best step (the least disturbed on a shared
machine).  Prints one line per (precision, mode) and writes build/bench/tune-<model>.json too.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _csv(text):
    return [t for t in text.split(",") if t]


def main(argv=None) -> int:
    from slim import tuning
    from zoobuild import atomic, paths
    from zoobuild.errors import UserError

    p = argparse.ArgumentParser(prog="bench/tune.py")
    p.add_argument("--model", action="append", required=True, help="repeatable")
    p.add_argument("--precisions", type=_csv, default=["fp32"])
    p.add_argument("--modes", type=_csv, default=["training", "inference"])
    p.add_argument("--batch-sizes", type=lambda t: [int(x) for x in _csv(t)], default=[8, 16])
    p.add_argument("--threads", type=lambda t: [tuple(map(int, x.split("/"))) for x in _csv(t)], default=None,
                   help="intra/inter pairs, e.g. 2/1,1/2 (default: a small grid for this host)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--image-size", type=int, default=0)
    a = p.parse_args(argv)
    threads = None
    if a.threads:
        threads = [{"intra_op_threads": i, "inter_op_threads": j, "OMP_NUM_THREADS": i,
                    "KMP_AFFINITY": tuning.KMP_AFFINITY, "KMP_BLOCKTIME": tuning.KMP_BLOCKTIME}
                   for i, j in a.threads]
    try:
        for model in a.model:
            body = tuning.sweep(model, a.precisions, a.modes, a.batch_sizes, threads, a.steps, a.warmup,
                                a.image_size)
            for prec, modes in sorted(body["settings"].items()):
                for mode, s in sorted(modes.items()):
                    print(f"{model} {prec} {mode}: {s['images_per_sec']:.2f} images/s at batch {s['batch_size']}, "
                          f"intra {s['intra_op_threads']} inter {s['inter_op_threads']}")
            out = paths.BUILD / "bench" / f"tune-{model}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic.write_json(out, body)
            print(f"wrote {tuning.tuned_path(model)} and {out}")
    except UserError as err:
        print(f"zoobuild: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.exit(main())
