"""Reproducible tarballs and a safe unpacker.

Packing: sorted entries, mtime 0, uid/gid 0, no user names, gzip header without a
timestamp, so the same files always give the same sha256.
Unpacking: only regular files and directories, every path must stay inside the
destination (no absolute names, no `..`, no links, no devices).
"""
from __future__ import annotations

import gzip
import posixpath
import tarfile
from pathlib import Path

from zoobuild import atomic
from zoobuild.errors import UserError


# weights barely compress: level 1 is as small within a few per cent and several times faster
_LEVEL = 1


def pack(entries: dict[str, Path], out: Path) -> Path:
    """Write `out` (.tar.gz) holding `entries` (archive name -> local file or directory)."""
    files: dict[str, Path] = {}
    for arc, src in entries.items():
        src = Path(src)
        if src.is_dir():
            for p in sorted(src.rglob("*")):
                if p.is_file() and "__pycache__" not in p.parts:
                    files[posixpath.join(arc, p.relative_to(src).as_posix())] = p
        elif src.is_file():
            files[arc] = src
        else:
            raise UserError(f"package: {src} does not exist")
    out = Path(out)
    dirs = sorted({posixpath.dirname(a) for a in files} - {""})
    all_dirs = sorted({d2 for d in dirs for d2 in _parents(d)})
    with atomic.atomic_open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=_LEVEL) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in all_dirs:
            info = tarfile.TarInfo(d + "/")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            _normalise(info)
            tar.addfile(info)
        for arc in sorted(files):
            info = tarfile.TarInfo(arc)
            info.size, info.mode = files[arc].stat().st_size, 0o644
            _normalise(info)
            with open(files[arc], "rb") as f:
                tar.addfile(info, f)
    return out


def _parents(d: str):
    parts = d.split("/")
    for i in range(1, len(parts) + 1):
        yield "/".join(parts[:i])


def _normalise(info: tarfile.TarInfo) -> None:
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""


def _check_member(member: tarfile.TarInfo, dest: Path) -> Path:
    name = member.name
    if not (member.isfile() or member.isdir()):
        raise UserError(f"unpack: {name!r} is a link or special file; only files and directories are allowed")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UserError(f"unpack: {name!r} is an absolute path")
    if ".." in Path(name).parts or "\\" in name:
        raise UserError(f"unpack: {name!r} escapes the destination")
    target = (dest / name).resolve()
    if target != dest and dest not in target.parents:
        raise UserError(f"unpack: {name!r} escapes the destination")
    return target


def safe_unpack(tarball: Path, dest: Path) -> list[str]:
    """Unpack into the (new, empty) directory `dest`; refuse the whole archive on any unsafe member."""
    dest = Path(dest).resolve()
    with tarfile.open(tarball, "r:gz") as tar:
        members = tar.getmembers()
        for m in members:          # check everything before writing anything
            _check_member(m, dest)
        names = []
        for m in members:
            target = _check_member(m, dest)
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            src = tar.extractfile(m)
            with open(target, "wb") as f:
                while chunk := src.read(1 << 20):
                    f.write(chunk)
            names.append(m.name)
    return names


def read_member(tarball: Path, name: str) -> bytes:
    with tarfile.open(tarball, "r:gz") as tar:
        return tar.extractfile(name).read()

