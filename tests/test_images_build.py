"""Images on the real engine: the tiny chain (staleness, labels, records, push) and the real
tf-compiled-base -> image-recognition -> model chain through `doit -n 2 images`."""
import json
import os
import shutil
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, run_doit

pytestmark = [pytest.mark.engine]

TEST_PREFIX = "zoobuild-test:"   # never clobber the user's zoobuild:* images


# --- the tiny chain -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(module_build, tmp_path_factory, docker_client, base_image):
    from images import build, plan as plan_mod, testing

    root = tmp_path_factory.mktemp("tiny")
    specs = testing.write_tiny_specs(root, n_models=3, prefix="zoobuild-tiny-test:")
    plan = plan_mod.load_plan(specs)
    results = build.build_all(plan, docker_client, log=lambda *a: None)
    return {"root": root, "specs": specs, "plan": plan, "first": results}


def _rebuilt(plan, client):
    from images import build

    return [r["tag"] for r in build.build_all(plan, client, log=lambda *a: None) if r["built"]]


def test_tiny_chain_layers_labels_and_records(tiny, docker_client):
    from images import imagekey, inspection

    plan = tiny["plan"]
    records = inspection.read_records()
    assert len(plan.images) == 5
    for img in plan.images:
        image = docker_client.images.get(img.tag)
        labels = image.labels
        rec = records[img.tag]
        assert labels[imagekey.KEY_LABEL] == rec["key"] == imagekey.image_key(plan, img).hex
        assert rec["id"] == image.id and rec["parent"] == img.parent
        assert labels["org.opencontainers.image.revision"]
        assert labels["org.opencontainers.image.base.name"] == img.base_image
        assert labels["org.zoobuild.spec"] == "specs/tiny_spec.yml"
        assert labels["org.zoobuild.partials"] == ",".join(img.slice.partials)
        if img.parent:
            parent = docker_client.images.get(img.parent)
            assert labels["org.opencontainers.image.base.digest"] == parent.id
            # a real layer graph: the child's layers start with all of its parent's layers
            assert image.attrs["RootFS"]["Layers"][:len(parent.attrs["RootFS"]["Layers"])] == \
                parent.attrs["RootFS"]["Layers"]
    assert all(r["built"] or r["tag"] for r in tiny["first"])
    assert _rebuilt(plan, docker_client) == [], "a second run builds nothing"


def test_minimal_context_and_package_inside(tiny, docker_client):
    from images import inspection

    rec = inspection.read_records()["zoobuild-tiny-test:base-cat-m01"]
    assert rec["context"] == {"files": [], "wheels": [], "debs": [], "package": "m01-fp32-training.tar.gz"}
    out = docker_client.containers.run("zoobuild-tiny-test:base-cat-m01",
                                       ["sh", "-c", "pwd; cat model/model.py; cat /category.txt"],
                                       network_mode="none", remove=True).decode()
    assert out.split() == ["/workspace/m01-fp32-training", "NAME", "=", "'m01'", "tiny-category"]


def test_touching_one_package_rebuilds_that_image_alone(tiny, docker_client):
    plan, root = tiny["plan"], tiny["root"]
    model = root / "models" / "m02" / "model.py"
    os.utime(model)  # a new mtime with the same content changes nothing
    assert _rebuilt(plan, docker_client) == []
    model.write_text(model.read_text() + "# changed\n")
    assert _rebuilt(plan, docker_client) == ["zoobuild-tiny-test:base-cat-m02"]


def test_a_parent_change_makes_its_children_stale(tiny, docker_client):
    from images import plan as plan_mod

    root = tiny["root"]
    partial = root / "partials" / "tiny-category.partial.Dockerfile"
    partial.write_text(partial.read_text() + "RUN echo changed > /changed.txt\n")
    plan = plan_mod.load_plan(tiny["specs"])
    rebuilt = _rebuilt(plan, docker_client)
    assert rebuilt == ["zoobuild-tiny-test:base-cat"] + [f"zoobuild-tiny-test:base-cat-m0{i}" for i in range(3)]
    tiny["plan"] = plan


