"""benchmark: latency/throughput or top-1/5 of the SavedModel or a converted model (one subtask
per model).

    doit benchmark model=vgg_16 backend=onnx precision=fp16 bench_batch_size=8 cores=2 instances=1
    doit benchmark model=vgg_16 mode=accuracy
    doit benchmark model=vgg_16 bench_runner=docker          # inside the model's image

The variables have names of their own (bench_batch_size, bench_steps, bench_data_dir) so that
passing them never changes the key of the training stage.  The key holds the machine's kind
(zoobuild.machine): figures are never shared across kinds of machines.  Output:
  build/benchmark/<model>/<key12>/   results.json, summary.txt, latency.png
"""
from __future__ import annotations

import json
from pathlib import Path

from tasks.cache import shared_cache
from tasks.common import MODEL
from tasks.convert import ONNX_PRECISIONS, PRECISIONS, convert_dir, convert_key
from tasks.errors import UserError, guarded
from tasks.exports import default_tfrecords, export_dir, export_digest, export_task_dep, require_export
from tasks.params import Var
from zoobuild import keys, machine
from zoobuild.produce import produce

__all__ = ["task_benchmark"]

BACKEND = Var("backend", str, "onnx", "benchmark: tf (SavedModel) or onnx (converted file)", choices=("tf", "onnx"))
PRECISION = Var("precision", str, "fp32", "benchmark: which converted precision (bf16: backend=tf's bf16 rewrite)",
                choices=ONNX_PRECISIONS + ("bf16",))
MODE = Var("mode", str, "benchmark", "benchmark: benchmark (latency, throughput) or accuracy (top-1/5)",
           choices=("benchmark", "accuracy"))
BENCH_BATCH = Var("bench_batch_size", int, 8, "benchmark: offline batch size (a fixed-batch ONNX uses its own)",
                  minimum=1)
WARMUP = Var("warmup", int, 5, "benchmark: untimed queries before each phase", minimum=0)
MIN_DURATION = Var("min_duration", float, 1.0, "benchmark: minimum seconds per phase", minimum=0.0)
MIN_QUERIES = Var("min_queries", int, 1024, "benchmark: minimum queries per phase (1024: enough for p99.9)",
                  minimum=1)
BENCH_STEPS = Var("bench_steps", int, 0, "benchmark: exactly this many queries per phase (0: use durations)",
                  minimum=0)
BENCH_DATA = Var("bench_data_dir", str, "", "benchmark: TFRecords; empty: synthetic seeded inputs "
                 "(accuracy mode: the default TFRecords)")
MAX_IMAGES = Var("max_images", int, 0, "benchmark accuracy mode: stop after this many images (0: all)",
                 minimum=0)
SOCKET_ID = Var("socket_id", int, -1, "benchmark: NUMA socket to bind to (-1: none)", minimum=-1)
CORES = Var("cores", int, 0, "benchmark: cores per instance (0: no pinning)", minimum=0)
INSTANCES = Var("instances", int, 1, "benchmark: concurrent pinned instances", minimum=1)
BENCH_RUNNER = Var("bench_runner", str, "local", "benchmark: local (this machine) or docker (the model's image)",
                   choices=("local", "docker"))


def _bench_batch(model: str) -> int:
    """bench_batch_size= when given, else the tuned inference batch (specs/tuned/<model>.yml)."""
    from slim import tuning

    if BENCH_BATCH.given():
        return BENCH_BATCH.get()
    return int(tuning.settings(model, PRECISION.get(), "inference").get("batch_size") or BENCH_BATCH.get())


def bench_config(model: str) -> dict:
    data = BENCH_DATA.get()
    if not data and MODE.get() == "accuracy":
        d = default_tfrecords()
        data = str(d) if d else ""
    return {"backend": BACKEND.get(), "precision": PRECISION.get(), "mode": MODE.get(),
            "batch_size": _bench_batch(model), "warmup": WARMUP.get(), "min_duration": MIN_DURATION.get(),
            "min_queries": MIN_QUERIES.get(), "steps": BENCH_STEPS.get(), "data_dir": data,
            "max_images": MAX_IMAGES.get(), "socket_id": SOCKET_ID.get(), "cores": CORES.get(),
            "instances": INSTANCES.get(), "model": model}


