"""eval_image_classifier for TF 2.21: top-1 / top-5 over a split, one pass.

Counts are exact (numpy over every batch) rather than streaming metrics, so a
partial last batch is included. With moving_average_decay the averaged
weights are evaluated, as slim does.
"""
import math
import time
from pathlib import Path

import slim.compat  # noqa: F401
import numpy as np
import tensorflow as tf

from slim import accuracy_gate, inputs, nets, precision, preprocessing
from slim.train import image_size, resolve
from zoobuild import atomic
from zoobuild.errors import UserError
from zoobuild.progress import progress

v1 = tf.compat.v1


def restore_saver(cfg):
    if cfg.get("moving_average_decay"):
        ema = v1.train.ExponentialMovingAverage(cfg["moving_average_decay"])
        return v1.train.Saver(ema.variables_to_restore())
    return v1.train.Saver()


def find_checkpoint(path):
    path = str(path)
    ckpt = tf.train.latest_checkpoint(path) if Path(path).is_dir() else path
    if not ckpt:
        raise UserError(f"checkpoint: no checkpoint in {path}; train first")
    return ckpt


def evaluate(cfg, dataset_dir, checkpoint, out_json=None, echo=print):
    """Top-1/top-5 of ``checkpoint`` (file or train dir) on cfg['eval_split_name']."""
    cfg = resolve(cfg)
    precision.require(cfg["compute"], f"eval {cfg['model']} compute={cfg['compute']}")
    ckpt = find_checkpoint(checkpoint)
    split = cfg.get("eval_split_name", "validation")
    batch_size = int(cfg.get("eval_batch_size", 50))
    max_batches = int(cfg.get("max_num_batches", 0))
    info = inputs.split_info(dataset_dir)
    classes = inputs.num_classes(info) - cfg["labels_offset"]
    size = image_size(cfg, "eval_image_size")
    pre_name = preprocessing.for_model(cfg["model"], cfg["preprocessing"])
    preprocess = preprocessing.get_preprocessing(pre_name, is_training=False)
    with tf.Graph().as_default():
        images, labels = inputs.batches(dataset_dir, split, batch_size, preprocess, size,
                                        is_training=False, labels_offset=cfg["labels_offset"],
                                        num_epochs=1, grayscale=cfg["use_grayscale"])
        logits, _ = nets.get_network_fn(cfg["model"], classes, is_training=False)(images)
        k = min(5, classes)
        _, top = tf.nn.top_k(logits, k=k)
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        saver = restore_saver(cfg)
        top1 = top5 = n = batches = 0
        loss_sum = 0.0
        start = time.time()
        total = math.ceil(inputs.split_size(info, split) / batch_size)
        if max_batches:
            total = min(total, max_batches)
        with v1.Session(config=precision.session_config(cfg["compute"])) as sess, \
                progress(f"eval {cfg['model']} on {split}", total=total, unit="batches") as bar:
            saver.restore(sess, ckpt)
            while not max_batches or batches < max_batches:
                try:
                    t, lab, x = sess.run([top, labels, xent])
                except tf.errors.OutOfRangeError:
                    break
                top1 += int(np.sum(t[:, 0] == lab))
                top5 += int(np.sum(np.any(t == lab[:, None], axis=1)))
                n += len(lab)
                loss_sum += float(np.sum(x))
                batches += 1
                bar.advance(1, images=n, top1=top1 / n)
    if n == 0:
        raise UserError(f"eval_split_name: split {split!r} in {dataset_dir} yielded no images")
    result = {"model": cfg["model"], "checkpoint": ckpt,
              "global_step": int(tf.train.load_variable(ckpt, "global_step")),
              "split": split, "num_examples": n, "top1": top1 / n, "top5": top5 / n,
              "loss": loss_sum / n, "compute": cfg["compute"],
              "top5_k": k, "image_size": size, "preprocessing": pre_name,
              "seconds": round(time.time() - start, 2)}
    if cfg["compute"] != "fp32":   # the accuracy gate's reference: same checkpoint and images, fp32
        ref = evaluate({**cfg, "compute": "fp32"}, dataset_dir, ckpt, echo=echo)
        result["reference"] = {k: ref[k] for k in ("compute", "top1", "top5", "loss", "num_examples")}
        result["gate"] = accuracy_gate.verdict(result["top1"], ref["top1"], precision=cfg["compute"])
        echo(f"accuracy gate: {'passed' if result['gate']['passed'] else 'FAILED'} "
             f"({cfg['compute']} top-1 is {result['gate']['ratio']:.1%} of fp32's)")
    echo(f"eval {cfg['model']} on {split}: top-1 {result['top1']:.4f} "
         f"top-5 {result['top5']:.4f} ({n} images)")
    if out_json:
        atomic.write_json(out_json, result, indent=2)
    return result
