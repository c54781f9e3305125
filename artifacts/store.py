"""The artifact store: any fsspec filesystem (a local directory, file://, s3://, gs://).

Layout under the store root:

    models/<name>/<X.Y.Z>/<arch>/<name>-<X.Y.Z>-<arch>.tar.gz
    models/<name>/<X.Y.Z>/<arch>/<name>-<X.Y.Z>-<arch>.tar.gz.sha256
    models/<name>/<X.Y.Z>/<arch>/manifest.json          (written last: the version exists once it does)
    models/<name>/bleedingedge/<arch>/...                (a channel: may be overwritten)
    index.json, MODELS.md                                (the catalog, regenerated from the above)

Published versions are immutable: a second publish of the same name/version/arch is refused.
S3-compatible endpoints: pass storage options (endpoint_url=...) or set FSSPEC_S3_ENDPOINT_URL.
"""
from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

from artifacts import semver
from zoobuild.digest import sha256_file
from zoobuild.errors import UserError

CHANNELS = ("bleedingedge",)
MANIFEST = "manifest.json"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Store:
    fs: object          # fsspec.AbstractFileSystem
    root: str           # path inside fs, no trailing slash
    url: str

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts) if self.root else posixpath.join(*parts)

    # small helpers that keep fsspec quirks in one place
    def exists(self, *parts) -> bool:
        return self.fs.exists(self.path(*parts))

    def read_bytes(self, *parts) -> bytes:
        with self.fs.open(self.path(*parts), "rb") as f:
            return f.read()

    def read_json(self, *parts) -> dict:
        return json.loads(self.read_bytes(*parts))

    def write_bytes(self, data: bytes, *parts) -> None:
        target = self.path(*parts)
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        with self.fs.open(target, "wb") as f:
            f.write(data)

    def put_file(self, local: Path, *parts) -> None:
        target = self.path(*parts)
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        self.fs.put_file(str(local), target)

    def listdir(self, *parts) -> list[str]:
        p = self.path(*parts)
        try:
            entries = self.fs.ls(p, detail=True)
        except FileNotFoundError:
            return []
        return sorted(posixpath.basename(e["name"].rstrip("/")) for e in entries
                      if e.get("type") == "directory")

    def invalidate(self) -> None:
        inv = getattr(self.fs, "invalidate_cache", None)
        if inv:
            inv()


def open_store(url: str, **storage_options) -> Store:
    """A Store for a URL or a plain local directory (created when missing)."""
    import fsspec

    if not url:
        raise UserError("store: empty URL; expected a directory or a file://, s3:// or gs:// URL")
    if "://" not in url:
        url = Path(url).expanduser().resolve().as_uri()
    try:
        fs, root = fsspec.core.url_to_fs(url, **storage_options)
    except (ImportError, ValueError) as err:
        raise UserError(f"store {url}: {err}") from None
    root = root.rstrip("/")
    from fsspec.implementations.local import LocalFileSystem

    if isinstance(fs, LocalFileSystem):
        fs.makedirs(root, exist_ok=True)
    return Store(fs=fs, root=root, url=url)


def check_name(name: str, what="model name") -> str:
    if not _NAME_RE.match(name or ""):
        raise UserError(f"{what} {name!r}: expected letters, digits, '_', '-', '.'")
    return name


def artifact_dir(name: str, version: str, arch: str) -> tuple[str, ...]:
    return ("models", name, version, arch)


def tarball_name(name: str, version: str, arch: str) -> str:
    return f"{name}-{version}-{arch}.tar.gz"


# ---------------------------------------------------------------- queries

def models(store: Store) -> list[str]:
    return store.listdir("models")


def versions(store: Store, name: str) -> list[str]:
    """Published versions of a model (complete ones: a manifest exists for some arch), oldest first."""
    out = []
    for v in store.listdir("models", name):
        if semver.is_version(v) and any(store.exists(*artifact_dir(name, v, a), MANIFEST)
                                        for a in store.listdir("models", name, v)):
            out.append(v)
    return semver.sort_versions(out)


def archs(store: Store, name: str, version: str) -> list[str]:
    return [a for a in store.listdir("models", name, version)
            if store.exists(*artifact_dir(name, version, a), MANIFEST)]


def manifest(store: Store, name: str, version: str, arch: str) -> dict:
    return store.read_json(*artifact_dir(name, version, arch), MANIFEST)


def any_manifest(store: Store, name: str, version: str) -> dict:
    return manifest(store, name, version, archs(store, name, version)[0])


# ---------------------------------------------------------------- publish

def publish(store: Store, name: str, version: str, arch: str, tarball: Path, manifest_body: dict) -> dict:
    """Upload one artifact; returns the manifest as stored.

    `version` is X.Y.Z[-date] (immutable, checked against the X/Y/Z rules) or a channel
    name (overwritable).  The manifest goes up last, so a reader never sees a version
    whose tarball is missing.
    """
    check_name(name)
    check_name(arch, "arch")
    store.invalidate()
    channel = version in CHANNELS
    rule = f"{name} {version}: channel (overwritable)"
    if not channel:
        new = semver.Version.parse(version)
        if store.exists(*artifact_dir(name, version, arch), MANIFEST):
            raise UserError(f"{name} {version} ({arch}) is already published and versions are immutable; "
                            f"publish a new version or use the bleedingedge channel")
        existing = versions(store, name)
        if version in existing:
            # a new arch of a published version: it must be the same model
            other = any_manifest(store, name, version)
            level, why = semver.required_level(other, manifest_body)
            if level != "patch":
                raise UserError(f"{name} {version}: {why} compared with the published "
                                f"{version} for another arch; publish a new version")
            rule = f"{name} {version}: new arch {arch} of a published version"
        else:
            published = {v: any_manifest(store, name, v) for v in existing}
            rule = semver.check_new_version(name, new, published, manifest_body)

    tarball = Path(tarball)
    fname = tarball_name(name, version, arch)
    digest = sha256_file(tarball)
    body = dict(manifest_body)
    body.update(name=name, version=version, arch=arch, channel=version if channel else None,
                tarball={"file": fname, "sha256": digest, "size": tarball.stat().st_size},
                version_rule=rule)
    where = artifact_dir(name, version, arch)
    if channel and store.exists(*where, MANIFEST):
        # take the old manifest away first so a half-updated channel reads as absent, not mixed
        store.fs.rm(store.path(*where, MANIFEST))
    store.put_file(tarball, *where, fname)
    store.write_bytes(f"{digest}  {fname}\n".encode(), *where, fname + ".sha256")
    store.write_bytes(json.dumps(body, indent=1, sort_keys=True).encode() + b"\n", *where, MANIFEST)
    store.invalidate()
    return body
