"""A connected docker-py client, starting a private dockerd when none answers.

Order: DOCKER_HOST (or the default socket) if it answers; else the engine this
project started before (its socket under the engine directory); else, as root on
Debian, install docker.io when missing and start dockerd with its data root under
the build directory.  The engine directory is shared by every build directory
(ZOOBUILD_ENGINE_DIR, default <repo>/build/docker) so tests with their own build
directories reuse one engine and its image cache.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from zoobuild import paths
from zoobuild.errors import UserError

START_TIMEOUT_S = 90


def engine_dir() -> Path:
    return Path(os.environ.get("ZOOBUILD_ENGINE_DIR", paths.ROOT / "build" / "docker")).resolve()


def _short_dir() -> Path:
    """exec-root and socket need short paths (unix sockets are limited to 107 bytes)."""
    tag = hashlib.sha256(str(engine_dir()).encode()).hexdigest()[:8]
    return Path("/run") / f"zoobuild-{tag}" if os.access("/run", os.W_OK) else Path("/tmp") / f"zb-{tag}"


def socket_path() -> Path:
    sock = engine_dir() / "docker.sock"
    return sock if len(str(sock)) < 100 else _short_dir() / "docker.sock"


def _try(base_url: str | None):
    import docker

    try:
        cli = docker.DockerClient(base_url=base_url, timeout=600) if base_url else docker.from_env(timeout=600)
        cli.ping()
        return cli
    except Exception:
        return None


def client(start: bool = True):
    """Return a docker-py client whose engine answers."""
    explicit = os.environ.get("DOCKER_HOST")
    cli = _try(None)
    if cli is not None:
        return cli
    if explicit:
        raise UserError(f"DOCKER_HOST={explicit} does not answer; start that engine or unset DOCKER_HOST")
    ours = f"unix://{socket_path()}"
    cli = _try(ours)
    if cli is not None:
        return cli
    if not start:
        raise UserError(f"no Docker engine answers (default socket, {ours})")
    _start_dockerd()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        cli = _try(ours)
        if cli is not None:
            return cli
        time.sleep(0.5)
    log = engine_dir() / "dockerd.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    raise UserError(f"dockerd did not answer on {ours} within {START_TIMEOUT_S}s; last log line: "
                    f"{tail[0] if tail else '(none)'} (full log: {log})")


def _is_debian() -> bool:
    return Path("/etc/debian_version").exists()


def apt_install(*packages: str) -> None:
    """Install Debian packages that are missing (root on Debian only)."""
    missing = [p for p in packages if subprocess.run(
        ["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True
    ).stdout.strip() != "install ok installed"]
    if not missing:
        return
    if os.geteuid() != 0 or not _is_debian():
        raise UserError(f"missing packages {' '.join(missing)}: install them (needs root on Debian)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lists = Path("/var/lib/apt/lists")
    if not any(lists.glob("*Packages*")):
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
    res = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                         env=env, capture_output=True, text=True)
    if res.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, stdout=subprocess.DEVNULL)
        res = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing],
                             env=env, capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(f"apt-get install {' '.join(missing)} failed: {res.stderr.strip().splitlines()[-1:]}")


def _start_dockerd() -> None:
    if os.geteuid() != 0 or not _is_debian():
        raise UserError("no Docker engine answers: start one (for example `sudo systemctl start docker`) "
                        "or set DOCKER_HOST; zoobuild starts its own only as root on Debian")
    if not shutil.which("dockerd"):
        apt_install("docker.io")
    edir = engine_dir()
    (edir / "data").mkdir(parents=True, exist_ok=True)
    short = _short_dir()
    short.mkdir(parents=True, exist_ok=True)
    sock = socket_path()
    sock.parent.mkdir(parents=True, exist_ok=True)
    pidfile = short / "dockerd.pid"
    if pidfile.exists():
        try:
            os.kill(int(pidfile.read_text()), 0)
            return  # a dockerd of ours is still starting; the caller waits for its socket
        except (ValueError, OSError):
            pidfile.unlink(missing_ok=True)
    cmd = ["dockerd", "--data-root", str(edir / "data"), "--storage-driver=overlay2",
           "--iptables=false", "--ip6tables=false", "--bridge=none",
           "-H", f"unix://{sock}", "--exec-root", str(short / "exec"), "--pidfile", str(pidfile)]
    log = open(edir / "dockerd.log", "ab")
    subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                     close_fds=True)


def docker_host() -> str:
    """The DOCKER_HOST of the engine client() connects to (for the docker CLI and subprocesses)."""
    return os.environ.get("DOCKER_HOST") or (
        f"unix://{socket_path()}" if socket_path().exists() else "unix:///var/run/docker.sock")


# --- the local registry -------------------------------------------------------

REGISTRY_PORT = int(os.environ.get("ZOOBUILD_REGISTRY_PORT", "5000"))


def _registry_answers(addr: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{addr}/v2/", timeout=2) as resp:
            return resp.status == 200
    except Exception:
        return False


def ensure_registry(port: int = REGISTRY_PORT) -> str:
    """Serve Debian's docker-registry on 127.0.0.1:port; return 'host:port'."""
    addr = f"127.0.0.1:{port}"
    if _registry_answers(addr):
        return addr
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", port)) == 0:
            raise UserError(f"port {port} on 127.0.0.1 is taken by something that is not a registry; "
                            "set ZOOBUILD_REGISTRY_PORT")
    if not shutil.which("docker-registry"):
        apt_install("docker-registry")
    rdir = engine_dir().parent / "registry"
    (rdir / "data").mkdir(parents=True, exist_ok=True)
    config = rdir / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {rdir / 'data'}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: {addr}\n"
    )
    log = open(rdir / "registry.log", "ab")
    subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=log,
                     stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if _registry_answers(addr):
            return addr
        time.sleep(0.3)
    raise UserError(f"docker-registry did not answer on {addr} within 30s (log: {rdir / 'registry.log'})")


# --- running a container to completion ------------------------------------------

def run_to_completion(client, image: str, command: list, echo=print, **kwargs) -> tuple[int, list[str]]:
    """Run `command` in a detached container, echo its output line by line, remove the
    container however it ends; return (exit status, output lines)."""
    container = client.containers.run(image, command, detach=True, **kwargs)
    lines: list[str] = []
    pending = b""
    try:
        for chunk in container.logs(stream=True, follow=True):
            *done, pending = (pending + chunk).split(b"\n")
            for raw in done:
                lines.append(raw.decode(errors="replace").rstrip())
                echo(lines[-1])
        if pending:
            lines.append(pending.decode(errors="replace").rstrip())
            echo(lines[-1])
        status = int(container.wait().get("StatusCode", 1))
    finally:
        try:
            container.remove(force=True)
        except Exception:
            pass
    return status, lines
