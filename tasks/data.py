"""Data stage: the synthetic mini-ILSVRC and ImageNet -> slim TFRecords.

    doit synthetic                                   # raw mini-ILSVRC under build/synthetic/
    doit imagenet_tfrecords                          # shards of the synthetic set (the default)
    doit imagenet_tfrecords data_dir=/data/imagenet out_dir=/data/tfrecords
    doit imagenet_tfrecords train_shards=64 validation_shards=8 seed=3
    doit imagenet_tfrecords data_dir=s3://bucket/ilsvrc2012 shard_range=0:576   # one machine's half

Keys: the synthetic set is keyed by its generator's code and parameters (its
bytes are a function of them); a real data_dir by the content digests of its
files (hashed once, then remembered by the hash cache).  The TFRecords land in
build/tfrecords/<synthetic|imagenet>/<key12>/ unless out_dir is given.

Other stages read `default_tfrecords_dir()` (and `tfrecords_key()` for their
own keys) and depend on TFRECORDS_TASK.
"""
from __future__ import annotations

import functools
from importlib import metadata
from pathlib import Path

from zoobuild import keys, paths
from tasks.errors import UserError, guarded
from tasks.params import Var

__all__ = ["task_synthetic", "task_imagenet_tfrecords"]

TFRECORDS_TASK = "imagenet_tfrecords"
SYNTHETIC_TASK = "synthetic"

# The main job's embedded default: small enough to convert and train on in seconds; 50
# validation images a class so that top-1 moves in steps of 0.002 (a 99%-of-fp32 gate on 100
# images could not tell one flipped image from a broken conversion).
SYNTHETIC = {"num_classes": 10, "train_per_class": 40, "val_per_class": 50,
             "image_size": 144, "seed": 0, "dirty": False}
_SYNTHETIC_CODE = ["datasets/synthetic.py", "datasets/layout.py"]
_CONVERT_CODE = ["datasets/convert.py", "datasets/source.py", "datasets/imageinfo.py",
                 "datasets/tfrecord.py", "datasets/layout.py"]
_RAW_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
              "ILSVRC2012_bbox_train_v2.tar.gz", "imagenet_2012_validation_synset_labels.txt",
              "imagenet_metadata.txt")

DATA_DIR = Var("data_dir", str, "", "ILSVRC2012 files (local dir or fsspec URL); empty: the synthetic set")
OUT_DIR = Var("out_dir", str, "", "where the TFRecords go; empty: build/tfrecords/<kind>/<key12>")
TRAIN_SHARDS = Var("train_shards", int, 1024, "number of train-*-of-N shards")
VALIDATION_SHARDS = Var("validation_shards", int, 128, "number of validation-*-of-N shards")
SEED = Var("seed", int, 0, "seed of the shuffle of examples across shards")
STRICT = Var("strict", bool, False, "stop at the first undecodable image instead of skipping it")
SHARD_RANGE = Var("shard_range", str, "", "LO:HI: convert only these shards (train then validation)")
WORKERS = Var("workers", int, 0, "conversion worker processes; 0: one per CPU")


def _versions() -> dict:
    # the generated and re-encoded bytes depend on these libraries
    return {name: metadata.version(name) for name in ("numpy", "pillow")}


@functools.lru_cache(maxsize=None)
def synthetic_key() -> keys.Key:
    return keys.make_key("synthetic", code=_SYNTHETIC_CODE, params={**SYNTHETIC, **_versions()})


def synthetic_dir() -> Path:
    return keys.run_dir("synthetic", "mini_ilsvrc", synthetic_key())


def _data_dir() -> str:
    return DATA_DIR.get() or str(synthetic_dir())


def _input_digests(data_dir: str) -> dict:
    if not DATA_DIR.get():
        return {"synthetic": synthetic_key().hex}
    from datasets.source import Source, is_url

    src = Source(data_dir)
    if not is_url(data_dir) and not Path(data_dir).is_dir():
        raise UserError(f"data_dir={data_dir}: not a directory; expected the ILSVRC2012 files")
    out = {}
    for name in _RAW_FILES:
        if not src.exists(name):
            continue
        if is_url(data_dir):  # remote: the store's own identity (size, ETag)
            out[name] = keys.canonical(src.stamp(name))
        else:
            out[name] = keys.file_digest(src.path(name))
    return out


