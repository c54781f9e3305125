"""The shared cache: finished key directories stored by content, so that a second machine
fetches what the first one built.

Layout under the cache URL (any fsspec filesystem: a directory, file://, s3://, gs://):

    blobs/sha256/<2 hex>/<64 hex>          one file's bytes, named by their sha256
    keys/<stage>/<key hex>.json            the manifest of one finished key directory,
                                           written last: the entry exists once it does

A manifest lists every regular file of the directory (relative path, sha256, size, mode) and
the completion marker's content.  Fetching checks every blob's sha256 before anything lands,
unpacks into a temporary directory beside the target, writes the marker last and renames the
directory into place, so a failure leaves nothing behind.  Paths that are absolute, contain
`..` or name anything but a regular file are refused.  Two machines uploading the same key
write the same blobs (same names, same bytes) and one whole manifest each; whichever lands
last is a valid entry.  A cache that cannot be reached costs one warning line and the build
goes on locally: the cache never fails a build.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import stat
import sys
import time
import uuid
from pathlib import Path, PurePosixPath

from zoobuild.cachestats import STATS, Stats, size as _size  # noqa: F401 (Stats: the summary's type)
from zoobuild.digest import sha256_file
from zoobuild.errors import UserError

MODES = ("readwrite", "read", "off")
FORMAT = 1
MARKER = ".complete.json"
_CHUNK = 1 << 20
_BAR_BYTES = 32 << 20       # transfers this large show progress (they take more than a few seconds)


def warn(message: str) -> None:
    print(f"zoobuild: cache: {message}", file=sys.stderr, flush=True)


class CacheError(Exception):
    """An entry that must not be used (corrupt, truncated, unsafe); named in one line."""


def safe_relpath(name: str) -> str:
    """A manifest path as a safe relative POSIX path, or CacheError."""
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        raise CacheError(f"unsafe path {name!r}")
    p = PurePosixPath(name)
    if p.is_absolute() or any(part in ("..", ".", "") for part in name.split("/")):
        raise CacheError(f"unsafe path {name!r}: expected a relative path inside the entry")
    return p.as_posix()


def file_entry(path: Path, rel: str) -> dict:
    """The manifest entry of one regular file (links and special files are refused)."""
    st = path.lstat()
    if not stat.S_ISREG(st.st_mode):
        raise CacheError(f"{path} is not a regular file; only regular files are cached")
    return {"path": rel, "sha256": sha256_file(path), "size": st.st_size,
            "mode": 0o755 if st.st_mode & 0o111 else 0o644}


def scan_dir(root: Path) -> list[dict]:
    """Every regular file under root (sorted), refusing links and special files."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                raise CacheError(f"{os.path.join(dirpath, name)} is a link; only regular files are cached")
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if rel == MARKER or name.startswith(f".{MARKER}.tmp"):
                continue
            entries.append(file_entry(path, rel))
    return entries


