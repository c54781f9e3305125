"""Training, evaluation and export of the slim nets.

    doit train model=vgg_16                           # the embedded synthetic set
    doit train model=resnet_v1_50 steps=100 batch_size=16 dataset_dir=DIR
    doit eval model=vgg_16                            # top-1/top-5 JSON beside the checkpoint
    doit export model=vgg_16                          # SavedModel + frozen GraphDef
    doit train model=vgg_16 runner=docker             # inside the model's image
    doit train model=vgg_16 cluster=cluster.json sync_replicas=true   # ps/worker, local launcher

Every option of research/slim's train_image_classifier is a typed variable
(see slim/options.py for the table and its defaults). Subtasks are named by
model (`train:vgg_16`); the model comes from `model=` or from a subtask named
on the command line (`doit eval:inception_v3`).

Outputs: build/train/<model>/<key12>/ (checkpoints, TensorBoard events,
history.jsonl, train.json, eval.json), build/eval/<model>/<key12>/eval.json,
build/export/<model>/<key12>/ (saved_model/, frozen_graph.pb, export.json).
"""
from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

from slim import precision, recipes
from slim.nets import MODEL_NAMES
from slim.options import EVAL_OPTIONS, RANGES, TRAIN_OPTIONS
from slim.runners import RUNNER_NAMES
from tasks.cache import shared_cache
from zoobuild.produce import produce
from zoobuild import atomic, keys, paths
from tasks.errors import UserError, guarded
from tasks import cmdline
from tasks.common import MODEL
from tasks.params import Var, cluster_file

__all__ = ["task_train", "task_eval", "task_export", "task_model_images"]

STAGES = ("train", "eval", "export")

DATASET_DIR = Var("dataset_dir", str, "",
                  "slim TFRecords directory; empty: the embedded synthetic set")
RUNNER = Var("runner", str, "local", "local: this process; docker: the model's image",
             choices=RUNNER_NAMES)
CLUSTER = Var("cluster", str, "",
              "cluster description (JSON/YAML ps+worker host:port) for ps/worker training",
              check=cluster_file)


def _option(name, typ, default, help_, choices) -> Var:
    lo, hi = RANGES.get(name, (None, None))
    return Var(name, typ, default, help_, choices=choices, minimum=lo, maximum=hi)


OPTIONS = {row[0]: _option(*row) for row in TRAIN_OPTIONS}
EVAL = {row[0]: _option(*row) for row in EVAL_OPTIONS}

# What each stage runs: slim.cli's command, in this process (runner=local) or inside the
# model's image (runner=docker, `python -m slim.cli`).  The key's code is its computed import
# closure (zoobuild/code.py), so train, eval and export share it.
ENTRIES = ["slim.cli"]
# Options that change how a run reports or how often it saves, never what it computes: they
# are passed to the job but left out of the key, so changing them finds the finished run.
REPORTING_ONLY = ("log_every_n_steps", "save_summaries_secs", "save_interval_secs",
                  "save_interval_steps")


def selected_models(argv=None) -> list[str]:
    """model= plus any `train:<m>` / `eval:<m>` / `export:<m>` named on the command line."""
    line = cmdline.current() if argv is None else cmdline.parse(argv)
    out = [MODEL.get()]
    for stage in STAGES:
        out += [name for name in line.named(stage) if name in MODEL_NAMES and name not in out]
    return out


def train_params(model: str) -> dict:
    """Every train option: the command line's, then the model's recipe, then specs/tuned/<model>.yml's
    batch size and threads, then the table's; the derived batch_norm_decay is in it (and so in the key)."""
    from slim import tuning
    given = {n: v.get() for n, v in OPTIONS.items() if v.given()}
    params = recipes.resolve({"model": model, **given})
    return tuning.apply(model, params, _fixed(model))


def _fixed(model: str) -> set:
    """Option names the command line or the model's recipe set (the tuned file does not)."""
    return {n for n, v in OPTIONS.items() if v.given()} | set(recipes.recipe(model))


def _keyed(params: dict) -> dict:
    return {n: v for n, v in params.items() if n not in REPORTING_ONLY}


def eval_params() -> dict:
    return {n: v.get() for n, v in EVAL.items()}


def dataset_dir() -> Path:
    if DATASET_DIR.get():
        return Path(DATASET_DIR.get()).resolve()
    from tasks.data import default_tfrecords_dir
    return Path(default_tfrecords_dir())


def _dataset_digest() -> str:
    if DATASET_DIR.get():
        d = Path(DATASET_DIR.get())
        if not d.is_dir():
            raise UserError(f"dataset_dir={DATASET_DIR.get()}: not a directory; expected slim "
                            "TFRecords (train-*-of-*, validation-*-of-*, labels.txt)")
        return keys.tree_digest(d)
    from tasks.data import tfrecords_key
    return tfrecords_key().hex


