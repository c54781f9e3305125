"""`doit pipeline`: the graph compiled into Kubeflow Pipelines v2 YAML (and, with
cluster=k8s:ps=P,workers=N, ps/worker training manifests for Kubernetes).

    doit pipeline                                    # build/pipeline/main.yaml
    doit pipeline pipeline=benchmark                 # build/pipeline/benchmark.yaml
    doit pipeline registry=registry.example.com:5000 # images under that registry (by digest once pushed)
    doit pipeline cluster=k8s:ps=1,workers=2         # + main-tfjob.yaml, main-jobs.yaml
    doit pipeline fan_out=8 resources=train=8/16G    # conversion tasks; requests per stage

Compiling is pure: keys, images and parameters come from the same variables and creators
as the doit tasks; no engine and no built image is needed.  The description is handed to
pipelines/ (the library), which builds the kfp components and compiles them.
"""
from __future__ import annotations

import json

import contextlib

from zoobuild import paths
from tasks.errors import UserError, guarded
from tasks.params import Var

__all__ = ["task_pipeline", "task_pipeline_local"]

PIPELINES = ("main", "benchmark")
PIPELINE = Var("pipeline", str, "main", "pipeline: which pipeline `doit pipeline` compiles", choices=PIPELINES)
FAN_OUT = Var("fan_out", int, 4, "pipeline: conversion tasks (shard ranges) of the TFRecords stage")
IMAGE_MODEL = Var("image_model", str, "", "pipeline: run the model stages in this model's image "
                  "(default: the model's own; every model image ships all of slim's nets)")
PIPELINE_ARGS = Var("pipeline_args", str, "", "pipeline_local: run-time parameter values as a JSON object")
RESOURCES = Var("resources", str, "", "pipeline: per-stage requests STAGE=CPU/MEMORY,... over the defaults")

_TYPE = {bool: "bool", int: "int", float: "float", str: "str", list: "list"}
_NOT_PARAMS = {"checkpoint_path"}   # a host path: chosen when compiling, never at run time
_BENCH_FIELDS = ["backend", "precision", "mode", "batch_size", "warmup", "min_duration", "min_queries",
                 "steps", "data_dir", "max_images", "socket_id", "cores", "instances", "model"]
_MAIN_BENCH = {"precision": "precision", "bench_batch_size": "batch_size", "warmup": "warmup",
               "min_duration": "min_duration", "min_queries": "min_queries", "bench_steps": "steps",
               "max_images": "max_images", "socket_id": "socket_id", "cores": "cores",
               "instances": "instances", "bench_data_dir": "data_dir"}
_EXTRA_FIELDS = {"warmup": "int", "min_duration": "float", "min_queries": "int", "steps": "int",
                 "max_images": "int", "cores": "int", "instances": "int"}


@contextlib.contextmanager
def _no_cluster_file():
    """cluster=k8s:... is this task's (manifests), not the cluster file training keys read:
    hide it while the graph's keys are computed."""
    from doit import doit_cmd

    saved = doit_cmd._CMDLINE_VARS
    if saved and str(saved.get("cluster", "")).startswith("k8s:"):
        doit_cmd._CMDLINE_VARS = {k: v for k, v in saved.items() if k != "cluster"}
    try:
        yield
    finally:
        doit_cmd._CMDLINE_VARS = saved


def _cache_settings() -> dict:
    """cache= reaches the components: each one fetches its key from the shared cache before it
    runs and shares what it built, as doit's stages do (same stage names, same keys)."""
    from tasks import cache

    if not cache.CACHE.get() or cache.CACHE_MODE.get() == "off":
        return {}
    return {"cache": cache.CACHE.get(), "cache_mode": cache.CACHE_MODE.get(),
            "cache_options": json.loads(cache.CACHE_OPTIONS.get() or "{}")}


def _var_param(var, name=None, default=None):
    from pipelines.graph import Param

    return Param(name or var.name, _TYPE[var.type], var.get() if default is None else default, var.help)


def _images(model: str, registry: str) -> dict:
    from images.plan import model_image_tag
    from pipelines import refs
    from tasks.images import _plan

    plan = _plan()
    if isinstance(plan, Exception):
        raise plan
    data = [i.tag for i in plan.images if i.args.get("MODEL_NAME") == "data"]
    if not data:
        raise UserError("no data image in the specs (specs/pipeline_data_spec.yml makes "
                        "zoobuild:tf-compiled-base-data)")
    push = refs.pushed()
    return {"data": refs.image_ref(data[0], registry, push),
            "model": refs.image_ref(model_image_tag(plan, model), registry, push)}


