"""After training: convert, benchmark, publish and fetch (one subtask per model).

    doit convert model=vgg_16 onnx_precisions=fp32,fp16,int8 onnx_batch=1 opset=17
    doit benchmark model=vgg_16 backend=onnx precision=fp16 bench_batch_size=8 cores=2 instances=1
    doit benchmark model=vgg_16 mode=accuracy
    doit benchmark model=vgg_16 bench_runner=docker          # inside the model's image
    doit publish model=vgg_16 version=1.0.0 store=s3://bucket/zoo
    doit fetch model=vgg_16 version=^1.0 store=s3://bucket/zoo fetch_dir=models/

The export these read is `tasks.train.export_dir(model)` (what `doit export` wrote), or
`export_dir=` when given.  The variables here have names of their own (onnx_batch,
bench_batch_size, bench_steps, bench_data_dir) so that passing them never changes the
key of the training stage.  Outputs:
  build/convert/<model>/<key12>/     model.<precision>.onnx, rejected/, report.json
  build/benchmark/<model>/<key12>/   results.json, summary.txt, latency.png
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

from tasks.cache import shared_cache
from zoobuild.produce import produce
from zoobuild import keys, machine, paths
from tasks.errors import UserError, guarded
from tasks import cmdline
from tasks.common import MODEL
from tasks.params import Var, is_release, json_object, release_or_range

__all__ = ["task_convert", "task_benchmark", "task_publish", "task_fetch"]

_PRECISIONS = ("fp32", "fp16", "int8")

EXPORT_DIR = Var("export_dir", str, "", "SavedModel export dir; empty: the one `doit export` made")
PRECISIONS = Var("onnx_precisions", list, ["fp32", "fp16", "int8"], "convert: precisions to convert and gate",
                 choices=_PRECISIONS)
ONNX_BATCH = Var("onnx_batch", int, 1, "convert: fixed batch of the ONNX models (0: dynamic)",
                 minimum=0)
OPSET = Var("opset", int, 17, "convert: ONNX opset", minimum=1)
NCHW = Var("nchw", bool, False, "convert: NCHW input for the ONNX models")
KEEP_IO = Var("keep_io_types", bool, True, "convert: fp16 keeps float32 inputs and outputs")
CALIB_DIR = Var("calib_dir", str, "", "convert: TFRecords whose validation split gates and train split "
                "calibrates int8; empty: the default TFRecords when built, else seeded inputs")

BACKEND = Var("backend", str, "onnx", "benchmark: tf (SavedModel) or onnx (converted file)", choices=("tf", "onnx"))
PRECISION = Var("precision", str, "fp32", "benchmark: which converted precision (bf16: backend=tf's bf16 rewrite)",
                choices=_PRECISIONS + ("bf16",))
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

VERSION = Var("version", str, "", "publish: X.Y.Z[-YYYYMMDD] or bleedingedge (empty: bleedingedge); fetch: ^X.Y, ~X.Y.Z, exact or latest",
              check=release_or_range)
STORE = Var("store", str, "", "artifact store: a directory or file://, s3://, gs:// URL (default build/store)")
STORE_OPTIONS = Var("store_options", str, "", "fsspec storage options as JSON, e.g. {\"endpoint_url\": ...}",
                    check=json_object)
ARCH = Var("arch", str, platform.machine(), "publish/fetch: artifact arch")
FETCH_DIR = Var("fetch_dir", str, "", "fetch: where models are unpacked (default build/fetched)")


# ---------------------------------------------------------------- resolving inputs

def export_dir(model: str) -> Path:
    if EXPORT_DIR.get():
        return Path(EXPORT_DIR.get()).resolve()
    train = _train_module()
    if train is None or not hasattr(train, "export_dir"):
        return paths.BUILD / "export" / model / "missing"
    return Path(train.export_dir(model))


def _export_digest(path: Path, model: str | None = None) -> str:
    """The export as an input: its key when `doit export` makes it (known before the files
    exist, so one run of the chain keys convert once), else the content of export_dir=."""
    train = _train_module()
    if model is not None and not EXPORT_DIR.get() and train is not None and hasattr(train, "export_key"):
        return f"export:{train.export_key(model).hex}"
    return keys.tree_digest(path) if path.exists() else "missing"


def _export_task_dep(model: str) -> list[str]:
    """convert and the tf benchmark run after `doit export` unless export_dir= names a SavedModel."""
    return [] if EXPORT_DIR.get() or _train_module() is None else [f"export:{model}"]


def _gate_task_dep(model: str) -> list[str]:
    """A bf16 model publishes behind its accuracy gate, which its `doit eval` computes."""
    train = _train_module()
    if EXPORT_DIR.get() or train is None or not hasattr(train, "OPTIONS"):
        return []
    return [] if train.OPTIONS["compute"].get() == "fp32" else [f"eval:{model}"]


def _require_export(path: Path, model: str) -> None:
    from slim.convert import find_saved_model

    if not path.exists():
        raise UserError(f"no export of {model} at {path}: run `doit export model={model}` first, "
                        f"or pass export_dir=")
    find_saved_model(path)


def _train_module():
    try:
        from tasks import train
    except ImportError:
        return None
    return train


def _default_tfrecords() -> Path | None:
    """The TFRecords the model was trained on (train's dataset_dir).  The path is decided by
    keys, not by what exists yet, so a key computed before `doit imagenet_tfrecords` runs in
    the same invocation equals the one computed after it."""
    train = _train_module()
    try:
        if train is not None and hasattr(train, "dataset_dir"):
            return Path(train.dataset_dir())
        from tasks import data
        return Path(data.default_tfrecords_dir())
    except (ImportError, UserError):
        return None


def _data_identity(path: str) -> str:
    """A data directory as a key input: the conversion key for the default set, else its content."""
    default = _default_tfrecords()
    if default is not None and Path(path) == default:
        train = _train_module()
        if train is not None and hasattr(train, "_dataset_digest"):
            return train._dataset_digest()
    return keys.tree_digest(path) if Path(path).exists() else f"missing:{path}"


def _store():
    from artifacts import store as st

    opts = {}
    if STORE_OPTIONS.get():
        try:
            opts = json.loads(STORE_OPTIONS.get())
        except ValueError:
            raise UserError(f"store_options={STORE_OPTIONS.get()!r}: expected a JSON object")
    return st.open_store(STORE.get() or str(paths.BUILD / "store"), **opts)


# ---------------------------------------------------------------- convert

def convert_params() -> dict:
    calib = CALIB_DIR.get()
    if not calib:   # the gate reads its validation split for every precision
        d = _default_tfrecords()
        calib = str(d) if d else ""
    return {"precisions": sorted(PRECISIONS.get()), "onnx_batch": ONNX_BATCH.get(), "opset": OPSET.get(),
            "nchw": NCHW.get(), "keep_io_types": KEEP_IO.get(), "calib_dir": calib}


def convert_key(model: str) -> keys.Key:
    params = convert_params()
    inputs = {"export": _export_digest(export_dir(model), model)}
    if params["calib_dir"]:
        inputs["calibration"] = _data_identity(params["calib_dir"])
    # the calibration data is keyed by its identity, not by where it lies: a path (under this
    # machine's build directory) would give every machine its own key and defeat the cache
    keyed = {n: v for n, v in params.items() if n != "calib_dir"}
    return keys.make_key("convert", entries=["slim.convert"], params=keyed, inputs=inputs)


def convert_dir(model: str) -> Path:
    return keys.run_dir("convert", model, convert_key(model))


def _convert(model: str, src: str, out: str, key: keys.Key, params: dict) -> None:
    from slim import convert

    _require_export(Path(src), model)
    calib = params["calib_dir"]
    if calib and not CALIB_DIR.get() and not Path(calib).is_dir():
        calib = ""  # export_dir= without the default data set: gate and calibrate on seeded inputs

    def build(tmp):
        report = convert.convert(src, tmp, precisions=params["precisions"], batch_size=params["onnx_batch"],
                                 opset=params["opset"], nchw=params["nchw"],
                                 keep_io_types=params["keep_io_types"], data_dir=calib)
        return {"passed": report["passed"], "rejected": report["rejected"]}

    produce("convert", key, Path(out), build, cache=shared_cache())
    report = keys.read_marker(out) or {}
    if report.get("rejected"):
        print(f"convert: {model}: REJECTED by the gate: {', '.join(report['rejected'])} "
              f"(see {out}/report.json); they will not be published")


def task_convert():
    """SavedModel -> ONNX fp32/fp16/int8, each behind an accuracy gate (vars: onnx_precisions, onnx_batch, opset, nchw)."""
    model = MODEL.get()
    key = convert_key(model)
    out = keys.run_dir("convert", model, key)
    yield {
        "name": model,
        "actions": [(guarded(_convert), (model, str(export_dir(model)), str(out), key, convert_params()))],
        "uptodate": [keys.key_uptodate(key, out)],
        "task_dep": _export_task_dep(model),
        "meta": {"key": key, "outdir": out},
        "doc": f"convert {model} -> {out}",
        "verbosity": 2,
    }


# ---------------------------------------------------------------- benchmark

def _bench_batch(model: str) -> int:
    """bench_batch_size= when given, else the tuned inference batch (specs/tuned/<model>.yml)."""
    from slim import tuning

    if BENCH_BATCH.given():
        return BENCH_BATCH.get()
    return int(tuning.settings(model, PRECISION.get(), "inference").get("batch_size") or BENCH_BATCH.get())


def bench_config(model: str) -> dict:
    data = BENCH_DATA.get()
    if not data and MODE.get() == "accuracy":
        d = _default_tfrecords()
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
    digest = (_export_digest(export_dir(model), model) if cfg["backend"] == "tf"
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
        _require_export(target, model)
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
        "task_dep": [f"convert:{model}"] if cfg["backend"] == "onnx" else _export_task_dep(model),
        "uptodate": [keys.key_uptodate(key, out)],
        "meta": {"key": key, "outdir": out},
        "doc": f"benchmark {model} ({cfg['backend']} {cfg['precision']}, {cfg['mode']}) -> {out}",
        "verbosity": 2,
    }


# ---------------------------------------------------------------- publish and fetch

def _train_marker(export: Path) -> tuple[str | None, dict | None]:
    """The train key behind an export (its completion marker) and that training run's marker."""
    marker = keys.read_marker(export) or {}
    train_hex = (marker.get("parts") or {}).get("inputs", {}).get("train")
    if not train_hex:
        return None, None
    for d in (paths.BUILD / "train").glob(f"*/{train_hex[:12]}"):
        return train_hex, keys.read_marker(d)
    return train_hex, None


def _eval_metrics(export: Path):
    """eval.json of the `doit eval` run of the same training run as the export, when it ran."""
    train_hex, _ = _train_marker(export)
    if not train_hex:
        return None
    for d in sorted((paths.BUILD / "eval").glob("*/*")):
        marker = keys.read_marker(d) or {}
        if (marker.get("parts") or {}).get("inputs", {}).get("train") == train_hex and (d / "eval.json").exists():
            return json.loads((d / "eval.json").read_text())
    return None


def _export_compute(export: Path) -> str:
    """compute= the exported model was trained with (fp32 for exports older than the option)."""
    try:
        return json.loads((export / "export.json").read_text()).get("compute") or "fp32"
    except (OSError, ValueError):
        return "fp32"


def _dataset_key(export: Path):
    """The data set digest the training run was keyed on (lineage through the run cache)."""
    _, marker = _train_marker(export)
    return ((marker or {}).get("parts") or {}).get("inputs", {}).get("dataset")


def publish_key(model: str) -> keys.Key:
    """What a publish is made of; a finished publish of the same key is not repeated."""
    return keys.make_key("publish", entries=["artifacts.release"],
                         params={"version": VERSION.get() or "bleedingedge", "store": STORE.get(),
                                 "arch": ARCH.get()},
                         inputs={"export": _export_digest(export_dir(model), model),
                                 "convert": convert_key(model).hex, "benchmark": benchmark_key(model).hex})


def _image_tags(model: str) -> list[str]:
    """The model's image tags in the plan of specs=/image_args= (for the manifest's lineage)."""
    from tasks.images import model_image_tags

    return model_image_tags(model)


def _publish(model: str, version: str, out: str | None = None, key: keys.Key | None = None) -> None:
    from artifacts import release
    from slim import accuracy_gate

    version = version or "bleedingedge"  # the main job publishes to the overwritable channel
    src = export_dir(model)
    _require_export(src, model)
    bench = [d for d in (paths.BUILD / "benchmark" / model).glob("*") if keys.is_complete(d)] \
        if (paths.BUILD / "benchmark" / model).exists() else []
    cdir = convert_dir(model)
    bench = [d for d in bench if _benchmarks_this(d, src, cdir)]
    metrics = _eval_metrics(src)
    accuracy_gate.require_for_publish(model, _export_compute(src), metrics)
    release.release(_store(), model, version, export_dir=src,
                    convert_dir=cdir if keys.is_complete(cdir) else None,
                    bench_dirs=sorted(bench), arch=ARCH.get(), eval_metrics=metrics,
                    dataset_key=_dataset_key(src), image_tags=_image_tags(model))
    if out is not None and version == "bleedingedge":
        with keys.atomic_dir(out) as tmp:
            keys.mark_complete(tmp, key, {"model": model, "version": version, "store": STORE.get()})


def _benchmarks_this(bench_dir: Path, export: Path, cdir: Path) -> bool:
    """Only benchmark runs of this export or of this conversion go into the manifest."""
    try:
        path = Path(json.loads((bench_dir / "results.json").read_text())["config"]["model_path"])
    except (OSError, ValueError, KeyError):
        return False
    return path == export or path.parent == cdir


def task_publish():
    """Publish a model version to the artifact store and regenerate the catalog (vars: version, store, arch)."""
    model = MODEL.get()
    if VERSION.get() and not is_release(VERSION.get()) and cmdline.current().runs("publish"):
        raise UserError(f"version={VERSION.get()!r}: publish takes an exact release X.Y.Z or "
                        "X.Y.Z-YYYYMMDD, or bleedingedge; ranges and latest are for fetch")
    key = publish_key(model)
    out = keys.run_dir("publish", model, key)
    yield {
        "name": model,
        "actions": [(guarded(_publish), (model, VERSION.get(), str(out), key))],
        "task_dep": [f"convert:{model}", f"benchmark:{model}"] + _gate_task_dep(model),
        # the bleedingedge channel is republished only when something changed; an explicit
        # version always goes to the store, which refuses a second publish of it
        "uptodate": [keys.key_uptodate(key, out) if not VERSION.get() else False],
        "meta": {"key": key, "outdir": out},
        "doc": f"publish {model} {VERSION.get() or 'bleedingedge'} to {STORE.get() or paths.BUILD / 'store'}",
        "verbosity": 2,
    }


def _fetch(model: str, spec: str, dest: str) -> None:
    from artifacts import fetch

    got = fetch.fetch(_store(), model, spec or "latest", Path(dest),
                      arch=ARCH.get() if ARCH.given() else None)
    print(f"fetched {model} {spec or 'latest'} -> {got}")


def task_fetch():
    """Resolve model + version range in the store, download, verify sha256, unpack (vars: version, store, fetch_dir)."""
    model = MODEL.get()
    yield {
        "name": model,
        "actions": [(guarded(_fetch), (model, VERSION.get(), FETCH_DIR.get() or str(paths.BUILD / "fetched")))],
        "uptodate": [False],
        "doc": f"fetch {model} {VERSION.get() or 'latest'}",
        "verbosity": 2,
    }
