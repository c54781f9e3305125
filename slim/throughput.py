"""Images/s of one slim net's training step or inference batch, on seeded in-memory data.

The training step is the one `doit train` runs (the net, slim's softmax loss with weight
decay, the default rmsprop optimizer through slim/optimizers.py, tf_slim's train op) with
the input pipeline replaced by a constant batch, so the figure is the compute alone.  The
session gets the compute precision (slim/precision.py) and the thread settings.

    python -m slim.throughput --model resnet_v1_50 --mode training --batch 8 --compute bf16 \
        --intra 2 --inter 1 --steps 5 --warmup 2          # prints one JSON line

Thread environment variables (OMP_NUM_THREADS, KMP_*) take effect only when set before
TensorFlow loads, so a sweep runs each setting in a fresh process (slim/tuning.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import time

NUM_CLASSES = 1001


def _session_config(compute, intra, inter):
    import tensorflow as tf

    from slim import precision

    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=intra,
                                      inter_op_parallelism_threads=inter)
    return precision.session_config(compute, config)


class Step:
    """One net's training step (or inference batch) in its own graph and session, ready to run:
    ``step.run()`` returns the seconds one step took.  Several can be alive at once, so a
    benchmark can alternate them and let drifting load hit each alike."""

    def __init__(self, model: str, mode: str = "training", batch_size: int = 8, compute: str = "fp32",
                 intra: int = 0, inter: int = 0, image_size: int = 0, seed: int = 0):
        import slim.compat  # noqa: F401  (before tf_slim)
        import numpy as np
        import tensorflow as tf
        import tf_slim

        from slim import nets, optimizers, precision
        from slim.options import defaults

        precision.require(compute, f"{mode} {model} compute={compute}")
        v1 = tf.compat.v1
        self.size = int(image_size or nets.default_image_size(model))
        self.info = {"model": model, "mode": mode, "batch_size": batch_size, "compute": compute,
                     "intra": intra, "inter": inter, "image_size": self.size}
        rng = np.random.default_rng(seed)
        images_np = rng.uniform(-1, 1, (batch_size, self.size, self.size, 3)).astype(np.float32)
        labels_np = rng.integers(0, NUM_CLASSES, batch_size).astype(np.int64)
        cfg = {**defaults(), "model": model}
        self.graph = tf.Graph()
        with self.graph.as_default():
            images, labels = tf.constant(images_np), tf.constant(labels_np)
            training = mode == "training"
            fn = nets.get_network_fn(model, NUM_CLASSES, cfg["weight_decay"], is_training=training)
            logits, _ = fn(images)
            if training:
                global_step = v1.train.get_or_create_global_step()
                v1.losses.softmax_cross_entropy(tf.one_hot(labels, NUM_CLASSES), logits)
                loss = v1.losses.get_total_loss()
                opt = optimizers.configure_optimizer(cfg, cfg["learning_rate"])
                self.op = tf_slim.learning.create_train_op(loss, opt, global_step=global_step)
            else:
                self.op = tf.reduce_sum(logits)
            self.sess = v1.Session(config=_session_config(compute, intra, inter))
            self.sess.run(v1.global_variables_initializer())

    def run(self) -> float:
        start = time.perf_counter()
        self.sess.run(self.op)
        return time.perf_counter() - start

    def close(self):
        self.sess.close()


def summarize(info: dict, times: list[float]) -> dict:
    """The best step (the least disturbed one on a shared machine) and the median."""
    best = min(times)
    return {**info, "steps": len(times), "seconds_per_step": best,
            "median_seconds_per_step": sorted(times)[len(times) // 2],
            "images_per_sec": info["batch_size"] / best}


def measure(model: str, mode: str = "training", batch_size: int = 8, compute: str = "fp32",
            intra: int = 0, inter: int = 0, steps: int = 5, warmup: int = 2,
            image_size: int = 0, seed: int = 0) -> dict:
    """{"images_per_sec", "seconds_per_step", ...}: best of ``steps`` timed steps after
    ``warmup`` untimed ones."""
    step = Step(model, mode, batch_size, compute, intra, inter, image_size, seed)
    try:
        for _ in range(warmup):
            step.run()
        return summarize(step.info, [step.run() for _ in range(max(1, steps))])
    finally:
        step.close()


def main(argv=None) -> int:
    from zoobuild.errors import UserError

    p = argparse.ArgumentParser(prog="python -m slim.throughput")
    p.add_argument("--model", required=True)
    p.add_argument("--mode", choices=("training", "inference"), default="training")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--compute", default="fp32")
    p.add_argument("--intra", type=int, default=0)
    p.add_argument("--inter", type=int, default=0)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--image-size", type=int, default=0)
    a = p.parse_args(argv)
    try:
        res = measure(a.model, a.mode, a.batch, a.compute, a.intra, a.inter, a.steps, a.warmup,
                      a.image_size)
    except UserError as err:
        print(f"zoobuild: {err}", file=sys.stderr)
        return 2
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
