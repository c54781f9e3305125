"""Small JSON maps of what was built (build/images.json, build/push.json), shared safely by
parallel tasks: a file lock around read-modify-write, and an atomic replace."""
from __future__ import annotations

import json
from pathlib import Path

from zoobuild.atomic import write_json


def read_json(path) -> dict:
    path = Path(path)
    return json.loads(path.read_text()) if path.exists() else {}


def update_json(path, key: str, entry) -> None:
    """Set path[key] = entry under a lock; readers never see a half-written file."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):
        data = read_json(path)
        data[key] = entry
        write_json(path, data)
