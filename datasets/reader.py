"""The tf.data pipeline training and evaluation read slim's ImageNet TFRecords with.

    ds = dataset(dataset_dir, "train", batch_size=32, image_size=224, is_training=True)
    for images, labels in ds: ...   # float32 [B,H,W,3], int64 [B]

Shards are interleaved in parallel, parsed with slim's feature keys, decoded,
preprocessed, batched and prefetched.  `split_info` reads the class count and
split sizes from labels.txt and manifest.json without touching the shards.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from datasets import layout
from zoobuild.errors import UserError

# slim's ImageNet keys (research/slim/datasets/imagenet.py plus build_imagenet_data.py)
FEATURE_KEYS = (
    "image/encoded", "image/format", "image/height", "image/width", "image/channels",
    "image/colorspace", "image/class/label", "image/class/synset", "image/class/text",
    "image/filename", "image/object/bbox/xmin", "image/object/bbox/ymin",
    "image/object/bbox/xmax", "image/object/bbox/ymax", "image/object/bbox/label",
)


@dataclass(frozen=True)
class SplitInfo:
    num_classes: int               # including background (label 0)
    splits: dict                   # split -> number of examples
    labels: dict                   # label -> name (slim's labels_to_names)
    num_shards: dict               # split -> number of shard files

    def __getitem__(self, split: str) -> int:
        return self.splits[split]


def split_info(dataset_dir) -> SplitInfo:
    """Classes (incl. background) and split sizes of a converted data set."""
    d = Path(dataset_dir)
    if not (d / layout.LABELS_FILE).is_file():
        raise UserError(f"{d / layout.LABELS_FILE}: missing; expected a converted data set "
                        f"(run `doit imagenet_tfrecords`)")
    labels = layout.read_labels(d)
    manifest_path = d / layout.MANIFEST
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        splits = {s: v["num_examples"] for s, v in manifest["splits"].items()}
        shards = {s: v["num_shards"] for s, v in manifest["splits"].items()}
    else:  # a set assembled from shard ranges: add up the per-shard manifests
        splits, shards = {}, {}
        for p in sorted((d / layout.SHARD_MANIFESTS).glob("*.json")):
            m = json.loads(p.read_text())
            if (d / m["name"]).is_file():
                splits[m["split"]] = splits.get(m["split"], 0) + m["count"]
                shards[m["split"]] = shards.get(m["split"], 0) + 1
        if not splits:
            raise UserError(f"{manifest_path}: missing; expected a finished conversion in {d}")
    return SplitInfo(max(labels) + 1, splits, labels, shards)


def default_preprocess(image, height: int, width: int, is_training: bool):
    """Resize to height x width and scale to [-1, 1] (no augmentation)."""
    import tensorflow as tf

    image = tf.image.convert_image_dtype(image, tf.float32)
    image = tf.image.resize(image, [height, width], antialias=False)
    image.set_shape([height, width, 3])
    return (image - 0.5) * 2.0


def parse_example(serialized):
    """slim's ImageNet features -> dict of tensors (bboxes as dense float vectors)."""
    import tensorflow as tf

    spec = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/format": tf.io.FixedLenFeature([], tf.string, default_value="JPEG"),
        "image/height": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "image/width": tf.io.FixedLenFeature([], tf.int64, default_value=0),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/class/synset": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/class/text": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
        "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
        "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    }
    parsed = tf.io.parse_single_example(serialized, spec)
    for k in ("xmin", "ymin", "xmax", "ymax"):
        key = f"image/object/bbox/{k}"
        parsed[key] = tf.sparse.to_dense(parsed[key])
    return parsed


def shard_files(dataset_dir, split: str) -> list[str]:
    d = Path(dataset_dir)
    if split not in layout.SPLITS:
        raise UserError(f"split={split!r}: expected one of {', '.join(layout.SPLITS)}")
    files = sorted(str(p) for p in d.glob(f"{split}-*-of-*") if layout.parse_shard_name(p.name))
    if not files:
        raise UserError(f"{d}: no {split}-*-of-* shards; expected a converted data set "
                        f"(run `doit imagenet_tfrecords`)")
    return files


def dataset(dataset_dir, split: str, batch_size: int, preprocess_fn=None, image_size: int = 224,
            is_training: bool = False, labels_offset: int = 0, num_epochs: int | None = None,
            shuffle_seed: int | None = None, shuffle_buffer: int = 4096,
            drop_remainder: bool | None = None, cycle_length: int = 8):
    """(images float32 [B,H,W,3], labels int64 [B]) batches of one split.

    preprocess_fn(image_uint8 [h,w,3], height, width, is_training) -> float image;
    default: resize + scale to [-1, 1].  num_epochs None repeats forever when
    training and reads once otherwise.  labels_offset is subtracted from the
    labels (1 for nets without a background class).  With shuffle_seed the order
    is reproducible; without it, shuffling is not seeded and interleave may
    reorder for speed.
    """
    import tensorflow as tf

    preprocess_fn = preprocess_fn or default_preprocess
    height = width = int(image_size)
    files = shard_files(dataset_dir, split)
    deterministic = shuffle_seed is not None or not is_training
    ds = tf.data.Dataset.from_tensor_slices(files)
    if is_training:
        ds = ds.shuffle(len(files), seed=shuffle_seed, reshuffle_each_iteration=True)
    if num_epochs is None:
        num_epochs = -1 if is_training else 1
    ds = ds.repeat(num_epochs)
    ds = ds.interleave(tf.data.TFRecordDataset, cycle_length=min(cycle_length, len(files)),
                       block_length=1, num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=deterministic)
    if is_training:
        ds = ds.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)

    def prepare(serialized):
        parsed = parse_example(serialized)
        image = tf.io.decode_jpeg(parsed["image/encoded"], channels=3)
        image = preprocess_fn(image, height, width, is_training)
        image = tf.cast(image, tf.float32)
        label = parsed["image/class/label"] - labels_offset
        return image, label

    # Under op determinism the map runs serially: its legacy random ops (augmentation) share
    # one state, and parallel calls would take their numbers in a racy order.
    from tensorflow.python.framework import config as tf_config

    if tf_config.is_op_determinism_enabled():
        ds = ds.map(prepare)
    else:
        ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    if drop_remainder is None:
        drop_remainder = is_training
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)