def test_image_tests_run_without_network(tiny, docker_client):
    from images import imagetest
    from images.spec import TestSpec, Where

    plan = tiny["plan"]
    img = plan.by_tag["zoobuild-tiny-test:base-cat-m00"]
    body = imagetest.run_tests(img, docker_client)
    assert [t["name"] for t in body["tests"]] == ["hello", "package"]
    assert all(t["rc"] == 0 for t in body["tests"])
    probe = TestSpec("net", "python3 -c \"import socket; socket.create_connection(('1.1.1.1', 53), 2)\"",
                     False, None, Where("x", 1))
    assert imagetest.run_one(docker_client, img, probe, 0, 0, log=lambda *a: None)["rc"] != 0, \
        "containers of image tests have no network"


def test_push_to_the_local_registry_records_digests(tiny, docker_client):
    from images import engine, push

    registry = engine.ensure_registry()
    img = tiny["plan"].by_tag["zoobuild-tiny-test:base-cat-m00"]
    entry = push.push_image(docker_client, img, registry, log=lambda *a: None)
    assert entry["digest"].startswith("sha256:")
    assert push.read_records()[img.tag]["digest"] == entry["digest"]
    req = urllib.request.Request(f"http://{registry}/v2/zoobuild-tiny-test/manifests/base-cat-m00",
                                 method="HEAD", headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Docker-Content-Digest"] == entry["digest"]


# --- the real chain through doit ----------------------------------------------------------

@pytest.fixture(scope="module")
def real_chain(module_build, docker_client, base_image):
    """`doit -n 2 images` of the shipped specs from an empty build directory (the wheelhouse is
    seeded from the repository's when it has one, to spare the download)."""
    seed = ROOT / "build" / "wheelhouse"
    if (seed / "index.json").exists():
        dest = module_build / "wheelhouse"
        dest.mkdir(exist_ok=True)
        for f in seed.iterdir():
            if f.is_file() and (f.suffix in (".whl", ".deb")):
                try:
                    os.link(f, dest / f.name)
                except OSError:
                    shutil.copy2(f, dest / f.name)
    args = [f"image_args=_TAG_PREFIX={TEST_PREFIX}"]
    first = run_doit(["-n", "2", "images", *args], env={"ZOOBUILD_BUILD_DIR": str(module_build)})
    return {"args": args, "first": first}


@pytest.mark.slow
def test_doit_images_builds_the_chain_then_nothing(real_chain, module_build, docker_client):
    from images import inspection, plan as plan_mod

    plan = plan_mod.load_plan(cli_args={"_TAG_PREFIX": TEST_PREFIX})
    records = inspection.read_records()
    assert len(plan.images) >= 8
    for img in plan.images:   # each image exists under its tag and carries its current key
        assert inspection.is_uptodate(plan, img), img.tag
        assert records[img.tag]["id"] == docker_client.images.get(img.tag).id
        assert records[img.tag]["parent"] == img.parent
    second = run_doit(["images", *real_chain["args"]], env={"ZOOBUILD_BUILD_DIR": str(module_build)})
    assert "building " not in second.stdout and second.stdout.count("-- images:") >= 8, second.stdout


@pytest.mark.slow
def test_real_model_image_passes_its_tests_as_a_non_root_caller(real_chain, module_build, docker_client):
    from images import imagetest, plan as plan_mod

    plan = plan_mod.load_plan(cli_args={"_TAG_PREFIX": TEST_PREFIX})
    img = plan.by_tag[plan_mod.model_image_tag(plan, "vgg_16", "fp32", "training")]
    names = [t.name for t in img.tests]
    assert names[:2] == ["import-tf", "runs-as-caller"] and "train-two-steps" in names
    body = imagetest.run_tests(img, docker_client, uid=4321, gid=4322)
    assert all(t["rc"] == 0 for t in body["tests"]), body
    for name in ("runs-as-caller", "train-two-steps"):
        result = next(t for t in body["tests"] if t["name"] == name)
        assert result["files_owned_by"] == [[4321, 4322]], result
    train = next(t for t in body["tests"] if t["name"] == "train-two-steps")
    assert "model.ckpt-2.index" in train["output_tail"], "two steps trained and checkpointed"
    res = run_doit(["image_tests:vgg-16-fp32-inference", *real_chain["args"]],
                   env={"ZOOBUILD_BUILD_DIR": str(module_build)})
    assert "test import-tf: ok" in res.stdout


@pytest.mark.slow
def test_init_spec_model_builds_as_generated(real_chain, module_build, docker_client, tmp_path):
    from images import build, imagetest, initspec, plan as plan_mod

    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "specs", specs)
    initspec.init_spec("alexnet_v2", "image-recognition", ["fp32"], ["inference"], spec_dir=specs, root=ROOT)
    plan = plan_mod.load_plan(specs, root=ROOT, cli_args={"_TAG_PREFIX": TEST_PREFIX})
    img = plan.by_tag[plan_mod.model_image_tag(plan, "alexnet_v2", "fp32", "inference")]
    res = build.build_image(plan, img, docker_client, log=lambda *a: None)
    assert res["built"]
    body = imagetest.run_tests(img, docker_client, only=["package-fp32-inference"])
    assert body["tests"][0]["rc"] == 0


