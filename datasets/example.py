"""One ImageNet image -> slim's tf.train.Example, without TensorFlow.

The bytes of a plain JPEG are stored as they are; only files `imageinfo.sniff`
cannot vouch for (PNG, CMYK, broken) are decoded and re-encoded.  Features are
slim's (research/slim build_imagenet_data.py): every image is declared 3-channel
RGB, a kept grayscale JPEG included, because that is what slim writes and every
reader decodes it with channels=3.
"""
from __future__ import annotations

import functools

from datasets import tfrecord
from datasets.imageinfo import KEEP, normalize, sniff

JPEG_QUALITY = 95
CHANNELS = 3
COLORSPACE = b"RGB"


def bbox_columns(e, width: int, height: int) -> tuple[list, list, list, list]:
    """(xmin, ymin, xmax, ymax) of the entry's boxes, normalised to [0, 1] and ordered."""
    if not e.boxes:
        return [], [], [], []
    # the XML's own size, unless it is missing or zero (it is, for a few real files)
    w, h = (e.box_size if e.box_size and min(e.box_size) > 0 else (width, height))
    cols = ([], [], [], [])
    clamp = lambda v: min(max(v, 0.0), 1.0)  # noqa: E731
    for xmin, ymin, xmax, ymax in e.boxes:
        x0, x1 = sorted((xmin / w, xmax / w))
        y0, y1 = sorted((ymin / h, ymax / h))
        for col, v in zip(cols, (x0, y0, x1, y1)):
            col.append(clamp(v))
    return cols


@functools.lru_cache(maxsize=4096)
def _class_features(label: int, synset: str, text: str) -> tuple[bytes, bytes, bytes, bytes]:
    f = tfrecord
    return (f.int64_feature(label), f.bytes_feature(synset), f.bytes_feature(text),
            f.bytes_feature(b"JPEG"))


_RGB = (tfrecord.int64_feature(CHANNELS), tfrecord.bytes_feature(COLORSPACE))


def encode_example(e, data: bytes, text: str, quality: int = JPEG_QUALITY):
    """(tf.train.Example as byte chunks, or None; note).  note says what was done to the bytes."""
    info = sniff(data)
    note = ""
    if info.action != KEEP:
        data, info, note = normalize(data, info, quality)
        if data is None:
            return None, note
    xmin, ymin, xmax, ymax = bbox_columns(e, info.width, info.height)
    f = tfrecord
    label, synset, class_text, jpeg = _class_features(e.label, e.synset, text)
    features = {
        "image/encoded": f.image_feature(data),
        "image/format": jpeg,
        "image/height": f.int64_feature(info.height),
        "image/width": f.int64_feature(info.width),
        "image/channels": _RGB[0],
        "image/colorspace": _RGB[1],
        "image/class/label": label,
        "image/class/synset": synset,
        "image/class/text": class_text,
        "image/filename": f.bytes_feature(e.filename),
        "image/object/bbox/xmin": f.float_feature(xmin),
        "image/object/bbox/ymin": f.float_feature(ymin),
        "image/object/bbox/xmax": f.float_feature(xmax),
        "image/object/bbox/ymax": f.float_feature(ymax),
        "image/object/bbox/label": f.int64_feature([e.label] * len(xmin)),
    }
    return f.example_chunks(features), note
