"""Where the images a conversion sees come from: the labelled TFRecords the graph produced
(through the data set reader, preprocessed the way the model was trained), or seeded random
images when there are none.  Large sample sets go to a memory-mapped .npy file written one
batch at a time, so no process holds them whole and the converters need no TensorFlow."""
from __future__ import annotations

from pathlib import Path

from datasets import layout
from zoobuild.errors import UserError

SEEDED, TFRECORDS = "seeded", "tfrecords"


def seeded_inputs(n: int, h: int, w: int, seed: int = 0):
    """Deterministic images in [-1, 1] (the range slim's preprocessing produces)."""
    import numpy as np

    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, h, w, 3)).astype("float32")


def has_split(data_dir, split: str) -> bool:
    """True when data_dir holds at least one shard of `split` (slim's file names)."""
    if not data_dir or not Path(data_dir).is_dir():
        return False
    return any(layout.parse_shard_name(p.name) for p in Path(data_dir).glob(f"{split}-*-of-*"))


def iter_batches(data_dir, split: str, batch_size: int, hw, *, preprocessing: str = "",
                 labels_offset: int = 0):
    """(images NHWC float32, labels int64) numpy batches of one split through the data set
    reader (`datasets.reader.dataset`), preprocessed the way the model was trained
    (export.json's `preprocessing`; empty: the reader's default), read once in order."""
    import numpy as np

    from datasets import reader

    kwargs = {"image_size": hw[0], "is_training": False, "num_epochs": 1, "labels_offset": labels_offset}
    if preprocessing:
        from slim.preprocessing import get_preprocessing

        prep = get_preprocessing(preprocessing, is_training=False)
        kwargs["preprocess_fn"] = lambda image, height, width, _training: prep(image, height, width)
    for images, labels in reader.dataset(str(data_dir), split, batch_size, **kwargs):
        yield np.asarray(images, dtype="float32"), np.asarray(labels).reshape(-1)


def reader_batches(data_dir, split: str, batch_size: int, hw, limit: int, preprocessing: str = ""):
    """Up to `limit` full image batches from the reader."""
    out = []
    for images, _ in iter_batches(data_dir, split, batch_size, hw, preprocessing=preprocessing):
        if len(images) == batch_size:
            out.append(images)
        if len(out) >= limit:
            break
    return out


def write_samples(path: Path, data_dir, split: str, limit: int, hw, *, preprocessing: str = "",
                  labels_offset: int = 0, seed: int = 0, labelled: bool = True, chunk: int = 16) -> dict:
    """The first `limit` images of `split` (or `limit` seeded images when the split has no
    shards) into `path` (.npy, NHWC float32) and, when labelled, their labels beside it
    (`<stem>.labels.npy`).  Returns {"source", "count", "images", "labels"}."""
    import numpy as np

    from zoobuild.progress import progress

    path = Path(path)
    labels_path = path.with_name(path.stem + ".labels.npy")
    if not has_split(data_dir, split):
        arr = np.lib.format.open_memmap(path, mode="w+", dtype="float32", shape=(limit, hw[0], hw[1], 3))
        for i in range(0, limit, chunk):   # seeded in chunks, so the same seed gives the same images
            n = min(chunk, limit - i)
            arr[i:i + n] = seeded_inputs(n, *hw, seed=seed + i // chunk)
        arr.flush()
        del arr
        return {"source": SEEDED, "count": limit, "images": str(path), "labels": None}
    from datasets import reader

    try:
        total = min(limit, reader.split_info(data_dir).splits.get(split, limit))
    except UserError:      # shards without labels.txt/manifest: read up to the limit
        total = limit
    arr = np.lib.format.open_memmap(path, mode="w+", dtype="float32", shape=(total, hw[0], hw[1], 3))
    labels = np.zeros(total, dtype="int64")
    done = 0
    with progress(f"convert: read {split} images", total=total, unit="images") as bar:
        for images, batch_labels in iter_batches(data_dir, split, chunk, hw, preprocessing=preprocessing,
                                                 labels_offset=labels_offset):
            n = min(len(images), total - done)
            arr[done:done + n], labels[done:done + n] = images[:n], batch_labels[:n]
            done += n
            bar.advance(n)
            if done >= total:
                break
    arr.flush()
    del arr
    if done < total:   # the manifest promised more than the shards hold: keep what is there
        arr = np.load(path, mmap_mode="r")[:done]
        np.save(path, np.asarray(arr))
    if labelled:
        np.save(labels_path, labels[:done])
    return {"source": TFRECORDS, "count": done, "images": str(path),
            "labels": str(labels_path) if labelled else None}


def load_images(path):
    """A sample file, memory-mapped: slicing it reads only that slice."""
    import numpy as np

    return np.load(path, mmap_mode="r")
