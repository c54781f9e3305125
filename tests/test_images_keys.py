"""Image keys without an engine, chained down the layer graph; the one model -> tag lookup and
the doit wiring's use of specs= and image_args= (no engine)."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT
from images import imagekey, plan as plan_mod, testing
from zoobuild import atomic
from zoobuild.errors import UserError

PREFIX = "zoobuild-keytest:"


@pytest.fixture
def tiny(tmp_path, build_dir):
    return testing.write_tiny_specs(tmp_path / "tiny", n_models=2, prefix=PREFIX)


def _keys(specs, cli=None) -> dict:
    plan = plan_mod.load_plan(specs, cli_args=cli)
    return {img.name: imagekey.image_key(plan, img) for img in plan.images}


def test_image_keys_need_no_engine(tiny, build_dir):
    """In a fresh process whose DOCKER_HOST names nothing: every key of the spec set is computed,
    docker-py is never imported, and an up-to-date check says stale instead of failing."""
    probe = f"""
import json, sys
from images import enginehttp, imagekey, inspection, plan as plan_mod
plan = plan_mod.load_plan({str(tiny)!r})
keys = {{img.name: imagekey.image_key(plan, img).hex for img in plan.images}}
print(json.dumps({{"keys": keys, "docker_imported": "docker" in sys.modules,
                  "engine": repr(enginehttp.inspect_image("anything:latest")),
                  "uptodate": [inspection.is_uptodate(plan, img) for img in plan.images]}}))
"""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "ZOOBUILD_BUILD_DIR": str(build_dir),
           "DOCKER_HOST": f"unix://{build_dir}/no-engine-here.sock"}
    res = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["engine"] == "NO_ENGINE"
    assert out["docker_imported"] is False
    assert out["uptodate"] == [False] * 4
    assert out["keys"] == {name: key.hex for name, key in _keys(tiny).items()}, \
        "the same keys in this process (where an engine may answer) as with no engine at all"


def test_keys_chain_down_the_layer_graph(tiny):
    before = _keys(tiny)
    plan = plan_mod.load_plan(tiny)
    for img in plan.images:
        parent = plan.parent_of(img)
        if parent is None:
            assert "parent" not in before[img.name].inputs
            assert before[img.name].params["from"] == img.base_image
        else:
            assert before[img.name].inputs["parent"] == before[parent.name].hex
    root = tiny.parent
    model = root / "models" / "m01" / "model.py"
    model.write_text(model.read_text() + "# changed\n")
    after_model = _keys(tiny)
    assert [n for n in before if before[n] != after_model[n]] == ["base-cat-m01"], \
        "a model's package change makes only that model image stale"
    partial = root / "partials" / "tiny-category.partial.Dockerfile"
    partial.write_text(partial.read_text() + "RUN echo changed\n")
    after_cat = _keys(tiny)
    assert [n for n in before if after_model[n] != after_cat[n]] == ["base-cat", "base-cat-m00", "base-cat-m01"], \
        "a parent's change reaches every image below it through the chained key"
    other_base = _keys(tiny, {"BASE_IMAGE": "debian:bookworm"})
    assert all(other_base[n] != after_cat[n] for n in after_cat), "another BASE_IMAGE changes every key"


def test_model_image_tag_honours_the_plan(tiny):
    plan = plan_mod.load_plan(tiny)
    assert plan_mod.model_image_tag(plan, "m01") == f"{PREFIX}base-cat-m01"
    other = plan_mod.load_plan(tiny, cli_args="_TAG_PREFIX=elsewhere:")
    assert plan_mod.model_image_tag(other, "m01") == "elsewhere:base-cat-m01"
    # the tiny models have no MODE arg: training; inference first falls back to it
    assert plan_mod.model_image_tag(plan, "m00", mode=("inference", "training")) == f"{PREFIX}base-cat-m00"
    assert plan_mod.model_image_tags(plan, "m00") == [f"{PREFIX}base-cat-m00"]
    assert plan_mod.model_image_tags(plan, "vgg_16") == []
    with pytest.raises(UserError, match=r"no model image for model=vgg_16 .*define m00/None/None, m01/None/None"):
        plan_mod.model_image_tag(plan, "vgg_16")
    with pytest.raises(UserError, match="mode=inference"):
        plan_mod.model_image_tag(plan, "m00", mode="inference")
    shipped = plan_mod.load_plan()
    assert plan_mod.model_image_tags(shipped, "vgg_16") == [
        "zoobuild:tf-compiled-base-image-recognition-vgg-16-fp32-inference",
        "zoobuild:tf-compiled-base-image-recognition-vgg-16-fp32-training"]


@pytest.fixture
def doit_vars(monkeypatch):
    """Set doit's command-line variables (`specs=... image_args=...`) for the tasks/ wiring."""
    from doit import doit_cmd

    def set_vars(**values):
        monkeypatch.setattr(doit_cmd, "_CMDLINE_VARS", dict(values))
    set_vars()
    return set_vars


