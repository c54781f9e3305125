"""ILSVRC2012 -> slim TFRecords: round trip, dirty images, determinism, resumption, bad input
(shard counts: test_data_shards.py)."""
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import layout
from datasets.convert import convert
from datasets.synthetic import make_mini_ilsvrc
from zoobuild.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
SHARDS = {"train_shards": 8, "validation_shards": 3}


def _shard_files(d):
    return sorted(p.name for p in Path(d).iterdir() if layout.parse_shard_name(p.name))


def _digests(d, names=None):
    d = Path(d)
    names = names or _shard_files(d) + [layout.LABELS_FILE, layout.MANIFEST]
    return {n: hashlib.sha256((d / n).read_bytes()).hexdigest() for n in names}


@pytest.fixture(scope="module")
def dirty_set(tmp_path_factory):
    return make_mini_ilsvrc(tmp_path_factory.mktemp("raw") / "ilsvrc", num_classes=10,
                            train_per_class=8, val_per_class=3, image_size=64, dirty=True)


@pytest.fixture(scope="module")
def converted(dirty_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("tfr") / "full"
    report = convert(dirty_set, out, seed=7, workers=2, progress=False, **SHARDS)
    return out, report


def _records(out, split):
    """Every example of a split through plain tf.data + parse_single_example with slim's keys."""
    import tensorflow as tf

    spec = {
        "image/encoded": tf.io.FixedLenFeature([], tf.string),
        "image/format": tf.io.FixedLenFeature([], tf.string),
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "image/channels": tf.io.FixedLenFeature([], tf.int64),
        "image/colorspace": tf.io.FixedLenFeature([], tf.string),
        "image/class/label": tf.io.FixedLenFeature([], tf.int64),
        "image/class/synset": tf.io.FixedLenFeature([], tf.string),
        "image/class/text": tf.io.FixedLenFeature([], tf.string),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
        **{f"image/object/bbox/{k}": tf.io.VarLenFeature(tf.float32)
           for k in ("xmin", "ymin", "xmax", "ymax")},
        "image/object/bbox/label": tf.io.VarLenFeature(tf.int64),
    }
    def parse(raw):
        ex = tf.io.parse_single_example(raw, spec)
        ex = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v for k, v in ex.items()}
        ex["pixels"] = tf.io.decode_jpeg(ex["image/encoded"], channels=3)
        return ex

    out_list = []
    for path in sorted(str(p) for p in Path(out).glob(f"{split}-*")):
        for ex in tf.data.TFRecordDataset(path).map(parse).as_numpy_iterator():
            ex = {k: (v.tolist() if k.startswith("image/object") else v) for k, v in ex.items()}
            ex["shard"] = Path(path).name
            out_list.append(ex)
    return out_list


def test_round_trip_dirty_set(dirty_set, converted):
    out, report = converted
    # slim's contract: names, labels 1..N sorted synsets with 0 background, split sizes
    assert _shard_files(out) == [f"train-{i:05d}-of-00008" for i in range(8)] + \
        [f"validation-{i:05d}-of-00003" for i in range(3)]
    labels = layout.read_labels(out)
    assert labels == {0: "background", **{i + 1: s for i, s in enumerate(sorted(dirty_set.synsets))}}
    assert report["examples"] == dirty_set.expected_sizes
    label_of = {s: i for i, s in labels.items()}
    xml_boxes = _xml_boxes(dirty_set)
    records = {split: _records(out, split) for split in layout.SPLITS}
    raw_images = _raw_images(dirty_set)
    assert "gray" in dirty_set.dirty.values()
    for split in layout.SPLITS:
        recs = records[split]
        assert len(recs) == dirty_set.expected_sizes[split]
        for r in recs:
            name = r["image/filename"].decode()
            img = Image.open(io.BytesIO(r["image/encoded"]))
            assert img.format == "JPEG" and img.mode in ("RGB", "L"), name
            assert (r["image/width"], r["image/height"]) == img.size == r["pixels"].shape[1::-1], name
            # slim's contract: every image is declared RGB, kept gray JPEGs too
            assert (r["image/channels"], r["image/colorspace"]) == (3, b"RGB"), name
            assert r["image/format"] == b"JPEG"
            assert r["image/class/label"] == label_of[r["image/class/synset"].decode()]
            assert r["image/class/text"] == r["image/class/synset"]
            kind = dirty_set.dirty.get(name)
            if kind in ("png", "cmyk", "png_rgba"):
                assert img.mode == "RGB", name
            if kind == "gray":  # kept: the bytes are the source's, still gray
                assert img.mode == "L" and r["image/encoded"] == raw_images[name], name
            if kind == "cmyk":  # colours survive the CMYK -> RGB re-encode (no inversion)
                assert r["pixels"].mean() > 40
            stem = name.rsplit(".", 1)[0]
            boxes = list(zip(*(r[f"image/object/bbox/{k}"] for k in ("xmin", "ymin", "xmax", "ymax"))))
            if split == "validation" or stem not in xml_boxes:
                assert boxes == [], name
                continue
            assert r["image/object/bbox/label"] == [r["image/class/label"]] * len(boxes)
            (w, h), want = xml_boxes[stem]
            assert len(boxes) == len(want) == 1
            x0, y0, x1, y1 = want[0]
            expect = [min(max(v, 0.0), 1.0) for v in
                      (min(x0, x1) / w, min(y0, y1) / h, max(x0, x1) / w, max(y0, y1) / h)]
            assert np.allclose(boxes[0], expect, atol=1e-6), name
    # dirty images: found by content, re-encoded or skipped and reported
    skipped = {s["file"]: s["reason"] for s in report["skipped"]}
    reencoded = {s["file"]: s["reason"] for s in report["reencoded"]}
    assert set(skipped) == {n for n, k in dirty_set.dirty.items() if k in ("truncated", "undecodable")}
    assert all(r.startswith("undecodable") for r in skipped.values())
    assert set(reencoded) == {n for n, k in dirty_set.dirty.items() if k in ("png", "png_rgba", "cmyk")}
    on_disk = json.loads((out / layout.REPORT).read_text())
    assert on_disk["skipped"] == report["skipped"]
    # the shuffle spreads classes: the first shard holds many of them
    first = [r for r in records["train"] if r["shard"] == "train-00000-of-00008"]
    assert len({r["image/class/label"] for r in first}) >= 5
    assert dirty_set.bad_boxes  # the set did carry reversed/out-of-range boxes


