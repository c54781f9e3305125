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
from pathlib import Path

from zoobuild import keys, paths
from zoobuild.produce import produce
from tasks.cache import shared_cache
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
# The modules each stage runs; its key holds their computed import closure and the
# versions of the libraries they reach (numpy, pillow: the bytes depend on them).
_SYNTHETIC_ENTRIES = ["datasets.synthetic"]
_CONVERT_ENTRIES = ["datasets.convert"]
_RAW_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
              "ILSVRC2012_bbox_train_v2.tar.gz", "imagenet_2012_validation_synset_labels.txt",
              "imagenet_metadata.txt")


def _shard_count(name: str):
    def check(text: str) -> None:
        from datasets.shardplan import check_shard_count

        check_shard_count(name, text)

    check.__doc__ = "auto or a count from 1 to 99999"
    return check


def _check_shard_range(text: str) -> None:
    """LO:HI with 0 <= LO < HI (<= train_shards + validation_shards when both are counts)"""
    from datasets.shardplan import parse_shard_range

    counts = (TRAIN_SHARDS.get(), VALIDATION_SHARDS.get())
    parse_shard_range(text, None if "auto" in counts else sum(int(c) for c in counts))


DATA_DIR = Var("data_dir", str, "", "ILSVRC2012 files (local dir or fsspec URL); empty: the synthetic set")
OUT_DIR = Var("out_dir", str, "", "where the TFRecords go; empty: build/tfrecords/<kind>/<key12>")
TRAIN_SHARDS = Var("train_shards", str, "auto", "train-*-of-N shards: auto (1024 for the full "
                   "ILSVRC2012 train split, else ~150 MB each, at least 1) or a count",
                   check=_shard_count("train_shards"))
VALIDATION_SHARDS = Var("validation_shards", str, "auto", "validation-*-of-N shards: auto (128 for "
                        "the full ILSVRC2012 validation split, else ~150 MB each) or a count",
                        check=_shard_count("validation_shards"))
SEED = Var("seed", int, 0, "seed of the shuffle of examples across shards", minimum=0)
STRICT = Var("strict", bool, False, "stop at the first undecodable image instead of skipping it")
SHARD_RANGE = Var("shard_range", str, "", "LO:HI: convert only these shards (train then validation)",
                  check=_check_shard_range)
WORKERS = Var("workers", int, 0, "conversion worker processes; 0: one per CPU", minimum=0)


@functools.lru_cache(maxsize=None)
def synthetic_key() -> keys.Key:
    return keys.make_key("synthetic", entries=_SYNTHETIC_ENTRIES, params=SYNTHETIC)


def synthetic_dir() -> Path:
    return keys.run_dir("synthetic", "mini_ilsvrc", synthetic_key())


def _data_dir() -> str:
    return DATA_DIR.get() or str(synthetic_dir())


def _input_digests(data_dir: str) -> dict:
    if not DATA_DIR.get():
        return {"synthetic": synthetic_key().hex}
    from datasets.storage import Source, is_url

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
    from datasets.shardplan import check_shard_count

    # "auto" is resolved from the data at conversion; the input digests in the key pin it
    return {"train_shards": check_shard_count("train_shards", TRAIN_SHARDS.get()),
            "validation_shards": check_shard_count("validation_shards", VALIDATION_SHARDS.get()),
            "seed": SEED.get(), "strict": STRICT.get()}


