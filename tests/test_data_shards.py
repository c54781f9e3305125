"""Shard counts: auto sized by the data (none empty), explicit counts win, the key pins the count."""
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from datasets import layout, tfrecord
from datasets.convert import convert
from datasets.synthetic import make_mini_ilsvrc
from zoobuild.errors import UserError


@pytest.fixture(scope="module")
def clean_set(tmp_path_factory):
    return make_mini_ilsvrc(tmp_path_factory.mktemp("clean") / "raw", num_classes=3,
                            train_per_class=4, val_per_class=2, image_size=32)


def _shard_files(d):
    return sorted(p.name for p in Path(d).iterdir() if layout.parse_shard_name(p.name))


def _record_counts(d):
    return {n: sum(1 for _ in tfrecord.iter_records(Path(d) / n)) for n in _shard_files(d)}


def test_auto_shards_on_the_embedded_set_none_empty(tmp_path, capsys, monkeypatch):
    """The main job's embedded set with the default (auto) counts: few shards, every one holds records."""
    from tasks.data import SYNTHETIC

    raw = make_mini_ilsvrc(tmp_path / "raw", **SYNTHETIC)
    monkeypatch.setenv("ZOOBUILD_PROGRESS", "plain")
    rep = convert(raw, tmp_path / "out", workers=2)
    assert rep["shards_requested"] == {"train": "auto", "validation": "auto"}
    assert rep["shards"] == {"train": 1, "validation": 1}  # ~10 MB: one shard each
    counts = _record_counts(tmp_path / "out")
    assert _shard_files(tmp_path / "out") == ["train-00000-of-00001", "validation-00000-of-00001"]
    assert all(n >= 1 for n in counts.values()) and rep["empty_shards"] == []
    total = SYNTHETIC["num_classes"] * (SYNTHETIC["train_per_class"] + SYNTHETIC["val_per_class"])
    assert sum(counts.values()) == sum(raw.expected_sizes.values()) == total
    # progress: images and shards, with a rate, on stderr
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.match(rf"imagenet_tfrecords: {total}/{total} images, [\d.e+]+ images/s, .*\(shards 2/2\)$",
                    last), last


def test_explicit_shard_counts_win(clean_set, tmp_path):
    rep = convert(clean_set, tmp_path / "a", workers=1, progress=False, train_shards=12,
                  validation_shards="5")
    assert rep["shards"] == {"train": 12, "validation": 5}
    counts = _record_counts(tmp_path / "a")
    assert len(counts) == 17 and min(counts.values()) == 1  # one image each, none empty
    json_manifest = json.loads((tmp_path / "a" / layout.MANIFEST).read_text())
    assert json_manifest["splits"]["train"] == {"num_shards": 12, "num_examples": 12}
    # more shards than images would leave some empty: refused in one line, nothing written
    with pytest.raises(UserError, match=r"train_shards=13: more shards than the 12 train images") as err:
        convert(clean_set, tmp_path / "b", workers=1, progress=False, train_shards=13)
    assert "\n" not in str(err.value) and not (tmp_path / "b").exists()
    with pytest.raises(UserError, match=r"validation_shards='zero': expected auto or an integer"):
        convert(clean_set, tmp_path / "b", progress=False, validation_shards="zero")


def _with_big_synset(src, dst, size):
    """A copy of a raw set whose train tar has one more synset holding one `size`-byte image."""
    shutil.copytree(src, dst)
    inner = dst / "big.tar"
    blob = dst / "n09999999_1.JPEG"
    with open(blob, "wb") as f:
        f.truncate(size)  # sparse: the index only reads headers
    with tarfile.open(inner, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(blob, arcname=blob.name)
    blob.unlink()
    train = dst / layout.TRAIN_TAR
    with tarfile.open(src / layout.TRAIN_TAR) as old, \
            tarfile.open(train, "w", format=tarfile.GNU_FORMAT) as new:
        for m in old.getmembers():
            new.addfile(m, old.extractfile(m))
        new.add(inner, arcname="n09999999.tar")
    inner.unlink()
    return dst


def test_resolved_count_is_in_the_key(clean_set, tmp_path, build_dir, monkeypatch):
    """auto is keyed as auto + the input digests: data that resolves to other counts has another key."""
    from doit import doit_cmd

    from datasets.ilsvrc import build_index
    from datasets.shardplan import MAX_SHARD_BYTES, resolve_shard_counts
    from tasks import data

    small = tmp_path / "small"
    shutil.copytree(clean_set, small)
    big = _with_big_synset(small, tmp_path / "big", MAX_SHARD_BYTES + 1)
    auto = {"train": "auto", "validation": "auto"}
    resolved = {d: resolve_shard_counts(build_index(d), auto) for d in (small, big)}
    assert resolved[small]["train"] == 1 and resolved[big]["train"] == 2

    def key(**words):
        monkeypatch.setattr(doit_cmd, "_CMDLINE_VARS", {k: str(v) for k, v in words.items()})
        return data.tfrecords_key()

    k_small, k_big = key(data_dir=small), key(data_dir=big)
    assert k_small.hex != k_big.hex
    assert k_small.parts["params"]["train_shards"] == "auto"
    assert key(data_dir=small).hex == k_small.hex  # stable
    explicit = key(data_dir=small, train_shards=1)
    assert explicit.hex != k_small.hex and explicit.parts["params"]["train_shards"] == 1