def _raw_images(raw):
    """{file name: bytes} of every image in the raw tars."""
    out = {}
    with tarfile.open(Path(raw) / layout.TRAIN_TAR) as outer:
        for m in outer.getmembers():
            with tarfile.open(fileobj=outer.extractfile(m)) as inner:
                out.update((im.name, inner.extractfile(im).read()) for im in inner.getmembers())
    with tarfile.open(Path(raw) / layout.VAL_TAR) as val:
        out.update((m.name, val.extractfile(m).read()) for m in val.getmembers())
    return out


def _xml_boxes(dirty_set):
    out = {}
    with tarfile.open(Path(dirty_set) / layout.BBOX_TAR) as tar:
        for m in tar.getmembers():
            root = ET.fromstring(tar.extractfile(m).read())
            size = (float(root.findtext("size/width")), float(root.findtext("size/height")))
            boxes = [tuple(float(o.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax"))
                     for o in root.iter("object")]
            out[m.name.rsplit("/", 1)[-1][:-4]] = (size, boxes)
    return out


def test_reader_pipeline(converted):
    import tensorflow as tf

    from datasets import reader

    out, report = converted
    info = reader.split_info(out)
    assert info.num_classes == 11 and info.splits == report["examples"]
    ds = reader.dataset(out, "validation", batch_size=4, image_size=32, num_epochs=1)
    labels = []
    for images, y in ds:
        assert images.dtype == tf.float32 and images.shape[1:] == (32, 32, 3)
        assert float(tf.reduce_min(images)) >= -1.0 and float(tf.reduce_max(images)) <= 1.0
        labels += y.numpy().tolist()
    assert len(labels) == report["examples"]["validation"] and 1 <= min(labels) and max(labels) <= 10

    def orders():
        ds = reader.dataset(out, "train", batch_size=8, image_size=16, is_training=True,
                            shuffle_seed=3, labels_offset=1,
                            preprocess_fn=lambda im, h, w, t: tf.image.resize(im, [h, w]) / 255.0)
        return [y.numpy().tolist() for _, y in ds.take(5)]

    a = orders()
    assert a == orders()  # seeded: reproducible
    assert all(len(b) == 8 for b in a) and min(min(b) for b in a) >= 0 and max(max(b) for b in a) <= 9


def test_rerun_reuses_and_shard_ranges_give_same_files(dirty_set, converted, tmp_path):
    out, _ = converted
    again = convert(dirty_set, out, seed=7, workers=2, progress=False, **SHARDS)
    assert again["shards_written"] == 0 and again["shards_reused"] == 11
    # two "machines", each converting a range, then put together
    parts = []
    for i, rng in enumerate(("0:6", "6:11")):
        d = tmp_path / f"m{i}"
        rep = convert(dirty_set, d, seed=7, workers=1, shard_range=rng, progress=False, **SHARDS)
        assert not rep["complete"]
        parts.append(d)
    merged = tmp_path / "merged"
    shutil.copytree(parts[0], merged)
    shutil.copytree(parts[1], merged, dirs_exist_ok=True)
    final = convert(dirty_set, merged, seed=7, progress=False, **SHARDS)
    assert final["complete"] and final["shards_written"] == 0
    assert _digests(merged) == _digests(out)
    # through fsspec (file:// URL) the same bytes come out
    via_url = tmp_path / "url"
    convert(Path(dirty_set).resolve().as_uri(), via_url, seed=7, workers=1, progress=False, **SHARDS)
    assert _digests(via_url) == _digests(out)


def test_other_seed_or_shard_count_rebuilds(dirty_set, converted, tmp_path):
    out, _ = converted
    d = tmp_path / "t"
    shutil.copytree(out, d)
    rep = convert(dirty_set, d, seed=8, workers=1, progress=False, **SHARDS)
    assert rep["shards_written"] == 11
    assert _digests(d)["train-00000-of-00008"] != _digests(out)["train-00000-of-00008"]
    rep = convert(dirty_set, d, seed=8, workers=1, progress=False, train_shards=4, validation_shards=1)
    assert _shard_files(d) == [f"train-{i:05d}-of-00004" for i in range(4)] + ["validation-00000-of-00001"]
    assert sorted(p.name for p in (d / layout.SHARD_MANIFESTS).iterdir()) == \
        [f"{n}.json" for n in _shard_files(d)]


def test_strict_mode_stops_and_leaves_no_shard(dirty_set, tmp_path):
    out = tmp_path / "strict"
    with pytest.raises(UserError, match=r"(truncated|undecodable).*strict") as err:
        convert(dirty_set, out, seed=7, workers=2, strict=True, progress=False, **SHARDS)
    assert "\n" not in str(err.value)
    assert _shard_files(out) == [] and not list((out / layout.SHARD_MANIFESTS).iterdir())
    # shards a lenient run finished do not let a strict run through
    convert(dirty_set, out, seed=7, workers=1, progress=False, **SHARDS)
    with pytest.raises(UserError, match="strict"):
        convert(dirty_set, out, seed=7, workers=1, strict=True, progress=False, **SHARDS)
    assert _shard_files(out) == [] and not (out / layout.MANIFEST).exists()


# one image per shard: many small shards, so the kill lands in the middle of the run
KILL_SET = {"num_classes": 8, "train_per_class": 50, "val_per_class": 5, "image_size": 32}
KILL_SHARDS = {"train_shards": 400, "validation_shards": 40}
_KILL_SCRIPT = f"""
import sys
from datasets.convert import convert
convert(sys.argv[1], sys.argv[2], workers=1, progress=False, **{KILL_SHARDS!r})
"""


def test_kill_9_resumes_to_identical_result(tmp_path):
    total = sum(KILL_SHARDS.values())
    raw = make_mini_ilsvrc(tmp_path / "raw", **KILL_SET)
    ref = tmp_path / "ref"
    convert(raw, ref, workers=1, progress=False, **KILL_SHARDS)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(raw), str(out)], cwd=ROOT,
                            start_new_session=True)
    mdir = out / layout.SHARD_MANIFESTS
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if mdir.is_dir() and len(os.listdir(mdir)) >= 40:
            break
        time.sleep(0.002)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / layout.MANIFEST).exists(), "the run finished before it could be killed"
    (out / ".train-00000-of-00400.tmp-99999").write_bytes(b"half a shard")  # as a kill leaves it
    done_before = len([n for n in os.listdir(mdir) if not n.startswith(".")])
    rep = convert(raw, out, workers=2, progress=False, **KILL_SHARDS)
    assert rep["complete"] and rep["shards_reused"] >= done_before - 1
    assert rep["shards_written"] == total - rep["shards_reused"] and rep["shards_written"] > 0
    assert _digests(out) == _digests(ref)
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    manifest = json.loads((out / layout.MANIFEST).read_text())
    assert len(manifest["shards"]) == total and all(m["count"] == 1 for m in manifest["shards"].values())


