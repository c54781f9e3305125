"""Where the raw ILSVRC2012 files live: a local directory or an fsspec URL, read in place.

`data_dir` is a local directory or an fsspec URL (s3://, gs://, file://, ...).
Nothing is extracted or copied: an image is one positioned read from its tar.
Remote files are read through fsspec's read-ahead cache for header scans (it
turns 512-byte header seeks into large sequential range reads) and without a
cache for image reads (one range request per image).
"""
from __future__ import annotations

import contextlib
import os

from datasets import layout
from zoobuild.errors import UserError

_REMOTE_BLOCK = 16 << 20


def is_url(path) -> bool:
    return "://" in str(path)


class Source:
    """The raw files of one data directory, local or behind fsspec."""

    def __init__(self, data_dir):
        self.data_dir = os.fspath(data_dir) if isinstance(data_dir, os.PathLike) else str(data_dir)
        if is_url(self.data_dir):
            import fsspec

            self.fs, self.root = fsspec.core.url_to_fs(self.data_dir)
            self.root = self.root.rstrip("/")
        else:
            self.fs, self.root = None, os.path.abspath(self.data_dir)

    def path(self, name: str) -> str:
        return f"{self.root}/{name}" if self.fs is not None else os.path.join(self.root, name)

    def exists(self, name: str) -> bool:
        return self.fs.exists(self.path(name)) if self.fs is not None else os.path.isfile(self.path(name))

    def require(self, name: str) -> None:
        if not self.exists(name):
            raise UserError(f"{self.path(name)}: missing; expected the ImageNet file {name} "
                            f"in {self.data_dir}")

    def size(self, name: str) -> int:
        return int(self.fs.size(self.path(name))) if self.fs is not None else os.path.getsize(self.path(name))

    def open(self, name: str, sequential: bool = False):
        if self.fs is not None:
            if sequential:  # header scans: big forward range reads
                return self.fs.open(self.path(name), "rb", block_size=_REMOTE_BLOCK,
                                    cache_type="readahead")
            return self.fs.open(self.path(name), "rb", cache_type="none")  # one range per image
        return open(self.path(name), "rb")

    @contextlib.contextmanager
    def reader(self, name: str):
        """A read(offset, n) function over one raw file: os.pread locally, ranged reads remotely."""
        if self.fs is None:
            fd = os.open(self.path(name), os.O_RDONLY)
            try:
                yield lambda off, n: os.pread(fd, n, off)
            finally:
                os.close(fd)
        else:
            with self.open(name, sequential=True) as f:
                def read(off, n):
                    f.seek(off)
                    return f.read(n)
                yield read

    def stamp(self, name: str) -> dict:
        """Identity of a raw file without reading it (size; mtime or ETag where known)."""
        if self.fs is not None:
            info = self.fs.info(self.path(name))
            return {"size": int(info.get("size") or 0),
                    "etag": str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or "")}
        st = os.stat(self.path(name))
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


# ---------------------------------------------------------------- image reads (worker side)

_OPEN: dict = {}


def image_reader(data_dir: str, name: str):
    """(read(offset, n), prefetch(offset, n)) for one raw file, opened once per process."""
    key = (data_dir, name)
    fns = _OPEN.get(key)
    if fns is None:
        src = Source(data_dir)
        if src.fs is None:
            fd = os.open(src.path(name), os.O_RDONLY)

            def prefetch(off, size):
                # queue every read of a shard at once: the disk sees a deep queue, not QD1
                os.posix_fadvise(fd, off, size, os.POSIX_FADV_WILLNEED)

            fns = (lambda off, size: os.pread(fd, size, off), prefetch)
        else:
            f = src.open(name)

            def read(off, size, f=f):
                f.seek(off)
                return f.read(size)
            fns = (read, lambda off, size: None)
        _OPEN[key] = fns
    return fns


class Prefetcher:
    """Ask the kernel to read the next shards' images while the workers convert these.

    The main process is idle during conversion; a few shards of asynchronous
    readahead (posix_fadvise WILLNEED) keep the disk queue full so workers rarely
    wait on a cold read.  Remote sources are left alone.
    """

    def __init__(self, jobs, data_dir: str):
        self.jobs, self.next, self.fds = jobs, 0, {}
        src = Source(data_dir)
        if src.fs is None and hasattr(os, "posix_fadvise"):
            for name in (layout.TRAIN_TAR, layout.VAL_TAR):
                self.fds[name] = os.open(src.path(name), os.O_RDONLY)

    def advance(self, upto: int) -> None:
        if not self.fds:
            return
        while self.next < min(upto, len(self.jobs)):
            for e in self.jobs[self.next].entries:
                os.posix_fadvise(self.fds[e.source], e.offset, e.size, os.POSIX_FADV_WILLNEED)
            self.next += 1

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
