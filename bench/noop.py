"""No-op runs: prints the figures and writes JSON.

Minigraph (default): a 200+ task graph with a 10 GB input.  Targets (2-core machine):
no-op `doit` median <= 0.5 s, `doit list` median <= 0.3 s, and the 10 GB input hashed once
(on the first run), never on a no-op run.
    python bench/noop.py [--tasks 200] [--size-gb 10] [--repeat 5]

--real: the real dodo.py of this repo, whose keys are computed import closures (memoised by
file digest).  It times a no-op of the default job's keyed chain (imagenet_tfrecords train
eval export convert benchmark publish: the default tasks less engine, base_image, images and
image_tests, which need a Docker Engine) and `doit list`, same targets.  The chain must be
finished for the current keys:
    python bench/noop.py --real --build-dir build     # after a real first run (./zoo run)
    python bench/noop.py --real                        # a temporary build dir in which the
        # current key of every keyed task is marked finished (tests/fixtures/dump_keys.py
        # --complete): a no-op reads only the graph and the markers, so it costs the same
Both modes check that the no-op ran no task.  Wall time depends on what else the machine
runs; the CPU seconds (user + sys of the doit process) are reported beside it.
"""
import argparse
import json
import os
import resource
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


REAL_TASKS = ["imagenet_tfrecords", "train", "eval", "export", "convert", "benchmark", "publish"]


def _timed_cpu(cmd, cwd, env):
    """(wall s, cpu s, stdout) of one run; cpu is the child's user + sys time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, res.stdout


def real(args) -> int:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")])))
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user runs it: bytecode cached
    doit = [sys.executable, "-m", "doit"]
    with tempfile.TemporaryDirectory(dir=ROOT / "build" if (ROOT / "build").exists() else None) as tmp:
        build = Path(args.build_dir).resolve() if args.build_dir else Path(tmp) / "build"
        env["ZOOBUILD_BUILD_DIR"] = str(build)
        marked = []
        if not args.build_dir:
            out = subprocess.run([sys.executable, str(FIXTURES / "dump_keys.py"), "--complete"],
                                 cwd=ROOT, env=env, check=True, capture_output=True, text=True)
            marked = sorted(n for n, d in json.loads(out.stdout).items() if d["outdir"])
        subprocess.run(doit + ["list"], cwd=ROOT, env=env, check=True, capture_output=True)  # warm
        noop, noop_cpu, ran = [], [], []
        for _ in range(args.repeat):
            wall, cpu, out = _timed_cpu(doit + REAL_TASKS, ROOT, env)
            noop.append(wall)
            noop_cpu.append(cpu)
            # doit's reporter: ".  name" for a task it executes, "-- name" for one up to date
            ran += [line[3:] for line in out.splitlines() if line.startswith(".  ")]
        listing = [_timed_cpu(doit + ["list"], ROOT, env)[:2] for _ in range(args.repeat)]
        tasks = subprocess.run(doit + ["list", "--all"], cwd=ROOT, env=env, capture_output=True,
                               text=True, check=True).stdout.count("\n")
    med = lambda xs: round(statistics.median(xs), 3)  # noqa: E731
    result = {
        "graph": "real dodo.py", "tasks": tasks, "timed_tasks": REAL_TASKS,
        "build_dir": args.build_dir or "temporary, current keys marked finished",
        "marked_finished": marked, "tasks_run_by_noop": sorted(set(ran)),
        "noop_median_s": med(noop), "noop_runs_s": [round(x, 3) for x in noop],
        "noop_min_s": round(min(noop), 3), "noop_cpu_median_s": med(noop_cpu),
        "list_median_s": med([w for w, _ in listing]), "list_min_s": round(min(w for w, _ in listing), 3),
        "list_cpu_median_s": med([c for _, c in listing]),
        "load_average": os.getloadavg(), "cpus": os.cpu_count(),
        "targets": {"noop_median_s": 0.5, "list_median_s": 0.3},
    }
    result["meets_targets"] = (result["noop_median_s"] <= 0.5 and result["list_median_s"] <= 0.3
                               and not ran)
    out = Path(args.out or ROOT / "build" / "bench" / "noop_real.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"real graph, {tasks} tasks: no-op of {' '.join(REAL_TASKS)}: median "
          f"{result['noop_median_s']:.3f} s wall (best {result['noop_min_s']:.3f}, "
          f"{result['noop_cpu_median_s']:.3f} s CPU), {len(set(ran))} tasks run; doit list median "
          f"{result['list_median_s']:.3f} s wall (best {result['list_min_s']:.3f}, "
          f"{result['list_cpu_median_s']:.3f} s CPU); load average "
          f"{result['load_average'][0]:.1f} on {os.cpu_count()} CPUs -> {out}")
    return 0 if result["meets_targets"] else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--size-gb", type=float, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", default=None, help="JSON path (default build/bench/noop[_real].json)")
    ap.add_argument("--real", action="store_true", help="time the real graph (see the docstring)")
    ap.add_argument("--build-dir", default="", help="--real: a build dir whose chain is finished")
    args = ap.parse_args()
    if args.real:
        return real(args)
    args.out = args.out or str(ROOT / "build" / "bench" / "noop.json")

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
