"""A synthetic mini-ILSVRC2012 in exactly ImageNet's distributed layout.

    make_mini_ilsvrc(out_dir) writes
      ILSVRC2012_img_train.tar                   tar of <synset>.tar, each a tar of <synset>_<n>.JPEG
      ILSVRC2012_img_val.tar                     flat ILSVRC2012_val_<8 digits>.JPEG
      ILSVRC2012_bbox_train_v2.tar.gz            <synset>/<synset>_<n>.xml, PASCAL VOC
      imagenet_2012_validation_synset_labels.txt the synset of each validation image, file order

Each class is one colour and one shape on a noisy background, at a random
place and scale, so a small CNN separates the classes within a few hundred
steps on a CPU.  Every byte is a function of the arguments: a rerun writes
identical files (fixed tar metadata, gzip without timestamp, seeded pixels).

`dirty=True` adds what real ImageNet holds: a PNG and a CMYK JPEG named
`.JPEG`, a grayscale JPEG, a truncated JPEG, bytes that are no image, and
box XMLs with reversed and out-of-range coordinates.
"""
from __future__ import annotations

import colorsys
import contextlib
import gzip
import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from datasets import layout

_MTIME = 1335398400  # 2012-04-26, the ILSVRC2012 release; any fixed value keeps bytes stable
_SHAPES = ("disc", "square", "triangle", "ring", "cross", "diamond", "bars")

# dirty kind -> what the converter must do with it
DIRTY_TRAIN = ("png", "cmyk", "gray", "truncated", "undecodable", "png_rgba")
DIRTY_VAL = ("cmyk", "png")
DROPPED = {"truncated", "undecodable"}


@dataclass
class SyntheticSet:
    """What make_mini_ilsvrc wrote; usable as a path (os.fspath)."""
    path: Path
    synsets: list[str]
    train_count: int
    val_count: int
    dirty: dict[str, str] = field(default_factory=dict)   # file name -> dirty kind
    bad_boxes: list[str] = field(default_factory=list)      # XML stems with reversed/out-of-range boxes

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def expected_sizes(self) -> dict[str, int]:
        """Examples a converter keeps per split (undecodable images are skipped)."""
        dropped = {"train": 0, "validation": 0}
        for name, kind in self.dirty.items():
            if kind in DROPPED:
                dropped["validation" if name.startswith("ILSVRC2012_val_") else "train"] += 1
        return {"train": self.train_count - dropped["train"],
                "validation": self.val_count - dropped["validation"]}


def default_synsets(num_classes: int) -> list[str]:
    """WordNet-looking ids in sorted order (synthetic, not real ImageNet classes)."""
    return [f"n{1440764 + 9973 * i:08d}" for i in range(num_classes)]


def class_colour(c: int, num_classes: int) -> np.ndarray:
    r, g, b = colorsys.hsv_to_rgb((c / max(num_classes, 1)) % 1.0, 0.85, 0.95)
    return np.array([r, g, b]) * 255.0


def _mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    inside = (np.abs(u) <= 1) & (np.abs(v) <= 1)
    if shape == "disc":
        return u * u + v * v <= 1
    if shape == "square":
        return inside
    if shape == "triangle":
        return inside & (np.abs(u) <= (v + 1) / 2)
    if shape == "ring":
        d = u * u + v * v
        return (d <= 1) & (d >= 0.4)
    if shape == "cross":
        return inside & ((np.abs(u) <= 0.3) | (np.abs(v) <= 0.3))
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1
    return inside & (np.floor((v + 1) * 3).astype(int) % 2 == 0)  # bars


