"""Writing one shard (worker side): read its images in place, encode, frame, write atomically.

Workers import no TensorFlow.  A shard goes to a temporary name and is renamed
when complete; then a small per-shard manifest (count, bytes, sha256, plan
digest) is written the same way.  A shard counts as finished only when its
manifest names the current plan digest and its size matches, so after kill -9 a
rerun keeps every finished shard and rewrites only the rest: none lost, none
written twice.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from datasets import layout, tfrecord
from datasets.example import encode_example
from datasets.shardplan import ShardJob
from datasets.storage import image_reader
from zoobuild import atomic
from zoobuild.errors import UserError


def _write_chunks(path: Path, chunks) -> tuple[int, str]:
    """Write the chunks atomically; (bytes, sha256) of what was written."""
    h = hashlib.sha256()
    size = 0
    with atomic.atomic_open(path, "wb", buffering=1 << 20) as f:
        for chunk in chunks:
            h.update(chunk)
            size += len(chunk)
            f.write(chunk)
    return size, h.hexdigest()


def manifest_path(job: ShardJob) -> Path:
    return Path(job.out_dir) / layout.SHARD_MANIFESTS / f"{job.name}.json"


def write_shard(job: ShardJob) -> dict:
    """Write one shard and its manifest; return the manifest."""
    records: list = [None] * len(job.entries)
    skipped, reencoded = [], []
    # read in file order (sequential on disk), write in the planned order
    order = sorted(range(len(job.entries)), key=lambda k: (job.entries[k].source, job.entries[k].offset))
    for k in order:
        e = job.entries[k]
        image_reader(job.data_dir, e.source)[1](e.offset, e.size)
    for k in order:
        e = job.entries[k]
        data = image_reader(job.data_dir, e.source)[0](e.offset, e.size)
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
    size, sha = _write_chunks(Path(job.out_dir) / job.name,
                              (c for r in records if r is not None for c in r))
    manifest = {"name": job.name, "split": job.split, "index": job.index,
                "num_shards": job.num_shards, "count": sum(r is not None for r in records),
                "bytes": size, "sha256": sha, "plan": job.digest,
                "skipped": skipped, "reencoded": reencoded}
    atomic.write_json(manifest_path(job), manifest)
    return manifest


def finished(job: ShardJob) -> dict | None:
    """The manifest of a shard that is already complete for this plan, else None."""
    try:
        manifest = json.loads(manifest_path(job).read_text())
        if manifest.get("plan") == job.digest and \
                (Path(job.out_dir) / job.name).stat().st_size == manifest["bytes"]:
            return manifest
    except (OSError, ValueError, KeyError):
        pass
    return None


def worker_init() -> None:
    # die with the parent: a kill -9 of the conversion must not leave writers behind
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
