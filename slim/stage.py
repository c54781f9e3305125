"""The in-image entry point of the pipelines: one stage of the doit graph, running the same
library calls as the doit actions, inside the graph's own image.

    python -m slim.stage train --job JOB --key HEX [--param NAME VALUE]...
                               [--input NAME DIR]... [--input-list NAME JSON] --out DIR
    python -m slim.stage train --job /etc/zoobuild/job.json --tf-config   # ps/worker on k8s

JOB is the job JSON (text or a file).  It carries the key the graph compiled for this stage
(`key_parts`), the `cfg` the library call reads and `param_map`: pipeline parameter ->
[cfg field, whether it is part of the key].  Before running, the stage recomputes its key
from the code in this image, the parameters it was given and the keys of its upstream
outputs (their completion markers); code that differs from what the graph was compiled
from is refused.  The output directory ends with the completion marker carrying the key.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("ZOOBUILD_BUILD_DIR", tempfile.mkdtemp(prefix="zoobuild-stage-"))

from zoobuild import keys, machine, paths  # noqa: E402
from zoobuild.errors import UserError  # noqa: E402

_REMOTE = {"gs://": "/gcs/", "s3://": "/s3/", "minio://": "/minio/"}  # KFP's mounts of artifact URIs


def _value(text: str, typ: str):
    if typ == "int":
        return int(text)
    if typ == "float":
        return float(text)
    if typ == "bool":
        return text.strip().lower() in ("1", "true", "yes", "on")
    if typ == "list":
        return json.loads(text) if text.strip().startswith("[") else [t for t in text.split(",") if t]
    return text


def _local(uri: str) -> str:
    for prefix, mount in _REMOTE.items():
        if uri.startswith(prefix):
            return mount + uri[len(prefix):]
    return uri


def upstream_key(path) -> str:
    marker = keys.read_marker(path)
    if not marker:
        raise UserError(f"input {path}: no completion marker; its stage did not finish")
    return marker["key"]


def rekey(job: dict, given: dict, inputs: dict) -> keys.Key:
    """The key of this run: the compiled key's parts with the given parameters and the upstream
    keys put in, and the code digests of this image.  Fails when the code differs."""
    parts = job["key_parts"]
    params = dict(parts["params"])
    for name, value in given.items():
        cfg_name, in_key = job["param_map"][name]
        # a parameter changes the key only where the graph keys it (reporting-only ones it does not)
        if in_key and cfg_name in params and not (value == "" and name in job.get("keep_if_empty", [])):
            params[cfg_name] = value
    for name in job.get("sorted_params", []):   # doit keys a set of values in sorted order
        params[name] = sorted(params[name])
    acc = job.get("accuracy_data_dir")   # doit's benchmark keys accuracy mode on its TFRecords
    if acc is not None and params.get("mode") == "accuracy" and not params.get("data_dir"):
        params["data_dir"] = acc
    key_inputs = dict(parts["inputs"])
    for key_input, (art, fmt) in job.get("key_inputs", {}).items():
        key_inputs[key_input] = fmt.format(upstream_key(inputs[art]))
    if "machine" in key_inputs:          # a measurement is keyed on the node it runs on
        key_inputs["machine"] = machine.identity()
    # the stage's code is the import closure the graph computed from its entry modules: every
    # file of it this image ships must be the same file; one it does not ship (the docker-only
    # runners, say) is never imported here and keeps its compiled digest
    for path, digest in sorted(parts["code"].items()):
        f = paths.ROOT / path
        if f.is_file() and keys.file_digest(f) != digest:
            raise UserError(f"{path} in this image differs from the code the pipeline was compiled "
                            f"from; rebuild the images (`doit images`) and recompile (`doit pipeline`)")
    key = keys.Key(stage=parts["stage"], code=dict(parts["code"]), params=json.loads(keys.canonical(params)),
                   inputs=dict(sorted(key_inputs.items())), libs=dict(parts["libs"]),
                   entries=tuple(parts["entries"]))
    return key


def _cfg(job: dict, given: dict) -> dict:
    cfg = dict(job.get("cfg", {}))
    for name, value in given.items():
        cfg_name, _ = job["param_map"][name]
        if not (value == "" and name in job.get("keep_if_empty", [])):
            cfg[cfg_name] = value
    return cfg


def _copy_tree(src: Path, dst: Path) -> None:
    for f in src.rglob("*"):
        if f.is_file() and not f.name.startswith(".complete"):
            (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dst / f.relative_to(src))


# ---------------------------------------------------------------- stages

def _synthetic(job, cfg, inputs, out, key):
    from datasets.synthetic import make_mini_ilsvrc

    made = make_mini_ilsvrc(out, **cfg)
    return {"train": made.train_count, "validation": made.val_count}


def _data_dir(job, inputs):
    return inputs["raw"] if "raw" in inputs else job["data_dir"]


def _tfrecords_part(job, cfg, inputs, out, key):
    from datasets.convert import convert

    convert(_data_dir(job, inputs), out, train_shards=cfg["train_shards"],
            validation_shards=cfg["validation_shards"], seed=cfg["seed"], strict=cfg["strict"],
            shard_range=job["shard_range"] or None)
    return None  # a part: no completion marker of the whole set


def _tfrecords_join(job, cfg, inputs, out, key):
    from datasets.convert import convert

    for part in inputs["parts"]:
        _copy_tree(Path(part), out)
    report = convert(_data_dir(job, inputs), out, train_shards=cfg["train_shards"],
                     validation_shards=cfg["validation_shards"], seed=cfg["seed"], strict=cfg["strict"])
    if not report["complete"]:
        raise UserError(f"tfrecords: the parts {len(inputs['parts'])} did not cover every shard")
    return {"examples": report["examples"], "num_classes": report["num_classes"]}


def _train(job, cfg, inputs, out, key):
    from slim import train

    summary = train.train(cfg, inputs["dataset"], out)
    if summary.get("global_step", 0) < cfg["steps"]:
        raise UserError(f"train: stopped at step {summary.get('global_step')} of {cfg['steps']}")
    return {"global_step": summary["global_step"], "final_loss": summary["final_loss"]}


def _eval(job, cfg, inputs, out, key):
    from slim import eval as slim_eval

    slim_eval.evaluate(cfg, inputs["dataset"], inputs["train"], str(out / "eval.json"))


def _export(job, cfg, inputs, out, key):
    from slim import export

    extra = {**job.get("extra", {}), "key": key.hex, "train_key": upstream_key(inputs["train"]),
             "export_dir": str(out)}
    export.export(cfg, inputs.get("dataset", ""), inputs["train"], str(out), extra=extra)


def _convert(job, cfg, inputs, out, key):
    from slim import convert

    report = convert.convert(inputs["export"], out, precisions=cfg["precisions"], batch_size=cfg["onnx_batch"],
                             opset=cfg["opset"], nchw=cfg["nchw"], keep_io_types=cfg["keep_io_types"],
                             data_dir=inputs.get("calibration", ""))
    return {"passed": report["passed"], "rejected": report["rejected"]}


def _benchmark(job, cfg, inputs, out, key):
    from slim import benchmark, convert

    for name in ("model_name", "docker_image"):   # chosen when the pipeline was compiled
        if name in cfg and cfg[name] != job["compiled"][name]:
            raise UserError(f"{name}={cfg[name]!r}: this pipeline was compiled for "
                            f"{job['compiled'][name]!r}; recompile with `doit pipeline` for another")
    if cfg.get("run_mode", "inference") != "inference":
        raise UserError(f"mode={cfg['run_mode']!r}: a benchmark runs in inference mode only "
                        f"(benchmark_or_accuracy= picks benchmark or accuracy)")
    bench = {k: cfg[k] for k in job["bench_fields"]}
    if bench["mode"] == "accuracy" and not bench["data_dir"]:
        bench["data_dir"] = inputs["dataset"]
    bench["data_dir"] = _local(bench["data_dir"])
    target = (Path(inputs["export"]) if bench["backend"] == "tf"
              else Path(inputs["convert"]) / f"model.{bench['precision']}.onnx")
    if not target.exists():
        raise UserError(f"benchmark: no {bench['precision']} model ({target.name}); the convert stage "
                        f"rejected or skipped it (see its report.json)")
    info = convert.export_info(inputs["export"])
    bc = benchmark.BenchConfig(model_path=str(target), labels_offset=int(info.get("labels_offset") or 0),
                               preprocessing=info.get("preprocessing") or "", **bench)
    # the model images carry no matplotlib: results and summary, no chart (doit's run draws it)
    res = benchmark.run(bc, out, chart_png=False, runner={"name": "kfp", "image": job["compiled"]["docker_image"]})
    if cfg.get("verbose"):
        print(benchmark.summary_text(res), end="")


def _publish(job, cfg, inputs, out, key):
    from artifacts import release, store as st

    evaluation = Path(inputs["eval"]) / "eval.json" if "eval" in inputs else None
    store = st.open_store(cfg["store"] or str(out / "store"))
    manifest = release.release(store, cfg["model"], cfg["version"] or "bleedingedge", export_dir=Path(inputs["export"]),
                               convert_dir=Path(inputs["convert"]), bench_dirs=[Path(inputs["benchmark"])],
                               arch=cfg["arch"] or None,
                               eval_metrics=json.loads(evaluation.read_text()) if evaluation else None)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str))
    return {"model": cfg["model"], "version": cfg["version"] or "bleedingedge"}


STAGES = {"synthetic": _synthetic, "tfrecords-part": _tfrecords_part, "tfrecords-join": _tfrecords_join,
          "train": _train, "eval": _eval, "export": _export, "convert": _convert,
          "benchmark": _benchmark, "publish": _publish}


def run_stage(command: str, job: dict, given: dict, inputs: dict, out: Path, compiled_key: str = "") -> keys.Key:
    if compiled_key and compiled_key != job["key_parts"]["hex"]:
        raise UserError(f"--key {compiled_key[:12]} is not the key in the job ({job['key_parts']['hex'][:12]})")
    job = dict(job, shard_range=given.pop("shard_range", ""))
    extra = job.get("extra_args")
    if extra:   # extra_model_args: NAME=VALUE words for more of the stage's settings
        for word in str(given.get(extra["param"], "")).split():
            name, eq, value = word.partition("=")
            if not eq or name not in extra["fields"]:
                raise UserError(f"{extra['param']}: {word!r}: expected NAME=VALUE with NAME one of "
                                f"{', '.join(extra['fields'])}")
            try:
                given[name] = _value(value, extra["fields"][name])
            except ValueError:
                raise UserError(f"{extra['param']}: {word!r}: expected a {extra['fields'][name]} value") from None
    key = rekey(job, given, inputs)
    cfg = _cfg(job, given)
    note = "the compiled key" if key.hex == job["key_parts"]["hex"] else f"re-keyed from {job['key_parts']['hex'][:12]}"
    print(f"zoobuild stage {command}: key {key.short} ({note})", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    shared = _shared_cache(job) if command != "tfrecords-part" else None
    if shared is not None and shared.fetch(key.stage, key.hex, out):
        print(f"zoobuild stage {command}: fetched key {key.short} from {shared.url}", flush=True)
        return key
    extra = STAGES[command](job, cfg, inputs, out, key)
    if command != "tfrecords-part":
        keys.mark_complete(out, key, {**(extra or {}), "compiled_key": job["key_parts"]["hex"]})
        if shared is not None:
            shared.upload(key.stage, key.hex, out)
    return key


def _shared_cache(job: dict):
    """The shared cache the pipeline was compiled with (cache=), or None: a component then
    fetches its key instead of running, and shares what it built."""
    if not job.get("cache"):
        return None
    from zoobuild.cache import open_cache

    return open_cache(job["cache"], job.get("cache_mode", "readwrite"), job.get("cache_options") or {})


def write_executor_output(path: str, uri: str, key: keys.Key, command: str) -> None:
    """KFP's ExecutorOutput: the output artifact `out` at its URI, with the key as metadata."""
    body = {"artifacts": {"out": {"artifacts": [
        {"name": "out", "uri": uri, "metadata": {"zoobuild_key": key.hex, "zoobuild_stage": command}}]}}}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(body))
    os.replace(tmp, path)