def _spec_resources(model: str) -> list:
    """(stage, "CPU/MEMORY", where) from the image specs: the data image's slice for the data
    stages, then the model image's slice (a stage named in both takes the model image's)."""
    from images.plan import model_image_tag
    from tasks.images import user_plan

    plan = user_plan()
    data = [i for i in plan.images if i.args.get("MODEL_NAME") == "data"]
    model_img = plan.by_tag[model_image_tag(plan, model)]
    return [(stage, req, f"{img.slice.where}: slice_sets.{img.slice.set_name}[{img.slice.index}]")
            for img in data[:1] + [model_img] for stage, req in img.slice.resources]


def describe(name: str, registry: str = ""):
    """The pipeline description of the current variables (pure: keys, tags, parameters)."""
    from pipelines import stages as st
    from pipelines.graph import Stage
    from tasks import benchmark, convert, data, exports, publish, train

    model = train.MODEL.get()
    img = _images(IMAGE_MODEL.get() or model, registry)
    res = st.resources(RESOURCES.get(), _spec_resources(IMAGE_MODEL.get() or model))
    with _no_cluster_file():
        k = {"synthetic": data.synthetic_key(), "tfrecords": data.tfrecords_key(),
             "train": train.train_key(model), "eval": train.eval_key(model),
             "export": train.export_key(model), "convert": convert.convert_key(model),
             "benchmark": benchmark.benchmark_key(model), "publish": publish.publish_key(model)}
        cfg = {**train.train_params(model), **train.eval_params()}
        convert_cfg, bench_cfg = convert.convert_params(), benchmark.bench_config(model)
    parts = {s: {**key.parts, "hex": key.hex} for s, key in k.items()}
    backend = bench_cfg["backend"]

    def stage(sname, command, image, job, params=None, inputs=None, **more):
        key_stage = f"benchmark:{backend}" if sname == "benchmark" else sname
        job = {**job, "key_inputs": st.key_inputs(key_stage, parts[sname]), **_cache_settings()}
        cpu, mem = res[sname]
        return Stage(sname, command, image, parts[sname], job, params or {}, inputs or {}, cpu, mem, **more)

    out = []
    train_opts = [v for n, v in train.OPTIONS.items() if n not in _NOT_PARAMS]
    synthetic = not data.DATA_DIR.get()
    if synthetic:
        out.append(stage("synthetic", "synthetic", img["data"], {"cfg": data.SYNTHETIC}))
    counts = data._params()
    # "auto" shard counts are resolved from the data at conversion: no ranges to fan out then
    ranges = (st.shard_ranges(counts["train_shards"] + counts["validation_shards"], FAN_OUT.get())
              if "auto" not in (counts["train_shards"], counts["validation_shards"]) else [""])
    out.append(stage("tfrecords", "tfrecords-part", img["data"],
                     {"cfg": {k2: v for k2, v in data._params().items() if k2 in
                              ("train_shards", "validation_shards", "seed", "strict")},
                      "data_dir": data.DATA_DIR.get()},
                     {"seed": ["seed", True], "strict": ["strict", True]} if name == "main" else {},
                     {"raw": "synthetic"} if synthetic else {},
                     fan_out=ranges, join="tfrecords-join"))
    tr = {v.name: [v.name, True] for v in train_opts} if name == "main" else {}
    tr_cfg = {n: [n, False] for n in tr}
    ev = {n: [n, True] for n in train.EVAL} if name == "main" else {}
    out.append(stage("train", "train", img["model"], {"cfg": cfg}, tr, {"dataset": "tfrecords"}))
    if name == "main":
        out.append(stage("eval", "eval", img["model"], {"cfg": cfg}, {**tr_cfg, **ev},
                         {"train": "train", "dataset": "tfrecords"}))
    ex = {n: [n, n == "eval_image_size"] for n in ev}
    out.append(stage("export", "export", img["model"], {"cfg": cfg}, {**tr_cfg, **ex},
                     {"train": "train", "dataset": "tfrecords"}))
    conv_in = {"export": "export"}
    if "calibration" in parts["convert"]["inputs"]:
        conv_in["calibration"] = "tfrecords"
    conv_params = {convert.PRECISIONS.name: ["precisions", True],
                   **{n: [n, True] for n in ("onnx_batch", "opset", "nchw", "keep_io_types")}}
    out.append(stage("convert", "convert", img["model"], {"cfg": convert_cfg, "sorted_params": ["precisions"]},
                     conv_params if name == "main" else {}, conv_in))
    bench_job = {"cfg": {**bench_cfg, "data_dir": benchmark.BENCH_DATA.get(), "run_mode": "inference",
                         "model_name": model, "docker_image": img["model"], "verbose": False},
                 "bench_fields": _BENCH_FIELDS, "keep_if_empty": ["bench_data_dir", "data_location"],
                 "compiled": {"model_name": model, "docker_image": img["model"]},
                 "accuracy_data_dir": str(exports.default_tfrecords() or "")}
    bench_in = {"export": "export", "dataset": "tfrecords", **({"convert": "convert"} if backend == "onnx" else {})}
    if name == "main":
        return _main(model, img, stage, out, bench_job, bench_in, train_opts)
    return _reference_benchmark(model, img, stage, out, bench_job, bench_in)


