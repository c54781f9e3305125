"""Making one key directory: already finished → nothing; in the shared cache → fetch it; else
build it here, then share it.  Every keyed stage goes through `produce`, so the cache sits
under all of them and a stage's code never talks to the cache itself."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from zoobuild import keys
from zoobuild.atomic import atomic_dir
from zoobuild.cache import STATS, Cache


def produce(stage: str, key: keys.Key, outdir, build: Callable[[Path], dict | None], *,
            cache: Cache | None = None, in_place: bool = False) -> str:
    """Return "done", "fetched" or "built".

    build(dir) writes the stage's outputs into dir and may return extra marker fields.  With
    in_place=False dir is a temporary directory renamed to outdir on success (nothing partial
    is ever visible); with in_place=True (training, which resumes from its own checkpoints)
    dir is outdir itself.  The completion marker is written last either way."""
    outdir = Path(outdir)
    if keys.is_complete(outdir, key):
        return "done"
    if cache is not None and cache.fetch(stage, key.hex, outdir):
        if keys.is_complete(outdir, key):
            return "fetched"
    if in_place:
        if cache is not None and not (outdir.is_dir() and any(outdir.iterdir())):
            if cache.fetch(stage, key.hex, outdir, partial=True):
                print(f"{stage} {key.short}: resuming a run another machine shared part-way")
        outdir.mkdir(parents=True, exist_ok=True)
        try:
            extra = build(outdir)
        except BaseException:
            if cache is not None:     # share the progress: whoever runs this key next resumes it
                cache.upload(stage, key.hex, outdir, partial=True)
            raise
        keys.mark_complete(outdir, key, extra or None)
    else:
        with atomic_dir(outdir) as tmp:
            extra = build(tmp)
            keys.mark_complete(tmp, key, extra or None)
    STATS.note("built", f"{stage}/{key.short}")
    if cache is not None:
        cache.upload(stage, key.hex, outdir)
    return "built"
