"""ILSVRC2012 raw files -> slim's ImageNet TFRecord shards, in named steps.

    index   `ilsvrc.build_index` reads only tar headers and the small label/box
            files, so every image is later one positioned read from its tar.
    plan    `shardplan` resolves the shard counts (auto: sized by the data) and
            assigns each image to a shard, a pure function of index and seed.
    resume  shards whose manifest names the current plan are kept (after kill -9
            or from another machine's shard_range); with a `shared` store (the
            shared cache, per shard) the missing ones are fetched from it; the
            rest are to write.
    write   worker processes (no TensorFlow) write each shard (`shardwrite`),
            with a progress bar of images and shards, rate and ETA; each
            finished shard goes to the `shared` store at once, so a run that
            stops part-way still feeds the next machine.
    verify  every planned shard is on disk with its manifest, else the set is
            incomplete (a shard range) and nothing set-wide is written.
    finish  labels.txt, manifest.json and conversion_report.json, written once
            every shard exists; shards of another plan are removed.

Every file goes to a temporary name and is renamed when complete (zoobuild.atomic).
"""
from __future__ import annotations

import multiprocessing
import os
import re
import time
from pathlib import Path

from datasets import layout
from datasets.example import JPEG_QUALITY
from datasets.ilsvrc import build_index
from datasets.shardplan import (AUTO, FORMAT_VERSION, check_shard_count, parse_shard_range, plan,
                                resolve_shard_counts)
from datasets.shardwrite import finished, manifest_path, worker_init, write_shard
from datasets.storage import Prefetcher
from zoobuild import atomic
from zoobuild.errors import UserError
from zoobuild.progress import progress as progress_bar

_TMP_RE = re.compile(r"^\.(?:(?:train|validation)-\d{5}-of-\d{5}(?:\.json)?|labels\.txt|manifest\.json|"
                     r"conversion_report\.json)\.tmp-\d+$")


# ---------------------------------------------------------------- steps

def prepare_out_dir(out: Path) -> None:
    """Create the output directory; drop temporary files an interrupted run left behind."""
    (out / layout.SHARD_MANIFESTS).mkdir(parents=True, exist_ok=True)
    _remove_temps(out)


def resume(selected, jobs, out: Path, strict: bool) -> tuple[dict, list]:
    """({name: manifest} of the selected shards already finished for this plan, jobs still to write)."""
    reused = {job.name: m for job in selected if (m := finished(job))}
    if strict:  # shards finished by a lenient run may hold skips that strict mode refuses
        for m in reused.values():
            if m["skipped"]:
                s = m["skipped"][0]
                _remove_plan_outputs(out, jobs)
                raise UserError(f"{s['source']}: {s['file']}: {s['reason']} "
                                f"(strict mode: no image may be skipped)")
    return reused, [job for job in selected if job.name not in reused]


def fetch_shared(todo, shared, show_progress: bool) -> tuple[dict, list]:
    """({name: manifest} of the shards `shared` had, jobs still to write)."""
    got = {}
    with progress_bar("imagenet_tfrecords: shared shards", total=len(todo), unit="shards") \
            if show_progress and len(todo) > 1 else _NoProgress() as bar:
        for job in todo:
            if shared.fetch(job) and (m := finished(job)):
                got[job.name] = m
            bar.advance(1)
    return got, [job for job in todo if job.name not in got]