def render(c: int, num_classes: int, rng: np.random.Generator, image_size: int,
           noise: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One HxWx3 uint8 image of class c and its object box (xmin, ymin, xmax, ymax) in pixels."""
    w = int(image_size * rng.uniform(0.8, 1.25))
    h = int(image_size * rng.uniform(0.8, 1.25))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # background: a soft random gradient between two dull colours
    c0, c1 = rng.uniform(40, 140, size=(2, 3))
    t = (xx / w * rng.uniform(-1, 1) + yy / h * rng.uniform(-1, 1))[..., None]
    img = (c0 + (c1 - c0) * (t - t.min()) / (np.ptp(t) + 1e-6)).astype(np.float32)
    r = rng.uniform(0.22, 0.42) * min(w, h)
    cx = rng.uniform(r, w - r)
    cy = rng.uniform(r, h - r)
    m = _mask(_SHAPES[c % len(_SHAPES)], (xx - cx) / r, (yy - cy) / r)
    shade = rng.uniform(0.85, 1.1)
    img[m] = np.clip(class_colour(c, num_classes) * shade, 0, 255)
    if noise:  # sensor-like grain; uniform integers are cheap and give JPEGs a realistic size
        k = int(noise * 1.7)
        img += rng.integers(-k, k + 1, size=img.shape, dtype=np.int16).astype(np.float32)
    box = (int(cx - r), int(cy - r), int(np.ceil(cx + r)), int(np.ceil(cy + r)))
    return np.clip(img, 0, 255).astype(np.uint8), box


def _encode(arr: np.ndarray, kind: str, quality: int, rng: np.random.Generator) -> bytes:
    from PIL import Image

    img = Image.fromarray(arr, "RGB")
    buf = io.BytesIO()
    if kind == "png":
        img.save(buf, format="PNG")
    elif kind == "png_rgba":
        rgba = img.convert("RGBA")
        rgba.putalpha(200)
        rgba.save(buf, format="PNG")
    elif kind == "cmyk":
        img.convert("CMYK").save(buf, format="JPEG", quality=quality)
    elif kind == "gray":
        img.convert("L").save(buf, format="JPEG", quality=quality)
    elif kind == "undecodable":
        return b"<html><body>This photo is no longer available</body></html>\n" + rng.bytes(200)
    else:
        img.save(buf, format="JPEG", quality=quality)
    data = buf.getvalue()
    if kind == "truncated":
        data = data[: len(data) * 3 // 5]
    return data


def _info(name: str, size: int) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.size, ti.mtime, ti.mode = size, _MTIME, 0o644
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    return ti


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    tar.addfile(_info(name, len(data)), io.BytesIO(data))


def _voc_xml(synset: str, stem: str, size: tuple[int, int], box: tuple) -> bytes:
    xmin, ymin, xmax, ymax = box
    return (f"<annotation>\n\t<folder>{synset}</folder>\n\t<filename>{stem}</filename>\n"
            f"\t<source>\n\t\t<database>ILSVRC_2012</database>\n\t</source>\n"
            f"\t<size>\n\t\t<width>{size[0]}</width>\n\t\t<height>{size[1]}</height>\n"
            f"\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n"
            f"\t<object>\n\t\t<name>{synset}</name>\n\t\t<pose>Unspecified</pose>\n"
            f"\t\t<truncated>0</truncated>\n\t\t<difficult>0</difficult>\n\t\t<bndbox>\n"
            f"\t\t\t<xmin>{xmin}</xmin>\n\t\t\t<ymin>{ymin}</ymin>\n"
            f"\t\t\t<xmax>{xmax}</xmax>\n\t\t\t<ymax>{ymax}</ymax>\n"
            f"\t\t</bndbox>\n\t</object>\n</annotation>\n").encode()


def _dirty_slots(kinds, num_classes: int, per_class: int) -> dict[tuple[int, int], str]:
    """Spread the dirty kinds over (class, index) slots, one per slot."""
    slots = {}
    for k, kind in enumerate(kinds):
        c, i = k % num_classes, 1 + k // num_classes
        if i < per_class:
            slots[(c, i)] = kind
    return slots


class _AtomicFile:
    """Write to a temporary name in the same directory; rename on success."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")

    def __enter__(self):
        self.f = open(self.tmp, "wb")
        return self.f

    def __exit__(self, exc_type, *rest):
        self.f.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _synset_tar(job):
    """One class's inner tar, its box XMLs and the dirty files in it."""
    c, synset, per_class, dirty_slots, (num_classes, image_size, noise, quality, seed, box_every, dirty) = job
    buf = io.BytesIO()
    xmls, dirty_files, bad = [], {}, []
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as inner:
        for i in range(per_class):
            rng = np.random.default_rng([seed, 0, c, i])
            arr, box = render(c, num_classes, rng, image_size, noise)
            kind = dirty_slots.get((c, i), "jpeg")
            stem = f"{synset}_{i + 1}"
            _add(inner, f"{stem}.JPEG", _encode(arr, kind, quality, rng))
            if kind != "jpeg":
                dirty_files[f"{stem}.JPEG"] = kind
            if box_every and i % box_every == 0:
                size = (arr.shape[1], arr.shape[0])
                if dirty and i == 0 and c in (0, 1):
                    # ImageNet has boxes past the border and with min/max swapped
                    x0, y0, x1, y1 = box
                    box = (x1, y0, x0, y1 + size[1]) if c == 0 else (x0 - 20, y1, x1, y0)
                    bad.append(stem)
                xmls.append((f"{synset}/{stem}.xml", _voc_xml(synset, stem, size, box)))
    return synset, buf.getvalue(), xmls, dirty_files, bad


def _val_images(job):
    slots, dirty_slots, (num_classes, image_size, noise, quality, seed, _, _) = job
    out = []
    for c, i in slots:
        rng = np.random.default_rng([seed, 2, c, i])
        arr, _ = render(c, num_classes, rng, image_size, noise)
        kind = dirty_slots.get((c, i), "jpeg")
        out.append((_encode(arr, kind, quality, rng), kind))
    return out


