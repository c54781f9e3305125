"""Index the raw ILSVRC2012 files in place: where each image's bytes are, its label, its boxes.

Nothing is extracted.  The tar headers are read with seeks (a 140 GB train tar
is indexed by reading its ~1.3M 512-byte headers), so conversion workers can
later read any image with one positioned read.  `data_dir` is a local
directory or an fsspec URL (s3://, gs://, file://, ...); remote files are read
through fsspec's read-ahead cache, which turns header seeks into large
sequential range reads.

Every structural problem becomes a UserError naming the file, the member and
what was expected, before a single shard is written.
"""
from __future__ import annotations

import gzip
import os
import tarfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import NamedTuple

from datasets import layout
from tasks.errors import UserError

_BLOCK = 512
_REMOTE_BLOCK = 16 << 20


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


def is_url(path) -> bool:
    return "://" in str(path)


class Source:
    """The raw files of one data directory, local or behind fsspec."""

    def __init__(self, data_dir):
        self.data_dir = os.fspath(data_dir) if isinstance(data_dir, os.PathLike) else str(data_dir)
        if is_url(self.data_dir):
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(self.data_dir)
            self.root = self.root.rstrip("/")
        else:
            self.fs, self.root = None, os.path.abspath(self.data_dir)

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if self.fs is not None else os.path.join(self.root, name)

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name)) if self.fs is not None else os.path.isfile(self.path(name))

    def size(self, name: str) -> int:
        return int(self.fs.size(self.path(name))) if self.fs is not None else os.path.getsize(self.path(name))

    def open(self, name: str, sequential: bool = False):
        if self.fs is not None:
            return self.fs.open(self.path(name), "rb", block_size=_REMOTE_BLOCK,
                                cache_type="readahead" if sequential else "bytes")
        return open(self.path(name), "rb")

    def stamp(self, name: str) -> dict:
        """Identity of a raw file without reading it (size; mtime or ETag where known)."""
        if self.fs is not None:
            info = self.fs.info(self.path(name))
            return {"size": int(info.get("size") or 0),
                    "etag": str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or "")}
        st = os.stat(self.path(name))
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _require(src: Source, name: str) -> None:
    if not src.exists(name):
        raise UserError(f"{src.path(name)}: missing; expected the ImageNet file {name} in {src.data_dir}")


def _check_end(f, tar: tarfile.TarFile, where: str, limit: int) -> None:
    """A complete tar ends with two zero blocks right after its last member."""
    f.seek(tar.offset)
    tail = f.read(2 * _BLOCK) if tar.offset + 2 * _BLOCK <= limit else b""
    if len(tail) < 2 * _BLOCK or tail.count(0) != len(tail):
        raise UserError(f"{where}: truncated tar (no end-of-archive marker after byte {tar.offset}; "
                        f"expected a complete tar)")


def _members(f, where: str, limit: int):
    """Yield the regular-file members of the tar in f, checking each lies inside `limit` bytes."""
    head = f.read(_BLOCK)
    if len(head) < _BLOCK:
        raise UserError(f"{where}: not a tar (only {len(head)} bytes); expected a tar archive")
    if head.count(0) == len(head):
        return  # an archive with no members: the caller decides whether that is allowed
    f.seek(0)
    try:
        tar = tarfile.open(fileobj=f, mode="r:")
    except tarfile.TarError as err:
        raise UserError(f"{where}: not a tar ({err}); expected a tar archive") from None
    try:
        for m in tar:
            if m.offset_data + m.size > limit:
                raise UserError(f"{where}: truncated tar (member {m.name} needs bytes up to "
                                f"{m.offset_data + m.size}, the archive has {limit})")
            if m.isfile():
                yield m
    except tarfile.TarError as err:
        raise UserError(f"{where}: corrupt tar ({err})") from None
    _check_end(f, tar, where, limit)


def scan_train(src: Source) -> dict[str, list[tuple[str, int, int]]]:
    """{synset: [(filename, absolute offset, size), ...]} from the tar of per-synset tars."""
    name = layout.TRAIN_TAR
    total = src.size(name)
    out: dict[str, list] = {}
    with src.open(name, sequential=True) as f:
        for m in _members(f, src.path(name), total):
            base = m.name.rsplit("/", 1)[-1]
            if not base.endswith(".tar"):
                raise UserError(f"{src.path(name)}: member {m.name} is not a per-synset tar; "
                                f"expected members named <synset>.tar")
            synset = base[:-4]
            where = f"{src.path(name)}: {m.name}"
            inner_f = _Slice(f, m.offset_data, m.size)
            images = [(im.name.rsplit("/", 1)[-1], m.offset_data + im.offset_data, im.size)
                      for im in _members(inner_f, where, m.size)]
            if not images:
                raise UserError(f"{where}: empty synset tar; expected at least one image of {synset}")
            if synset in out:
                raise UserError(f"{src.path(name)}: synset {synset} appears twice")
            out[synset] = images
    if not out:
        raise UserError(f"{src.path(name)}: holds no synset tars; expected ILSVRC2012 training data")
    return out


class _Slice:
    """A read-only, seekable window [start, start+size) of a file object."""

    def __init__(self, f, start: int, size: int):
        self.f, self.start, self.size_, self.pos = f, start, size, 0

    def seek(self, pos, whence=0):
        base = {0: 0, 1: self.pos, 2: self.size_}[whence]
        self.pos = max(0, base + pos)
        return self.pos

    def tell(self):
        return self.pos

    def read(self, n=-1):
        if n is None or n < 0:
            n = self.size_ - self.pos
        n = max(0, min(n, self.size_ - self.pos))
        if n == 0:
            return b""
        self.f.seek(self.start + self.pos)
        data = self.f.read(n)
        self.pos += len(data)
        return data


def scan_val(src: Source) -> list[tuple[str, int, int]]:
    """[(filename, offset, size)] of the flat validation tar, in file-name order."""
    name = layout.VAL_TAR
    with src.open(name, sequential=True) as f:
        images = [(m.name.rsplit("/", 1)[-1], m.offset_data, m.size)
                  for m in _members(f, src.path(name), src.size(name))]
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
            with tarfile.open(fileobj=raw, mode="r|gz") as tar:
                for m in tar:
                    if not m.isfile() or not m.name.endswith(".xml"):
                        continue
                    data = tar.extractfile(m).read()
                    if len(data) != m.size:
                        raise UserError(f"{src.path(name)}: truncated archive at {m.name}")
                    stem = m.name.rsplit("/", 1)[-1][:-4]
                    out[stem] = parse_bbox_xml(data, f"{src.path(name)}: {m.name}")
                    count += 1
        except (tarfile.TarError, gzip.BadGzipFile, EOFError, OSError) as err:
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
        _require(src, name)
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