def _params() -> dict:
    return {"train_shards": TRAIN_SHARDS.get(), "validation_shards": VALIDATION_SHARDS.get(),
            "seed": SEED.get(), "strict": STRICT.get(), **_versions()}


@functools.lru_cache(maxsize=None)
def _tfrecords_key(data_dir: str, params_json: str) -> keys.Key:
    import json

    return keys.make_key("imagenet_tfrecords", code=_CONVERT_CODE, params=json.loads(params_json),
                         inputs=_input_digests(data_dir))


def tfrecords_key() -> keys.Key:
    """The key of the TFRecords the current variables select (for downstream keys)."""
    return _tfrecords_key(_data_dir(), keys.canonical(_params()))


def default_tfrecords_dir() -> Path:
    """Where `doit imagenet_tfrecords` puts the shards for the current variables."""
    if OUT_DIR.get():
        return Path(OUT_DIR.get()).resolve()
    kind = "imagenet" if DATA_DIR.get() else "synthetic"
    return keys.run_dir("tfrecords", kind, tfrecords_key())


def _make_synthetic(outdir: str, key: keys.Key) -> None:
    from datasets.synthetic import make_mini_ilsvrc

    with keys.atomic_dir(outdir) as tmp:
        made = make_mini_ilsvrc(tmp, **SYNTHETIC)
        keys.mark_complete(tmp, key, {"train": made.train_count, "validation": made.val_count})
    print(f"synthetic mini-ILSVRC: {made.train_count} train + {made.val_count} validation "
          f"images of {SYNTHETIC['num_classes']} classes in {outdir}")


def task_synthetic():
    """Write the synthetic mini-ILSVRC (ImageNet's raw layout) under build/synthetic/."""
    key = synthetic_key()
    outdir = synthetic_dir()
    return {
        "actions": [(guarded(_make_synthetic), (str(outdir), key))],
        "uptodate": [keys.key_uptodate(key, outdir)],
        "meta": {"key": key},
        "doc": f"synthetic mini-ILSVRC -> {outdir}",
        "verbosity": 2,
    }


def _convert(data_dir: str, out_dir: str, key: keys.Key, params: dict, shard_range: str,
             workers: int) -> None:
    from datasets.convert import convert

    out = Path(out_dir)
    (out / keys.COMPLETE).unlink(missing_ok=True)  # the directory's content is about to change
    report = convert(data_dir, out, train_shards=params["train_shards"],
                     validation_shards=params["validation_shards"], seed=params["seed"],
                     strict=params["strict"], shard_range=shard_range or None,
                     workers=workers or None)
    if not report["complete"]:
        print(f"imagenet_tfrecords: shards {shard_range} written to {out}; the set is complete "
              f"once every shard is there (run again without shard_range to finish)")
        return
    keys.mark_complete(out, key, {"examples": report["examples"],
                                  "num_classes": report["num_classes"]})
    print(f"imagenet_tfrecords: {report['examples']['train']} train + "
          f"{report['examples']['validation']} validation examples, {report['num_classes']} "
          f"classes, {len(report['skipped'])} skipped, {len(report['reencoded'])} re-encoded "
          f"-> {out}")


def _fail(err: UserError):
    def action():
        raise err

    return action


def task_imagenet_tfrecords():
    """ILSVRC2012 tars -> slim TFRecord shards (vars: data_dir, out_dir, train_shards, validation_shards, seed)."""
    try:
        data_dir = _data_dir()
        key = tfrecords_key()
        out_dir = default_tfrecords_dir()
    except UserError as err:  # bad data_dir: the task fails with the one line, the graph still loads
        return {"actions": [guarded(_fail(err))], "verbosity": 2}
    shard_range = SHARD_RANGE.get()
    task = {
        "actions": [(guarded(_convert), (data_dir, str(out_dir), key, _params(), shard_range,
                                          WORKERS.get()))],
        "uptodate": [keys.key_uptodate(key, out_dir)] if not shard_range else [False],
        "meta": {"key": key},
        "doc": f"ILSVRC2012 -> slim TFRecords in {out_dir}",
        "verbosity": 2,
    }
    if not DATA_DIR.get():
        task["task_dep"] = [SYNTHETIC_TASK]
    return task
