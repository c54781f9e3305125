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

import contextlib
import gzip
import io
import os
import zlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import NamedTuple

from datasets import layout
from zoobuild.errors import UserError

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
            if sequential:  # header scans: big forward range reads
                return self.fs.open(self.path(name), "rb", block_size=_REMOTE_BLOCK,
                                    cache_type="readahead")
            return self.fs.open(self.path(name), "rb", cache_type="none")  # one range per image
        return open(self.path(name), "rb")

    @contextlib.contextmanager
    def reader(self, name: str):
        """A read(offset, n) function over one raw file: os.pread locally, ranged reads remotely."""
        if self.fs is None:
            fd = os.open(self.path(name), os.O_RDONLY)
            try:
                yield lambda off, n: os.pread(fd, n, off)
            finally:
                os.close(fd)
        else:
            with self.open(name, sequential=True) as f:
                def read(off, n):
                    f.seek(off)
                    return f.read(n)
                yield read

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


# ---------------------------------------------------------------- tar headers
# Python's tarfile costs ~50 us and several reads per member; ImageNet has 1.3M
# members.  The format is simple: 512-byte headers, data padded to 512 bytes,
# two zero blocks at the end.  ustar, GNU long names and pax paths are handled.

class _Member(NamedTuple):
    name: str
    offset: int   # of the data, relative to the start of the archive
    size: int
    type: bytes


def _octal(field: bytes, where: str) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256 for sizes >= 8 GiB
        n = int.from_bytes(field[1:], "big")
        return -n if field[:1] == b"\xff" else n
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise UserError(f"{where}: not a tar (bad header number {text[:12]!r}); "
                        f"expected a tar archive") from None


def _header(block: bytes, where: str, at: int) -> tuple[str, int, bytes]:
    stored = _octal(block[148:156], where)
    unsigned = sum(block[:148]) + 256 + sum(block[156:])
    if stored != unsigned and stored != unsigned - 256 * sum(b >= 128 for b in block[:148] + block[156:]):
        what = "not a tar" if at == 0 else "corrupt tar"
        raise UserError(f"{where}: {what} (bad header checksum at byte {at}); expected a tar archive")
    name = block[:100].split(b"\0", 1)[0]
    if block[257:262] == b"ustar" and block[345:346] != b"\0" and block[156:157] not in (b"L", b"K"):
        prefix = block[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "surrogateescape"), _octal(block[124:136], where), block[156:157]


def _pax_path(data: bytes) -> str | None:
    path = None
    i = 0
    while i < len(data):
        sp = data.index(b" ", i)
        length = int(data[i:sp])
        key, _, value = data[sp + 1:i + length - 1].partition(b"=")
        if key == b"path":
            path = value.decode("utf-8", "surrogateescape")
        i += length
    return path


def scan_tar(read, limit: int, where: str):
    """Yield the regular files of the tar that read(offset, n) gives, `limit` bytes long.

    Raises UserError for a file that is not a tar, a member past the end, and a
    missing end-of-archive marker (a tar cut at a member boundary).
    """
    off = 0
    long_name = None
    empty = True
    while True:
        block = read(off, _BLOCK) if off + _BLOCK <= limit else b""
        if len(block) < _BLOCK:
            if empty and off == 0:
                raise UserError(f"{where}: not a tar (only {limit} bytes); expected a tar archive")
            raise UserError(f"{where}: truncated tar (no end-of-archive marker after byte {off}; "
                            f"expected a complete tar)")
        if not any(block):
            nxt = read(off + _BLOCK, _BLOCK) if off + 2 * _BLOCK <= limit else b""
            if len(nxt) == _BLOCK and not any(nxt):
                return
            raise UserError(f"{where}: truncated tar (incomplete end-of-archive marker at byte {off})")
        empty = False
        name, size, kind = _header(block, where, off)
        data = off + _BLOCK
        if size < 0 or data + size > limit:
            raise UserError(f"{where}: truncated tar (member {name} needs bytes up to "
                            f"{data + size}, the archive has {limit})")
        off = data + (size + _BLOCK - 1) // _BLOCK * _BLOCK
        if kind in (b"L", b"x"):  # the next member's long name / pax attributes
            payload = read(data, size)
            long_name = (payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                         if kind == b"L" else _pax_path(payload) or long_name)
            continue
        if kind in (b"K", b"g"):
            continue
        if long_name is not None:
            name, long_name = long_name, None
        if kind in (b"0", b"\0", b"7"):
            yield _Member(name, data, size, kind)


def scan_tar_stream(f, where: str):
    """Yield (name, data) of the regular files of a tar read sequentially from f."""
    long_name = None
    at = 0
    while True:
        block = f.read(_BLOCK)
        if len(block) < _BLOCK or not any(block):
            if at == 0 and len(block) < _BLOCK:
                raise UserError(f"{where}: not a tar (empty); expected a tar archive")
            return
        name, size, kind = _header(block, where, at)
        padded = (size + _BLOCK - 1) // _BLOCK * _BLOCK
        data = f.read(padded)
        if len(data) < padded:
            raise UserError(f"{where}: truncated archive at {name}")
        at += _BLOCK + padded
        data = data[:size]
        if kind in (b"L", b"x"):
            long_name = (data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
                         if kind == b"L" else _pax_path(data) or long_name)
            continue
        if kind in (b"K", b"g"):
            continue
        if long_name is not None:
            name, long_name = long_name, None
        if kind in (b"0", b"\0", b"7"):
            yield name, data


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
            if m.size >= _BLOCK and not any(read(m.offset, _BLOCK)):
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
