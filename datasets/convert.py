"""ILSVRC2012 raw files -> slim's ImageNet TFRecord shards.

How it stays fast and safe:
  * `source.build_index` reads only tar headers (and the small label/box files),
    so every image is later one positioned read from the tar, in place.
  * The plan is a pure function of the index and the seed: each image goes to a
    shard by the order of sha256(seed, split, file name); shard i holds the
    i-th contiguous slice of that order.  So the first shard holds many classes,
    any shard can be written alone, on any machine, and comes out identical.
  * Worker processes (no TensorFlow in them) read, sniff headers, re-encode the
    rare PNG/CMYK/broken files, frame records, and write each shard to a
    temporary name that is renamed when complete, then a small per-shard
    manifest (count, bytes, sha256, plan digest).  After kill -9 a rerun keeps
    every shard whose manifest matches and writes only the rest.
  * labels.txt, manifest.json and conversion_report.json are written once all
    shards of the plan exist.
"""
from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from datasets import layout, tfrecord
from datasets.imageinfo import KEEP, normalize, sniff
from datasets.source import Entry, Source, build_index
from zoobuild.errors import UserError

FORMAT_VERSION = 1
JPEG_QUALITY = 95
_TMP_RE = re.compile(r"^\.(?:(?:train|validation)-\d{5}-of-\d{5}(?:\.json)?|labels\.txt|manifest\.json|"
                     r"conversion_report\.json)\.tmp-\d+$")


@dataclass
class ShardJob:
    split: str
    index: int
    num_shards: int
    entries: list          # Entry, in the order they are written
    digest: str            # what the shard's content is a function of
    data_dir: str
    out_dir: str
    texts: dict            # synset -> class text for the synsets in this shard
    strict: bool
    quality: int

    @property
    def name(self) -> str:
        return layout.shard_name(self.split, self.index, self.num_shards)


# ---------------------------------------------------------------- planning

def _order_key(seed: int, split: str, filename: str) -> bytes:
    return hashlib.sha256(f"{seed}\0{split}\0{filename}".encode()).digest()


