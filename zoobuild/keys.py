"""Content keys, the hash cache and the run cache.

A stage's key is sha256 over: the stage name, the code it runs (the import closure of its
entry modules, computed by zoobuild/code.py: repo file -> digest), the versions of the
third-party distributions that code reaches (`libs`), its typed parameters (canonical JSON)
and the content digests of its inputs.  File digests go through a SQLite cache keyed on
(dev, inode, size, mtime_ns), so a no-op run reads no file contents.  Outputs live in a
directory named by the key with a completion marker written last; an earlier parameter set
whose directory is complete is found again and nothing runs.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from dataclasses import dataclass, field
from pathlib import Path

from zoobuild import paths
from zoobuild.atomic import atomic_dir, write_json  # noqa: F401  (stages import atomic_dir from here)
from zoobuild.digest import sha256_file

COMPLETE = ".complete.json"

_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".git"}


class HashCache:
    """sha256 of files, remembered per (dev, inode, size, mtime_ns)."""

    def __init__(self, db_path: Path):
        self.db_path = Path(db_path)
        self._local = threading.local()
        self._seen: dict = {}  # path -> (stamp, sha256) answered in this process

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, dev INTEGER,"
                " ino INTEGER, size INTEGER, mtime_ns INTEGER, sha256 TEXT)"
            )
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def digest(self, path) -> str:
        path = os.path.abspath(path)
        st = os.stat(path)
        stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        seen = self._seen.get(path)  # this process asked already: no SQLite round trip
        if seen is not None and seen[0] == stamp:
            return seen[1]
        conn = self._conn()
        row = conn.execute(
            "SELECT dev, ino, size, mtime_ns, sha256 FROM files WHERE path=?", (path,)
        ).fetchone()
        if row and tuple(row[:4]) == stamp:
            self._seen[path] = (stamp, row[4])
            return row[4]
        self.hashed.append(path)
        if os.environ.get("ZOOBUILD_HASH_LOG"):  # lets benchmarks see reads in subprocesses
            with open(os.environ["ZOOBUILD_HASH_LOG"], "a") as log:
                log.write(path + "\n")
        digest = sha256_file(path)
        conn.execute(
            "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?)", (path, *stamp, digest)
        )
        self._seen[path] = (stamp, digest)
        return digest

    # paths whose contents were actually read by this process (tests and benchmarks look)
    hashed: list = []


_CACHE: HashCache | None = None
_TABLES_MADE: dict = {}


def memo_db(*tables: str) -> sqlite3.Connection:
    """The hash cache's SQLite connection, with `tables` ("name (columns)") created: the other
    memos keyed on file digests (zoobuild/code.py, zoobuild/dists.py) live beside it."""
    conn = hash_cache()._conn()
    made = _TABLES_MADE.setdefault(id(conn), (conn, set()))[1]  # holding conn keeps its id unique
    for table in tables:
        if table not in made:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table}")
            made.add(table)
    return conn


def hash_cache() -> HashCache:
    global _CACHE
    if _CACHE is None or _CACHE.db_path != paths.BUILD / "hashcache.sqlite":
        _CACHE = HashCache(paths.BUILD / "hashcache.sqlite")
    return _CACHE


def file_digest(path) -> str:
    """sha256 of one file's content, through the hash cache."""
    return hash_cache().digest(path)