def _bench_model_path(model: str, cfg: dict) -> Path:
    if cfg["backend"] == "tf":
        return export_dir(model)
    return convert_dir(model) / f"model.{cfg['precision']}.onnx"


def _bench_libs(model: str) -> dict | None:
    """bench_runner=docker: the model image's key stands in for the library versions."""
    if BENCH_RUNNER.get() != "docker":
        return None
    from tasks.train import image_libs

    return image_libs(_bench_image(model))


def benchmark_key(model: str) -> keys.Key:
    cfg = bench_config(model)
    # an ONNX model is a function of its conversion's key, known before the file exists
    digest = (export_digest(export_dir(model), model) if cfg["backend"] == "tf"
              else f"convert:{convert_key(model).hex}")
    # figures are a function of the machine: a cached result of another CPU is not this one's
    return keys.make_key("benchmark", entries=["slim.benchmark"], params={**cfg, "runner": BENCH_RUNNER.get()},
                         inputs={"model": digest, "machine": machine.identity()}, libs=_bench_libs(model))


def benchmark_dir(model: str) -> Path:
    return keys.run_dir("benchmark", model, benchmark_key(model))


def _bench_image(model: str) -> str:
    """The image the benchmark runs in: the model's inference image, else its training image."""
    from tasks.images import model_image_tag

    precision = "bf16" if PRECISION.get() == "bf16" else "fp32"   # precision=bf16: the bf16 image
    return model_image_tag(model, precision, mode=("inference", "training"))


def _benchmark(model: str, out: str, key: keys.Key, cfg: dict, runner: str) -> None:
    from slim import benchmark, convert

    target = _bench_model_path(model, cfg)
    if cfg["backend"] == "tf":
        require_export(target, model)
    elif not target.exists():
        report = convert_dir(model) / "report.json"
        why = ""
        if report.exists():
            r = json.loads(report.read_text())["results"].get(cfg["precision"])
            why = f": {r.get('reason')}" if r else f": not converted (onnx_precisions={','.join(PRECISIONS.get())})"
        raise UserError(f"no {cfg['precision']} ONNX model for {model}{why}")
    info = convert.export_info(export_dir(model))
    bc = benchmark.BenchConfig(model_path=str(target), labels_offset=int(info.get("labels_offset") or 0),
                               preprocessing=info.get("preprocessing") or "", **cfg)
    made = []

    def build(tmp):
        from slim import tuning

        line = tuning.elsewhere(model, cfg["precision"], "inference",
                                given={"batch_size"} if BENCH_BATCH.given() else ())
        if line:
            print(f"benchmark {model}: {line}")
        made.append(benchmark.RUNNERS[runner](bc, tmp, image=_bench_image(model) if runner == "docker" else None))

    if produce("benchmark", key, Path(out), build, cache=shared_cache()) == "fetched":
        print(f"benchmark: fetched the results of key {key.short} into {out}")
        return
    res = made[0]
    print(benchmark.summary_text(res), end="")
    print(f"benchmark: results in {out}/results.json, chart {out}/latency.png")


def task_benchmark():
    """Latency/throughput or top-1/5 of the SavedModel or a converted model (vars: backend, precision, mode, ...)."""
    model = MODEL.get()
    cfg = bench_config(model)
    key = benchmark_key(model)
    out = keys.run_dir("benchmark", model, key)
    yield {
        "name": model,
        "actions": [(guarded(_benchmark), (model, str(out), key, cfg, BENCH_RUNNER.get()))],
        "task_dep": [f"convert:{model}"] if cfg["backend"] == "onnx" else export_task_dep(model),
        "uptodate": [keys.key_uptodate(key, out)],
        "meta": {"key": key, "outdir": out},
        "doc": f"benchmark {model} ({cfg['backend']} {cfg['precision']}, {cfg['mode']}) -> {out}",
        "verbosity": 2,
    }