def test_doit_wiring_looks_tags_up_in_the_users_plan(tiny, doit_vars):
    """tasks.images.model_image_tag(s), which train/eval/export (runner=docker), benchmark
    (bench_runner=docker) and publish (the manifest's image lineage) call, read specs= and
    image_args= and base_image=."""
    from tasks import benchmark, images as image_tasks, publish, train

    assert image_tasks.model_image_tag("vgg_16") == "zoobuild:tf-compiled-base-image-recognition-vgg-16-fp32-training"
    assert benchmark._bench_image("vgg_16") == "zoobuild:tf-compiled-base-image-recognition-vgg-16-fp32-inference"
    doit_vars(specs=str(tiny))
    assert image_tasks.model_image_tag("m01") == f"{PREFIX}base-cat-m01"
    doit_vars(specs=str(tiny), image_args="_TAG_PREFIX=mine:")
    assert image_tasks.model_image_tag("m01") == "mine:base-cat-m01"
    assert train._image("m01", "docker") == "mine:base-cat-m01"
    assert train._image("m01", "local") is None
    assert benchmark._bench_image("m00") == "mine:base-cat-m00"
    assert publish._image_tags("m00") == ["mine:base-cat-m00"]
    with pytest.raises(UserError, match="no model image for model=vgg_16"):
        image_tasks.model_image_tag("vgg_16")
    doit_vars(specs=str(tiny / "nowhere"))
    with pytest.raises(UserError):
        image_tasks.model_image_tag("m01")
    assert publish._image_tags("m01") == [], "a release records no lineage rather than failing"


def _fake_index(plan, build_dir, sha_of) -> None:
    """A wheelhouse index.json naming a digest for every wheel and .deb the plan installs."""
    names = {n for img in plan.images for n in plan_mod.image_requirements(plan, img)}
    debs = {d for img in plan.images for d in img.slice.debs}
    index = {"wheels": {n: {"file": f"{n}.whl", "sha256": sha_of(n)} for n in names},
             "debs": {d: {"file": f"{d}.deb", "sha256": sha_of(d)} for d in debs}}
    atomic.write_json(build_dir / "wheelhouse" / "index.json", index)   # as `doit wheelhouse` does


def test_a_wheel_change_reaches_the_model_images_even_within_one_doit_run(build_dir):
    """The shipped chain: a new tensorflow-cpu wheel in the wheelhouse changes tf-compiled-base's
    key and, chained, every image below it, also for a plan that remembers keys (plan.memo, as
    the doit wiring uses it: `doit wheelhouse` runs in the same process as the image checks)."""
    plan = plan_mod.load_plan()
    plan.memo = {}
    with pytest.raises(UserError, match="run `doit wheelhouse`"):
        imagekey.image_key(plan, plan.by_name["tf-compiled-base"])
    _fake_index(plan, build_dir, lambda n: "a" * 64)
    before = {img.name: imagekey.image_key(plan, img).hex for img in plan.images}
    _fake_index(plan, build_dir, lambda n: "b" * 64 if n == "tensorflow-cpu" else "a" * 64)
    after = {img.name: imagekey.image_key(plan, img).hex for img in plan.images}
    assert all(before[n] != after[n] for n in before), "every image is FROM tf-compiled-base"
    vgg = plan.by_tag[plan_mod.model_image_tag(plan, "vgg_16")]
    assert imagekey.image_key(plan, vgg).inputs["parent"] == after["image-recognition"]