class Cache:
    def __init__(self, url: str, mode: str = "readwrite", storage_options: dict | None = None):
        if mode not in MODES:
            raise UserError(f"cache_mode={mode!r}: expected one of {', '.join(MODES)}")
        self.url, self.mode = url, mode
        self.storage_options = dict(storage_options or {})
        self._fs = None
        self._root = None
        self.unreachable = False
        self.bad_blobs: set[str] = set()     # seen corrupt here: the next upload overwrites them

    # ---------------------------------------------------------------- the filesystem
    def _open(self):
        if self._fs is None:
            import fsspec

            url = self.url if "://" in self.url else Path(self.url).expanduser().resolve().as_uri()
            try:
                self._fs, root = fsspec.core.url_to_fs(url, **self.storage_options)
            except (ImportError, ValueError) as err:
                raise UserError(f"cache={self.url}: {err}") from None
            self._root = root.rstrip("/")
        return self._fs

    def _path(self, *parts) -> str:
        self._open()
        return posixpath.join(self._root, *parts) if self._root else posixpath.join(*parts)

    def blob_path(self, sha: str) -> str:
        return self._path("blobs", "sha256", sha[:2], sha)

    def manifest_path(self, stage: str, key_hex: str) -> str:
        return self._path("keys", stage, f"{key_hex}.json")

    def _unreachable(self, err) -> None:
        if not self.unreachable:
            warn(f"{self.url} cannot be reached ({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}); building locally")
        self.unreachable = True

    # ---------------------------------------------------------------- reading
    def read_manifest(self, stage: str, key_hex: str) -> dict | None:
        """The manifest of a key, None when absent; CacheError when it is not a whole manifest."""
        fs = self._open()
        path = self.manifest_path(stage, key_hex)
        try:
            with fs.open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        try:
            manifest = json.loads(raw)
        except ValueError:
            raise CacheError(f"manifest {path} is truncated or not JSON") from None
        if (not isinstance(manifest, dict) or manifest.get("format") != FORMAT
                or manifest.get("key") != key_hex or not isinstance(manifest.get("files"), list)
                or not isinstance(manifest.get("marker"), str)
                or _marker_key(manifest["marker"]) != key_hex):
            raise CacheError(f"manifest {path} is not a zoobuild manifest for key {key_hex[:12]}")
        for entry in manifest["files"]:
            if not isinstance(entry, dict) or set(entry) != {"path", "sha256", "size", "mode"}:
                raise CacheError(f"manifest {path}: malformed file entry {entry!r}")
            safe_relpath(entry["path"])
            if not (isinstance(entry["sha256"], str) and len(entry["sha256"]) == 64):
                raise CacheError(f"manifest {path}: bad sha256 for {entry['path']}")
        return manifest

    def lookup(self, stage: str, key_hex: str) -> str:
        """For `doit why`: one phrase saying whether the key is in the cache."""
        if self.mode == "off":
            return "cache off"
        try:
            manifest = self.read_manifest(stage, key_hex)
        except CacheError as err:
            return f"in cache but unusable ({err})"
        except Exception as err:            # unreachable: never fails the caller
            return f"cache {self.url} cannot be reached ({type(err).__name__})"
        if manifest is None:
            return f"not in cache {self.url}"
        size = sum(e["size"] for e in manifest["files"])
        return (f"cached: fetched from {self.url} by the next run ({len(manifest['files'])} files, "
                f"{_size(size)})")

    def fetch(self, stage: str, key_hex: str, outdir, partial: bool = False) -> bool:
        """On a hit: download, verify and unpack into outdir, marker last; True.  On a miss, an
        unusable entry or an unreachable cache: False, and outdir is left as it was.

        partial=True fetches a run shared part-way (`upload(..., partial=True)`): its files, no
        completion marker, so the stage resumes from them."""
        if self.mode == "off" or self.unreachable:
            return False
        outdir = Path(outdir)
        stage = f"{stage}.partial" if partial else stage
        def fetch():
            manifest = self.read_manifest(stage, key_hex)
            return None if manifest is None else self._unpack(manifest, outdir)

        moved = self._guarded(fetch, f"{stage} {key_hex[:12]}: {{}}; ignoring the entry and building locally")
        if moved is None:
            return False
        STATS.note("fetched", f"{stage}/{key_hex[:12]}", moved)
        return True

    def _guarded(self, fn, bad_entry: str):
        """fn()'s result; None after a cache problem: an unusable entry is one line (bad_entry
        formatted with it), an unreachable cache one warning for the whole run."""
        try:
            return fn()
        except CacheError as err:
            warn(bad_entry.format(err))
        except UserError:
            raise
        except Exception as err:
            self._unreachable(err)
        return None

    def _unpack(self, manifest: dict, outdir: Path) -> int:
        from zoobuild.progress import progress

        outdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = outdir.parent / f".{outdir.name}.fetch-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        total = sum(e["size"] for e in manifest["files"])
        moved = 0
        tmp.mkdir()
        try:
            bar = progress(f"fetch {manifest['stage']} {manifest['key'][:12]}", total=total,
                           unit="B") if total >= _BAR_BYTES else None
            with bar if bar is not None else _nothing() as meter:
                for entry in manifest["files"]:
                    dest = tmp / safe_relpath(entry["path"])
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    moved += self._download(entry, dest, meter)
            if not manifest.get("partial"):
                (tmp / MARKER).write_text(manifest["marker"])
            if outdir.exists():
                shutil.rmtree(outdir)
            os.replace(tmp, outdir)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return moved

    def _download(self, entry: dict, dest: Path, meter=None) -> int:
        """Copy one blob to dest, checking its sha256 on the way; the bytes moved.  A blob whose
        bytes do not match its name is CacheError (and dropped from the store)."""
        rel = entry["path"]
        h = hashlib.sha256()
        moved = 0
        try:
            with self._open().open(self.blob_path(entry["sha256"]), "rb") as src, open(dest, "wb") as out:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    moved += len(chunk)
                    if meter is not None:
                        meter.advance(len(chunk))
        except FileNotFoundError:
            raise CacheError(f"blob {entry['sha256'][:12]} of {rel} is missing") from None
        if h.hexdigest() != entry["sha256"]:
            self.bad_blobs.add(entry["sha256"])
            self._drop_blob(entry["sha256"])
            raise CacheError(f"blob {entry['sha256'][:12]} of {rel} is corrupt "
                             f"(sha256 {h.hexdigest()[:12]})")
        os.chmod(dest, 0o755 if entry["mode"] & 0o111 else 0o644)
        return moved

    def _drop_blob(self, sha: str) -> None:
        """Remove a blob whose bytes do not match its name (readwrite only): no later reader
        trips over it, and the rebuild that follows stores good bytes again."""
        if self.mode != "readwrite":
            return
        try:
            self._open().rm(self.blob_path(sha))
        except Exception:
            pass

    def fetch_files(self, stage: str, key_hex: str, root) -> bool:
        """Fetch a file-set entry (`upload_files`) into the directory root, beside what is there.
        Every file is downloaded and verified under a temporary name first, then all are
        renamed into place in the entry's order (the last one is the part's own "finished"
        record), so a failure leaves root as it was.  False on a miss or a cache problem."""
        if self.mode == "off" or self.unreachable:
            return False
        root = Path(root)

        def fetch():
            manifest = self.read_manifest(stage, key_hex)
            if manifest is None:
                return None
            done, moved = [], 0
            try:
                for entry in manifest["files"]:
                    dest = root / safe_relpath(entry["path"])
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dest.parent / f".{dest.name}.fetch-{os.getpid()}-{uuid.uuid4().hex[:6]}"
                    done.append((tmp, dest))
                    moved += self._download(entry, tmp)
            except BaseException:
                for tmp, _ in done:
                    tmp.unlink(missing_ok=True)
                raise
            for tmp, dest in done:
                os.replace(tmp, dest)
            return moved

        moved = self._guarded(fetch, f"{stage} {key_hex[:12]}: {{}}; ignoring the entry and building locally")
        if moved is None:
            return False
        STATS.note("parts_fetched", f"{stage}/{key_hex[:12]}", moved)
        return True

    # ---------------------------------------------------------------- writing
    def upload_files(self, stage: str, key_hex: str, root, relpaths) -> bool:
        """Share some files of a directory as one entry (a part of a stage's output, such as one
        TFRecord shard and its manifest), in the given order; blobs first, the manifest last."""
        if self.mode != "readwrite" or self.unreachable:
            return False
        root = Path(root)
        return self._store(stage, key_hex, root, lambda: [file_entry(root / safe_relpath(r), r) for r in relpaths],
                           json.dumps({"key": key_hex}), partial=True, event="parts_uploaded")

    def upload(self, stage: str, key_hex: str, srcdir, partial: bool = False) -> bool:
        """Store a finished key directory: blobs first, the manifest last.  Never raises for a
        cache problem (one warning line); True when the entry is in the cache afterwards.

        partial=True shares an unfinished directory (a training run stopped part-way) under
        `<stage>.partial`, so that another machine resumes it instead of starting over."""
        if self.mode != "readwrite" or self.unreachable:
            return False
        srcdir = Path(srcdir)
        if partial:
            if not srcdir.is_dir():
                return False
            stage, marker = f"{stage}.partial", json.dumps({"key": key_hex, "partial": True})
        else:
            try:
                marker = (srcdir / MARKER).read_text()
            except OSError:
                return False                    # not a finished directory: nothing to share
            if _marker_key(marker) != key_hex:
                return False
        return self._store(stage, key_hex, srcdir, lambda: scan_dir(srcdir), marker, partial=partial)

    def _store(self, stage, key_hex, root: Path, list_files, marker: str, *, partial: bool,
               event: str = "uploaded") -> bool:
        """Blobs of list_files() (read from root), then the manifest; one warning on a problem."""
        def upload():
            files = list_files()
            moved = self._put_blobs(stage, key_hex, root, files, show=event == "uploaded")
            manifest = {"format": FORMAT, "stage": stage, "key": key_hex, "files": files,
                        "marker": marker, "partial": partial,
                        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            self._put_bytes(json.dumps(manifest, indent=1, sort_keys=True).encode(),
                            self.manifest_path(stage, key_hex))
            return moved

        moved = self._guarded(upload, f"{stage} {key_hex[:12]}: not uploaded: {{}}")
        if moved is None:
            return False
        STATS.note(event, f"{stage}/{key_hex[:12]}", moved)
        return True

    def _put_blobs(self, stage, key_hex, srcdir: Path, files: list[dict], show: bool = True) -> int:
        from zoobuild.progress import progress

        fs = self._open()
        todo = []
        for entry in files:
            target = self.blob_path(entry["sha256"])
            if entry["sha256"] in self.bad_blobs or not fs.exists(target):
                todo.append(entry)
        total = sum(e["size"] for e in todo)
        bar = progress(f"upload {stage} {key_hex[:12]}", total=total, unit="B") \
            if show and total >= _BAR_BYTES else None
        moved = 0
        with bar if bar is not None else _nothing() as meter:
            for entry in todo:
                self._put_file(srcdir / entry["path"], self.blob_path(entry["sha256"]))
                self.bad_blobs.discard(entry["sha256"])
                moved += entry["size"]
                if meter is not None:
                    meter.advance(entry["size"])
        return moved

    def _put_file(self, local: Path, target: str) -> None:
        """Write under a unique temporary name, then move into place: a reader never sees a
        partial object (object stores make each put whole anyway)."""
        fs = self._open()
        fs.makedirs(posixpath.dirname(target), exist_ok=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex[:12]}"
        fs.put_file(str(local), tmp)
        fs.mv(tmp, target)

    def _put_bytes(self, data: bytes, target: str) -> None:
        fs = self._open()
        fs.makedirs(posixpath.dirname(target), exist_ok=True)
        tmp = f"{target}.tmp-{uuid.uuid4().hex[:12]}"
        with fs.open(tmp, "wb") as f:
            f.write(data)
        fs.mv(tmp, target)


def _marker_key(text: str):
    try:
        body = json.loads(text)
    except ValueError:
        return None
    return body.get("key") if isinstance(body, dict) else None


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_OPEN: dict = {}


def open_cache(url: str, mode: str = "readwrite", storage_options: dict | None = None) -> Cache | None:
    """The Cache for a URL (one per process and settings), or None when there is none to use."""
    if mode not in MODES:
        raise UserError(f"cache_mode={mode!r}: expected one of {', '.join(MODES)}")
    if not url or mode == "off":
        return None
    sig = (url, mode, json.dumps(storage_options or {}, sort_keys=True, default=str))
    if sig not in _OPEN:
        _OPEN[sig] = Cache(url, mode, storage_options)
    return _OPEN[sig]