def write_shards(todo, data_dir: str, workers: int, show_progress: bool, shared=None) -> dict:
    """{name: manifest} of the shards written now, in worker processes when workers > 1."""
    written: dict[str, dict] = {}
    total = sum(len(job.entries) for job in todo)
    by_name = {job.name: job for job in todo}
    with progress_bar("imagenet_tfrecords", total=total, unit="images") if show_progress \
            else _NoProgress() as bar:
        def done(manifest):
            written[manifest["name"]] = manifest
            if shared is not None:
                shared.share(by_name[manifest["name"]])
            bar.advance(manifest["count"] + len(manifest["skipped"]),
                        shards=f"{len(written)}/{len(todo)}")

        if workers == 1:
            for job in todo:
                done(write_shard(job))
            return written
        ctx = multiprocessing.get_context("spawn")
        # big shards one at a time; tiny ones in batches to save round trips
        chunksize = max(1, min(16, len(todo) // (workers * 8)))
        window = 4 * workers * chunksize
        prefetch = Prefetcher(todo, data_dir)
        prefetch.advance(window)
        try:
            with ctx.Pool(workers, initializer=worker_init) as pool:
                for manifest in pool.imap_unordered(write_shard, todo, chunksize):
                    done(manifest)
                    prefetch.advance(len(written) + window)
        finally:
            prefetch.close()
    return written


def verify(jobs, written: dict, reused: dict) -> dict:
    """{name: manifest or None} for every shard of the plan: written now, kept, or finished elsewhere."""
    return {job.name: written.get(job.name) or reused.get(job.name) or finished(job) for job in jobs}


def finish(out: Path, index, jobs, manifests: dict, counts: dict, seed: int, report: dict) -> None:
    """The set-wide files, once every shard exists; shards of other plans go."""
    _remove_stale(out, jobs)
    sizes = {s: sum(m["count"] for m in manifests.values() if m["split"] == s) for s in layout.SPLITS}
    report["examples"] = sizes
    report["empty_shards"] = sorted(n for n, m in manifests.items() if m["count"] == 0)
    for key in ("skipped", "reencoded"):
        report[key] = [{"split": m["split"], "shard": m["name"], **s}
                       for m in manifests.values() for s in m[key]]
    atomic.write_json(out / layout.MANIFEST, {
        "format": "slim-imagenet-tfrecord", "version": FORMAT_VERSION, "seed": seed,
        "num_classes": len(index.synsets) + 1, "labels_offset_note": "0 is background",
        "splits": {s: {"num_shards": counts[s], "num_examples": sizes[s]} for s in layout.SPLITS},
        "shards": {name: {k: m[k] for k in ("count", "bytes", "sha256")}
                   for name, m in sorted(manifests.items())},
    })
    atomic.write_json(out / layout.REPORT, report)


# ---------------------------------------------------------------- the whole conversion

def convert(data_dir, out_dir, train_shards=AUTO, validation_shards=AUTO, seed: int = 0,
            strict: bool = False, shard_range=None, workers: int | None = None,
            quality: int = JPEG_QUALITY, progress: bool = True, shared=None) -> dict:
    """Convert the ILSVRC2012 files in data_dir into slim TFRecord shards in out_dir.

    train_shards / validation_shards: `auto` (slim's 1024/128 for the full
    ILSVRC2012 splits, else shards of at most ~150 MB) or a count.  Returns the
    conversion report (also written to out_dir/conversion_report.json once every
    shard exists).  shard_range ('lo:hi' or (lo, hi)) converts only those shards
    of the list [train 0..T-1, validation 0..V-1]; ranges written elsewhere can
    be copied together and give the same files.  shared: a store of finished shards
    (`fetch(job) -> bool` puts the shard and its manifest into out_dir, `share(job)` stores
    them), so that shard ranges run on different machines feed each other.
    """
    requested = {"train": check_shard_count("train_shards", train_shards),
                 "validation": check_shard_count("validation_shards", validation_shards)}
    t0 = time.monotonic()
    data_dir = os.fspath(data_dir) if isinstance(data_dir, os.PathLike) else str(data_dir)
    index = build_index(data_dir)
    t_index = time.monotonic() - t0
    counts = resolve_shard_counts(index, requested)
    out = Path(out_dir)
    prepare_out_dir(out)
    jobs = plan(index, counts, seed, data_dir, out, strict, quality)
    lo, hi = parse_shard_range(shard_range, len(jobs))
    reused, todo = resume(jobs[lo:hi], jobs, out, strict)
    fetched = {}
    if shared is not None and todo:
        fetched, todo = fetch_shared(todo, shared, progress)
        reused.update(fetched)
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    try:
        written = write_shards(todo, data_dir, workers, progress, shared)
    except UserError:
        # bad input found while writing (strict mode): this input has no valid output
        _remove_plan_outputs(out, jobs)
        _remove_temps(out)  # a worker stopped mid-write leaves its temporary file
        raise
    manifests = verify(jobs, written, reused)
    complete = all(manifests.values())
    layout.write_labels(out, index.synsets)
    elapsed = time.monotonic() - t0
    converted = sum(m["count"] + len(m["skipped"]) for m in written.values())
    report = {
        "data_dir": str(data_dir), "out_dir": str(out), "seed": seed,
        "shards": counts, "shards_requested": requested,
        "shard_range": [lo, hi], "complete": complete,
        "num_classes": len(index.synsets) + 1,
        "images_in_source": {s: len(index.entries[s]) for s in layout.SPLITS},
        "bbox_xml_files": index.xml_count, "bbox_xml_without_image": index.xml_unmatched,
        "shards_written": len(written), "shards_reused": len(reused) - len(fetched),
        "shards_fetched": len(fetched),
        "images_converted": converted, "workers": workers,
        "index_seconds": round(t_index, 3), "seconds": round(elapsed, 3),
        "images_per_second": round(converted / elapsed, 1) if elapsed > 0 else None,
    }
    if complete:
        finish(out, index, jobs, manifests, counts, seed, report)
    return report


# ---------------------------------------------------------------- cleaning up

class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def advance(self, n=1, **fields):
        pass


def _remove_plan_outputs(out: Path, jobs) -> None:
    for name in (layout.MANIFEST, layout.REPORT, layout.LABELS_FILE):
        (out / name).unlink(missing_ok=True)
    for job in jobs:
        (out / job.name).unlink(missing_ok=True)
        manifest_path(job).unlink(missing_ok=True)


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
