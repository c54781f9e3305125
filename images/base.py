"""Make the configured Python base image available, offline if need be.

present (and not an older build of ours) -> nothing; pullable -> pull;
otherwise debootstrap a minimal Debian with python3 and `docker import` it under
the configured tag.  Bookworm's python3 is 3.11, matching cp311 wheels.  The
image carries its key (suite + package list + this file) as a label, so it is
built once per package list.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from zoobuild.errors import UserError

DEFAULT_REF = "python:3.11-slim-bookworm"
DEFAULT_SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# What python:3.11-slim offers that our images use: python3 with pip and venv, CA certificates.
DEFAULT_PACKAGES = ("python3", "python3-pip", "python3-venv", "python-is-python3", "ca-certificates")
KEY_LABEL = "org.zoobuild.base.key"
PULL_TIMEOUT_S = 20

_lock = threading.Lock()


def base_key(suite: str, packages) -> str:
    src = Path(__file__).read_bytes()
    body = json.dumps({"suite": suite, "packages": sorted(packages),
                       "code": hashlib.sha256(src).hexdigest()}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def _present(client, ref: str):
    import docker.errors

    try:
        return client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None


def _pull(client, ref: str) -> bool:
    """Try the registry with a short deadline; offline machines answer no quickly or time out."""
    def attempt(out):
        try:
            repo, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
            client.images.pull(repo, tag=tag)
            out.append(True)
        except Exception:
            out.append(False)

    out: list = []
    t = threading.Thread(target=attempt, args=(out,), daemon=True)
    t.start()
    t.join(PULL_TIMEOUT_S)
    return bool(out and out[0])


def ensure_base_image(client, ref: str = DEFAULT_REF, packages=DEFAULT_PACKAGES,
                      suite: str = DEFAULT_SUITE, mirror: str | None = None,
                      allow_pull: bool = True, log=print, registry_cache: str | None = None) -> str:
    """Make `ref` exist in the engine; return how ('present', 'pulled', 'fetched', 'built').

    registry_cache="host:port": a missing base is first looked up there under its key (so every
    machine's images stand on the same base image id), and one made here is shared there."""
    key = base_key(suite, packages)
    with _lock:
        img = _present(client, ref)
        if img is not None:
            label = (img.labels or {}).get(KEY_LABEL)
            if label is None or label == key:
                return "present"
            log(f"{ref}: built for another package list; rebuilding")
        elif allow_pull and os.environ.get("ZOOBUILD_OFFLINE") != "1" and _pull(client, ref):
            return "pulled"
        from images import keycache

        if registry_cache and keycache.pull_by_key(client, ref, key, registry_cache, label=KEY_LABEL,
                                                   log=log):
            return "fetched"
        _debootstrap_import(client, ref, packages, suite, mirror or _mirror(), key, log)
        if registry_cache:
            keycache.push_by_key(client, ref, key, registry_cache, log=log)
        return "built"


def _mirror() -> str:
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                return line.split()[1]
    return DEFAULT_MIRROR


def _debootstrap_import(client, ref, packages, suite, mirror, key, log) -> None:
    from images.engine import apt_install, engine_dir

    if os.geteuid() != 0:
        raise UserError(f"base image {ref} is missing and cannot be pulled; building it needs root "
                        "(debootstrap): run as root or `docker pull` it on a connected machine")
    if not shutil.which("debootstrap"):
        apt_install("debootstrap")
    work = engine_dir().parent / "base"
    cache = work / "debs"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        log(f"{ref}: debootstrap {suite} ({', '.join(packages)}) from {mirror}")
        res = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
             f"--cache-dir={cache}", suite, str(rootfs), mirror],
            capture_output=True, text=True)
        if res.returncode != 0:
            last = (res.stdout + res.stderr).strip().splitlines()[-1:]
            raise UserError(f"debootstrap of {suite} failed: {last[0] if last else res.returncode}")
        # keep the image lean: package lists and caches are rebuilt by apt when needed
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (rootfs / sub).glob("*.deb" if "archives" in sub else "*"):
                if f.is_file():
                    f.unlink()
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tarball), "."],
                       check=True)
        repo, _, tag = ref.rpartition(":")
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            "ENV PIP_BREAK_SYSTEM_PACKAGES=1",
            f"LABEL {KEY_LABEL}={key}",
            f"LABEL org.zoobuild.base.suite={suite}",
            'CMD ["python3"]',
        ]
        client.api.import_image_from_file(str(tarball), repository=repo, tag=tag, changes=changes)
    log(f"{ref}: imported")
