"""train_image_classifier for TF 2.21: TF1-style graph, tf_slim nets,
MonitoredTrainingSession. Resumes from the last checkpoint in ``train_dir``.

    train(cfg, dataset_dir, train_dir)                       # one process
    train(cfg, dataset_dir, train_dir, cluster=..., job_name="worker", task_index=0)

``cfg`` holds ``model`` plus the options of ``slim.options.TRAIN_OPTIONS``.
Writes TensorBoard events and checkpoints into ``train_dir``, a progress
history ``history.jsonl`` (step, loss, learning rate, accuracy, images/s) and,
on the chief, ``train.json`` when the target step is reached.
"""
import json
import os
import time
from pathlib import Path

import slim.compat  # noqa: F401  (before tf_slim)
import tensorflow as tf
import tf_slim

from slim import inputs, nets, optimizers, precision, preprocessing
from slim.options import defaults
from zoobuild.errors import UserError

v1 = tf.compat.v1


def resolve(cfg):
    """cfg with every option present (slim defaults for the missing ones)."""
    full = defaults()
    full.update(cfg)
    if "model" not in full:
        raise UserError("model: missing")
    nets.spec(full["model"])
    return full


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
    """Prints step, loss, images/s every n steps and appends to history.jsonl."""

    def __init__(self, tensors, batch_size, every_n, history_path, echo=print):
        self._tensors = tensors
        self._batch = batch_size
        self._every = max(1, every_n)
        self._path = history_path
        self._echo = echo
        self._last = None

    def begin(self):
        self._last = None
        self._pending = None

    def before_run(self, run_context):
        return v1.train.SessionRunArgs(self._tensors)

    def after_run(self, run_context, run_values):
        self._report(run_values.results, final=False)

    def end(self, session):
        if self._pending is not None:  # the last step, if its interval had not come yet
            self._report(self._pending, final=True)

    def _report(self, vals, final):
        step = int(vals["global_step"])
        now = time.time()
        self._pending = vals
        if self._last is not None and step - self._last[0] < self._every and not final:
            return
        if self._last is not None and step == self._last[0]:
            return
        self._pending = None
        ips = None
        if self._last is not None:
            ips = (step - self._last[0]) * self._batch / max(now - self._last[1], 1e-9)
            ips = round(ips, 2)
        rec = {"step": step, "loss": float(vals["loss"]),
               "learning_rate": float(vals["learning_rate"]),
               "accuracy": float(vals["accuracy"]), "images_per_sec": ips,
               "time": now}
        with open(self._path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        self._echo(f"step {step}: loss {rec['loss']:.4f} lr {rec['learning_rate']:.5g} "
                   f"acc {rec['accuracy']:.3f}"
                   + (f" {ips:.1f} images/s" if ips else ""))
        self._last = (step, now)


def build_train_graph(cfg, dataset_dir, num_replicas=1, ps_tasks=0, worker_device="",
                      cluster_spec=None, is_chief=True, input_fn=None):
    """Everything the step needs; returns a dict of tensors/ops.

    ``input_fn(size, classes) -> (images, labels)`` replaces the TFRecord
    reader (the input-pipeline benchmark feeds in-memory tensors this way).
    """
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
                images, labels = inputs.batches(
                    dataset_dir, cfg["dataset_split_name"], cfg["batch_size"], preprocess,
                    size, is_training=True, labels_offset=cfg["labels_offset"],
                    shuffle_seed=cfg["shuffle_seed"] or None, grayscale=cfg["use_grayscale"])
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

        if cfg["moving_average_decay"]:
            ema = v1.train.ExponentialMovingAverage(cfg["moving_average_decay"], global_step)
            v1.add_to_collection(v1.GraphKeys.UPDATE_OPS,
                                 ema.apply(tf_slim.get_model_variables()))

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

    with tf.Graph().as_default():
        g = build_train_graph(cfg, dataset_dir, num_replicas, ps_tasks, worker_device,
                              cluster_spec, is_chief)
        hooks = [v1.train.StopAtStepHook(last_step=cfg["steps"]),
                 v1.train.NanTensorHook(g["loss"]),
                 ProgressHook({k: g[k] for k in ("global_step", "loss", "learning_rate",
                                                 "accuracy")},
                              cfg["batch_size"] * (num_replicas if cfg["sync_replicas"] else 1),
                              cfg["log_every_n_steps"],
                              train_dir / f"history-{job_name}{task_index}.jsonl"
                              if cluster else train_dir / "history.jsonl", echo)]
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
            while not sess.should_stop():
                _, step, last_loss = sess.run([g["train_op"], g["global_step"], g["loss"]])
                if first_step is None:
                    first_step = step
        elapsed = time.time() - start
    return _finish(cfg, train_dir, g, last_loss,
                   elapsed, is_chief, 0 if first_step is None else int(step - first_step + 1))


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
        tmp = train_dir / "train.json.tmp"
        tmp.write_text(json.dumps(summary, indent=2, default=str))
        tmp.replace(train_dir / "train.json")
    return summary
