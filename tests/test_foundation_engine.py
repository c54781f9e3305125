"""The real Docker Engine: the imported base image builds a small image and runs a container."""
import io
import json
import urllib.request

import pytest

from conftest import run_doit

pytestmark = pytest.mark.engine


def test_base_image_is_python_311_with_pip(docker_client, base_image):
    out = docker_client.containers.run(
        base_image, ["python3", "-c", "import sys, pip, venv; print(sys.version_info[:2])"],
        remove=True, network_mode="none")
    assert out.decode().strip() == "(3, 11)"


def test_build_small_image_and_run_container(docker_client, base_image, tmp_path):
    dockerfile = (f"FROM {base_image}\n"
                  "RUN echo 'print(6 * 7)' > /answer.py\n"
                  'CMD ["python3", "/answer.py"]\n')
    image, logs = docker_client.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag="zoobuild-test/answer:1",
                                             rm=True, network_mode="none")
    try:
        assert docker_client.containers.run(image.id, remove=True, network_mode="none").decode().strip() == "42"
    finally:
        docker_client.images.remove(image.id, force=True)


def test_base_image_task_is_idempotent(docker_client, base_image, build_dir):
    first = run_doit(["base_image"])
    second = run_doit(["base_image"])
    assert "-- base_image" in second.stdout, second.stdout  # doit's mark for up to date
    why = run_doit(["why", "base_image"])
    assert "up-to-date" in why.stdout


def test_registry_serves_v2(docker_client, build_dir):
    res = run_doit(["registry"])
    addr = res.stdout.strip().splitlines()[-1].split()[-1]
    with urllib.request.urlopen(f"http://{addr}/v2/_catalog", timeout=5) as r:
        assert "repositories" in json.loads(r.read())


def test_engine_starts_its_own_dockerd_when_none_answers(tmp_path, monkeypatch):
    import os
    import signal
    import time

    from images import engine

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("ZOOBUILD_ENGINE_DIR", str(tmp_path / "engine"))
    real_try = engine._try
    monkeypatch.setattr(engine, "_try", lambda url: real_try(url) if url else None)  # hide a system engine
    cli = engine.client()
    try:
        assert cli.ping()
        assert (tmp_path / "engine" / "data").is_dir()
        assert str(engine.socket_path()) in engine.docker_host()
    finally:
        pid = int((engine._short_dir() / "dockerd.pid").read_text())
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            try:
                os.kill(pid, 0)
                time.sleep(0.1)
            except OSError:
                break


def test_no_engine_and_not_root_says_what_to_do(tmp_path, monkeypatch):
    from images import engine
    from zoobuild.errors import UserError

    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setenv("ZOOBUILD_ENGINE_DIR", str(tmp_path / "engine"))
    monkeypatch.setattr(engine.os, "geteuid", lambda: 1000)
    with pytest.raises(UserError, match="no Docker engine answers: start one"):
        engine.client()
