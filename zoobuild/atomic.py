"""Writes that readers never see half-done: a temporary name beside the target, renamed into
place only when complete.  A failure leaves no partial file or directory behind."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path


def _tmp_beside(path: Path) -> Path:
    return path.parent / f".{path.name}.tmp-{os.getpid()}"


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", **kwargs):
    """open() on a temporary name; renamed to `path` when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(path)
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(path, data: bytes) -> Path:
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path, text: str) -> Path:
    with atomic_open(path, "w") as f:
        f.write(text)
    return Path(path)


def write_json(path, obj, indent=1, **kwargs) -> Path:
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=True, default=str, **kwargs))


def copy_file(src, dst) -> Path:
    """Copy src to dst (content and mode) so that dst is either absent, old, or whole."""
    with atomic_open(dst, "wb") as out, open(src, "rb") as f:
        shutil.copyfileobj(f, out, 1 << 20)
    shutil.copymode(src, dst)
    return Path(dst)


@contextlib.contextmanager
def atomic_dir(final):
    """Yield a temporary directory beside `final`; rename it into place on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_beside(final)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
