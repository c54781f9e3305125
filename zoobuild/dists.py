"""The third-party distributions a closure reaches, and their installed versions.

Top-level import names map to distributions through
`importlib.metadata.packages_distributions()`, widened by their `Requires-Dist` closure
(tensorflow-cpu brings protobuf, keras, ml-dtypes...), less NO_EFFECT.  The tables are
read once per state of the `sys.path` folders that hold distributions (installing,
upgrading or removing one adds or removes a *.dist-info folder, which moves its folder's
mtime) and kept in the hash cache's SQLite file, so a no-op run reads no metadata.
"""
from __future__ import annotations

import json
import os
import re
import sys

from zoobuild import keys

# Libraries that only report, draw or coordinate: their version cannot change what a stage
# computes, so upgrading them re-runs nothing.
NO_EFFECT = frozenset({
    "rich", "tqdm", "filelock",  # progress bars and the run lock
    "pygments", "markdown-it-py", "mdurl",  # rich's own rendering
    "matplotlib", "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing",  # the latency chart
    "doit", "cloudpickle",  # the task runner never reaches a stage's result
    "packaging",  # parses version ranges for messages and lookups
    "pip", "setuptools", "wheel",  # install-time tools some distributions list as requirements
})


def versions(top_names) -> dict:
    """dist -> version for the distributions providing `top_names` and what they require."""
    tables = _tables()
    todo = [d for t in top_names for d in tables["top"].get(t, [])]
    found, learned = {}, False
    while todo:
        d = todo.pop()
        if d in found or d not in tables["versions"]:
            continue
        found[d] = tables["versions"][d]
        if d not in tables["requires"]:  # markers are evaluated once, then kept with the tables
            tables["requires"][d] = sorted({r for r in map(_required_name, tables["raw"].get(d, []))
                                            if r})
            learned = True
        todo += tables["requires"][d]
    if learned:
        _store()
    return {d: v for d, v in sorted(found.items()) if d not in NO_EFFECT}


def provides(top: str) -> bool:
    """Whether an installed distribution provides the top-level name `top`."""
    return top in _tables()["top"]


def canonical_name(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def path_stamp() -> str:
    """The sys.path folders that hold distributions, with their mtimes."""
    key = tuple(sys.path)
    folders = _STAMP_DIRS.get(key)
    if folders is None:
        folders = _STAMP_DIRS[key] = [e for e in key if _holds_dists(e)]
    parts = []
    for folder in folders:
        try:
            parts.append(f"{folder}:{os.stat(folder or '.').st_mtime_ns}")
        except OSError:
            parts.append(f"{folder}:-")
    return "\n".join(parts)


def forget() -> None:
    """Drop this process's memos, as a new process starts (the SQLite one stays)."""
    _TABLES.clear()
    _STAMP_DIRS.clear()


def _holds_dists(entry: str) -> bool:
    if os.path.basename(entry) in ("site-packages", "dist-packages"):
        return True
    try:
        return any(n.endswith((".dist-info", ".egg-info")) for n in os.listdir(entry or "."))
    except OSError:
        return False


_STAMP_DIRS: dict = {}
_TABLES: dict = {}


def _db():
    return keys.memo_db("dists (stamp TEXT PRIMARY KEY, body TEXT)")


def _tables() -> dict:
    stamp = path_stamp()
    if _TABLES.get("stamp") == stamp:
        return _TABLES["body"]
    row = _db().execute("SELECT body FROM dists WHERE stamp=?", (stamp,)).fetchone()
    body = json.loads(row[0]) if row else _read_tables()
    _TABLES.clear()
    _TABLES.update(stamp=stamp, body=body)
    if not row:
        _store()
    return body


def _store() -> None:
    _db().execute("INSERT OR REPLACE INTO dists VALUES (?,?)",
                  (_TABLES["stamp"], json.dumps(_TABLES["body"])))


_HEADER = re.compile(r"^(Name|Version|Requires-Dist):\s*(.*?)\s*$", re.M)


def _read_tables() -> dict:
    from importlib import metadata

    top = {t: sorted({canonical_name(d) for d in ds})
           for t, ds in metadata.packages_distributions().items()}
    versions_, raw = {}, {}
    for dist in metadata.distributions():  # the first on sys.path wins, as importing does
        # the header block by hand: email.parser over every METADATA file costs ~1 s
        text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
        head = text.split("\n\n", 1)[0]
        fields: dict = {}
        for field, value in _HEADER.findall(head):
            fields.setdefault(field, []).append(value)
        name = canonical_name((fields.get("Name") or [""])[0])
        if not name or name in versions_:
            continue
        versions_[name] = (fields.get("Version") or [""])[0]
        raw[name] = fields.get("Requires-Dist", [])
    return {"top": top, "versions": versions_, "raw": raw, "requires": {}}


def _required_name(req: str) -> str | None:
    """The distribution a Requires-Dist line needs here (extras and other platforms: None)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # without packaging: skip only what is plainly an extra
        if "extra ==" in req or "extra==" in req:
            return None
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        return canonical_name(m.group(1)) if m else None
    try:
        r = Requirement(req)
    except Exception:  # an unparsable line in someone's metadata: count it as needed
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        return canonical_name(m.group(1)) if m else None
    if r.marker is not None and not r.marker.evaluate({"extra": ""}):
        return None
    return canonical_name(r.name)
