"""Image references for a cluster: the local tag under `registry=`, pinned by digest when
`doit push` recorded one in build/push.json.

    image_ref("zoobuild:tf-compiled-base", "reg.example:5000")
      -> "reg.example:5000/zoobuild@sha256:..."   (pushed there)
      -> "reg.example:5000/zoobuild:tf-compiled-base"   (not pushed: by tag)
"""
from __future__ import annotations

import re

from zoobuild import paths, records
from zoobuild.errors import UserError

# host[:port]: a DNS name or IPv4 address, optional port; no scheme, path or user.
_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
_REGISTRY = re.compile(rf"^{_HOST}(?::(\d{{1,5}}))?$")


def check_registry(registry: str) -> str:
    """`registry=` must be host[:port]; anything else is one line naming what was wrong."""
    m = _REGISTRY.match(registry or "")
    if not m or (m.group(1) and not 0 < int(m.group(1)) < 65536):
        raise UserError(f"registry={registry!r}: expected host[:port], for example "
                        f"registry.example.com:5000 or 127.0.0.1:5000 (no scheme, no path)")
    return registry


def pushed() -> dict:
    return records.read_json(paths.BUILD / "push.json")


def image_ref(tag: str, registry: str, push_records: dict | None = None) -> str:
    """The reference a cluster pulls for a local tag: by digest when pushed to this registry."""
    repo, _, name = tag.rpartition(":") if ":" in tag.rsplit("/", 1)[-1] else (tag, "", "latest")
    rec = (pushed() if push_records is None else push_records).get(tag) or {}
    if registry and rec.get("registry") == registry and rec.get("digest"):
        return f"{registry}/{repo}@{rec['digest']}"
    return f"{registry}/{repo}:{name}" if registry else f"{repo}:{name}"