def _dataset_task_dep() -> list[str]:
    if DATASET_DIR.get():
        return []
    from tasks.data import TFRECORDS_TASK
    return [TFRECORDS_TASK]


@functools.lru_cache(maxsize=None)
def runner_libs(model: str, runner: str) -> dict | None:
    """What stands in for the library versions in a key: None (the installed versions) for
    runner=local; for runner=docker the key label of the image the stage runs in (`_image`),
    which covers the wheels it installs ("missing:<tag>" until `doit images` has built it)."""
    if runner != "docker":
        return None
    return image_libs(_image(model, runner))


def image_libs(tag: str) -> dict:
    """{"image": the key of the image `tag`}: computed from the plan with no engine, and what
    the image carries as its label once built ("unbuilt:<tag>" before its inputs exist)."""
    from images import imagekey
    from tasks.images import user_plan

    plan = user_plan()
    img = plan.by_tag.get(tag)
    if img is None:
        raise UserError(f"image {tag} is not in the image specs")
    try:
        return {"image": imagekey.image_key(plan, img).hex}
    except UserError:
        return {"image": f"unbuilt:{tag}"}


@functools.lru_cache(maxsize=None)
def _train_key(model: str, params_json: str, dataset: str, runner: str, cluster: str) -> keys.Key:
    inputs = {"dataset": dataset}
    if cluster.startswith("k8s:"):  # `doit pipeline`'s Kubernetes cluster: a description, no file
        inputs["cluster"] = cluster
    elif cluster:
        try:
            inputs["cluster"] = keys.file_digest(cluster)
        except OSError:
            raise UserError(f"cluster={cluster}: cannot read the cluster description") from None
    return keys.make_key("train", entries=ENTRIES,
                         params={**json.loads(params_json), "runner": runner,
                                 "distributed": bool(cluster)},
                         inputs=inputs, libs=runner_libs(model, runner))


def train_key(model: str) -> keys.Key:
    return _train_key(model, keys.canonical(_keyed(train_params(model))), _dataset_digest(),
                      RUNNER.get(), CLUSTER.get())


def train_dir(model: str) -> Path:
    return keys.run_dir("train", model, train_key(model))


def eval_key(model: str) -> keys.Key:
    return keys.make_key("eval", entries=ENTRIES, params=eval_params(),
                         inputs={"train": train_key(model).hex, "dataset": _dataset_digest()},
                         libs=runner_libs(model, RUNNER.get()))


def eval_dir(model: str) -> Path:
    return keys.run_dir("eval", model, eval_key(model))


def export_key(model: str) -> keys.Key:
    return keys.make_key("export", entries=ENTRIES,
                         params={"eval_image_size": EVAL["eval_image_size"].get()},
                         inputs={"train": train_key(model).hex},
                         libs=runner_libs(model, RUNNER.get()))


def export_dir(model: str) -> Path:
    """Where `doit export model=<model>` puts the SavedModel for the current variables:
    saved_model/, frozen_graph.pb and export.json (model, input shape, classes, params, key)."""
    return keys.run_dir("export", model, export_key(model))


def _job(model: str, **more) -> dict:
    precision.require(OPTIONS["compute"].get())   # on the host: a model image has no images/cpu.py
    return {"cfg": {**train_params(model), **eval_params()}, "dataset_dir": str(dataset_dir()),
            "train_dir": str(train_dir(model)), **more}


# --- actions -------------------------------------------------------------------------------

def _image(model, runner):
    """runner=docker runs in the model image of the plan doit loaded (specs=, image_args=)."""
    if runner != "docker":
        return None
    from tasks.images import model_image_tag

    return model_image_tag(model, OPTIONS["compute"].get(), mode="training")   # bf16: the bf16 image


def _train(model, job, key, runner, cluster):
    from slim import runners
    outdir = Path(job["train_dir"])

    def build(into):
        from slim import tuning

        line = tuning.elsewhere(model, job["cfg"]["compute"], "training", given=_fixed(model))
        if line:
            print(f"train {model}: {line}")
        if not (into / "checkpoint").exists():
            print(f"train {model}: new run in {into}")
        else:
            print(f"train {model}: resuming from the last checkpoint in {into}")
        runners.run(runner, "train", job, into, cluster=cluster or None, image=_image(model, runner))
        summary = json.loads((into / "train.json").read_text())
        if summary.get("global_step", 0) < job["cfg"]["steps"]:
            raise UserError(f"train {model}: stopped at step {summary.get('global_step')} "
                            f"of {job['cfg']['steps']}")
        return {"global_step": summary["global_step"], "final_loss": summary["final_loss"]}

    # in place: training resumes from its own checkpoints after an interruption
    if produce("train", key, outdir, build, cache=shared_cache(), in_place=True) == "fetched":
        print(f"train {model}: fetched the finished run into {outdir}")