def _main(model, img, stage, out, bench_job, bench_in, train_opts):
    """The main chain's last stages and its parameters: every typed variable of the stages."""
    from pipelines.graph import Description
    from tasks import benchmark, convert, data, publish, train

    out.append(stage("benchmark", "benchmark", img["model"], bench_job,
                     {p: [f, True] for p, f in _MAIN_BENCH.items()}, bench_in))
    out.append(stage("publish", "publish", img["data"],
                     {"cfg": {"model": model, "version": publish.VERSION.get(), "store": publish.STORE.get(),
                              "arch": publish.ARCH.get()},
                      "keep_if_empty": ["version"]},   # empty: bleedingedge, as in the key
                     {n: [n, True] for n in ("version", "store", "arch")},
                     {"export": "export", "convert": "convert", "benchmark": "benchmark", "eval": "eval"}))
    # train options default to what this command line trains with: the model's recipe and the
    # derived batch-norm decay (slim.recipes), not the option table's bare defaults
    resolved = train.train_params(model)
    variables = [*train_opts, *train.EVAL.values(), data.SEED, data.STRICT, convert.PRECISIONS,
                 convert.ONNX_BATCH, convert.OPSET, convert.NCHW, convert.KEEP_IO, benchmark.PRECISION,
                 benchmark.BENCH_BATCH, benchmark.WARMUP, benchmark.MIN_DURATION, benchmark.MIN_QUERIES,
                 benchmark.BENCH_STEPS, benchmark.MAX_IMAGES, benchmark.SOCKET_ID, benchmark.CORES,
                 benchmark.INSTANCES, benchmark.BENCH_DATA, publish.VERSION, publish.STORE, publish.ARCH]
    return Description("zoobuild-main", f"zoobuild main chain for {model}: data -> TFRecords -> train -> "
                       "eval -> export -> convert -> benchmark -> publish",
                       [_var_param(v, default=resolved.get(v.name)) for v in variables], out)


def _reference_benchmark(model, img, stage, out, bench_job, bench_in):
    """The reference benchmark pipeline: its parameter names, mapped onto our benchmark variables."""
    from pipelines.graph import Description, Param
    from tasks import benchmark

    param_map = {"socket_id": ["socket_id", True], "batch_size": ["batch_size", True],
                 "precision": ["precision", True], "benchmark_or_accuracy": ["mode", True],
                 "data_location": ["data_dir", True], "docker_image": ["docker_image", False],
                 "extra_model_args": ["extra_model_args", False], "model_name": ["model_name", False],
                 "mode": ["run_mode", False], "verbose": ["verbose", False]}
    job = {**bench_job, "extra_args": {"param": "extra_model_args", "fields": _EXTRA_FIELDS},
           # the expanded extra_model_args words set these too
           "param_map": {**param_map, **{f: [f, True] for f in _EXTRA_FIELDS}}}
    params = [_var_param(benchmark.SOCKET_ID), _var_param(benchmark.BENCH_BATCH, "batch_size"),
              _var_param(benchmark.PRECISION), _var_param(benchmark.MODE, "benchmark_or_accuracy"),
              Param("data_location", "str", benchmark.BENCH_DATA.get(),
                    "TFRecords for accuracy mode or real inputs: empty (synthetic / the pipeline's own set), "
                    "a gs:// path or a mounted path"),
              Param("docker_image", "str", img["model"], "the image the benchmark runs in (compiled in)"),
              Param("extra_model_args", "str", "", "more benchmark settings as NAME=VALUE words: "
                    + ", ".join(_EXTRA_FIELDS)),
              Param("model_name", "str", model, "the model (compiled in)"),
              Param("mode", "str", "inference", "inference (the only mode a benchmark runs)"),
              Param("verbose", "bool", False, "print the benchmark summary")]
    out.append(stage("benchmark", "benchmark", img["model"], job, param_map, bench_in))
    return Description("zoobuild-benchmark", f"zoobuild inference benchmark of {model} (after the model "
                       "zoo's Kubeflow benchmark pipeline)", params, out)


