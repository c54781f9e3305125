"""ILSVRC2012's raw layout parsed into an index: each image's place, label and boxes.

Reads only what conversion needs: the tar headers (through `tarscan`), the
validation labels, the bounding-box XMLs and slim's optional metadata list.
Labels are 1..N in sorted-synset order (0 is slim's background).  Every
structural problem becomes a UserError naming the file, the member and what was
expected, before a single shard is written.
"""
from __future__ import annotations

import gzip
import io
import os
import zlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import NamedTuple

from datasets import layout
from datasets.storage import Source
from datasets.tarscan import BLOCK, scan_tar, scan_tar_stream
from zoobuild.errors import UserError


class Entry(NamedTuple):
    """One image: where its bytes are and what it is."""
    filename: str       # e.g. n01440764_10026.JPEG
    source: str         # which raw file holds it: TRAIN_TAR or VAL_TAR
    offset: int         # byte offset of the image data in that file
    size: int           # bytes
    label: int          # 1..N, sorted-synset order
    synset: str
    boxes: tuple = ()   # ((xmin, ymin, xmax, ymax) in pixels, ...)
    box_size: tuple = ()  # (width, height) the boxes refer to, from the XML


def scan_train(src: Source) -> dict[str, list[tuple[str, int, int]]]:
    """{synset: [(filename, absolute offset, size), ...]} from the tar of per-synset tars.

    The outer headers are read first; the inner tars are then scanned by several
    threads at once (a header read from a cold disk waits ~0.3 ms; 16 of them in
    flight keep the disk busy).  Remote files are scanned in order by one thread.
    """
    name = layout.TRAIN_TAR
    total = src.size(name)
    out: dict[str, list] = {}
    with src.reader(name) as read:
        members = []
        for m in scan_tar(read, total, src.path(name)):
            base = m.name.rsplit("/", 1)[-1]
            if not base.endswith(".tar"):
                raise UserError(f"{src.path(name)}: member {m.name} is not a per-synset tar; "
                                f"expected members named <synset>.tar")
            members.append((base[:-4], m))

        def inner(item):
            synset, m = item
            where = f"{src.path(name)}: {m.name}"
            if m.size >= BLOCK and not any(read(m.offset, BLOCK)):
                images = []  # a tar with nothing in it
            else:
                start = m.offset
                images = [(im.name.rsplit("/", 1)[-1], start + im.offset, im.size)
                          for im in scan_tar(lambda o, n: read(start + o, n), m.size, where)]
            if not images:
                raise UserError(f"{where}: empty synset tar; expected at least one image of {synset}")
            return synset, images

        if src.fs is None and len(members) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(16) as pool:
                scanned = list(pool.map(inner, members))
        else:
            scanned = [inner(item) for item in members]
        for synset, images in scanned:
            if synset in out:
                raise UserError(f"{src.path(name)}: synset {synset} appears twice")
            out[synset] = images
    if not out:
        raise UserError(f"{src.path(name)}: holds no synset tars; expected ILSVRC2012 training data")
    return out


def scan_val(src: Source) -> list[tuple[str, int, int]]:
    """[(filename, offset, size)] of the flat validation tar, in file-name order."""
    name = layout.VAL_TAR
    with src.reader(name) as read:
        images = [(m.name.rsplit("/", 1)[-1], m.offset, m.size)
                  for m in scan_tar(read, src.size(name), src.path(name))]
    if not images:
        raise UserError(f"{src.path(name)}: holds no images; expected ILSVRC2012 validation JPEGs")
    images.sort()
    return images


def read_val_labels(src: Source, count: int, synsets: set) -> list[str]:
    name = layout.VAL_LABELS
    with src.open(name) as f:
        raw = f.read()
    try:
        lines = raw.decode("utf-8").split()
    except UnicodeDecodeError:
        raise UserError(f"{src.path(name)}: not text; expected one synset per line") from None
    if len(lines) != count:
        raise UserError(f"{src.path(name)}: {len(lines)} labels for {count} images in "
                        f"{layout.VAL_TAR}; expected one synset per validation image")
    for lineno, synset in enumerate(lines, start=1):
        if synset not in synsets:
            raise UserError(f"{src.path(name)}: line {lineno}: synset {synset!r} has no "
                            f"training tar; expected one of the {len(synsets)} training synsets")
    return lines


