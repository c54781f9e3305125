"""train_image_classifier for TF 2.21: TF1-style graph, tf_slim nets,
MonitoredTrainingSession. Resumes from the last checkpoint in ``train_dir``.

    train(cfg, dataset_dir, train_dir)                       # one process
    train(cfg, dataset_dir, train_dir, cluster=..., job_name="worker", task_index=0)

``cfg`` holds ``model`` plus any options of ``slim.options.TRAIN_OPTIONS``; the
missing ones come from the model's recipe, then the table (``slim.recipes``).
With ``deterministic`` (the default) op determinism is on and every seed fixed, so
one configuration writes byte-identical checkpoints.  Shows a progress bar
(steps, loss, images/s); writes TensorBoard events and checkpoints into
``train_dir``, a history ``history.jsonl`` (step, loss, learning rate, accuracy,
images/s) and, on the chief, ``train.json`` when the target step is reached.
"""
import contextlib
import json
import os
import time
import warnings
from pathlib import Path

import slim.compat  # noqa: F401  (before tf_slim)
import tensorflow as tf
import tf_slim

from slim import inputs, nets, optimizers, precision, preprocessing, recipes
from slim.options import defaults
from zoobuild import atomic
from zoobuild.errors import UserError
from zoobuild.progress import progress

v1 = tf.compat.v1


# The seed of shuffles and random ops when deterministic=true and shuffle_seed is 0.
DETERMINISTIC_SEED = 1


def resolve(cfg):
    """cfg with every option present: cfg's own values, then the model's recipe, then slim's
    defaults; batch_norm_decay 0 is derived from steps (slim.recipes)."""
    return recipes.resolve(cfg)


def run_seed(cfg, task_index=0):
    """Seed of this process's input shuffles (and, when deterministic, of the graph); None =
    unseeded.  Each worker of a cluster gets its own, so workers do not read in lockstep."""
    seed = cfg["shuffle_seed"] or (DETERMINISTIC_SEED if cfg["deterministic"] else 0)
    return seed + task_index if seed else None


@contextlib.contextmanager
def op_determinism(enabled):
    """TensorFlow op determinism on (or off) for the block; the process's setting after.
    It must be on while the graph is built: some ops check it then (seeds required)."""
    from tensorflow.python.framework import config as tf_config

    before = tf_config.is_op_determinism_enabled()
    if enabled:
        tf.config.experimental.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()
    try:
        yield
    finally:
        if before:
            tf.config.experimental.enable_op_determinism()
        else:
            tf_config.disable_op_determinism()


def image_size(cfg, key="train_image_size"):
    return int(cfg.get(key) or cfg.get("train_image_size") or nets.default_image_size(cfg["model"]))


def _scopes_filter(scopes):
    return [s.strip() for s in scopes if s.strip()]


def variables_to_train(cfg):
    scopes = _scopes_filter(cfg["trainable_scopes"])
    if not scopes:
        return v1.trainable_variables()
    out = []
    for scope in scopes:
        out.extend(v1.get_collection(v1.GraphKeys.TRAINABLE_VARIABLES, scope))
    if not out:
        raise UserError(f"trainable_scopes: {','.join(scopes)} match no variables")
    return out


def fine_tune_init_fn(cfg, train_dir):
    """Scaffold init_fn restoring checkpoint_path (only when train_dir has none)."""
    if not cfg["checkpoint_path"]:
        return None
    if tf.train.latest_checkpoint(str(train_dir)):
        return None  # resuming: the train dir's own checkpoint wins
    exclusions = _scopes_filter(cfg["checkpoint_exclude_scopes"])
    to_restore = [v for v in tf_slim.get_model_variables()
                  if not any(v.op.name.startswith(e) for e in exclusions)]
    path = cfg["checkpoint_path"]
    if os.path.isdir(path):
        path = tf.train.latest_checkpoint(path)
        if not path:
            raise UserError(f"checkpoint_path: no checkpoint in {cfg['checkpoint_path']}")
    fn = tf_slim.assign_from_checkpoint_fn(path, to_restore,
                                           ignore_missing_vars=cfg["ignore_missing_vars"])
    return lambda scaffold, session: fn(session)


