"""The images <-> build_wheel integration: the ABI check before tf-compiled-base is built,
(more to come)."""
import json
from pathlib import Path

import pytest

from conftest import run_doit

ABI_PREFIX = "zoobuild-abitest:"   # a test tag: never the shipped zoobuild:* ones


def _select(bdir: Path, wheel: Path, dist="zoobuild-native"):
    sel = bdir / "wheels" / "selected.json"
    sel.parent.mkdir(parents=True, exist_ok=True)
    sel.write_text(json.dumps({"wheel": str(wheel), "dist": dist, "replaces": None,
                               "kind": "compiled"}))
    return sel


@pytest.fixture
def seeded(build_dir):
    from images import testing

    testing.seed_wheelhouse(build_dir)
    return build_dir


@pytest.mark.engine
def test_abi_mismatch_stops_doit_images_before_anything_is_built(seeded, tmp_path, docker_client, base_image):
    """A cp35 wheel recorded in selected.json: `doit images:tf-compiled-base` (the path of `doit
    images`) fails with one line naming the wheel, its tags and the image's Python; no image is built."""
    import docker.errors

    from images import build, testing

    tag = f"{ABI_PREFIX}tf-compiled-base"
    try:   # only this test's own tag, left by an earlier (wrong) run
        docker_client.images.remove(tag, noprune=True)
    except docker.errors.ImageNotFound:
        pass
    wheel = testing.fake_wheel(tmp_path / "zoobuild_native-0.1.0-cp35-cp35m-linux_x86_64.whl")
    _select(seeded, wheel)
    res = run_doit(["images:tf-compiled-base", f"image_args=_TAG_PREFIX={ABI_PREFIX}"], check=False)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    lines = [ln for ln in out.splitlines() if ln.startswith("zoobuild: ")]
    assert len(lines) == 1, out
    line = lines[0]
    assert line.startswith(f"zoobuild: {tag}: not built: {wheel.name} is tagged cp35-cp35m-linux_x86_64"), line
    assert "Python 3.11" in line and base_image in line
    assert "building " not in out and "Traceback" not in out
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.images.get(tag)
    assert tag not in build.read_records()
    # the same wheel with the image's tags passes the check (the check, not the wheel, refused)
    good = testing.fake_wheel(tmp_path / "ok" / "zoobuild_native-0.1.0-cp311-cp311-linux_x86_64.whl")
    _select(seeded, good)
    plan = build.load_plan(cli_args={"_TAG_PREFIX": ABI_PREFIX})
    build.check_selected_wheel(plan, plan.by_name["tf-compiled-base"], docker_client)