@functools.lru_cache(maxsize=None)
def _tfrecords_key(data_dir: str, params_json: str) -> keys.Key:
    import json

    return keys.make_key("imagenet_tfrecords", entries=_CONVERT_ENTRIES, params=json.loads(params_json),
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

    def build(tmp):
        made = make_mini_ilsvrc(tmp, **SYNTHETIC)
        return {"train": made.train_count, "validation": made.val_count}

    how = produce("synthetic", key, outdir, build, cache=shared_cache())
    counts = keys.read_marker(outdir) or {}
    print(f"synthetic mini-ILSVRC ({how}): {counts.get('train')} train + {counts.get('validation')} "
          f"validation images of {SYNTHETIC['num_classes']} classes in {outdir}")


def task_synthetic():
    """Write the synthetic mini-ILSVRC (ImageNet's raw layout) under build/synthetic/."""
    key = synthetic_key()
    outdir = synthetic_dir()
    return {
        "actions": [(guarded(_make_synthetic), (str(outdir), key))],
        "uptodate": [keys.key_uptodate(key, outdir)],
        "meta": {"key": key, "outdir": outdir},
        "doc": f"synthetic mini-ILSVRC -> {outdir}",
        "verbosity": 2,
    }


class SharedShards:
    """The shared cache, one entry per TFRecord shard (the shard and its manifest), keyed on
    the set's key and the shard's plan digest: a `shard_range=` run on one machine feeds the
    conversion on another, and an interrupted conversion loses no shared shard."""
    STAGE = "tfrecords.shard"

    def __init__(self, cache, set_key: keys.Key):
        self.cache, self.set_key = cache, set_key

    def _key(self, job) -> str:
        import hashlib

        return hashlib.sha256(f"{self.set_key.hex}\0{job.name}\0{job.digest}".encode()).hexdigest()

    def fetch(self, job) -> bool:
        return self.cache.fetch_files(self.STAGE, self._key(job), job.out_dir)

    def share(self, job) -> None:
        from datasets import layout

        self.cache.upload_files(self.STAGE, self._key(job), job.out_dir,
                                [job.name, f"{layout.SHARD_MANIFESTS}/{job.name}.json"])


def _convert(data_dir: str, out_dir: str, key: keys.Key, params: dict, shard_range: str,
             workers: int) -> None:
    from datasets.convert import convert

    out = Path(out_dir)
    cache = shared_cache()

    def build(into):
        (into / keys.COMPLETE).unlink(missing_ok=True)  # the directory's content is about to change
        return convert(data_dir, into, train_shards=params["train_shards"],
                       validation_shards=params["validation_shards"], seed=params["seed"],
                       strict=params["strict"], shard_range=shard_range or None,
                       workers=workers or None,
                       shared=SharedShards(cache, key) if cache is not None else None)

    if shard_range:                     # a part of the set: written in place, shared per shard
        report = build(out)
        if not report["complete"]:
            print(f"imagenet_tfrecords: shards {shard_range} written to {out} "
                  f"({report['shards_written']} written, {report['shards_fetched']} fetched); the "
                  f"set is complete once every shard is there (run again without shard_range to finish)")
            return
        keys.mark_complete(out, key, _marker_fields(report))
        if cache is not None:
            cache.upload("tfrecords", key.hex, out)
    else:
        made = []

        def build_all(into):
            made.append(build(into))
            return _marker_fields(made[0])

        how = produce("tfrecords", key, out, build_all, cache=shared_cache(),
                      in_place=True)             # in place: an interrupted run resumes
        if not made:
            print(f"imagenet_tfrecords: {how} {out}")
            return
        report = made[0]
    print(f"imagenet_tfrecords: {report['examples']['train']} train + "
          f"{report['examples']['validation']} validation examples in {report['shards']['train']}"
          f" + {report['shards']['validation']} shards, {report['num_classes']} "
          f"classes, {len(report['skipped'])} skipped, {len(report['reencoded'])} re-encoded "
          f"-> {out}")


def _marker_fields(report: dict) -> dict:
    return {"examples": report["examples"], "shards": report["shards"],
            "num_classes": report["num_classes"]}


def _fail(err: UserError):
    def action():
        raise err

    return action


def task_imagenet_tfrecords():
    """ILSVRC2012 tars -> slim TFRecord shards (vars: data_dir, out_dir, train_shards, validation_shards, seed)."""
    _params()  # a bad shard count stops the load with one line
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
        "meta": {"key": key, "outdir": out_dir},
        "doc": f"ILSVRC2012 -> slim TFRecords in {out_dir}",
        "verbosity": 2,
    }
    if not DATA_DIR.get():
        task["task_dep"] = [SYNTHETIC_TASK]
    return task
