"""Benchmark: `doit images` with >= 10 model images built.

1. builds a tiny spec set (images/testing.py: base -> category -> N model images) with
   `doit images specs=...` in a private build directory;
2. times no-op `doit images` runs (nothing may be built);
3. touches one model file's mtime only (nothing may be rebuilt), then changes its content
   (exactly that model's image must be rebuilt).

Prints the figures and writes build/bench/images.json.

    .venv/bin/python bench/images.py [--models 12] [--runs 5]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def doit(args, build_dir):
    env = dict(os.environ, ZOOBUILD_BUILD_DIR=str(build_dir))
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "doit", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"doit {' '.join(args)} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    built = re.findall(r"^building (\S+) ", res.stdout, re.M)
    doit.uptodate = len(re.findall(r"^-- images:", res.stdout, re.M))
    return wall, built


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", type=int, default=12)
    ap.add_argument("--runs", type=int, default=5)
    opts = ap.parse_args()
    from images import testing
    from zoobuild import atomic, paths

    out_path = paths.BUILD / "bench" / "images.json"
    with tempfile.TemporaryDirectory(prefix="bench-images-", dir=paths.BUILD if paths.BUILD.exists() else None) as tmp:
        tmp = Path(tmp)
        specs = testing.write_tiny_specs(tmp / "tree", n_models=opts.models, prefix="zoobuild-bench:")
        build_dir = tmp / "build"
        args = ["images", f"specs={specs}"]
        first_wall, first_built = doit(args, build_dir)
        print(f"first run: built {len(first_built)} of {opts.models + 2} images in {first_wall:.1f}s "
              "(the others were present with their keys)")
        noop = []
        for _ in range(opts.runs):
            wall, built = doit(args, build_dir)
            if built or doit.uptodate != opts.models + 2:
                sys.exit(f"no-op run built {built}; {doit.uptodate} images up to date")
            noop.append(wall)
        print(f"no-op `doit images` ({opts.models} model images): median {statistics.median(noop):.3f}s, "
              f"min {min(noop):.3f}s over {opts.runs} runs")
        model = tmp / "tree" / "models" / "m05" / "model.py"
        os.utime(model)
        _, touched = doit(args, build_dir)
        print(f"mtime-only touch of m05: rebuilt {len(touched)} images {touched}")
        model.write_text(model.read_text() + "# changed\n")
        change_wall, changed = doit(args, build_dir)
        print(f"content change of m05's package: rebuilt {len(changed)} image(s) {changed} in {change_wall:.1f}s")
    result = {
        "model_images": opts.models, "images_total": opts.models + 2,
        "first_run_built": len(first_built), "noop_images_uptodate": opts.models + 2,
        "first_build_s": round(first_wall, 2),
        "noop_runs_s": [round(x, 3) for x in noop],
        "noop_median_s": round(statistics.median(noop), 3),
        "noop_built": 0,
        "touch_mtime_rebuilt": touched,
        "change_one_package_rebuilt": changed,
        "change_one_package_s": round(change_wall, 2),
        "ok": (not touched) and changed == ["zoobuild-bench:base-cat-m05"],
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }
    atomic.write_json(out_path, result)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
