"""Shared fixtures.  Tests that need the Docker Engine carry the `engine` marker and use
the `docker_client` fixture, which starts the project's own engine when none answers."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOIT = [sys.executable, "-m", "doit"]

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def docker_client():
    from images import engine

    return engine.client()


@pytest.fixture(scope="session")
def base_image(docker_client):
    from images import base

    base.ensure_base_image(docker_client)
    return base.DEFAULT_REF


@pytest.fixture
def build_dir(tmp_path, monkeypatch):
    """A private build directory for in-process code and for doit subprocesses."""
    from zoobuild import keys, paths

    bdir = tmp_path / "build"
    bdir.mkdir()
    monkeypatch.setenv("ZOOBUILD_BUILD_DIR", str(bdir))
    monkeypatch.setattr(paths, "BUILD", bdir)
    monkeypatch.setattr(keys, "_CACHE", None)
    return bdir


@pytest.fixture(scope="module")
def module_build(tmp_path_factory):
    """A private build directory for this module (in-process code and doit subprocesses)."""
    from zoobuild import keys, paths

    bdir = tmp_path_factory.mktemp("module") / "build"
    bdir.mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("ZOOBUILD_BUILD_DIR", str(bdir))
    mp.setattr(paths, "BUILD", bdir)
    mp.setattr(keys, "_CACHE", None)
    yield bdir
    mp.undo()


def run_doit(args, cwd=ROOT, env=None, check=True, timeout=1800, dodo=None):
    """Run doit in a subprocess; returns CompletedProcess with text output."""
    cmd = list(DOIT) + (["-f", str(dodo)] if dodo else []) + list(args)
    full_env = dict(os.environ, **(env or {}))
    res = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"doit {' '.join(args)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return res
