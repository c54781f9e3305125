"""Benchmark: zoobuild-native's kernels built for haswell (AVX2+FMA) versus the x86-64 baseline.

Both wheels come from the build_wheel machinery (built in the builder container when
missing, else taken from the run cache).  Each is unpacked into its own directory and
timed in its own interpreter (one module name cannot be loaded twice in one process),
on the same input (same seed, same sizes), in the same run, interleaved so that
machine noise hits both alike.  Prints the speedups and writes build/bench/wheel.json.

    .venv/bin/python bench/wheel.py [--n 4096] [--repeat 200000] [--rounds 5]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = ("x86-64", "haswell")

WORKER = r"""
import array, json, random, sys, time
sys.path.insert(0, sys.argv[1])
import zoobuild_native as z
n, repeat = int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1234)
x = array.array('f', (rng.uniform(-1, 1) for _ in range(n)))
y = array.array('f', (rng.uniform(-1, 1) for _ in range(n)))
z.dot(x, y, 10)
t = time.perf_counter(); d = z.dot(x, y, repeat); dot_s = time.perf_counter() - t
yy = array.array('f', y)
t = time.perf_counter(); z.saxpy(1e-7, x, yy, repeat); saxpy_s = time.perf_counter() - t
print(json.dumps({"target": z.build_info()["target"], "dot_s": dot_s, "saxpy_s": saxpy_s, "dot": d}))
"""


def wheels() -> dict:
    from images import wheelbuild

    out = {}
    for target in TARGETS:
        plan = wheelbuild.plan("zoobuild-native", target)
        out[target] = wheelbuild.finished_wheel(plan) or wheelbuild.build(plan, select_it=False)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=4096, help="floats per vector (4096: 16 KiB, in L1)")
    ap.add_argument("--repeat", type=int, default=200000, help="kernel calls per timing")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the best of each is kept")
    args = ap.parse_args(argv)

    from images import cpu
    from zoobuild import paths

    missing = cpu.missing_features(cpu.TARGETS["haswell"])
    if missing:
        raise SystemExit(f"bench/wheel.py: this CPU lacks {', '.join(missing)}; the haswell build cannot run here")
    built = wheels()
    results = {t: [] for t in TARGETS}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        for target, wheel in built.items():
            dirs[target] = Path(tmp) / target
            with zipfile.ZipFile(wheel) as z:
                z.extractall(dirs[target])
        for _ in range(args.rounds):
            for target in TARGETS:
                res = subprocess.run([sys.executable, "-c", WORKER, str(dirs[target]), str(args.n),
                                      str(args.repeat)], check=True, capture_output=True, text=True)
                results[target].append(json.loads(res.stdout))
    best = {t: {k: min(r[k] for r in results[t]) for k in ("dot_s", "saxpy_s")} for t in TARGETS}
    flops = 2 * args.n * args.repeat
    report = {
        "n": args.n, "repeat": args.repeat, "rounds": args.rounds,
        "wheels": {t: Path(w).name for t, w in built.items()},
        "best_seconds": best,
        "gflops": {t: {k.replace("_s", ""): round(flops / v / 1e9, 2) for k, v in best[t].items()} for t in TARGETS},
        "speedup_haswell_vs_baseline": {k.replace("_s", ""): round(best["x86-64"][k] / best["haswell"][k], 2)
                                        for k in ("dot_s", "saxpy_s")},
        "dot_results_equal": len({round(r["dot"], 3) for t in TARGETS for r in results[t]}) == 1,
        "host_cpu_best_target": cpu.best_target().name,
    }
    out = paths.BUILD / "bench" / "wheel.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    for t in TARGETS:
        print(f"{t:>8}: dot {report['gflops'][t]['dot']:7.2f} GFLOP/s   saxpy {report['gflops'][t]['saxpy']:7.2f} GFLOP/s")
    sp = report["speedup_haswell_vs_baseline"]
    print(f"haswell vs baseline: dot x{sp['dot']}, saxpy x{sp['saxpy']}  (n={args.n}, repeat={args.repeat}) -> {out}")
    return report


if __name__ == "__main__":
    main()