def _eval(model, job, key, runner):
    from slim import runners
    outdir = Path(job["out"]).parent

    def build(tmp):
        tmp_job = dict(job, out=str(tmp / "eval.json"))
        runners.run(runner, "eval", tmp_job, tmp, image=_image(model, runner))
        (tmp / "job.json").unlink(missing_ok=True)

    produce("eval", key, outdir, build, cache=shared_cache())
    atomic.copy_file(outdir / "eval.json", Path(job["train_dir"]) / "eval.json")  # for people


def _export(model, job, key, runner):
    from slim import runners
    outdir = Path(job["out"])

    def build(tmp):
        tmp_job = dict(job, out=str(tmp), extra={**job["extra"], "export_dir": str(outdir)})
        runners.run(runner, "export", tmp_job, tmp, image=_image(model, runner))
        (tmp / "job.json").unlink(missing_ok=True)

    produce("export", key, outdir, build, cache=shared_cache())


def _fail(err: UserError):
    def action():
        raise err
    return action


def _clean(outdir):
    def clean():
        shutil.rmtree(outdir, ignore_errors=True)
    return clean


# --- task creators -------------------------------------------------------------------------

def task_train():
    """Train a slim net (vars: model, steps, batch_size, optimizer, learning_rate, ... see README)."""
    for model in selected_models():
        try:
            key, outdir = train_key(model), train_dir(model)
            job = _job(model)
        except UserError as err:
            yield {"name": model, "actions": [guarded(_fail(err))], "verbosity": 2}
            continue
        yield {
            "name": model,
            "doc": f"train {model} for {OPTIONS['steps'].get()} steps -> {outdir}",
            "actions": [(guarded(_train), (model, job, key, RUNNER.get(), CLUSTER.get()))],
            "uptodate": [keys.key_uptodate(key, outdir)],
            "task_dep": _dataset_task_dep(),
            "clean": [_clean(outdir)],
            "meta": {"key": key, "outdir": outdir},
            "verbosity": 2,
        }


def task_eval():
    """Top-1/top-5 of the trained net on the validation split (vars: model, eval_batch_size, ...)."""
    for model in selected_models():
        try:
            key, outdir = eval_key(model), eval_dir(model)
            job = _job(model, out=str(outdir / "eval.json"))
        except UserError as err:
            yield {"name": model, "actions": [guarded(_fail(err))], "verbosity": 2}
            continue
        yield {
            "name": model,
            "doc": f"evaluate {model} -> {outdir}/eval.json",
            "actions": [(guarded(_eval), (model, job, key, RUNNER.get()))],
            "uptodate": [keys.key_uptodate(key, outdir)],
            "task_dep": [f"train:{model}"],
            "clean": [_clean(outdir)],
            "meta": {"key": key, "outdir": outdir},
            "verbosity": 2,
        }


def task_export():
    """SavedModel (serving signature) + frozen GraphDef of the trained net (var: model)."""
    for model in selected_models():
        try:
            key, outdir = export_key(model), export_dir(model)
            job = _job(model, out=str(outdir),
                       extra={"key": key.hex, "train_key": train_key(model).hex})
        except UserError as err:
            yield {"name": model, "actions": [guarded(_fail(err))], "verbosity": 2}
            continue
        yield {
            "name": model,
            "doc": f"export {model} -> {outdir}",
            "actions": [(guarded(_export), (model, job, key, RUNNER.get()))],
            "uptodate": [keys.key_uptodate(key, outdir)],
            "task_dep": [f"train:{model}"],
            "clean": [_clean(outdir)],
            "meta": {"key": key, "outdir": outdir},
            "verbosity": 2,
        }


def model_image_names(plan, models) -> list[str]:
    """Names of the images `models` run in (every precision and mode) and of their parents,
    parents first: the part of `doit images` the main job needs."""
    names = []
    for img in plan.images:
        if img.slice.package is not None and img.args.get("MODEL_NAME") in models:
            for one in reversed([img] + plan.ancestors(img)):
                if one.name not in names:
                    names.append(one.name)
    return names


def task_model_images():
    """Build and test only the images of the selected model(s) and their parents
    (tf-compiled-base -> category -> model images): the main job's image work."""
    from tasks.images import _plan

    plan = _plan()
    if isinstance(plan, UserError):
        return {"actions": [guarded(_fail(plan))], "verbosity": 2}
    models = selected_models()
    names = model_image_names(plan, models)
    if not names:
        err = UserError(f"model={','.join(models)}: no model image in the specs; scaffold one "
                        f"with `doit init_spec new_model={models[0]}`")
        return {"actions": [guarded(_fail(err))], "verbosity": 2}
    return {"actions": None,
            "task_dep": [f"images:{n}" for n in names] + [f"image_tests:{n}" for n in names],
            "doc": f"images of {', '.join(models)}: {', '.join(names)}"}