def _walk(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            yield Path(dirpath) / name


def tree_digest(path, base=None) -> str:
    """sha256 over (relative path, content digest) of every file under path."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if not path.exists():
        raise FileNotFoundError(path)
    base = Path(base) if base else path
    h = hashlib.sha256()
    for f in _walk(path):
        h.update(f"{f.relative_to(base).as_posix()}\0{file_digest(f)}\n".encode())
    return h.hexdigest()


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class Key:
    stage: str
    code: dict = field(default_factory=dict)      # repo file of the closure -> digest
    params: dict = field(default_factory=dict)    # name -> typed value
    inputs: dict = field(default_factory=dict)    # input name -> digest
    libs: dict = field(default_factory=dict)      # distribution -> version (or {"image": key})
    entries: tuple = ()                           # the modules whose closure `code` is

    @property
    def parts(self) -> dict:
        # entries travel with the parts so that a stage can be re-keyed from them elsewhere
        # (make_key(p["stage"], entries=p["entries"], ..., libs=p["libs"]))
        return {"stage": self.stage, "entries": list(self.entries), "code": self.code,
                "params": self.params, "inputs": self.inputs, "libs": self.libs}

    @property
    def hex(self) -> str:
        return hashlib.sha256(canonical(self.parts).encode()).hexdigest()

    @property
    def short(self) -> str:
        return self.hex[:12]


def make_key(stage: str, entries=(), params=None, inputs=None, libs=None) -> Key:
    """The key of one stage run.

    `entries` are the modules the stage runs (dotted names inside the repo, or .py paths);
    the code part is their computed import closure and `libs` the versions of the third-party
    distributions it reaches.  Pass `libs` to say what stands in for those versions instead
    (runner=docker: {"image": <the image's key>}, whose wheels fix them)."""
    from zoobuild import code as code_mod

    closure = code_mod.closure(entries) if entries else code_mod.Closure({}, {})
    return Key(
        stage=stage,
        code=closure.files,
        params=json.loads(canonical(params or {})),
        inputs=dict(sorted((inputs or {}).items())),
        libs=dict(sorted((closure.libs if libs is None else libs).items())),
        entries=tuple(map(str, entries)),
    )


def run_dir(stage: str, name: str, key: Key) -> Path:
    return paths.BUILD / stage / name / key.short


def read_marker(outdir) -> dict | None:
    try:
        return json.loads((Path(outdir) / COMPLETE).read_text())
    except (OSError, ValueError):
        return None


def is_complete(outdir, key: Key | None = None) -> bool:
    marker = read_marker(outdir)
    if marker is None:
        return False
    return key is None or marker.get("key") == key.hex


def mark_complete(outdir, key: Key, extra: dict | None = None) -> None:
    """Write the completion marker; it is the last file written into outdir."""
    outdir = Path(outdir)
    body = {"key": key.hex, "parts": key.parts, **(extra or {})}
    write_json(outdir / COMPLETE, body)


def key_uptodate(key: Key, outdir):
    """A doit `uptodate` entry: up to date when outdir holds a finished run of this key."""
    outdir = Path(outdir)

    def check(task, values):
        return is_complete(outdir, key)

    check.__name__ = f"key:{key.short}"
    return check


_SECTION_WORD = {"code": "code", "params": "param", "inputs": "inputs", "libs": "library"}


def stale_reasons(key: Key, previous: dict | None) -> list[str]:
    """Human lines saying how `key` differs from the parts of an earlier finished run:
    `code slim/convert.py: content changed`, `library tensorflow-cpu: '2.21.0' -> '2.22.0'`,
    `param steps: 10 -> 20`, `inputs dataset: content changed`."""
    if previous is None:
        return ["never completed"]
    old = previous.get("parts", previous)
    reasons = []
    if old.get("stage", key.stage) != key.stage:
        reasons.append(f"stage: {old.get('stage')!r} -> {key.stage!r}")
    if old.get("entries", list(key.entries)) != list(key.entries):
        reasons.append(f"entries: {old.get('entries')} -> {list(key.entries)}")
    for section, word in _SECTION_WORD.items():
        new_s, old_s = key.parts[section], old.get(section, {})
        if section == "libs" and ("image" in new_s) != ("image" in old_s):
            # runner=docker <-> local: one line, not one per distribution
            show = lambda libs: (f"image key {libs['image']!r}" if "image" in libs  # noqa: E731
                                 else f"the installed versions ({len(libs)} distributions)")
            reasons.append(f"library versions: {show(old_s)} -> {show(new_s)}")
            continue
        for name in sorted(set(new_s) | set(old_s)):
            if name not in old_s:
                what = f"added {new_s[name]!r}" if section in ("params", "libs") else "added"
                reasons.append(f"{word} {name}: {what}")
            elif name not in new_s:
                reasons.append(f"{word} {name}: removed")
            elif new_s[name] != old_s[name]:
                if section in ("params", "libs"):
                    reasons.append(f"{word} {name}: {old_s[name]!r} -> {new_s[name]!r}")
                else:
                    reasons.append(f"{word} {name}: content changed")
    return reasons or ["nothing differs (the output directory is missing or incomplete)"]
