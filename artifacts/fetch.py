"""Fetch a published model: resolve name + version range, download, verify sha256, unpack safely.

    resolve(store, "vgg_16", "^1.2")      -> "1.4.0"
    fetch(store, "vgg_16", "~1.2.3", dest) -> dest/vgg_16/1.2.5/x86_64/ (unpacked)

A range whose major the store has never published is an error (unsupported major);
an exact version the store does not know, within a known major, warns and falls back
to the newest version of that major.  A checksum mismatch is an error and leaves
nothing behind.
"""
from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

from artifacts import package, semver, store as st
from zoobuild import atomic
from zoobuild.errors import UserError

log = logging.getLogger("zoobuild.fetch")


def resolve(store: st.Store, name: str, spec: str) -> str:
    """The version (or channel) that `spec` picks for model `name`."""
    st.check_name(name)
    store.invalidate()
    if spec in st.CHANNELS:
        if not st.archs(store, name, spec):
            raise UserError(f"{name}: nothing published on channel {spec}")
        return spec
    published = st.versions(store, name)
    if not published:
        known = ", ".join(st.models(store)) or "none"
        raise UserError(f"{name}: no published versions in {store.url} (models there: {known})")
    if spec in ("", "latest"):
        return published[-1]
    rng = semver.parse_range(spec)
    parsed = [semver.Version.parse(v) for v in published]
    majors = sorted({v.major for v in parsed})
    if rng.major not in majors:
        raise UserError(f"{name} {spec}: unsupported major version {rng.major}; "
                        f"published majors: {', '.join(map(str, majors))}")
    hits = [v for v in parsed if rng.matches(v)]
    if hits:
        return str(max(hits))
    same_major = [v for v in parsed if v.major == rng.major]
    if rng.kind == "exact":
        chosen = max(same_major)
        log.warning("%s %s: unknown version; using %s, the newest %d.x", name, spec, chosen, rng.major)
        print(f"zoobuild: warning: {name} {spec}: unknown version; using {chosen}, the newest {rng.major}.x")
        return str(chosen)
    raise UserError(f"{name} {spec}: no published version matches; "
                    f"{rng.major}.x has {', '.join(map(str, sorted(same_major)))}")


def _expected_sha(text: str, fname: str) -> str:
    fields = text.split()
    if not fields or len(fields[0]) != 64:
        raise UserError(f"{fname}.sha256: expected '<64 hex digits>  {fname}'")
    return fields[0].lower()


def fetch(store: st.Store, name: str, spec: str, dest: Path, arch: str | None = None) -> Path:
    """Download, verify and unpack; returns dest/<name>/<version>/<arch>.  Nothing is left on failure."""
    version = resolve(store, name, spec)
    available = st.archs(store, name, version)
    if arch is None:
        import platform
        arch = platform.machine() if platform.machine() in available else available[0]
    if arch not in available:
        raise UserError(f"{name} {version}: no artifact for arch {arch}; available: {', '.join(available)}")
    where = st.artifact_dir(name, version, arch)
    fname = st.tarball_name(name, version, arch)
    final = Path(dest).resolve() / name / version / arch
    if (final / ".fetched.json").exists() and version not in st.CHANNELS:
        return final                       # published versions are immutable
    created = [p for p in (final.parent, *final.parent.parents) if not p.exists()]
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        _download(store, where, fname, final, name, version, arch)
    except BaseException:
        for p in created:                    # deepest first: leave no empty directories behind
            try:
                p.rmdir()
            except OSError:
                break
        raise
    return final


def _download(store, where, fname, final: Path, name: str, version: str, arch: str) -> None:
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{arch}.fetch-") as tmp:
        tmp = Path(tmp)
        local = tmp / fname
        store.fs.get_file(store.path(*where, fname), str(local))
        expected = _expected_sha(store.read_bytes(*where, fname + ".sha256").decode(), fname)
        manifest = st.manifest(store, name, version, arch)
        got = st.sha256_file(local)
        if got != expected or manifest.get("tarball", {}).get("sha256", expected) != expected:
            raise UserError(f"{name} {version} ({arch}): checksum mismatch for {fname}: "
                            f"expected {expected}, got {got}; nothing was unpacked")
        with atomic.atomic_dir(final) as unpacked:     # replaces an earlier fetch whole
            names = package.safe_unpack(local, unpacked)
            (unpacked / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
            (unpacked / ".fetched.json").write_text(json.dumps(
                {"store": store.url, "name": name, "version": version, "arch": arch,
                 "sha256": got, "files": names}, indent=1))
