"""What was built: images in the engine (ids, labels) and their records in build/images.json.

    engine_image("zoobuild:tf-compiled-base:latest") -> (id, labels) | None | NO_ENGINE
    is_uptodate(plan, img)     # img's tag carries img's key and was built FROM its parent's id
    read_records()             # tag -> id, key, parent, from, from_id, context, build_seconds

Reads go through images/enginehttp.py (no docker-py import: a no-op run must stay cheap).
"""
from __future__ import annotations

from images import enginehttp, imagekey
from zoobuild import paths, records
from zoobuild.errors import UserError

NO_ENGINE = enginehttp.NO_ENGINE

_SEEN: dict = {}


def engine_image(ref: str):
    """(id, labels) of the image `ref`, None when absent, NO_ENGINE when no engine answers.

    Answers are remembered per process until build/images.json changes: every build records
    there before its task ends, so a check made after a (parallel) build never sees stale ids.
    """
    try:
        stamp = ((paths.BUILD / "images.json").stat().st_mtime_ns, str(paths.BUILD))
    except OSError:
        stamp = (None, str(paths.BUILD))
    if _SEEN.get("stamp") != stamp:
        _SEEN.clear()
        _SEEN["stamp"] = stamp
    if ref not in _SEEN:
        _SEEN[ref] = enginehttp.inspect_image(ref)
    return _SEEN[ref]


def found(answer) -> bool:
    """engine_image's answer names an image (not absent, and an engine answered)."""
    return answer is not None and answer is not NO_ENGINE


def image_id(tag: str) -> str | None:
    """The engine's id of `tag` now, None when absent or when no engine answers."""
    answer = engine_image(imagekey.image_ref(tag))
    return answer[0] if found(answer) else None


# --- build/images.json --------------------------------------------------------------------

def records_path():
    return paths.BUILD / "images.json"


def read_records() -> dict:
    return records.read_json(records_path())


def record_entry(plan, img, image_id: str, key, from_id: str, seconds) -> dict:
    return {"id": image_id, "key": key.hex, "parent": img.parent, "from": img.base_image,
            "from_id": from_id, "name": img.name, "dockerfile": img.dockerfile_path,
            "context": imagekey.context_summary(plan, img), "build_seconds": seconds}


def record(plan, img, image_id: str, key, from_id: str, seconds=None) -> None:
    """Set img's entry in build/images.json (locked, atomic: parallel builds record at once)."""
    records.update_json(records_path(), img.tag, record_entry(plan, img, image_id, key, from_id, seconds))


def record_if_missing(plan, img, image_id: str, key, from_id: str) -> None:
    """Record an image found up to date that this build directory has no entry of (built under
    another build directory, or before the records were kept)."""
    if read_records().get(img.tag, {}).get("id") != image_id:
        record(plan, img, image_id, key, from_id)


# --- staleness ----------------------------------------------------------------------------

def is_uptodate(plan, img, record: bool = False) -> bool:
    """True when an image with img's tag exists, carries img's current key, and was built FROM
    the image its parent tag names now.  Two inspect requests; the key needs no engine.

    record=True also writes img's entry into build/images.json when it is missing there."""
    parent = engine_image(imagekey.image_ref(img.base_image))
    current = engine_image(imagekey.image_ref(img.tag))
    if not (found(parent) and found(current)):
        return False
    try:
        key = imagekey.image_key(plan, img)
    except UserError:
        return False
    ok = imagekey.carries_key(current[1], key, parent[0])
    if ok and record:
        record_if_missing(plan, img, current[0], key, parent[0])
    return ok
