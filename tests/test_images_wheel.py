"""The images <-> build_wheel integration: the ABI check before tf-compiled-base is built,
build_wheel ordered before the wheelhouse when a command asks for a wheel, wheel=stock."""
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


def _deps(info: str) -> list[str]:
    lines = info.split("task_dep", 1)[1].splitlines()[1:] if "task_dep" in info else []
    out = []
    for line in lines:
        if not line.strip().startswith("- "):
            break
        out.append(line.strip()[2:])
    return out


def test_wheelhouse_waits_for_build_wheel_only_when_a_wheel_is_asked_for():
    from tasks.images import wheel_requested

    assert not wheel_requested(["images"])
    assert not wheel_requested(["-n", "2", "images", "wheelhouse"])
    assert wheel_requested(["-n", "2", "build_wheel", "images"])
    assert wheel_requested(["build_wheel:zoobuild-native-haswell", "wheelhouse"])
    assert _deps(run_doit(["info", "wheelhouse"], check=False).stdout) == []
    for var in ("wheel=stock", "wheel=compiled", "target=x86-64"):
        assert _deps(run_doit(["info", "wheelhouse", var], check=False).stdout) == ["build_wheel"], var
    # images depend on the wheelhouse, so tf-compiled-base sees build_wheel's result too
    assert "wheelhouse" in _deps(run_doit(["info", "images:tf-compiled-base", "wheel=stock"], check=False).stdout)


def test_wheel_stock_gives_the_pinned_tensorflow_cpu_only(seeded, tmp_path):
    """A compiled wheel is selected; `doit wheelhouse wheel=stock` runs build_wheel:stock first, so
    the wheelhouse and tf-compiled-base's context hold the pinned tensorflow-cpu and no compiled wheel."""
    from images import build, imagekey, plan as plan_mod, testing, wheelbuild, wheelhouse

    _select(seeded, testing.fake_wheel(tmp_path / "zoobuild_native-0.1.0+avx2-cp311-cp311-linux_x86_64.whl"))
    res = run_doit(["wheelhouse", "wheel=stock"])
    assert "build_wheel:stock" in res.stdout + res.stderr
    assert not (seeded / "wheels" / "selected.json").exists()
    index = wheelhouse.read_index(seeded / "wheelhouse")
    assert [n for n, e in index["wheels"].items() if e.get("compiled")] == []
    plan = plan_mod.load_plan()
    base = plan.by_name["tf-compiled-base"]
    wheels = imagekey.context_summary(plan, base)["wheels"]
    pinned = wheelbuild.stock_requirement().split("==")[1]
    assert any(w.startswith(f"tensorflow_cpu-{pinned}-") for w in wheels), wheels
    assert not any(w.startswith("zoobuild_native") for w in wheels)
    text = wheelhouse.requirements_text(plan_mod.image_requirements(plan, base), index)
    assert f"tensorflow-cpu=={pinned} --hash=sha256:" in text and "/wheelhouse/" not in text
    assert not build.installs_selected_wheel(plan, base)


@pytest.mark.engine
def test_abi_mismatch_stops_doit_images_before_anything_is_built(seeded, tmp_path, docker_client, base_image):
    """A cp35 wheel recorded in selected.json: `doit images:tf-compiled-base` (the path of `doit
    images`) fails with one line naming the wheel, its tags and the image's Python; no image is built."""
    import docker.errors

    from images import build, inspection, plan as plan_mod, testing

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
    assert tag not in inspection.read_records()
    # the same wheel with the image's tags passes the check (the check, not the wheel, refused)
    good = testing.fake_wheel(tmp_path / "ok" / "zoobuild_native-0.1.0-cp311-cp311-linux_x86_64.whl")
    _select(seeded, good)
    plan = plan_mod.load_plan(cli_args={"_TAG_PREFIX": ABI_PREFIX})
    build.check_selected_wheel(plan, plan.by_name["tf-compiled-base"], docker_client)