def _requested(argv=None) -> bool:
    from tasks.images import _command_tasks

    return any(t == "pipeline" for t in _command_tasks(argv))


def _cluster_spec():
    from pipelines import k8s
    from tasks.train import CLUSTER

    text = CLUSTER.get()
    if not text:
        return None
    if not text.startswith("k8s:"):
        raise UserError(f"cluster={text!r}: `doit pipeline` takes cluster=k8s:ps=P,workers=N")
    return k8s.parse_cluster(text)


def _write(name: str, registry: str, spec) -> None:
    import yaml

    from pipelines import compile as kfp_compile, k8s
    from tasks import train
    from zoobuild import atomic

    outdir = paths.BUILD / "pipeline"
    desc = describe(name, registry)
    texts = {f"{name}.yaml": kfp_compile.compile_yaml(desc)}
    if spec is not None:
        model = train.MODEL.get()
        trainer = next(s for s in desc.stages if s.name == "train")
        job = {"cfg": trainer.job["cfg"], "dataset_dir": f"{k8s.DATA_MOUNT}/tfrecords",
               "train_dir": f"{k8s.DATA_MOUNT}/train/{model}/{trainer.key['hex'][:12]}"}
        docs = k8s.manifests(f"zoobuild-{model.replace('_', '-')}", trainer.image, spec, job,
                             cpu=trainer.cpu, memory=trainer.memory)
        texts[f"{name}-tfjob.yaml"] = yaml.safe_dump_all(docs["tfjob"], sort_keys=False)
        texts[f"{name}-jobs.yaml"] = yaml.safe_dump_all(docs["jobs"], sort_keys=False)
    for fname, text in texts.items():   # every text exists before the first file is written
        atomic.write_text(outdir / fname, text)
        print(f"pipeline: {outdir / fname}")


def task_pipeline():
    """Compile the graph to Kubeflow Pipelines v2 YAML (vars: pipeline, registry, cluster, fan_out, resources)."""
    from tasks.images import REGISTRY

    name, registry, spec = PIPELINE.get(), REGISTRY.get(), None
    if _requested():   # bad input stops here: one line, exit 2, nothing written
        from pipelines import refs

        if registry:
            refs.check_registry(registry)
        spec = _cluster_spec()
        from pipelines import stages

        stages.resources(RESOURCES.get())
        if FAN_OUT.get() < 1:
            raise UserError(f"fan_out={FAN_OUT.get()}: expected at least 1 conversion task")
    return {"actions": [(guarded(_write), (name, registry, spec))], "uptodate": [False],
            "doc": f"compile the {name} pipeline -> build/pipeline/{name}.yaml", "verbosity": 2}


def _run_local(name: str, args_json: str) -> None:
    import json

    from pipelines import local
    from zoobuild import atomic, keys

    try:
        arguments = json.loads(args_json) if args_json else {}
    except ValueError:
        arguments = None
    if not isinstance(arguments, dict):
        raise UserError(f"pipeline_args={args_json!r}: expected a JSON object of parameter values")
    desc = describe(name)
    known = {p.name for p in desc.params}
    unknown = sorted(set(arguments) - known)
    if unknown:
        raise UserError(f"pipeline_args: unknown parameter(s) {', '.join(unknown)}; the {name} pipeline "
                        f"takes {', '.join(sorted(known))}")
    root = paths.BUILD / "pipeline" / "local"
    outputs = local.run(desc, root, arguments)
    report = {"pipeline": name, "arguments": arguments, "root": str(root), "stages": {}}
    for stage, path in outputs.items():
        marker = keys.read_marker(path) or {}
        report["stages"][stage] = {"dir": str(path), "key": marker.get("key"),
                                   "compiled_key": marker.get("compiled_key")}
    out = atomic.write_json(paths.BUILD / "pipeline" / f"{name}-local.json", report)
    print(f"pipeline_local: {name} ran on the local engine; outputs in {out}")


def task_pipeline_local():
    """Run the pipeline here with kfp.local's DockerRunner (vars: pipeline, pipeline_args, and the graph's)."""
    return {"actions": [(guarded(_run_local), (PIPELINE.get(), PIPELINE_ARGS.get()))], "uptodate": [False],
            "doc": "run the compiled components on the local Docker Engine (kfp.local)", "verbosity": 2}
