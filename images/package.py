"""Reproducible model packages: `<name>.tar.gz` with one top-level directory `<name>/`.

Entries are sorted, owned by 0:0 with empty owner names, stamped with a fixed mtime, with
modes normalized to 0644 / 0755 (directories and executables); the gzip header carries
mtime 0 and no file name.  Two builds of the same inputs are byte-identical, so the
package's key is the content of what goes in.  A destination that would escape the
top-level directory, and symlinks, are refused.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from zoobuild import atomic
from zoobuild.digest import sha256_file
from zoobuild.errors import UserError

FIXED_MTIME = 315532800  # 1980-01-01, the zip epoch: old enough, never 0 (some tools warn)
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".git", ".ipynb_checkpoints"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class Entry:
    arcname: str          # path inside the package, below the top-level directory
    source: Path | None   # None: a directory
    data: bytes | None = None   # generated content (for example model.json)
    executable: bool = False


def _check_dest(dest: str) -> PurePosixPath:
    p = PurePosixPath(dest)
    if p.is_absolute() or ".." in p.parts or not p.parts or str(p) in (".", ""):
        raise UserError(f"package entry {dest!r} would escape the package directory "
                        "(expected a relative path without '..')")
    return p


def collect(files, root, extra: dict | None = None) -> list[Entry]:
    """files: [(source relative to root, destination in package)] -> sorted entries.

    extra: {destination: bytes} generated files (for example a model.json).
    """
    root = Path(root)
    entries: dict[str, Entry] = {}

    def add_dirs(p: PurePosixPath):
        for parent in reversed(p.parents):
            if str(parent) != ".":
                entries.setdefault(str(parent), Entry(str(parent), None))

    def add_file(src: Path, dest: PurePosixPath):
        if src.is_symlink():
            raise UserError(f"package source {src} is a symlink; packages hold regular files only")
        add_dirs(dest)
        entries[str(dest)] = Entry(str(dest), src, executable=bool(src.stat().st_mode & stat.S_IXUSR))

    for source, dest in files:
        src = root / source
        d = _check_dest(dest)
        if not src.exists():
            raise UserError(f"package source {source!r} does not exist under {root}")
        if src.is_file():
            add_file(src, d)
            continue
        entries.setdefault(str(d), Entry(str(d), None))
        add_dirs(d)
        for dirpath, dirnames, filenames in os.walk(src):
            dirnames[:] = sorted(n for n in dirnames if n not in _SKIP_DIRS and not n.endswith(".egg-info"))
            rel = Path(dirpath).relative_to(src)
            for n in dirnames:
                sub = d / rel.as_posix() / n if str(rel) != "." else d / n
                entries.setdefault(str(sub), Entry(str(sub), None))
            for n in sorted(filenames):
                if n.endswith(_SKIP_SUFFIXES):
                    continue
                target = (d / rel.as_posix() / n) if str(rel) != "." else d / n
                add_file(Path(dirpath) / n, _check_dest(str(target)))
    for dest, data in (extra or {}).items():
        d = _check_dest(dest)
        add_dirs(d)
        entries[str(d)] = Entry(str(d), None, data=data)
    return [entries[k] for k in sorted(entries)]


def content_digest(entries, digest_of=None) -> str:
    """sha256 over (arcname, kind, content digest): the package's content key."""
    from zoobuild.keys import file_digest

    digest_of = digest_of or file_digest
    h = hashlib.sha256()
    for e in entries:
        if e.data is not None:
            body = hashlib.sha256(e.data).hexdigest()
        elif e.source is not None:
            body = digest_of(e.source)
        else:
            body = "dir"
        h.update(f"{e.arcname}\0{body}\0{int(e.executable)}\n".encode())
    return h.hexdigest()


def _info(name: str, kind, size=0, executable=False) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = size
    ti.mtime = FIXED_MTIME
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mode = 0o755 if kind == tarfile.DIRTYPE or executable else 0o644
    return ti


def write(name: str, entries, out_path) -> Path:
    """Write <out_path> (a .tar.gz) atomically; every entry lives under `<name>/`."""
    out_path = Path(out_path)
    with atomic.atomic_open(out_path, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_info(name, tarfile.DIRTYPE))
        for e in entries:
            arc = f"{name}/{e.arcname}"
            if e.data is not None:
                tar.addfile(_info(arc, tarfile.REGTYPE, len(e.data)), io.BytesIO(e.data))
            elif e.source is None:
                tar.addfile(_info(arc, tarfile.DIRTYPE))
            else:
                with open(e.source, "rb") as f:
                    size = os.fstat(f.fileno()).st_size
                    tar.addfile(_info(arc, tarfile.REGTYPE, size, e.executable), f)
    return out_path


def model_json(name: str, args: dict) -> bytes:
    """The package's description of itself, read by its quickstart scripts."""
    body = {"package": name, **{k.lower(): v for k, v in sorted(args.items())
                                if k in ("MODEL_NAME", "PRECISION", "MODE", "CATEGORY")}}
    return (json.dumps(body, indent=1, sort_keys=True) + "\n").encode()


def build(name: str, files, root, out_path, extra=None) -> dict:
    """Collect, write, and return {'path', 'content_key', 'sha256', 'entries'}."""
    entries = collect(files, root, extra)
    path = write(name, entries, out_path)
    sha = sha256_file(path)
    return {"path": str(path), "content_key": content_digest(entries), "sha256": sha,
            "entries": len(entries)}
