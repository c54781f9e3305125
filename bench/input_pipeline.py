"""Input-pipeline benchmark: resnet_v1_50 training images/s reading real TFRecords
(decode + slim preprocessing through datasets.reader) versus synthetic in-memory
tensors, in the same run. Target: real >= 95% of synthetic (the input pipeline is
not the bottleneck).

    python bench/input_pipeline.py [--dataset-dir DIR] [--batch-size 8] [--steps 6]
                                   [--rounds 3] [--image-size 224] [--model resnet_v1_50]

The two graphs are built once and timed in alternating rounds (the order flips
every round), so drifting load on a shared machine affects both alike. Prints the figures and writes
build/bench/input_pipeline.json.
"""
import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zoobuild import atomic  # noqa: E402  (the repository is on sys.path from here)


def _bench_dataset_dir(image_size):
    """TFRecords for the benchmark: a synthetic set with ImageNet-like image sizes
    (default 320 px JPEGs; ImageNet's average is about 400x350), built once."""
    d = ROOT / "build" / "bench" / f"input_pipeline_tfrecords_{image_size}"
    if (d / "labels.txt").exists() and (d / "manifest.json").exists():
        return d
    from datasets.convert import convert
    from datasets.synthetic import make_mini_ilsvrc

    raw = d.parent / f"input_pipeline_raw_{image_size}"
    make_mini_ilsvrc(raw, num_classes=10, train_per_class=32, val_per_class=2,
                     image_size=image_size, seed=0)
    convert(raw, d, train_shards=8, validation_shards=1, progress=False)
    return d


def _session(cfg, dataset_dir, synthetic):
    import tensorflow as tf
    from slim import train

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        input_fn = None
        if synthetic:
            def input_fn(size, classes):
                # in memory: one fixed batch held in variables (no I/O, decode or
                # preprocessing), initialised once
                images = v1.get_variable(
                    "synthetic_images", [cfg["batch_size"], size, size, 3], tf.float32,
                    initializer=v1.random_uniform_initializer(-1.0, 1.0), trainable=False)
                labels = v1.get_variable(
                    "synthetic_labels", [cfg["batch_size"]], tf.int64,
                    initializer=v1.constant_initializer(1), trainable=False)
                return tf.identity(images), tf.identity(labels)
        g = train.build_train_graph(train.resolve(cfg), dataset_dir, input_fn=input_fn)
        init = [v1.global_variables_initializer(), v1.local_variables_initializer()]
    sess = v1.Session(graph=graph)
    sess.run(init)
    return sess, g["train_op"]


def _time(sess, op, steps):
    start = time.perf_counter()
    for _ in range(steps):
        sess.run(op)
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset-dir", default="",
                   help="slim TFRecords; default: a synthetic set built under build/bench/")
    p.add_argument("--source-size", type=int, default=320,
                   help="JPEG size of the default synthetic set")
    p.add_argument("--model", default="resnet_v1_50")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--steps", type=int, default=6, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--out", default=str(ROOT / "build" / "bench" / "input_pipeline.json"))
    args = p.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import slim.compat  # noqa: F401
    import tensorflow as tf

    dataset_dir = (Path(args.dataset_dir) if args.dataset_dir
                   else _bench_dataset_dir(args.source_size))
    cfg = {"model": args.model, "batch_size": args.batch_size,
           "train_image_size": args.image_size, "optimizer": "momentum",
           "learning_rate": 0.01}
    runs = {name: _session(cfg, dataset_dir, name == "synthetic")
            for name in ("real", "synthetic")}
    for name, (sess, op) in runs.items():
        _time(sess, op, args.warmup)
    seconds = {name: 0.0 for name in runs}
    per_round = {name: [] for name in runs}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]   # neither always goes first
        for name in order:
            sess, op = runs[name]
            t = _time(sess, op, args.steps)
            seconds[name] += t
            per_round[name].append(round(args.steps * args.batch_size / t, 2))
        print(f"round {r + 1}/{args.rounds}: real {per_round['real'][-1]:.2f} images/s, "
              f"synthetic {per_round['synthetic'][-1]:.2f} images/s", flush=True)
    images = args.rounds * args.steps * args.batch_size
    ips = {name: images / seconds[name] for name in runs}
    ratio = ips["real"] / ips["synthetic"]
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    result = {"benchmark": "input_pipeline", "model": args.model,
              "batch_size": args.batch_size, "image_size": args.image_size,
              "timed_steps": args.rounds * args.steps, "warmup_steps": args.warmup,
              "real_images_per_sec": round(ips["real"], 3),
              "synthetic_images_per_sec": round(ips["synthetic"], 3),
              "real_over_synthetic": round(ratio, 4), "target": 0.95,
              "meets_target": ratio >= 0.95, "per_round": per_round,
              "dataset_dir": str(dataset_dir), "device": gpus[0] if gpus else "cpu",
              "cpu_count": os.cpu_count(), "tensorflow": tf.__version__,
              "machine": platform.machine()}
    print(f"{args.model} training, batch {args.batch_size} at {args.image_size}px on "
          f"{result['device']}: real TFRecords {ips['real']:.2f} images/s, synthetic "
          f"in-memory {ips['synthetic']:.2f} images/s -> {100 * ratio:.1f}% "
          f"(target >= 95%: {'met' if result['meets_target'] else 'NOT met'})")
    out = atomic.write_json(args.out, result, indent=2)
    print(f"wrote {out}")
    for sess, _ in runs.values():
        sess.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