class _Serial:
    def __call__(self, fn, jobs):
        return map(fn, jobs)

    def close(self):
        pass


class _Parallel:
    def __init__(self, workers: int):
        import multiprocessing

        self.pool = multiprocessing.get_context("spawn").Pool(workers)

    def __call__(self, fn, jobs):
        return self.pool.imap(fn, jobs)  # ordered: the archives come out the same

    def close(self):
        self.pool.terminate()


class _BarCallback:
    """The progress(done) callback onto a zoobuild progress bar."""

    def __init__(self, bar):
        self.bar, self.seen = bar, 0

    def __call__(self, done: int) -> None:
        self.bar.advance(done - self.seen)
        self.seen = done


def _pool(workers: int):
    return _Parallel(workers) if workers and workers > 1 else _Serial()


def make_mini_ilsvrc(out_dir, num_classes: int = 10, train_per_class: int = 40,
                     val_per_class: int = 10, image_size: int = 144, seed: int = 0,
                     dirty: bool = False, *, synsets=None, jpeg_quality: int = 90,
                     noise: float = 6.0, box_every: int = 2, workers: int = 1,
                     progress=True) -> SyntheticSet:
    """Write a mini ILSVRC2012 into out_dir (see module doc).  Deterministic.

    synsets: class ids to use (default: synthetic `n` + 8 digit ids); benchmarks pass
    real ImageNet ids so other ImageNet tools accept the tars.  box_every: every
    n-th training image gets a bounding-box XML (ImageNet annotates about 40%).
    workers > 1 renders classes in that many processes; the bytes do not change.
    progress: True shows a bar (zoobuild.progress), False nothing, a callable gets the
    number of images written so far.
    """
    if num_classes < 1 or train_per_class < 1 or val_per_class < 0:
        raise ValueError("num_classes and train_per_class must be >= 1, val_per_class >= 0")
    synsets = list(synsets) if synsets is not None else default_synsets(num_classes)
    if len(synsets) != num_classes or len(set(synsets)) != num_classes:
        raise ValueError(f"synsets: expected {num_classes} distinct ids, got {len(synsets)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dirty_train = _dirty_slots(DIRTY_TRAIN, num_classes, train_per_class) if dirty else {}
    dirty_val = _dirty_slots(DIRTY_VAL, num_classes, val_per_class) if dirty else {}
    result = SyntheticSet(out, sorted(synsets), num_classes * train_per_class,
                          num_classes * val_per_class)
    opts = (num_classes, image_size, noise, jpeg_quality, seed, box_every, dirty)
    xmls = []  # (member name, bytes)
    done = 0
    pool = _pool(workers)
    bar = contextlib.ExitStack()
    if progress is True:
        from zoobuild.progress import progress as progress_bar

        progress = _BarCallback(bar.enter_context(progress_bar(
            "synthetic mini-ILSVRC", total=result.train_count + result.val_count, unit="images")))
    try:
        train_jobs = [(c, synset, train_per_class, dirty_train, opts) for c, synset in enumerate(synsets)]
        with _AtomicFile(out / layout.TRAIN_TAR) as f, \
                tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT) as outer:
            for synset, tar_bytes, class_xmls, class_dirty, class_bad in pool(_synset_tar, train_jobs):
                _add(outer, f"{synset}.tar", tar_bytes)
                xmls += class_xmls
                result.dirty.update(class_dirty)
                result.bad_boxes += class_bad
                done += train_per_class
                if progress:
                    progress(done)

        order = np.random.default_rng([seed, 1]).permutation(num_classes * val_per_class)
        slots = [divmod(int(k), val_per_class) for k in order]
        chunks = [(slots[i:i + 64], dirty_val, opts) for i in range(0, len(slots), 64)]
        val_labels = [synsets[c] for c, _ in slots]
        n = 0
        with _AtomicFile(out / layout.VAL_TAR) as f, \
                tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for images in pool(_val_images, chunks):
                for data, kind in images:
                    n += 1
                    name = f"ILSVRC2012_val_{n:08d}.JPEG"
                    _add(tar, name, data)
                    if kind != "jpeg":
                        result.dirty[name] = kind
                done += len(images)
                if progress:
                    progress(done)
    finally:
        pool.close()
        bar.close()

    with _AtomicFile(out / layout.BBOX_TAR) as f:
        with gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for name, data in xmls:
                _add(tar, name, data)
    with _AtomicFile(out / layout.VAL_LABELS) as f:
        f.write("".join(f"{s}\n" for s in val_labels).encode())
    return result
