"""No-op run of a 200+ task graph with a 10 GB input: prints the figures and writes JSON.

Targets (2-core machine): no-op `doit` median <= 0.5 s, `doit list` median <= 0.3 s,
and the 10 GB input hashed once (on the first run), never on a no-op run.
Usage: python bench/noop.py [--tasks 200] [--size-gb 10] [--repeat 5]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"


def timed(cmd, cwd, env):
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--size-gb", type=float, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "build" / "bench" / "noop.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=ROOT / "build" if (ROOT / "build").exists() else None) as tmp:
        tmp = Path(tmp)
        for name in ("minigraph_dodo.py", "minigraph_stage.py"):
            shutil.copy(FIXTURES / name, tmp / name)
        shutil.copy(ROOT / "pyproject.toml", tmp / "pyproject.toml")
        big = tmp / "input.bin"
        with open(big, "wb") as f:  # sparse: the size is real, the blocks are not
            f.truncate(int(args.size_gb * (1 << 30)))
        log = tmp / "hashed.log"
        env = dict(os.environ, ZOOBUILD_BUILD_DIR=str(tmp / "build"), MINIGRAPH_INPUT=str(big),
                   ZOOBUILD_HASH_LOG=str(log))
        doit = [sys.executable, "-m", "doit", "-f", str(tmp / "minigraph_dodo.py")]
        n = f"n={args.tasks}"
        first = timed(doit + [n], tmp, env)
        hashed_first = log.read_text().split().count(str(big)) if log.exists() else 0
        noop = [timed(doit + [n], tmp, env) for _ in range(args.repeat)]
        listing = [timed(doit + ["list", n], tmp, env) for _ in range(args.repeat)]
        hashed_total = log.read_text().split().count(str(big))
        tasks = subprocess.run(doit + ["list", "--all", n], cwd=tmp, env=env, capture_output=True,
                               text=True, check=True).stdout.count("\n")

    result = {
        "tasks": tasks, "input_bytes": int(args.size_gb * (1 << 30)),
        "first_run_s": round(first, 3),
        "noop_median_s": round(statistics.median(noop), 3), "noop_runs_s": [round(x, 3) for x in noop],
        "list_median_s": round(statistics.median(listing), 3),
        "big_input_hashed_first_run": hashed_first, "big_input_hashed_total": hashed_total,
        "targets": {"noop_median_s": 0.5, "list_median_s": 0.3, "big_input_hashed_total": 1},
    }
    result["meets_targets"] = (result["noop_median_s"] <= 0.5 and result["list_median_s"] <= 0.3
                               and hashed_total == 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{tasks} tasks, {args.size_gb:g} GB input: first run {first:.2f} s; "
          f"no-op median {result['noop_median_s']:.3f} s; doit list median {result['list_median_s']:.3f} s; "
          f"10 GB input hashed {hashed_total}x in {1 + 2 * args.repeat} invocations -> {args.out}")
    return 0 if result["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