# --- `doit push` itself, against the local registry ---------------------------------------

PUSH_PREFIX = "zoobuild-pushtest:"


def _manifest_digest(registry: str, tag: str) -> str:
    repo, _, name = tag.rpartition(":")
    accept = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json",
                        "application/vnd.oci.image.index.v1+json"])
    req = urllib.request.Request(f"http://{registry}/v2/{repo}/manifests/{name}", method="HEAD",
                                 headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return resp.headers["Docker-Content-Digest"]


def test_doit_push_to_the_local_registry_records_the_registry_digests(build_dir, tmp_path, docker_client,
                                                                     base_image):
    """`doit push` of the tiny spec set (its images built and tested on the way) to the local
    registry (the default: images.engine.ensure_registry()); build/push.json's digests are the
    registry's manifest digests."""
    from images import engine, plan as plan_mod, push, testing

    registry = engine.ensure_registry()
    specs = testing.write_tiny_specs(tmp_path / "tiny", n_models=1, prefix=PUSH_PREFIX)
    res = run_doit(["push", f"specs={specs}"])
    plan = plan_mod.load_plan(specs)
    tags = [img.tag for img in plan.images if img.upload]
    assert tags == [f"{PUSH_PREFIX}base", f"{PUSH_PREFIX}base-cat", f"{PUSH_PREFIX}base-cat-m00"]
    records = push.read_records()
    assert sorted(records) == sorted(tags), res.stdout
    for tag in tags:
        rec = records[tag]
        assert rec["registry"] == registry and rec["image_id"] == docker_client.images.get(tag).id
        assert rec["digest"].startswith("sha256:")
        assert _manifest_digest(registry, tag) == rec["digest"], tag
        assert f"pushed {tag} -> {registry}/" in res.stdout


@pytest.mark.slow
def test_doit_train_eval_with_runner_docker_in_the_model_image(real_chain, module_build, docker_client):
    """`doit train/eval runner=docker`: the same stage inside the real model image, data and
    outputs mounted, the files it writes owned by the caller."""
    import json
    import os

    env = {"ZOOBUILD_BUILD_DIR": str(module_build)}
    common = ["model=resnet_v1_50", "runner=docker", "steps=2", "batch_size=2", "eval_batch_size=4",
              "train_image_size=64", "eval_image_size=64", *real_chain["args"]]
    res = run_doit(["train", "eval", *common], env=env)
    assert ".  train:resnet_v1_50" in res.stdout and ".  eval:resnet_v1_50" in res.stdout, res.stdout
    runs = [d for d in (module_build / "train" / "resnet_v1_50").iterdir() if (d / ".complete.json").exists()]
    assert len(runs) == 1
    run = runs[0]
    assert (run / "checkpoint").exists() and list(run.glob("model.ckpt-2.*"))
    st = (run / "checkpoint").stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    evals = list((module_build / "eval" / "resnet_v1_50").glob("*/eval.json"))
    assert len(evals) == 1 and 0.0 <= json.loads(evals[0].read_text())["top1"] <= 1.0
    again = run_doit(["train", "eval", *common], env=env)
    assert "-- train:resnet_v1_50" in again.stdout and "-- eval:resnet_v1_50" in again.stdout
