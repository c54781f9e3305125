"""Input batches for training and evaluation.

Uses ``datasets.reader`` (the project's tf.data reader of slim-format
TFRecords). ``preprocess`` is the per-image function from slim.preprocessing.
"""
from pathlib import Path

from zoobuild.errors import UserError


def split_info(dataset_dir):
    """{'num_classes': int (incl. background), 'splits': {name: size}}."""
    from datasets import reader
    if not Path(dataset_dir).is_dir():
        raise UserError(f"dataset_dir: {dataset_dir} is not a directory of TFRecords")
    info = reader.split_info(dataset_dir)
    return {"num_classes": info.num_classes, "splits": dict(info.splits)}


def num_classes(info):
    return int(info["num_classes"])


def split_size(info, split):
    splits = info["splits"]
    if split not in splits:
        raise UserError(f"dataset_split_name: {split!r} not in dataset "
                        f"(has {', '.join(sorted(splits)) or 'none'})")
    return int(splits[split])


def batches(dataset_dir, split, batch_size, preprocess, image_size, is_training,
            labels_offset=0, num_epochs=None, shuffle_seed=None, grayscale=False):
    """(images float32 [B,H,W,3], labels int64 [B]) tensors for graph mode."""
    import tensorflow as tf
    from datasets import reader

    def preprocess_fn(image, height, width, _is_training):
        out = preprocess(image, height, width)
        if grayscale:
            out = tf.tile(tf.image.rgb_to_grayscale(out), [1, 1, 3])
        return out

    ds = reader.dataset(dataset_dir, split, batch_size, preprocess_fn=preprocess_fn,
                        image_size=image_size, is_training=is_training,
                        labels_offset=labels_offset, num_epochs=num_epochs,
                        shuffle_seed=shuffle_seed)
    if isinstance(ds, tuple):
        return ds
    images, labels = tf.compat.v1.data.make_one_shot_iterator(ds).get_next()
    return images, labels
