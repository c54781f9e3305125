"""Training, evaluation, export: in-process through slim.*, end to end through doit."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import DOIT, ROOT, run_doit
from test_slim_common import NUM_CLASSES, SMALL, dataset_dir, read_history  # noqa: F401

MODEL = SMALL["model"]
DOIT_VARS = [f"model={MODEL}", "train_image_size=64", "batch_size=8", "optimizer=momentum",
             "learning_rate=0.01", "batch_norm_decay=0.9", "log_every_n_steps=2",
             "save_summaries_secs=1", "eval_batch_size=20"]


@pytest.mark.slow
def test_it_learns_clearly_above_chance(dataset_dir, tmp_path):
    """100 steps of mobilenet_v1_025 at 64x64: top-1 on held-out images far above chance."""
    from slim import eval as slim_eval, train

    summary = train.train({**SMALL, "steps": 100}, dataset_dir, tmp_path / "run")
    assert summary["global_step"] == 100
    result = slim_eval.evaluate(SMALL, dataset_dir, tmp_path / "run")
    chance = 1.0 / NUM_CLASSES
    assert result["num_examples"] == NUM_CLASSES * 12
    assert result["top1"] >= 2.5 * chance, result
    assert result["top5"] >= result["top1"]
    start = slim_eval.evaluate(SMALL, dataset_dir, tmp_path / "run" / "model.ckpt-0")
    assert result["loss"] < start["loss"]


def test_options_run_and_finished_run_does_nothing(dataset_dir, tmp_path):
    """Moving averages, label smoothing, polynomial decay with warm-up, adam, grayscale;
    eval restores the averaged weights; a second call with the target reached trains nothing."""
    from slim import eval as slim_eval, train

    cfg = {**SMALL, "steps": 4, "moving_average_decay": 0.99, "label_smoothing": 0.1,
           "learning_rate_decay_type": "polynomial", "warmup_epochs": 0.5,
           "optimizer": "adam", "use_grayscale": True, "preprocessing": "vgg",
           "save_summaries_secs": 1}
    run = tmp_path / "run"
    first = train.train(cfg, dataset_dir, run)
    assert first["global_step"] == 4 and first["preprocessing"] == "vgg"
    names = {n for n, _ in __import__("tensorflow").train.list_variables(first["checkpoint"])}
    assert any(n.endswith("ExponentialMovingAverage") for n in names)
    result = slim_eval.evaluate(cfg, dataset_dir, run, out_json=run / "eval.json")
    assert json.loads((run / "eval.json").read_text())["top1"] == result["top1"]
    again = train.train(cfg, dataset_dir, run)
    assert again["steps_this_run"] == 0 and again["global_step"] == 4

    import tensorflow as tf
    tags = set()
    for ev in (run).glob("events.out.tfevents.*"):
        for e in tf.compat.v1.train.summary_iterator(str(ev)):
            tags.update(v.tag for v in e.summary.value)
    assert {"losses/total_loss", "learning_rate", "accuracy"} <= tags


def test_fine_tuning_restores_excludes_and_freezes(dataset_dir, tmp_path):
    """checkpoint_path + checkpoint_exclude_scopes + trainable_scopes + labels_offset:
    a new 5-class head on a 6-class trunk; the frozen trunk keeps the restored weights."""
    import tensorflow as tf
    from slim import train

    base = train.train({**SMALL, "steps": 3}, dataset_dir, tmp_path / "base")
    tuned = train.train({**SMALL, "steps": 3, "labels_offset": 1,
                         "checkpoint_path": str(tmp_path / "base"),
                         "checkpoint_exclude_scopes": ["MobilenetV1/Logits"],
                         "trainable_scopes": ["MobilenetV1/Logits"]},
                        dataset_dir, tmp_path / "tuned")
    assert tuned["num_classes"] == NUM_CLASSES
    trunk = "MobilenetV1/Conv2d_0/weights"
    head = "MobilenetV1/Logits/Conv2d_1c_1x1/weights"
    assert np.array_equal(tf.train.load_variable(base["checkpoint"], trunk),
                          tf.train.load_variable(tuned["checkpoint"], trunk))
    assert tf.train.load_variable(base["checkpoint"], head).shape[-1] == NUM_CLASSES + 1
    assert tf.train.load_variable(tuned["checkpoint"], head).shape[-1] == NUM_CLASSES


def _doit_env(build_dir):
    return {"ZOOBUILD_BUILD_DIR": str(build_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.mark.slow
def test_doit_train_eval_export_end_to_end(dataset_dir, build_dir, monkeypatch):
    args = DOIT_VARS + ["steps=6", f"dataset_dir={dataset_dir}"]
    env = _doit_env(build_dir)
    res = run_doit(["train", "eval", "export"] + args, env=env)
    out = res.stdout + res.stderr
    assert f"train:{MODEL}" in out and f"export:{MODEL}" in out

    train_dirs = list((build_dir / "train" / MODEL).iterdir())
    assert len(train_dirs) == 1
    tdir = train_dirs[0]
    assert (tdir / ".complete.json").exists()
    ev = json.loads((tdir / "eval.json").read_text())          # beside the checkpoint
    assert ev["global_step"] == 6 and 0.0 <= ev["top1"] <= ev["top5"] <= 1.0
    assert ev["num_examples"] == NUM_CLASSES * 12

    # export_dir() resolves the same path for the same variables
    from doit import doit_cmd
    import tasks.train as tt
    monkeypatch.setattr(doit_cmd, "_CMDLINE_VARS",
                        dict(a.split("=", 1) for a in args), raising=False)
    edir = tt.export_dir(MODEL)
    assert edir.parent == build_dir / "export" / MODEL and (edir / ".complete.json").exists()
    meta = json.loads((edir / "export.json").read_text())
    assert meta["model"] == MODEL and meta["input_shape"] == [None, 64, 64, 3]
    assert meta["num_classes"] == NUM_CLASSES + 1 and meta["key"] == tt.export_key(MODEL).hex
    assert meta["training_params"]["steps"] == 6

    import tensorflow as tf
    x = np.random.default_rng(0).uniform(-1, 1, (3, 64, 64, 3)).astype(np.float32)
    sig = tf.saved_model.load(str(edir / "saved_model")).signatures["serving_default"]
    assert set(sig.structured_input_signature[1]) == {"images"}
    got = {k: v.numpy() for k, v in sig(images=tf.constant(x)).items()}
    assert got["logits"].shape == (3, NUM_CLASSES + 1)
    assert np.allclose(got["probabilities"].sum(1), 1.0, atol=1e-5)
    assert (got["classes"] == got["logits"].argmax(1)).all()
    gd = tf.compat.v1.GraphDef()
    gd.ParseFromString((edir / "frozen_graph.pb").read_bytes())
    assert not any(n.op in ("VariableV2", "VarHandleOp") for n in gd.node)
    with tf.Graph().as_default() as g:
        tf.compat.v1.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=g) as sess:
            probs = sess.run("probabilities:0", {"images:0": x})
    assert np.allclose(probs, got["probabilities"], atol=1e-4)

    # same key: nothing runs again
    again = run_doit(["train", "eval", "export"] + args, env=env)
    text = again.stdout + again.stderr
    for stage in ("train", "eval", "export"):
        assert f"-- {stage}:{MODEL}" in text, text
    assert "step " not in text


@pytest.mark.slow
def test_killed_run_resumes_from_last_checkpoint(dataset_dir, build_dir):
    args = DOIT_VARS + ["steps=120", "save_interval_steps=10", f"dataset_dir={dataset_dir}"]
    env = dict(os.environ, **_doit_env(build_dir))
    proc = subprocess.Popen(DOIT + ["train"] + args, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt_state = None
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            states = list((build_dir / "train" / MODEL).glob("*/checkpoint"))
            if states and "model.ckpt-0\"" not in states[0].read_text().splitlines()[0]:
                ckpt_state = states[0]
                break
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert ckpt_state is not None, "no checkpoint after step 0 appeared"
    tdir = ckpt_state.parent
    assert not (tdir / ".complete.json").exists()
    import tensorflow as tf
    saved_at = int(tf.train.load_variable(tf.train.latest_checkpoint(str(tdir)), "global_step"))
    assert 0 < saved_at < 120

    res = run_doit(["train"] + args, env=_doit_env(build_dir))
    assert "resuming" in res.stdout + res.stderr
    summary = json.loads((tdir / "train.json").read_text())
    assert summary["global_step"] == 120
    assert summary["steps_this_run"] <= 120 - saved_at
    assert (tdir / ".complete.json").exists()
    assert read_history(tdir)[-1]["step"] > saved_at
    steps = [r["step"] for r in read_history(tdir)]
    assert steps == sorted(set(steps))            # the redone steps are not logged twice


def test_bad_input_is_one_line(dataset_dir, build_dir, tmp_path):
    res = run_doit(["train", "model=vgg_17"], env=_doit_env(build_dir), check=False)
    assert res.returncode != 0 and "vgg_16" in res.stderr and "vgg_17" in res.stderr
    res = run_doit(["train", f"dataset_dir={tmp_path / 'nope'}"], env=_doit_env(build_dir),
                   check=False)
    assert res.returncode != 0
    line = [ln for ln in (res.stdout + res.stderr).splitlines() if "nope" in ln]
    assert line and "dataset_dir" in line[0] and "not a directory" in line[0]
    assert not (build_dir / "train").exists()


# --- recipes, derived batch-norm decay, determinism (issue 13) ------------------------------

def _cmdline(monkeypatch, **words):
    from doit import doit_cmd
    monkeypatch.setattr(doit_cmd, "_CMDLINE_VARS", {k: str(v) for k, v in words.items()},
                        raising=False)


@pytest.mark.slow
def test_default_recipe_learns_the_embedded_set(tmp_path):
    """The proof: the main job's model with nothing but its recipe, on the embedded set exactly
    as `doit imagenet_tfrecords` generates it, reaches top-1 >= 0.9 on the validation split."""
    from datasets.convert import convert
    from datasets.synthetic import make_mini_ilsvrc
    from slim import eval as slim_eval, recipes, train
    from tasks.data import SYNTHETIC

    raw = make_mini_ilsvrc(tmp_path / "raw", **SYNTHETIC, progress=False)
    convert(raw, tmp_path / "tfrecords", train_shards=2, validation_shards=1, workers=1,
            progress=False)
    cfg = {"model": recipes.DEFAULT_MODEL}
    summary = train.train(cfg, tmp_path / "tfrecords", tmp_path / "run")
    assert summary["global_step"] == recipes.RECIPES[recipes.DEFAULT_MODEL]["steps"]
    result = slim_eval.evaluate(cfg, tmp_path / "tfrecords", tmp_path / "run")
    assert result["num_examples"] == SYNTHETIC["num_classes"] * SYNTHETIC["val_per_class"]
    assert result["top1"] >= 0.9, result


def test_bn_decay_is_derived_from_the_run_length():
    from slim import recipes
    from slim.nets import NETWORKS

    assert recipes.derived_bn_decay("mobilenet_v1_025", 1000) == 0.99
    assert recipes.derived_bn_decay("mobilenet_v1_025", 10) == 0.9          # floor
    assert recipes.derived_bn_decay("mobilenet_v1_025", 10 ** 6) == 0.9997  # slim's, long runs
    assert recipes.derived_bn_decay("resnet_v1_50", 10 ** 6) == 0.997       # resnet's own
    assert recipes.derived_bn_decay("vgg_16", 1000) == 0.0                  # no batch norm
    short, longer = (recipes.derived_bn_decay("inception_v3", n) for n in (500, 5000))
    assert 0.9 < short < longer < 0.9997
    assert recipes.resolve({"model": "mobilenet_v1_025", "steps": 2000})["batch_norm_decay"] == 0.995
    # the table's ceiling is the net's own arg_scope default, where it takes one
    import importlib
    import inspect
    for name, s in NETWORKS.items():
        scope = getattr(importlib.import_module(s.module), s.arg_scope)
        param = inspect.signature(scope).parameters.get("batch_norm_decay")
        assert s.batch_norm_decay == (param.default if param else 0.0), name


def test_derived_bn_decay_is_in_the_key(monkeypatch):
    import tasks.train as tt

    _cmdline(monkeypatch, steps=1000)
    k1000 = tt.train_key("mobilenet_v1_025")
    assert k1000.params["batch_norm_decay"] == 0.99
    _cmdline(monkeypatch, steps=2000)
    assert tt.train_key("mobilenet_v1_025").params["batch_norm_decay"] == 0.995
    _cmdline(monkeypatch, steps=1000, batch_norm_decay=0.99)   # the same value, given: same key
    assert tt.train_key("mobilenet_v1_025").hex == k1000.hex
    _cmdline(monkeypatch, steps=1000, batch_norm_decay=0.9)
    assert tt.train_key("mobilenet_v1_025").params["batch_norm_decay"] == 0.9
    _cmdline(monkeypatch, model="vgg_16")
    assert tt.train_key("vgg_16").params["batch_norm_decay"] == 0.0


def test_explicit_values_beat_the_recipe(monkeypatch):
    import tasks.train as tt
    from slim import recipes
    from slim.options import defaults

    _cmdline(monkeypatch)
    assert tt.MODEL.get() == recipes.DEFAULT_MODEL
    plain = tt.train_params(recipes.DEFAULT_MODEL)
    plain_key = tt.train_key(recipes.DEFAULT_MODEL)
    assert plain == recipes.resolve({"model": recipes.DEFAULT_MODEL})
    for name, value in recipes.RECIPES[recipes.DEFAULT_MODEL].items():
        assert plain[name] == value, name
    assert plain["deterministic"] is True

    _cmdline(monkeypatch, steps=50, train_image_size=96, optimizer="adam", deterministic="false")
    given = tt.train_params(recipes.DEFAULT_MODEL)
    assert (given["steps"], given["train_image_size"], given["optimizer"]) == (50, 96, "adam")
    assert given["deterministic"] is False
    assert given["batch_size"] == recipes.RECIPES[recipes.DEFAULT_MODEL]["batch_size"]
    assert given["batch_norm_decay"] == 0.9                  # derived from the given 50 steps
    _cmdline(monkeypatch, learning_rate=0.03)                # equal to the recipe's: same key
    assert tt.train_key(recipes.DEFAULT_MODEL).hex == plain_key.hex
    _cmdline(monkeypatch, learning_rate=0.02)
    assert tt.train_key(recipes.DEFAULT_MODEL).params["learning_rate"] == 0.02

    # a net with neither a recipe nor best-known parameters keeps the table's smoke-test
    # defaults, as before (a tuned net takes its tuned batch: tests/test_bf16_tune.py)
    from slim import tuning

    assert not tuning.settings("inception_v3") and "inception_v3" not in recipes.RECIPES
    _cmdline(monkeypatch, model="inception_v3")
    params = tt.train_params("inception_v3")
    table = defaults()
    assert {k: params[k] for k in ("steps", "batch_size", "optimizer", "learning_rate",
                                "train_image_size")} == \
        {k: table[k] for k in ("steps", "batch_size", "optimizer", "learning_rate",
                               "train_image_size")}
    assert recipes.resolve({"model": "mobilenet_v1_025", "steps": 7})["steps"] == 7


def test_moving_averages_read_the_variables_after_the_step(dataset_dir):
    """moving_average_decay averages the model variables, which the optimizer and batch norm
    assign in the same step: the averages must run after every such assignment, or their order
    is a thread race (it made two deterministic runs write different checkpoints, now and then)."""
    import tensorflow as tf
    from slim import train

    v1 = tf.compat.v1

    def ancestors(op):
        seen, todo = set(), [op]
        while todo:
            cur = todo.pop()
            for parent in [t.op for t in cur.inputs] + list(cur.control_inputs):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return seen

    cfg = train.resolve({**SMALL, "moving_average_decay": 0.99})
    with train.op_determinism(True), tf.Graph().as_default() as graph:
        g = train.build_train_graph(cfg, dataset_dir)
        step = ancestors(g["train_op"].op)
        averages = [op for op in graph.get_operations() if op.type == "AssignSubVariableOp"
                    and "ExponentialMovingAverage" in op.name]
        writes = [op for op in step if op.type.startswith(("ResourceApply", "AssignSubVariableOp",
                                                              "AssignAddVariableOp", "AssignVariableOp"))
                  and "ExponentialMovingAverage" not in op.name]
        assert len(averages) == len(v1.get_collection(v1.GraphKeys.MODEL_VARIABLES)) and writes
        assert any(op.type.startswith("ResourceApply") for op in writes)
        assert any("BatchNorm" in op.name for op in v1.get_collection(v1.GraphKeys.UPDATE_OPS))
        for avg in averages:
            assert avg in step                        # the step runs them
            before = ancestors(avg)
            assert [w.name for w in writes if w not in before] == [], avg.name


@pytest.mark.slow
def test_deterministic_runs_give_identical_checkpoints(dataset_dir, tmp_path):
    """Two runs of one configuration (one key) write byte-identical checkpoint data; without
    determinism they differ, so the comparison can fail."""
    from slim import train

    cfg = {**SMALL, "steps": 6, "shuffle_seed": 0, "deterministic": True}

    def checkpoint_files(run, c):
        summary = train.train(c, dataset_dir, tmp_path / run)
        files = sorted(Path(summary["checkpoint"]).parent.glob(
            Path(summary["checkpoint"]).name + ".*"))
        return {f.name: f.read_bytes() for f in files if not f.name.endswith(".meta")}

    a = checkpoint_files("a", cfg)
    b = checkpoint_files("b", cfg)
    assert any(name.startswith("model.ckpt-6.data-") for name in a)
    assert a == b
    c = checkpoint_files("c", {**cfg, "deterministic": False})
    assert a.keys() == c.keys() and a != c


def test_default_model_has_images_carrying_rich():
    """The main job builds the default model's image chain only; those images hold `rich`,
    which zoobuild.progress imports when a container runs on a terminal."""
    from images import plan as plan_mod
    from slim import recipes
    from tasks.train import model_image_names

    plan = plan_mod.load_plan()
    names = model_image_names(plan, [recipes.DEFAULT_MODEL])
    assert names[:2] == ["tf-compiled-base", "image-recognition"]
    assert all(n.startswith("mobilenet-v1-025-") for n in names[2:]) and len(names) == 4
    img = plan.by_tag[plan_mod.model_image_tag(plan, recipes.DEFAULT_MODEL)]
    installed = set()
    for a in [img] + plan.ancestors(img):
        installed |= set(plan_mod.image_requirements(plan, a))
    assert "rich" in installed