class ProgressHook(v1.train.SessionRunHook):
    """Feeds a progress bar (steps, loss, images/s) every step and appends step, loss,
    learning rate, accuracy and images/s to history.jsonl every n steps."""

    def __init__(self, tensors, batch_size, every_n, history_path, bar=None):
        self._tensors = tensors
        self._batch = batch_size
        self._every = max(1, every_n)
        self._path = history_path
        self.bar = bar  # set once the session is up
        self._last = None
        self._ips = None  # images/s over the last history interval

    def begin(self):
        self._last = None
        self._pending = None
        self._bar_step = None

    def before_run(self, run_context):
        return v1.train.SessionRunArgs(self._tensors)

    def after_run(self, run_context, run_values):
        self._report(run_values.results, final=False)

    def end(self, session):
        if self._pending is not None:  # the last step, if its interval had not come yet
            self._report(self._pending, final=True)

    def _advance_bar(self, step, loss, ips):
        if self.bar is None:
            return
        # global_step counts from where a resumed run starts; the first step seen sets the base
        base = self._bar_step if self._bar_step is not None else step - 1
        fields = {"loss": float(loss)}
        if ips:
            fields["images/s"] = ips
        self.bar.advance(max(step - base, 0), **fields)
        self._bar_step = step

    def _report(self, vals, final):
        step = int(vals["global_step"])
        now = time.time()
        self._pending = vals
        if not final:
            self._advance_bar(step, vals["loss"], self._ips)
        if self._last is not None and step - self._last[0] < self._every and not final:
            return
        if self._last is not None and step == self._last[0]:
            return
        self._pending = None
        ips = None
        if self._last is not None:
            ips = (step - self._last[0]) * self._batch / max(now - self._last[1], 1e-9)
            ips = round(ips, 2)
            self._ips = ips
        rec = {"step": step, "loss": float(vals["loss"]),
               "learning_rate": float(vals["learning_rate"]),
               "accuracy": float(vals["accuracy"]), "images_per_sec": ips,
               "time": now}
        with open(self._path, "a") as f:  # an append-only log, one JSON object a line
            f.write(json.dumps(rec) + "\n")
        self._last = (step, now)