# ---------------------------------------------------------------- bad input

def _tar_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _missing_labels(d):
    (d / layout.VAL_LABELS).unlink()


def _truncated_train(d):
    p = d / layout.TRAIN_TAR
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _val_not_a_tar(d):
    (d / layout.VAL_TAR).write_bytes(b"this is not a tar archive\n" * 100)


def _empty_synset_tar(d):
    p = d / layout.TRAIN_TAR
    with tarfile.open(p) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    members[1] = (members[1][0], _tar_bytes([]))
    p.write_bytes(_tar_bytes(members))


def _labels_count_differs(d):
    p = d / layout.VAL_LABELS
    p.write_text("".join(line + "\n" for line in p.read_text().split()[:-1]))


def _malformed_xml(d):
    p = d / layout.BBOX_TAR
    with tarfile.open(p) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    members[2] = (members[2][0], members[2][1][:-30])
    p.write_bytes(gzip.compress(_tar_bytes(members), mtime=0))


@pytest.fixture(scope="module")
def clean_set(tmp_path_factory):
    return make_mini_ilsvrc(tmp_path_factory.mktemp("clean") / "raw", num_classes=3,
                            train_per_class=4, val_per_class=2, image_size=32)


@pytest.mark.parametrize("damage, message", [
    (_missing_labels, r"imagenet_2012_validation_synset_labels\.txt: missing"),
    (_truncated_train, r"ILSVRC2012_img_train\.tar.*: truncated tar"),
    (_val_not_a_tar, r"ILSVRC2012_img_val\.tar: not a tar"),
    (_empty_synset_tar, r"ILSVRC2012_img_train\.tar: n\d+\.tar: empty synset tar"),
    (_labels_count_differs, r"synset_labels\.txt: 5 labels for 6 images"),
    (_malformed_xml, r"ILSVRC2012_bbox_train_v2\.tar\.gz: n\d+/n\d+_\d+\.xml: malformed XML"),
])
def test_bad_input_one_line_no_shard(clean_set, tmp_path, damage, message):
    raw = tmp_path / "raw"
    shutil.copytree(clean_set, raw)
    damage(raw)
    out = tmp_path / "out"
    with pytest.raises(UserError, match=message) as err:
        convert(raw, out, progress=False, workers=1, **SHARDS)
    assert "\n" not in str(err.value)
    assert not out.exists() or _shard_files(out) == []


