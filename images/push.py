"""Push built images to a registry and record their digests; nothing is pushed unless asked.

    push_image(client, img, 'host:port') -> {'remote': 'host:port/zoobuild:tag', 'digest': 'sha256:...'}

build/push.json records tag -> remote, digest, image id, registry.
"""
from __future__ import annotations

from zoobuild import paths, records
from zoobuild.errors import UserError


def remote_ref(tag: str, registry: str) -> tuple[str, str]:
    repo, _, name = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    return f"{registry}/{repo}", name


def _record(tag: str, entry: dict) -> None:
    records.update_json(paths.BUILD / "push.json", tag, entry)


def read_records() -> dict:
    return records.read_json(paths.BUILD / "push.json")


def is_pushed(tag: str, image_id: str, registry: str) -> bool:
    rec = read_records().get(tag)
    return bool(rec and rec.get("image_id") == image_id and rec.get("registry") == registry)


def push_image(client, img, registry: str, log=print) -> dict:
    import docker.errors

    try:
        image = client.images.get(img.tag)
    except docker.errors.ImageNotFound:
        raise UserError(f"{img.tag}: no such image; build it first (`doit images`)")
    repo, name = remote_ref(img.tag, registry)
    image.tag(repo, name)
    digest = None
    for chunk in client.images.push(repo, name, stream=True, decode=True):
        if "error" in chunk:
            raise UserError(f"push {repo}:{name} failed: {chunk['error'].strip()}")
        aux = chunk.get("aux") or {}
        if "Digest" in aux:
            digest = aux["Digest"]
    if digest is None:
        raise UserError(f"push {repo}:{name}: the registry reported no digest")
    entry = {"remote": f"{repo}:{name}", "digest": digest, "image_id": image.id, "registry": registry}
    _record(img.tag, entry)
    log(f"pushed {img.tag} -> {repo}:{name}@{digest}")
    return entry