def build_train_graph(cfg, dataset_dir, num_replicas=1, ps_tasks=0, worker_device="",
                      cluster_spec=None, is_chief=True, input_fn=None, seed=None):
    """Everything the step needs; returns a dict of tensors/ops.

    ``input_fn(size, classes) -> (images, labels)`` replaces the TFRecord
    reader (the input-pipeline benchmark feeds in-memory tensors this way).
    ``seed`` (run_seed) seeds the shuffles; with cfg['deterministic'] also the graph, so
    initial weights and augmentation repeat.  Build it under ``op_determinism``.
    """
    if seed is None:
        seed = run_seed(cfg)
    if cfg["deterministic"]:
        v1.set_random_seed(seed)
    info = inputs.split_info(dataset_dir)
    classes = inputs.num_classes(info) - cfg["labels_offset"]
    num_samples = inputs.split_size(info, cfg["dataset_split_name"])
    size = image_size(cfg)
    network_fn = nets.get_network_fn(cfg["model"], classes, cfg["weight_decay"],
                                     is_training=True,
                                     batch_norm_decay=cfg["batch_norm_decay"] or None)
    pre_name = preprocessing.for_model(cfg["model"], cfg["preprocessing"])
    preprocess = preprocessing.get_preprocessing(pre_name, is_training=True)

    setter = v1.train.replica_device_setter(ps_tasks=ps_tasks, worker_device=worker_device,
                                            cluster=cluster_spec)
    with v1.device(setter):
        global_step = v1.train.get_or_create_global_step()
        with v1.device(worker_device + "/cpu:0" if worker_device else "/cpu:0"):
            if input_fn is not None:
                images, labels = input_fn(size, classes)
            else:
                with warnings.catch_warnings():
                    # the graph seed reaching the map function is the point of deterministic
                    warnings.filterwarnings("ignore", "Seed .* from outer graph", UserWarning)
                    images, labels = inputs.batches(
                        dataset_dir, cfg["dataset_split_name"], cfg["batch_size"], preprocess,
                        size, is_training=True, labels_offset=cfg["labels_offset"],
                        shuffle_seed=seed, grayscale=cfg["use_grayscale"])
        logits, end_points = network_fn(images)
        onehot = tf.one_hot(labels, classes)
        if "AuxLogits" in end_points:
            v1.losses.softmax_cross_entropy(onehot, end_points["AuxLogits"],
                                            label_smoothing=cfg["label_smoothing"],
                                            weights=0.4, scope="aux_loss")
        v1.losses.softmax_cross_entropy(onehot, logits,
                                        label_smoothing=cfg["label_smoothing"], weights=1.0)
        total_loss = v1.losses.get_total_loss(name="total_loss")
        accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))

        learning_rate = optimizers.configure_learning_rate(cfg, num_samples, global_step,
                                                           replicas=num_replicas)
        optimizer = optimizers.configure_optimizer(cfg, learning_rate)
        sync_hook = None
        if cfg["sync_replicas"]:
            optimizer = v1.train.SyncReplicasOptimizer(
                optimizer, replicas_to_aggregate=cfg["replicas_to_aggregate"] or num_replicas,
                total_num_replicas=num_replicas)
            sync_hook = optimizer.make_session_run_hook(is_chief)
        train_op = tf_slim.learning.create_train_op(
            total_loss, optimizer, global_step=global_step,
            variables_to_train=variables_to_train(cfg))
        if cfg["moving_average_decay"]:
            # The averages run after the whole step (slim's train_image_classifier puts them
            # among the update ops, unordered against the optimizer's and batch norm's
            # assignments to the same variables: each average read its variable before or
            # after that step's update as the threads happened to run, and two deterministic
            # runs wrote different checkpoints).  After the step, they read its results.
            ema = v1.train.ExponentialMovingAverage(cfg["moving_average_decay"], global_step)
            with v1.control_dependencies([train_op]):
                averages = ema.apply(tf_slim.get_model_variables())
            with v1.control_dependencies([averages]):
                train_op = tf.identity(train_op)

    v1.summary.scalar("losses/total_loss", total_loss)
    v1.summary.scalar("learning_rate", learning_rate)
    v1.summary.scalar("accuracy", accuracy)
    v1.summary.image("images", images, max_outputs=2)
    return {"train_op": train_op, "global_step": global_step, "loss": total_loss,
            "learning_rate": learning_rate, "accuracy": accuracy, "sync_hook": sync_hook,
            "num_classes": classes, "image_size": size, "preprocessing": pre_name,
            "num_samples": num_samples}


