"""Where a benchmark runs (name -> function), each writing the same outputs in `out_dir`:

    local   this machine (in process, or pinned worker processes)
    docker  `python3 -m slim.benchmark` inside a model image; the caller names the image tag
            (the doit wiring looks it up from the image plan), this module never does

Every runner takes (cfg, out_dir, image=None, echo=print) and returns results.json's content.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from slim.benchmark import report, workers
from slim.benchmark.config import BenchConfig, cli_args
from zoobuild.errors import UserError


def run(cfg: BenchConfig, out_dir, chart_png: bool = True, runner: dict | None = None) -> dict:
    """Benchmark or score `cfg.model_path` here; writes results.json, summary.txt, latency.png."""
    cfg.check()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    body = workers.run_here(cfg, out_dir)
    res = {"config": cfg.to_json(), "host": report.host(), **body}
    if runner is not None:
        res["runner"] = runner
    report.write_all(res, out_dir, chart_png=chart_png)
    return res


def run_local(cfg: BenchConfig, out_dir, image: str | None = None, echo=print) -> dict:
    return run(cfg, out_dir, runner={"name": "local"})


def run_in_image(cfg: BenchConfig, out_dir, image: str | None = None, client=None, echo=print) -> dict:
    """The same benchmark inside `image`: repository, model and data mounted read-only at their
    host paths, out_dir read-write, no network; the host draws the chart."""
    cfg.check()
    if not image:
        raise UserError("bench_runner=docker needs the model image's tag (image=)")
    root = workers.ROOT
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    if client is None:
        from images.engine import client as docker_client
        client = docker_client()
    try:
        image_id = client.images.get(image).id
    except Exception:
        raise UserError(f"image {image} is not built; run `doit images`") from None
    model = Path(cfg.model_path).resolve()
    mounts = {str(root): "ro", str(model if model.is_dir() else model.parent): "ro", str(out_dir): "rw"}
    if cfg.data_dir:
        mounts.setdefault(str(Path(cfg.data_dir).resolve()), "ro")
    from images.engine import run_to_completion

    status, lines = run_to_completion(
        client, image, ["python3", "-m", "slim.benchmark", str(model), str(out_dir), "--no-chart"] + cli_args(cfg),
        echo=echo, network_mode="none", working_dir=str(root),
        volumes={h: {"bind": h, "mode": m} for h, m in mounts.items()},
        environment={"LOCAL_USER_ID": str(os.getuid()), "LOCAL_GROUP_ID": str(os.getgid()),
                     "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"})
    results = out_dir / report.RESULTS
    if status != 0 or not results.exists():
        raise UserError(f"benchmark in {image} exited with status {status}: {(lines or ['no output'])[-1]}")
    res = json.loads(results.read_text())
    res["runner"] = {"name": "docker", "image": image, "image_id": image_id}
    report.write_results(res, out_dir)
    report.chart(res, out_dir / report.CHART)
    return res


RUNNERS = {"local": run_local, "docker": run_in_image}
