"""Units of the data stage: header sniffing, hand-written Example/TFRecord bytes, the synthetic set,
shard counts."""
import hashlib
import io
import tarfile

import numpy as np
import pytest
from PIL import Image

from datasets import imageinfo, layout, tfrecord
from datasets.synthetic import make_mini_ilsvrc, render


def _jpeg(mode="RGB", size=(40, 30), **kw):
    buf = io.BytesIO()
    Image.new(mode, size, 128 if mode == "L" else None).save(buf, format="JPEG", **kw)
    return buf.getvalue()


def _noisy_jpeg():
    arr = np.random.default_rng(0).integers(0, 255, size=(60, 80, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


def _png(mode="RGB"):
    buf = io.BytesIO()
    Image.new(mode, (17, 9)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("data, kind, action, size, channels", [
    (_jpeg(), "jpeg", "keep", (40, 30), 3),
    (_jpeg(progressive=True), "jpeg", "keep", (40, 30), 3),
    (_jpeg("L"), "jpeg", "keep", (40, 30), 1),
    (_jpeg("CMYK"), "jpeg", "reencode", (40, 30), 4),
    (_png(), "png", "reencode", (17, 9), 3),
    (_png("RGBA"), "png", "reencode", (17, 9), 4),
    (_noisy_jpeg()[:3000], "jpeg", "verify", (80, 60), 3),  # cut inside the scan: no EOI
    (_jpeg()[:40], "jpeg", "bad", (0, 0), 0),            # cut inside the headers
    (b"<html>gone</html>", "unknown", "bad", (0, 0), 0),
])
def test_sniff_reads_headers(data, kind, action, size, channels):
    info = imageinfo.sniff(data)
    assert (info.kind, info.action, (info.width, info.height), info.channels) == \
        (kind, action, size, channels)


def test_normalize_gives_plain_jpeg_or_reason():
    for data in (_jpeg("CMYK"), _png("RGBA"), _png("P")):
        out, info, note = imageinfo.normalize(data, imageinfo.sniff(data))
        assert out is not None and note
        img = Image.open(io.BytesIO(out))
        assert img.format == "JPEG" and img.mode == "RGB" and (img.width, img.height) == (info.width, info.height)
        assert imageinfo.sniff(out).action == "keep"
    truncated = _noisy_jpeg()[:3000]
    out, _, note = imageinfo.normalize(truncated, imageinfo.sniff(truncated))
    assert out is None and note.startswith("undecodable")


def test_example_bytes_match_tensorflow():
    import tensorflow as tf

    feats = {"a": tfrecord.bytes_feature(b"\x00\xff" * 300), "b": tfrecord.int64_feature([1, -5, 2**40]),
             "c": tfrecord.float_feature([0.25, 1.0]), "d": tfrecord.float_feature([]),
             "e": tfrecord.int64_feature([])}
    data = tfrecord.example(feats)
    ex = tf.train.Example.FromString(data)
    assert list(ex.features.feature["b"].int64_list.value) == [1, -5, 2**40]
    assert list(ex.features.feature["c"].float_list.value) == [0.25, 1.0]
    assert ex.SerializeToString(deterministic=True) == data


def test_record_framing_reads_in_tensorflow(tmp_path):
    import tensorflow as tf

    path = tmp_path / "x.tfrecord"
    payloads = [b"", b"abc", bytes(range(256)) * 100]
    path.write_bytes(b"".join(tfrecord.frame(p) for p in payloads))
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(path))] == payloads
    assert list(tfrecord.iter_records(path)) == payloads
    raw = bytearray(path.read_bytes())
    raw[20] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        list(tfrecord.iter_records(path))


def _digests(d):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir())}