def test_doit_tasks_keys_and_bad_input(clean_set, tmp_path, build_dir):
    from conftest import run_doit

    env = {"ZOOBUILD_BUILD_DIR": str(build_dir)}
    vars_ = ["train_shards=4", "validation_shards=2"]
    first = run_doit(["imagenet_tfrecords", *vars_], env=env)
    assert ".  synthetic" in first.stdout and ".  imagenet_tfrecords" in first.stdout
    made = sorted((build_dir / "tfrecords" / "synthetic").iterdir())
    assert len(made) == 1 and _shard_files(made[0])[0] == "train-00000-of-00004"
    again = run_doit(["imagenet_tfrecords", *vars_], env=env)
    assert "-- imagenet_tfrecords" in again.stdout and "-- synthetic" in again.stdout
    run_doit(["imagenet_tfrecords", *vars_, "seed=5"], env=env)
    assert len(list((build_dir / "tfrecords" / "synthetic").iterdir())) == 2
    back = run_doit(["imagenet_tfrecords", *vars_], env=env)  # the earlier set is still there
    assert "-- imagenet_tfrecords" in back.stdout
    raw = tmp_path / "raw"
    shutil.copytree(clean_set, raw)
    _labels_count_differs(raw)
    bad = run_doit(["imagenet_tfrecords", f"data_dir={raw}", f"out_dir={tmp_path / 'o'}", *vars_],
                   env=env, check=False)
    assert bad.returncode != 0
    lines = [ln for ln in (bad.stdout + bad.stderr).splitlines() if "zoobuild:" in ln]
    assert len(lines) == 1 and "5 labels for 6 images" in lines[0]
    assert not (tmp_path / "o").exists() or _shard_files(tmp_path / "o") == []


def test_s3_data_dir_gives_same_shards(clean_set, tmp_path, monkeypatch):
    """data_dir as an s3:// URL (moto's S3 server on loopback), read in place by the workers."""
    import copy

    import fsspec
    import fsspec.config
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    saved = copy.deepcopy(fsspec.config.conf)
    try:
        host, port = server.get_host_and_port()
        for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1",
                     "FSSPEC_S3_ENDPOINT_URL": f"http://{host}:{port}"}.items():
            monkeypatch.setenv(k, v)  # the spawned workers inherit these
        fsspec.config.set_conf_env(fsspec.config.conf)
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        fs.mkdir("ilsvrc")
        for p in Path(clean_set).iterdir():
            fs.put(str(p), f"ilsvrc/raw/{p.name}")
        rep = convert("s3://ilsvrc/raw", tmp_path / "s3", workers=2, progress=False, **SHARDS)
        convert(clean_set, tmp_path / "local", workers=1, progress=False, **SHARDS)
        assert rep["examples"] == {"train": 12, "validation": 6}
        assert _digests(tmp_path / "s3") == _digests(tmp_path / "local")
    finally:
        fsspec.config.conf.clear()
        fsspec.config.conf.update(saved)
        server.stop()