def _number(node, tag: str, where: str) -> float:
    text = node.findtext(tag)
    if text is None:
        raise UserError(f"{where}: malformed XML: missing <{tag}>; expected a PASCAL VOC annotation")
    try:
        return float(text.strip())
    except ValueError:
        raise UserError(f"{where}: malformed XML: <{tag}> is {text.strip()!r}; expected a number") from None


def parse_bbox_xml(data: bytes, where: str) -> tuple[tuple, tuple]:
    """((width, height), ((xmin, ymin, xmax, ymax), ...)) in pixels from one VOC XML."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as err:
        raise UserError(f"{where}: malformed XML ({err}); expected a PASCAL VOC annotation") from None
    size = root.find("size")
    if size is None:
        raise UserError(f"{where}: malformed XML: missing <size>; expected a PASCAL VOC annotation")
    dims = (_number(size, "width", where), _number(size, "height", where))
    boxes = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        if bb is None:
            raise UserError(f"{where}: malformed XML: <object> without <bndbox>")
        boxes.append(tuple(_number(bb, t, where) for t in ("xmin", "ymin", "xmax", "ymax")))
    return dims, tuple(boxes)


def read_boxes(src: Source) -> tuple[dict, int]:
    """({image stem: (size, boxes)}, number of XML files) from the optional bbox tar.gz."""
    name = layout.BBOX_TAR
    if not src.exists(name):
        return {}, 0
    out = {}
    count = 0
    with src.open(name, sequential=True) as raw:
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                for member, data in scan_tar_stream(io.BufferedReader(gz, 1 << 20), src.path(name)):
                    if not member.endswith(".xml"):
                        continue
                    stem = member.rsplit("/", 1)[-1][:-4]
                    out[stem] = parse_bbox_xml(data, f"{src.path(name)}: {member}")
                    count += 1
        except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as err:
            raise UserError(f"{src.path(name)}: not a readable tar.gz ({err}); "
                            f"expected the ILSVRC2012 bounding-box archive") from None
    return out, count


def read_metadata(src: Source) -> dict[str, str]:
    """Optional slim `imagenet_metadata.txt`: synset -> human readable name."""
    if not src.exists(layout.METADATA):
        return {}
    out = {}
    with src.open(layout.METADATA) as f:
        for line in f.read().decode("utf-8").splitlines():
            synset, _, text = line.partition("\t")
            if synset.strip():
                out[synset.strip()] = text.strip()
    return out


@dataclass
class Index:
    synsets: list[str]
    texts: dict[str, str]
    entries: dict[str, list[Entry]]           # split -> entries
    stamps: dict[str, dict] = field(default_factory=dict)
    xml_count: int = 0
    xml_unmatched: int = 0


def build_index(data_dir) -> Index:
    """Read every header and label the conversion needs; raise UserError on bad input."""
    src = Source(data_dir)
    if src.fs is None and not os.path.isdir(src.root):
        raise UserError(f"data_dir={src.data_dir}: not a directory; expected the ILSVRC2012 files")
    for name in (layout.TRAIN_TAR, layout.VAL_TAR, layout.VAL_LABELS):
        src.require(name)
    train = scan_train(src)
    synsets = sorted(train)
    label_of = {s: i for i, s in enumerate(synsets, start=1)}
    val = scan_val(src)
    val_synsets = read_val_labels(src, len(val), set(synsets))
    boxes, xml_count = read_boxes(src)
    texts = read_metadata(src)

    train_entries = []
    for synset in synsets:
        for filename, offset, size in train[synset]:
            stem = filename.rsplit(".", 1)[0]
            dims, bxs = boxes.pop(stem, ((), ()))
            train_entries.append(Entry(filename, layout.TRAIN_TAR, offset, size,
                                       label_of[synset], synset, bxs, dims))
    val_entries = [Entry(filename, layout.VAL_TAR, offset, size, label_of[s], s)
                   for (filename, offset, size), s in zip(val, val_synsets)]
    stamps = {n: src.stamp(n) for n in (layout.TRAIN_TAR, layout.VAL_TAR, layout.VAL_LABELS,
                                         layout.BBOX_TAR, layout.METADATA) if src.exists(n)}
    return Index(synsets, texts, {"train": train_entries, "validation": val_entries},
                 stamps, xml_count, len(boxes))