def test_synthetic_layout_and_determinism(tmp_path):
    a = make_mini_ilsvrc(tmp_path / "a", num_classes=3, train_per_class=4, val_per_class=2,
                         image_size=48, dirty=True)
    make_mini_ilsvrc(tmp_path / "b", num_classes=3, train_per_class=4, val_per_class=2,
                     image_size=48, dirty=True, workers=2)  # same bytes from worker processes
    assert _digests(tmp_path / "a") == _digests(tmp_path / "b")
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(
        [layout.TRAIN_TAR, layout.VAL_TAR, layout.BBOX_TAR, layout.VAL_LABELS])
    with tarfile.open(tmp_path / "a" / layout.TRAIN_TAR) as outer:
        names = outer.getnames()
        assert names == [f"{s}.tar" for s in a.synsets]
        inner = tarfile.open(fileobj=outer.extractfile(names[0]))
        assert inner.getnames() == [f"{a.synsets[0]}_{i}.JPEG" for i in range(1, 5)]
    with tarfile.open(tmp_path / "a" / layout.VAL_TAR) as val:
        assert val.getnames() == [f"ILSVRC2012_val_{i:08d}.JPEG" for i in range(1, 7)]
    labels = (tmp_path / "a" / layout.VAL_LABELS).read_text().split()
    assert len(labels) == 6 and set(labels) == set(a.synsets)
    with tarfile.open(tmp_path / "a" / layout.BBOX_TAR) as boxes:
        assert f"{a.synsets[0]}/{a.synsets[0]}_1.xml" in boxes.getnames()
    assert set(a.dirty.values()) >= {"png", "cmyk", "gray", "truncated", "undecodable"}
    assert a.expected_sizes == {"train": 10, "validation": 6}


def test_synthetic_classes_are_visibly_separable():
    """A nearest-centroid rule on one colour feature already separates the classes."""
    num_classes = 10

    def thumbs(split, n):
        xs, ys = [], []
        for c in range(num_classes):
            for i in range(n):
                arr, _ = render(c, num_classes, np.random.default_rng([0, split, c, i]), 64, 6.0)
                px = arr.reshape(-1, 3).astype(float)
                sat = px.max(1) - px.min(1)
                xs.append(px[sat >= np.quantile(sat, 0.9)].mean(0))  # colour of the vivid pixels
                ys.append(c)
        return np.array(xs), np.array(ys)

    xtr, ytr = thumbs(0, 12)
    xte, yte = thumbs(2, 6)
    cent = np.stack([xtr[ytr == c].mean(0) for c in range(num_classes)])
    pred = np.argmin(((xte[:, None, :] - cent[None]) ** 2).sum(-1), axis=1)
    assert (pred == yte).mean() >= 0.95


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_scan_tar_matches_tarfile(fmt):
    from datasets.tarscan import scan_tar
    from zoobuild.errors import UserError

    names = ["a.JPEG", "d" * 90 + "/" + "n" * 60 + ".JPEG", "é.JPEG"]
    if fmt != tarfile.USTAR_FORMAT:
        names.append("x" * 180 + ".JPEG")  # only GNU long names and pax hold this
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for i, name in enumerate(names):
            ti = tarfile.TarInfo(name)
            ti.size = 700 * i + 1
            tar.addfile(ti, io.BytesIO(bytes([i]) * ti.size))
    raw = buf.getvalue()
    read = lambda off, n: raw[off:off + n]  # noqa: E731
    got = [(m.name, m.offset, m.size) for m in scan_tar(read, len(raw), "t.tar")]
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        assert got == [(m.name, m.offset_data, m.size) for m in tar.getmembers()]
    end = got[-1][1] + got[-1][2] + 511 & ~511  # cut right after the last member
    with pytest.raises(UserError, match="truncated tar"):
        list(scan_tar(read, end, "t.tar"))


# ---------------------------------------------------------------- shard counts and metadata