def plan(index, train_shards: int, validation_shards: int, seed: int, data_dir, out_dir,
         strict: bool = False, quality: int = JPEG_QUALITY) -> list[ShardJob]:
    jobs = []
    for split, num in (("train", train_shards), ("validation", validation_shards)):
        entries = sorted(index.entries[split], key=lambda e: _order_key(seed, split, e.filename))
        n = len(entries)
        for i in range(num):
            chunk = entries[i * n // num:(i + 1) * n // num]
            texts = {e.synset: index.texts.get(e.synset, e.synset) for e in chunk}
            body = {"version": FORMAT_VERSION, "split": split, "index": i, "num_shards": num,
                    "quality": quality, "texts": sorted(texts.items()),
                    "entries": [[e.filename, e.source, e.offset, e.size, e.label, e.synset,
                                 e.boxes, e.box_size] for e in chunk]}
            digest = hashlib.sha256(json.dumps(body, separators=(",", ":")).encode()).hexdigest()
            jobs.append(ShardJob(split, i, num, chunk, digest, str(data_dir), str(out_dir),
                                 texts, strict, quality))
    return jobs


def parse_shard_range(value, total: int) -> tuple[int, int]:
    """(lo, hi) over the shard list [train 0..T-1, validation 0..V-1]; accepts 'lo:hi' or 'lo-hi'."""
    if value is None or value == "":
        return 0, total
    try:
        if isinstance(value, str):
            lo, hi = re.split(r"[:-]", value.strip())
            lo, hi = int(lo or 0), int(hi or total)
        else:
            lo, hi = (int(v) for v in value)
    except ValueError:
        raise UserError(f"shard_range={value!r}: expected LO:HI, shard numbers over train then "
                        f"validation (0..{total})") from None
    if not 0 <= lo < hi <= total:
        raise UserError(f"shard_range={value!r}: expected 0 <= LO < HI <= {total}")
    return lo, hi


# ---------------------------------------------------------------- one shard (worker side)

_OPEN: dict = {}


def _reader(data_dir: str, name: str):
    """(read(offset, n), prefetch(offset, n)) for one raw file, opened once per process."""
    key = (data_dir, name)
    fns = _OPEN.get(key)
    if fns is None:
        src = Source(data_dir)
        if src.fs is None:
            fd = os.open(src.path(name), os.O_RDONLY)

            def prefetch(off, size):
                # queue every read of the shard at once: the disk sees a deep queue, not QD1
                os.posix_fadvise(fd, off, size, os.POSIX_FADV_WILLNEED)

            fns = (lambda off, size: os.pread(fd, size, off), prefetch)
        else:
            f = src.open(name)

            def read(off, size, f=f):
                f.seek(off)
                return f.read(size)
            fns = (read, lambda off, size: None)
        _OPEN[key] = fns
    return fns


def _boxes(e: Entry, width: int, height: int) -> tuple[list, list, list, list]:
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


def encode_example(e: Entry, data: bytes, text: str, quality: int = JPEG_QUALITY):
    """(tf.train.Example as byte chunks, or None; note).  note says what was done to the bytes."""
    info = sniff(data)
    note = ""
    if info.action != KEEP:
        data, info, note = normalize(data, info, quality)
        if data is None:
            return None, note
    xmin, ymin, xmax, ymax = _boxes(e, info.width, info.height)
    f = tfrecord
    label, synset, class_text, jpeg = _class_features(e.label, e.synset, text)
    features = {
        "image/encoded": f.image_feature(data),
        "image/format": jpeg,
        "image/height": f.int64_feature(info.height),
        "image/width": f.int64_feature(info.width),
        "image/channels": f.int64_feature(info.channels),
        "image/colorspace": f.bytes_feature(b"RGB" if info.channels == 3 else b"Gray"),
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


def _atomic_write(path: Path, chunks) -> tuple[int, str]:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    h = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb", buffering=1 << 20) as f:
            for chunk in chunks:
                h.update(chunk)
                size += len(chunk)
                f.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return size, h.hexdigest()


def write_shard(job: ShardJob) -> dict:
    """Write one shard and its manifest; return the manifest."""
    records: list = [None] * len(job.entries)
    skipped, reencoded = [], []
    # read in file order (sequential on disk), write in the planned order
    order = sorted(range(len(job.entries)), key=lambda k: (job.entries[k].source, job.entries[k].offset))
    for k in order:
        e = job.entries[k]
        _reader(job.data_dir, e.source)[1](e.offset, e.size)
    for k in order:
        e = job.entries[k]
        data = _reader(job.data_dir, e.source)[0](e.offset, e.size)
        if len(data) != e.size:
            raise UserError(f"{e.source}: {e.filename}: read {len(data)} of {e.size} bytes; "
                            f"the file changed or was truncated after indexing")
        example, note = encode_example(e, data, job.texts.get(e.synset, e.synset), job.quality)
        if example is None:
            if job.strict:
                raise UserError(f"{e.source}: {e.filename}: {note} (strict mode: no image may be skipped)")
            skipped.append({"file": e.filename, "source": e.source, "reason": note})
            continue
        if note:
            reencoded.append({"file": e.filename, "source": e.source, "reason": note})
        records[k] = tfrecord.frame_chunks(example)
    out = Path(job.out_dir)
    size, sha = _atomic_write(out / job.name, (c for r in records if r is not None for c in r))
    manifest = {"name": job.name, "split": job.split, "index": job.index,
                "num_shards": job.num_shards, "count": sum(r is not None for r in records),
                "bytes": size, "sha256": sha, "plan": job.digest,
                "skipped": skipped, "reencoded": reencoded}
    mdir = out / layout.SHARD_MANIFESTS
    _atomic_write(mdir / f"{job.name}.json", [json.dumps(manifest, indent=1, sort_keys=True).encode()])
    return manifest


def _finished(job: ShardJob) -> dict | None:
    """The manifest of a shard that is already complete for this plan, else None."""
    out = Path(job.out_dir)
    try:
        manifest = json.loads((out / layout.SHARD_MANIFESTS / f"{job.name}.json").read_text())
        if manifest.get("plan") == job.digest and (out / job.name).stat().st_size == manifest["bytes"]:
            return manifest
    except (OSError, ValueError, KeyError):
        pass
    return None


def _worker_init() -> None:
    # die with the parent: a kill -9 of the conversion must not leave writers behind
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# ---------------------------------------------------------------- the whole conversion

class _Progress:
    def __init__(self, total_shards: int, enabled):
        self.total, self.enabled = total_shards, enabled
        self.done = self.images = 0
        self.start = self.last = time.monotonic()

    def update(self, manifest: dict) -> None:
        self.done += 1
        self.images += manifest["count"] + len(manifest["skipped"])
        now = time.monotonic()
        if callable(self.enabled):
            self.enabled(self.done, self.total, self.images)
        elif self.enabled and (now - self.last >= 2 or self.done == self.total):
            self.last = now
            rate = self.images / max(now - self.start, 1e-9)
            print(f"imagenet_tfrecords: {self.done}/{self.total} shards, {self.images} images, "
                  f"{rate:.0f} images/s", file=sys.stderr, flush=True)


class _Prefetcher:
    """Ask the kernel to read the next shards' images while the workers convert these.

    The main process is idle during conversion; a few shards of asynchronous
    readahead (posix_fadvise WILLNEED) keep the disk queue full so workers rarely
    wait on a cold read.  Remote sources are left alone.
    """

    def __init__(self, jobs, data_dir: str):
        self.jobs, self.next, self.fds = jobs, 0, {}
        src = Source(data_dir)
        if src.fs is None and hasattr(os, "posix_fadvise"):
            for name in (layout.TRAIN_TAR, layout.VAL_TAR):
                self.fds[name] = os.open(src.path(name), os.O_RDONLY)

    def advance(self, upto: int) -> None:
        if not self.fds:
            return
        while self.next < min(upto, len(self.jobs)):
            for e in self.jobs[self.next].entries:
                os.posix_fadvise(self.fds[e.source], e.offset, e.size, os.POSIX_FADV_WILLNEED)
            self.next += 1

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)


def _remove_plan_outputs(out: Path, jobs) -> None:
    for name in (layout.MANIFEST, layout.REPORT, layout.LABELS_FILE):
        (out / name).unlink(missing_ok=True)
    for job in jobs:
        (out / job.name).unlink(missing_ok=True)
        (out / layout.SHARD_MANIFESTS / f"{job.name}.json").unlink(missing_ok=True)


def _remove_stale(out: Path, jobs) -> None:
    """Shards of another plan (other shard counts) would be picked up by slim's `train-*` glob."""
    wanted = {job.name for job in jobs}
    for p in out.iterdir():
        if layout.parse_shard_name(p.name) and p.name not in wanted:
            p.unlink()
    mdir = out / layout.SHARD_MANIFESTS
    if mdir.is_dir():
        for p in mdir.iterdir():
            if p.name.endswith(".json") and p.name[:-5] not in wanted:
                p.unlink()


def _remove_temps(out: Path) -> None:
    for d in (out, out / layout.SHARD_MANIFESTS):
        if d.is_dir():
            for p in d.iterdir():
                if _TMP_RE.match(p.name):
                    p.unlink(missing_ok=True)


def _write_json(path: Path, obj) -> None:
    _atomic_write(path, [(json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()])


def convert(data_dir, out_dir, train_shards: int = layout.DEFAULT_SHARDS["train"],
            validation_shards: int = layout.DEFAULT_SHARDS["validation"], seed: int = 0,
            strict: bool = False, shard_range=None, workers: int | None = None,
            quality: int = JPEG_QUALITY, progress=True) -> dict:
    """Convert the ILSVRC2012 files in data_dir into slim TFRecord shards in out_dir.

    Returns the conversion report (also written to out_dir/conversion_report.json
    once every shard exists).  shard_range ('lo:hi' or (lo, hi)) converts only
    those shards of the list [train 0..T-1, validation 0..V-1]; ranges written
    elsewhere can be copied together and give the same files.
    """
    for name, value in (("train_shards", train_shards), ("validation_shards", validation_shards)):
        if not isinstance(value, int) or not 1 <= value <= 99999:
            raise UserError(f"{name}={value!r}: expected an integer from 1 to 99999")
    t0 = time.monotonic()
    data_dir = os.fspath(data_dir) if isinstance(data_dir, os.PathLike) else str(data_dir)
    index = build_index(data_dir)
    t_index = time.monotonic() - t0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / layout.SHARD_MANIFESTS).mkdir(exist_ok=True)
    _remove_temps(out)
    jobs = plan(index, train_shards, validation_shards, seed, data_dir, out, strict, quality)
    lo, hi = parse_shard_range(shard_range, len(jobs))
    selected = jobs[lo:hi]
    reused = {job.name: m for job in selected if (m := _finished(job))}
    if strict:  # shards finished by a lenient run may hold skips that strict mode refuses
        for m in reused.values():
            if m["skipped"]:
                s = m["skipped"][0]
                _remove_plan_outputs(out, jobs)
                raise UserError(f"{s['source']}: {s['file']}: {s['reason']} "
                                f"(strict mode: no image may be skipped)")
    todo = [job for job in selected if job.name not in reused]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    bar = _Progress(len(todo), progress)
    written: dict[str, dict] = {}
    try:
        if workers == 1:
            for job in todo:
                written[job.name] = write_shard(job)
                bar.update(written[job.name])
        else:
            ctx = multiprocessing.get_context("spawn")
            # big shards one at a time; tiny ones in batches to save round trips
            chunksize = max(1, min(16, len(todo) // (workers * 8)))
            window = 4 * workers * chunksize
            prefetch = _Prefetcher(todo, data_dir)
            prefetch.advance(window)
            try:
                with ctx.Pool(workers, initializer=_worker_init) as pool:
                    for manifest in pool.imap_unordered(write_shard, todo, chunksize):
                        written[manifest["name"]] = manifest
                        bar.update(manifest)
                        prefetch.advance(len(written) + window)
            finally:
                prefetch.close()
    except UserError:
        # bad input found while writing (strict mode): this input has no valid output
        _remove_plan_outputs(out, jobs)
        raise
    elapsed = time.monotonic() - t0
    converted = sum(m["count"] + len(m["skipped"]) for m in written.values())

    manifests = {job.name: written.get(job.name) or reused.get(job.name) or _finished(job)
                 for job in jobs}
    complete = all(manifests.values())
    layout.write_labels(out, index.synsets)
    report = {
        "data_dir": str(data_dir), "out_dir": str(out), "seed": seed,
        "shards": {"train": train_shards, "validation": validation_shards},
        "shard_range": [lo, hi], "complete": complete,
        "num_classes": len(index.synsets) + 1,
        "images_in_source": {s: len(index.entries[s]) for s in layout.SPLITS},
        "bbox_xml_files": index.xml_count, "bbox_xml_without_image": index.xml_unmatched,
        "shards_written": len(written), "shards_reused": len(reused),
        "images_converted": converted, "workers": workers,
        "index_seconds": round(t_index, 3), "seconds": round(elapsed, 3),
        "images_per_second": round(converted / elapsed, 1) if elapsed > 0 else None,
    }
    if not complete:
        return report
    _remove_stale(out, jobs)
    sizes = {s: sum(m["count"] for m in manifests.values() if m["split"] == s) for s in layout.SPLITS}
    report["examples"] = sizes
    report["skipped"] = [{"split": m["split"], "shard": m["name"], **s}
                         for m in manifests.values() for s in m["skipped"]]
    report["reencoded"] = [{"split": m["split"], "shard": m["name"], **s}
                           for m in manifests.values() for s in m["reencoded"]]
    _write_json(out / layout.MANIFEST, {
        "format": "slim-imagenet-tfrecord", "version": FORMAT_VERSION, "seed": seed,
        "num_classes": len(index.synsets) + 1, "labels_offset_note": "0 is background",
        "splits": {s: {"num_shards": n, "num_examples": sizes[s]}
                   for s, n in (("train", train_shards), ("validation", validation_shards))},
        "shards": {name: {k: m[k] for k in ("count", "bytes", "sha256")}
                   for name, m in sorted(manifests.items())},
    })
    _write_json(out / layout.REPORT, report)
    return report