def _tf_config_train(job: dict) -> None:
    """ps/worker training from TF_CONFIG (set by the TFJob operator or the Job manifest)."""
    from slim import train
    from slim.distributed import validate_cluster

    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = validate_cluster(tf_config.get("cluster"), "TF_CONFIG")
    task = tf_config.get("task") or {}
    train.train(job["cfg"], job["dataset_dir"], job["train_dir"], cluster=cluster,
                job_name=task.get("type", "worker").lower(), task_index=int(task.get("index", 0)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m slim.stage")
    p.add_argument("command", choices=sorted(STAGES))
    p.add_argument("--job", required=True, help="job JSON text, or a file holding it")
    p.add_argument("--key", default="")
    p.add_argument("--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    p.add_argument("--input", nargs=2, action="append", default=[], metavar=("NAME", "DIR"))
    p.add_argument("--input-list", nargs=2, action="append", default=[], metavar=("NAME", "EXECUTOR_INPUT"))
    p.add_argument("--out", default="")
    p.add_argument("--out-uri", default="", help="the output artifact's URI (for --executor-output)")
    p.add_argument("--executor-output", default="", help="write KFP's ExecutorOutput JSON here")
    p.add_argument("--tf-config", action="store_true", help="distributed training from TF_CONFIG")
    args = p.parse_args(argv)
    try:
        text = args.job if args.job.lstrip().startswith("{") else Path(args.job).read_text()
        job = json.loads(text)
        if args.tf_config:
            _tf_config_train(job)
            return 0
        types = dict(job.get("param_types", {}), shard_range="str")
        given = {n: _value(v, types.get(n, "str")) for n, v in args.param}
        inputs = {n: _local(v) for n, v in args.input}
        for name, text in args.input_list:   # KFP's executor input JSON ({{$}})
            items = json.loads(text)["inputs"]["artifacts"][name]["artifacts"]
            inputs[name] = [_local(a["uri"]) for a in items]
        if not args.out:
            raise UserError("--out: expected the output directory")
        key = run_stage(args.command, job, given, inputs, Path(args.out), args.key)
        if args.executor_output:
            write_executor_output(args.executor_output, args.out_uri or args.out, key, args.command)
    except UserError as err:
        print(f"zoobuild: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