def test_auto_shard_count_rule():
    from datasets.shardplan import MAX_SHARD_BYTES, auto_shard_count

    # slim's counts for the full ILSVRC2012 splits, whatever their bytes
    assert auto_shard_count("train", 1_281_167, 147_897_477_120) == 1024
    assert auto_shard_count("validation", 50_000, 6_744_924_160) == 128
    assert auto_shard_count("train", 50_000, 6_744_924_160) != 128  # the size belongs to validation
    # otherwise sized by bytes: at least one shard, none above MAX_SHARD_BYTES, none empty
    assert auto_shard_count("train", 500, 5_000_000) == 1
    assert auto_shard_count("validation", 1, 10) == 1
    assert auto_shard_count("train", 10_000, 3 * MAX_SHARD_BYTES + 1) == 4
    assert auto_shard_count("train", 1_281_166, 147_897_477_120) == 986  # 150 MB shards
    assert auto_shard_count("train", 3, 10 * MAX_SHARD_BYTES) == 3  # never more shards than images
    for images, size in ((7, 10**9), (1000, 10**9), (10**6, 10**11)):
        n = auto_shard_count("train", images, size)
        assert 1 <= n <= images and size / n <= MAX_SHARD_BYTES


def test_shard_counts_explicit_win_and_bad_values_are_one_line():
    from types import SimpleNamespace

    from datasets.shardplan import check_shard_count, resolve_shard_counts
    from zoobuild.errors import UserError

    entry = SimpleNamespace(size=1000)
    index = SimpleNamespace(entries={"train": [entry] * 40, "validation": [entry] * 10})
    assert resolve_shard_counts(index, {"train": "auto", "validation": "auto"}) == \
        {"train": 1, "validation": 1}
    assert resolve_shard_counts(index, {"train": 7, "validation": "3"}) == {"train": 7, "validation": 3}
    with pytest.raises(UserError, match=r"validation_shards=11: more shards than the 10 "
                                        r"validation images.*at most 10") as err:
        resolve_shard_counts(index, {"train": 40, "validation": 11})
    assert "\n" not in str(err.value)
    assert check_shard_count("train_shards", " AUTO ") == "auto"
    for bad in ("0", "-5", "many", 0, 100000, 2.5, True):
        with pytest.raises(UserError, match=r"train_shards=.*expected auto or an integer from 1"):
            check_shard_count("train_shards", bad)


def test_gray_jpeg_keeps_its_bytes_and_is_declared_rgb():
    """slim's contract: channels 3 / colorspace RGB for every image, a kept gray JPEG included."""
    import tensorflow as tf

    from datasets.example import encode_example
    from datasets.ilsvrc import Entry

    for mode in ("L", "RGB"):
        data = _jpeg(mode)
        assert imageinfo.sniff(data).action == "keep"
        e = Entry("n00000001_1.JPEG", layout.TRAIN_TAR, 0, len(data), 1, "n00000001")
        chunks, note = encode_example(e, data, "a class")
        ex = tf.train.Example.FromString(b"".join(chunks)).features.feature
        assert note == ""
        assert ex["image/encoded"].bytes_list.value[0] == data  # stored as it was
        assert list(ex["image/channels"].int64_list.value) == [3], mode
        assert list(ex["image/colorspace"].bytes_list.value) == [b"RGB"], mode
        assert tf.io.decode_jpeg(data, channels=3).shape == (30, 40, 3)


def test_shard_range_parsing():
    from datasets.shardplan import parse_shard_range
    from zoobuild.errors import UserError

    assert parse_shard_range("", 11) == (0, 11) and parse_shard_range(None, 11) == (0, 11)
    assert parse_shard_range("3:7", 11) == (3, 7) == parse_shard_range("3-7", 11)
    assert parse_shard_range("6:", 11) == (6, 11) and parse_shard_range((0, 2), 11) == (0, 2)
    # auto counts are unknown before indexing: the form alone is checked
    assert parse_shard_range("6:", None) == (6, None) and parse_shard_range("0:576", None) == (0, 576)
    for bad, total in (("7:3", 11), ("0:12", 11), ("a:b", 11), ("5", 11), ("4:4", None), ("x", None)):
        with pytest.raises(UserError, match=r"shard_range=.*expected"):
            parse_shard_range(bad, total)
