"""runner=docker: the same stage inside the model image, as the caller, with data
and outputs mounted (checked against a stand-in engine client), and the registry."""
import os

import pytest

from slim import runners
from zoobuild import paths
from zoobuild.errors import UserError


class _Container:
    def __init__(self, status):
        self.status, self.removed = status, False

    def logs(self, stream, follow):
        return iter([b"step 0: loss 1.0\n"])

    def wait(self):
        return {"StatusCode": self.status}

    def remove(self, force):
        self.removed = True


class _Client:
    def __init__(self, status=0, have_image=True):
        self.calls, self.status, self.have = [], status, have_image
        self.images = self
        self.containers = self

    def get(self, tag):
        if not self.have:
            raise LookupError(tag)

    def run(self, image, command, **kw):
        self.calls.append((image, command, kw))
        self.container = _Container(self.status)
        return self.container


@pytest.fixture
def fake_engine(monkeypatch):
    import images.engine

    client = _Client()
    monkeypatch.setattr(images.engine, "client", lambda *a, **k: client)
    return client


def test_docker_runner_runs_slim_cli_in_the_model_image_as_caller(fake_engine, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    work = paths.BUILD / "train" / "vgg_16" / "testrunner"     # under the build dir it mounts
    made = [d for d in (work.parent.parent, work.parent) if not d.exists()]
    job = {"cfg": {"model": "vgg_16"}, "dataset_dir": str(data), "train_dir": str(work)}
    try:
        runners.run("docker", "train", job, work, image="zoobuild/vgg_16:latest")
    finally:
        import shutil
        shutil.rmtree(work, ignore_errors=True)
        for d in reversed(made):                   # and leave no empty directories behind
            d.rmdir()
    (image, command, kw), = fake_engine.calls
    assert image == "zoobuild/vgg_16:latest"
    assert command[:4] == ["python3", "-m", "slim.cli", "train"]
    assert command[-1] == str(work / "job.json")
    assert kw["environment"]["LOCAL_USER_ID"] == str(os.getuid())
    assert kw["environment"]["LOCAL_GROUP_ID"] == str(os.getgid())
    vols = kw["volumes"]
    assert vols[str(data.resolve())] == {"bind": str(data.resolve()), "mode": "ro"}
    assert vols[str(paths.BUILD)]["mode"] == "rw"
    assert vols[str(paths.ROOT)]["mode"] == "ro"
    assert kw["working_dir"] == str(paths.ROOT)
    assert fake_engine.container.removed


def test_docker_runner_failure_and_missing_image_are_one_line(fake_engine, tmp_path):
    job = {"cfg": {"model": "vgg_16"}, "dataset_dir": str(tmp_path), "train_dir": str(tmp_path)}
    fake_engine.status = 3
    with pytest.raises(UserError, match="status 3"):
        runners.run("docker", "eval", job, tmp_path, image="zoobuild/vgg_16:latest")
    fake_engine.have = False
    with pytest.raises(UserError, match="doit images"):
        runners.run("docker", "eval", job, tmp_path, image="zoobuild/vgg_16:latest")
    with pytest.raises(UserError, match="no image tag given"):
        runners.run("docker", "eval", job, tmp_path)


def test_unknown_runner_lists_valid_ones(tmp_path):
    with pytest.raises(UserError, match="local, docker"):
        runners.run("k8s", "train", {}, tmp_path)
