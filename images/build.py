"""Build the images of a plan through docker-py, each only when stale.

An image is up to date when an image with its tag exists, carries its key (images/imagekey.py:
computed without an engine, its parent's key chained in) and was built FROM the image its
parent's tag names now (images/inspection.py).  Otherwise it is built from a minimal context:
its Dockerfile, its slice's files and downloads, the wheels of its own requirements (not its
parents') and its model package.  Builds run with network_mode='none'; build/images.json
records tag -> id, key, parent.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from images import imagekey, inspection, keycache, plan as plan_mod
from zoobuild import atomic, digest, keys, paths
from zoobuild.errors import UserError


# --- model packages -----------------------------------------------------------------------

def ensure_package(plan, img, log=print, cache=None) -> Path:
    """Build the model package of img (once per content key; with a shared cache, fetched when
    another machine built that key) and return its path."""
    from images import package
    from zoobuild.produce import produce

    entries = imagekey.package_entries(plan, img)
    key = imagekey.package_key_of(img, entries)
    name = img.slice.package.name
    out = keys.run_dir("packages", name, key)
    path = out / f"{name}.tar.gz"

    def build(tmp):
        package.write(name, entries, tmp / path.name)
        return {"sha256": digest.sha256_file(tmp / path.name), "entries": len(entries)}

    how = produce("packages", key, out, build, cache=cache)
    if how != "done":
        log(f"package {name} ({how}): {path} ({len(entries)} entries)")
    return path


# --- the build context --------------------------------------------------------------------

def _link_or_copy(src: Path, dst: Path):
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def fetch_download(d) -> Path:
    """A spec'd download, cached under build/downloads/<sha256>, checked against its sha256."""
    import hashlib
    import urllib.request

    out = paths.BUILD / "downloads" / d.sha256
    if out.exists():
        return out
    h = hashlib.sha256()
    try:
        # atomic_open renames only when the block ends cleanly: a bad download leaves nothing
        with atomic.atomic_open(out, "wb") as f:
            with urllib.request.urlopen(d.source, timeout=60) as resp:
                while chunk := resp.read(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
            if h.hexdigest() != d.sha256:
                raise UserError(f"{d.where}: downloads.sha256: {d.source} has sha256 {h.hexdigest()}, "
                                f"spec says {d.sha256}")
    except OSError as err:
        raise UserError(f"{d.where}: downloads.source {d.source}: {err}") from None
    return out


def prepare_context(plan, img, dest: Path, log=print) -> dict:
    """Fill dest (a private directory) with exactly what img's Dockerfile uses; return a
    summary of its files."""
    root = plan.spec.root
    (dest / "Dockerfile").write_text(img.dockerfile)
    summary = {"files": [], "wheels": [], "debs": [], "package": None}
    for f in img.slice.files:
        src = root / f.source
        if src.is_dir():
            shutil.copytree(src, dest / f.destination, dirs_exist_ok=True)
        else:
            _link_or_copy(src, dest / f.destination)
        summary["files"].append(f.destination)
    for d in img.slice.downloads:
        _link_or_copy(fetch_download(d), dest / d.destination)
        summary["files"].append(d.destination)
    reqs = plan_mod.image_requirements(plan, img)
    if reqs or img.slice.debs:
        from images import wheelhouse

        source = wheelhouse.wheelhouse_dir()
        index = wheelhouse.read_index(source)
        wh = dest / "wheelhouse"
        wh.mkdir()
        for r in reqs:
            _link_or_copy(source / index["wheels"][r]["file"], wh / index["wheels"][r]["file"])
            summary["wheels"].append(index["wheels"][r]["file"])
        for d in img.slice.debs:
            _link_or_copy(source / index["debs"][d]["file"], wh / index["debs"][d]["file"])
            summary["debs"].append(index["debs"][d]["file"])
        (wh / "requirements.txt").write_text(wheelhouse.requirements_text(reqs, index) if reqs else "")
    if img.slice.package is not None:
        pkg = ensure_package(plan, img, log)
        _link_or_copy(pkg, dest / "packages" / pkg.name)
        summary["package"] = pkg.name
    return summary


# --- the compiled wheel -------------------------------------------------------------------

def installs_selected_wheel(plan, img) -> bool:
    """True when img installs the wheel `doit build_wheel` selected (build/wheels/selected.json):
    the image whose own requirements hold tensorflow-cpu (tf-compiled-base)."""
    from images import wheelhouse

    return wheelhouse.selected_wheel_file().exists() and \
        wheelhouse.TF_NAME in plan_mod.image_requirements(plan, img)


def check_selected_wheel(plan, img, client) -> None:
    """ABI (and ISA) check of the selected compiled wheel against the Python of the image img is
    built FROM, before anything of img is built: a wheel whose tags that Python does not accept
    (a cp35 wheel for a 3.11 image) stops the build with one line."""
    if not installs_selected_wheel(plan, img):
        return
    from images import abi

    try:
        abi.check_selected(client, img.base_image)
    except UserError as err:
        raise UserError(f"{img.tag}: not built: {err}") from None


# --- building -----------------------------------------------------------------------------

def _engine_image(client, ref: str):
    """(id, labels) of ref through docker-py (the client the build talks to), or None."""
    import docker.errors

    try:
        image = client.images.get(ref)
    except docker.errors.ImageNotFound:
        return None
    return image.id, image.labels or {}


def _run_build(client, img, ctx: Path, labels: dict, logdir: Path, nocache: bool, log) -> str | None:
    """docker build of ctx; the log goes to logdir/build.log; returns the image id."""
    image_id, lines = None, []
    with open(logdir / "build.log", "w") as logf:   # a log, read while it grows
        for chunk in client.api.build(path=str(ctx), tag=img.tag, buildargs=img.build_args, labels=labels,
                                      rm=True, forcerm=True, network_mode="none", pull=False, decode=True,
                                      nocache=nocache):
            if "stream" in chunk:
                logf.write(chunk["stream"])
                for line in chunk["stream"].splitlines():
                    if line.strip():
                        lines.append(line)
                        log(f"  {img.name} | {line}")
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
            if "error" in chunk:
                logf.write(chunk["error"])
                raise UserError(f"{img.tag}: docker build failed: {chunk['error'].strip()} "
                                f"(last output: {' / '.join(lines[-3:])}; log {logdir / 'build.log'})")
    return image_id


def build_image(plan, img, client=None, log=print, force=False, nocache=False,
                registry_cache: str | None = None) -> dict:
    """Build img when stale; return {'tag', 'id', 'key', 'built': bool, 'fetched': bool, 'seconds'}.

    registry_cache="host:port" shares images by key through that registry (images/keycache.py):
    a stale image is first pulled under its key, and one built here is pushed under it."""
    from images import engine

    client = client or engine.client()
    if img.parent is None:
        from images.base import ensure_base_image

        ensure_base_image(client, img.base_image, log=log, registry_cache=registry_cache)
    parent = _engine_image(client, img.base_image)
    if parent is None:
        raise UserError(f"{img.tag}: its parent image {img.base_image} does not exist; build it first "
                        f"(`doit images`)")
    from_id = parent[0]
    check_selected_wheel(plan, img, client)
    key = imagekey.image_key(plan, img)
    current = _engine_image(client, img.tag)
    if not force and current is not None and imagekey.carries_key(current[1], key, from_id):
        inspection.record_if_missing(plan, img, current[0], key, from_id)
        return {"tag": img.tag, "id": current[0], "key": key.hex, "built": False, "fetched": False,
                "seconds": 0.0}
    t0 = time.monotonic()
    if registry_cache and not force:
        fetched = keycache.pull_by_key(client, img.tag, key.hex, registry_cache, from_id=from_id, log=log)
        if fetched:
            inspection.record(plan, img, fetched, key, from_id, round(time.monotonic() - t0, 2))
            return {"tag": img.tag, "id": fetched, "key": key.hex, "built": False, "fetched": True,
                    "seconds": time.monotonic() - t0}
    ctx = paths.BUILD / "contexts" / f"{img.name}-{os.getpid()}"
    shutil.rmtree(ctx, ignore_errors=True)
    ctx.mkdir(parents=True)
    logdir = paths.BUILD / "images" / img.name
    logdir.mkdir(parents=True, exist_ok=True)
    try:
        prepare_context(plan, img, ctx, log)
        log(f"building {img.tag} from {img.dockerfile_path} (FROM {img.base_image}; key {key.short})")
        image_id = _run_build(client, img, ctx, imagekey.labels_for(plan, img, key, from_id), logdir,
                              nocache, log)
        image_id = image_id or (_engine_image(client, img.tag) or (None,))[0]
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    seconds = time.monotonic() - t0
    inspection.record(plan, img, image_id, key, from_id, round(seconds, 2))
    log(f"built {img.tag} {image_id[:19] if image_id else ''} in {seconds:.1f}s")
    if registry_cache:
        keycache.push_by_key(client, img.tag, key.hex, registry_cache, log=log)
    return {"tag": img.tag, "id": image_id, "key": key.hex, "built": True, "fetched": False,
            "seconds": seconds}


def build_all(plan, client=None, log=print, only=None, registry_cache: str | None = None) -> list[dict]:
    """Build every image of the plan in parent-first order (`only`: names to build)."""
    from images import engine

    client = client or engine.client()
    return [build_image(plan, img, client, log, registry_cache=registry_cache) for img in plan.images
            if only is None or img.name in only]