def train(cfg, dataset_dir, train_dir, cluster=None, job_name="worker", task_index=0,
          echo=print):
    """Train until global step ``cfg['steps']``; returns the summary dict."""
    cfg = resolve(cfg)
    precision.require(cfg["compute"], f"train {cfg['model']} compute={cfg['compute']}")
    train_dir = Path(train_dir)
    train_dir.mkdir(parents=True, exist_ok=True)
    target = None
    ps_tasks, num_replicas, worker_device, cluster_spec = 0, 1, "", None
    is_chief = True
    if cluster:
        cluster_spec = tf.train.ClusterSpec(cluster)
        server = tf.distribute.Server(cluster_spec, job_name=job_name, task_index=task_index)
        if job_name == "ps":
            echo(f"ps {task_index}: serving on {cluster['ps'][task_index]}")
            server.join()
            return {}
        target = server.target
        ps_tasks = len(cluster.get("ps", []))
        num_replicas = len(cluster["worker"])
        worker_device = f"/job:worker/task:{task_index}"
        is_chief = task_index == 0

    done = _checkpoint_step(train_dir)
    if is_chief and done is not None and done >= cfg["steps"]:
        echo(f"train {cfg['model']}: already at step {done} of {cfg['steps']}; nothing to do")
        return _finish(cfg, train_dir, None, None, 0.0, is_chief)

    history = train_dir / (f"history-{job_name}{task_index}.jsonl" if cluster else "history.jsonl")
    if done is not None:
        _drop_history_after(history, done)
    what = f"train {cfg['model']}" + (f" worker {task_index}" if cluster else "")
    with op_determinism(cfg["deterministic"]), tf.Graph().as_default(), \
            contextlib.ExitStack() as stack:
        g = build_train_graph(cfg, dataset_dir, num_replicas, ps_tasks, worker_device,
                              cluster_spec, is_chief, seed=run_seed(cfg, task_index))
        progress_hook = ProgressHook(
            {k: g[k] for k in ("global_step", "loss", "learning_rate", "accuracy")},
            cfg["batch_size"] * (num_replicas if cfg["sync_replicas"] else 1),
            cfg["log_every_n_steps"], history)
        hooks = [v1.train.StopAtStepHook(last_step=cfg["steps"]),
                 v1.train.NanTensorHook(g["loss"]), progress_hook]
        chief_hooks = [g["sync_hook"]] if g["sync_hook"] else []
        if g["sync_hook"] and not is_chief:
            hooks.append(g["sync_hook"])
            chief_hooks = []
        scaffold = v1.train.Scaffold(init_fn=fine_tune_init_fn(cfg, train_dir),
                                     saver=v1.train.Saver(max_to_keep=2,
                                                          sharded=bool(ps_tasks)))
        save_steps = cfg["save_interval_steps"] or None
        session_config = precision.session_config(cfg["compute"], v1.ConfigProto(
            allow_soft_placement=True, intra_op_parallelism_threads=cfg["intra_op_threads"],
            inter_op_parallelism_threads=cfg["inter_op_threads"]))
        if cluster:
            session_config.device_filters.extend(["/job:ps", worker_device])
        start = time.time()
        first_step = last_loss = step = None
        with v1.train.MonitoredTrainingSession(
                master=target or "", is_chief=is_chief, checkpoint_dir=str(train_dir),
                scaffold=scaffold, hooks=hooks, chief_only_hooks=chief_hooks,
                save_checkpoint_secs=None if save_steps else cfg["save_interval_secs"],
                save_checkpoint_steps=save_steps,
                save_summaries_secs=cfg["save_summaries_secs"], log_step_count_steps=None,
                config=session_config, stop_grace_period_secs=10) as sess:
            # the bar starts once the session is up, so its rate and ETA are the steps'
            progress_hook.bar = stack.enter_context(
                progress(what, total=cfg["steps"] - (done or 0), unit="steps"))
            while not sess.should_stop():
                _, step, last_loss = sess.run([g["train_op"], g["global_step"], g["loss"]])
                if first_step is None:
                    first_step = step
        elapsed = time.time() - start
    summary = _finish(cfg, train_dir, g, last_loss, elapsed, is_chief,
                      0 if first_step is None else int(step - first_step + 1))
    if summary.get("final_loss") is not None:
        echo(f"train {cfg['model']}: step {summary['global_step']}, loss "
             f"{summary['final_loss']:.4f}, {elapsed:.1f} s")
    return summary


def _drop_history_after(history, step):
    """Resuming from the checkpoint of ``step``: the killed run's records from that step on are
    of steps this run trains again (and logs again), so they go."""
    if not history.exists():
        return
    def before(line):
        try:
            return json.loads(line)["step"] < step
        except (ValueError, KeyError, TypeError):   # a line the kill cut short
            return False

    lines = history.read_text().splitlines()
    keep = [line for line in lines if before(line)]
    if len(keep) != len(lines):
        atomic.write_text(history, "".join(line + "\n" for line in keep))


def _checkpoint_step(train_dir):
    checkpoint = tf.train.latest_checkpoint(str(train_dir))
    return int(tf.train.load_variable(checkpoint, "global_step")) if checkpoint else None


def _finish(cfg, train_dir, g, last_loss, elapsed, is_chief, steps_this_run=0):
    checkpoint = tf.train.latest_checkpoint(str(train_dir))
    previous = {}
    if (train_dir / "train.json").exists():
        previous = json.loads((train_dir / "train.json").read_text())
    if g is None:  # nothing trained now: keep what the finished run recorded
        g = {k: previous.get(k) for k in ("num_classes", "image_size", "preprocessing")}
        last_loss = previous.get("final_loss")
    summary = {"model": cfg["model"], "global_step": _checkpoint_step(train_dir) or 0,
               "final_loss": None if last_loss is None else float(last_loss),
               "steps_this_run": steps_this_run, "seconds": round(elapsed, 2),
               "num_classes": g["num_classes"], "image_size": g["image_size"],
               "preprocessing": g["preprocessing"], "checkpoint": checkpoint, "params": cfg}
    if is_chief:
        atomic.write_json(train_dir / "train.json", summary, indent=2)
    return summary
