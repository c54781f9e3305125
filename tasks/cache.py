"""The shared cache's variables and the one line every run with a cache ends with.

    doit train cache=s3://team-bucket/zoobuild cache_options='{"endpoint_url": "..."}'
    ZOOBUILD_CACHE=/mnt/shared/zoocache doit          # the default for every command

Stages never talk to the cache themselves: their actions go through zoobuild.produce, which
looks the key up before running and shares the result after.
"""
from __future__ import annotations

import atexit
import json
import os
import sys

from tasks.params import Var, json_object
from zoobuild import paths
from zoobuild.errors import UserError


def _cache_url(text: str) -> None:
    """a directory or a file://, s3://, gs:// URL"""
    if "://" in text and text.split("://", 1)[0] not in ("file", "s3", "gs", "gcs", "memory"):
        raise ValueError("expected a directory or a file://, s3:// or gs:// URL")


CACHE = Var("cache", str, os.environ.get("ZOOBUILD_CACHE", ""),
            "shared cache: a directory or file://, s3://, gs:// URL (default $ZOOBUILD_CACHE; empty: none)",
            check=_cache_url)
CACHE_MODE = Var("cache_mode", str, "readwrite", "how the shared cache is used",
                 choices=("readwrite", "read", "off"))
CACHE_OPTIONS = Var("cache_options", str, "", "fsspec storage options of the cache as JSON",
                    check=json_object)


def shared_cache():
    """The zoobuild.cache.Cache of this command line, or None."""
    from zoobuild import cache

    if not CACHE.get() or CACHE_MODE.get() == "off":
        return None
    opts = json.loads(CACHE_OPTIONS.get()) if CACHE_OPTIONS.get() else {}
    return cache.open_cache(CACHE.get(), CACHE_MODE.get(), opts)


def image_registry() -> str | None:
    """Where images travel by key: `registry=` or the local docker-registry, when a cache is on."""
    if not CACHE.get() or CACHE_MODE.get() == "off":
        return None
    from tasks.images import REGISTRY

    if REGISTRY.get():
        return REGISTRY.get()
    from images import engine

    try:
        return engine.ensure_registry()
    except UserError as err:
        print(f"zoobuild: image cache: {err}; images are built locally", file=sys.stderr)
        return None


def why_line(stage: str, key_hex: str) -> str | None:
    """`doit why`: "cached: ..." / "not in cache ..." for a key, None without a cache."""
    c = shared_cache()
    return None if c is None else c.lookup(stage, key_hex)


def _summary() -> None:
    from zoobuild.cache import STATS

    events = os.environ.get("ZOOBUILD_CACHE_EVENTS")
    if events:
        STATS.merge_events(events)
        try:
            os.unlink(events)
        except OSError:
            pass
    if STATS.any():
        print(f"zoobuild: {STATS.summary()}", file=sys.stderr, flush=True)


def arm_summary() -> None:
    """Called once when dodo.py loads a run with a cache: events of worker processes go to a
    file the main process reads at exit, and the run ends with the summary line."""
    if not CACHE.get() or CACHE_MODE.get() == "off" or os.environ.get("ZOOBUILD_CACHE_EVENTS"):
        return
    paths.BUILD.mkdir(parents=True, exist_ok=True)
    os.environ["ZOOBUILD_CACHE_EVENTS"] = str(paths.BUILD / f".cache-events-{os.getpid()}.jsonl")
    os.environ["ZOOBUILD_CACHE_EVENTS_PID"] = str(os.getpid())
    atexit.register(_summary)
