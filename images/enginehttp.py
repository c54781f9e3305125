"""The raw engine HTTP client: one request over the Docker Engine's socket, no docker-py.

docker-py (images/engine.py) costs ~0.3 s to import and connect, too much for the up-to-date
checks of a no-op `doit images`.  An image inspect over the socket costs ~2 ms.  The engine
is looked for where images/engine.py's client() connects: DOCKER_HOST when set, else the
default socket, then the socket of the engine this project starts.

    inspect_image("zoobuild:tf-compiled-base") -> (id, labels) | None (absent) | NO_ENGINE
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse

TIMEOUT_S = 5
NO_ENGINE = type("NoEngine", (), {"__repr__": lambda self: "NO_ENGINE"})()
"""What a request answers when no engine answers on any candidate address."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=TIMEOUT_S):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def candidate_hosts() -> list[str]:
    """Engine addresses in the order images.engine.client() tries them."""
    if os.environ.get("DOCKER_HOST"):
        return [os.environ["DOCKER_HOST"]]
    from images import engine   # no docker-py at its module level: cheap

    return ["unix:///var/run/docker.sock", f"unix://{engine.socket_path()}"]


def _connection(host: str):
    url = urllib.parse.urlparse(host)
    if url.scheme == "unix":
        return _UnixConnection(url.path) if os.path.exists(url.path) else None
    if url.scheme in ("tcp", "http"):
        return http.client.HTTPConnection(url.hostname, url.port or 2375, timeout=TIMEOUT_S)
    return None


def get_json(path: str):
    """(status, decoded body or None) of GET path on the first engine that answers, or NO_ENGINE.

    A 404 is an answer; any other non-200 status moves on to the next candidate."""
    for host in candidate_hosts():
        conn = _connection(host)
        if conn is None:
            continue
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
        except OSError:
            continue
        finally:
            conn.close()
        if resp.status == 404:
            return 404, None
        if resp.status == 200:
            try:
                return 200, json.loads(body)
            except ValueError:
                continue
    return NO_ENGINE


def inspect_image(ref: str):
    """(id, labels) of the image `ref`; None when the engine has no such image; NO_ENGINE."""
    answer = get_json(f"/images/{urllib.parse.quote(ref, safe=':/@')}/json")
    if answer is NO_ENGINE:
        return NO_ENGINE
    status, item = answer
    if status == 404:
        return None
    return item["Id"], (item.get("Config") or {}).get("Labels") or {}
