"""Images shared through a registry by key: the image built under key K is also pushed as
`<registry>/<repo>:<K12>`; another machine whose key for the same image is K pulls it,
checks its `org.zoobuild.key` label, and tags it as the image's own tag instead of building.

A registry that cannot be reached, or holds nothing under the key, is a miss: the image is
built here.  A pulled image whose label disagrees with the key, or that was built FROM a
different parent image than the one here, is named in one line and not used.
"""
from __future__ import annotations

import sys

from images.imagekey import BASE_DIGEST_LABEL, KEY_LABEL


def warn(message: str) -> None:
    print(f"zoobuild: image cache: {message}", file=sys.stderr, flush=True)


def key_ref(tag: str, registry: str, key_hex: str) -> tuple[str, str]:
    """(repository, tag) of an image's key entry in the registry."""
    last = tag.rsplit("/", 1)[-1]
    repo = tag.rpartition(":")[0] if ":" in last else tag
    return f"{registry}/{repo}", key_hex[:12]


def _missing(err) -> bool:
    text = str(err).lower()
    return any(s in text for s in ("not found", "manifest unknown", "does not exist", "404"))


def pull_by_key(client, tag: str, key_hex: str, registry: str, *, label: str = KEY_LABEL,
                from_id: str | None = None, base_label: str = BASE_DIGEST_LABEL, log=print):
    """Pull the key entry of `tag`; on a verified hit tag it as `tag` and return its id."""
    import docker.errors

    repo, ktag = key_ref(tag, registry, key_hex)
    try:
        image = client.images.pull(repo, tag=ktag)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.APIError as err:
        if not _missing(err):
            warn(f"{registry} cannot be reached ({str(err).splitlines()[0][:160]}); building locally")
        return None
    except Exception as err:                    # connection refused, timeouts: never fatal
        warn(f"{registry} cannot be reached ({type(err).__name__}); building locally")
        return None
    labels = image.labels or {}
    problem = None
    if labels.get(label) != key_hex:
        problem = f"carries key {str(labels.get(label))[:12]}, expected {key_hex[:12]}"
    elif from_id is not None and labels.get(base_label) != from_id:
        problem = "was built FROM another parent image than the one here"
    if problem:
        warn(f"{repo}:{ktag} {problem}; ignoring it and building locally")
        try:
            client.images.remove(f"{repo}:{ktag}", noprune=False)
        except docker.errors.APIError:
            pass
        return None
    new_repo, _, new_tag = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    image.tag(new_repo, new_tag)
    try:
        client.images.remove(f"{repo}:{ktag}", noprune=True)     # keep only the image's own tag
    except docker.errors.APIError:
        pass
    log(f"fetched {tag} from {repo}:{ktag}")
    return image.id


def push_by_key(client, tag: str, key_hex: str, registry: str, log=print) -> bool:
    """Push `tag` as its key entry; a registry problem is one warning, never a failure."""
    import docker.errors

    repo, ktag = key_ref(tag, registry, key_hex)
    try:
        image = client.images.get(tag)
        image.tag(repo, ktag)
        for chunk in client.images.push(repo, ktag, stream=True, decode=True):
            if "error" in chunk:
                raise docker.errors.APIError(chunk["error"].strip())
    except Exception as err:
        warn(f"{tag} not shared as {repo}:{ktag} ({str(err).splitlines()[0][:160] if str(err) else type(err).__name__})")
        return False
    finally:
        try:
            client.images.remove(f"{repo}:{ktag}", noprune=True)
        except Exception:
            pass
    log(f"shared {tag} as {repo}:{ktag}")
    return True
