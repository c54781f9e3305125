"""kfp.local's DockerRunner runs the compiled pipelines on the project's Docker Engine: the
benchmark pipeline (fp32 and int8, benchmark and accuracy mode) and the main chain, on the
embedded synthetic set with a small net.  Each stage's output carries the same key as the
doit run of the same variables, and the results have the same shape."""
import json
from pathlib import Path

import pytest

from conftest import ROOT, run_doit

pytestmark = [pytest.mark.engine, pytest.mark.slow]

MODEL = "mobilenet_v1_025"
IMAGE = "zoobuild:tf-compiled-base-image-recognition-vgg-16-fp32-training"
# a small net (run in the vgg_16 image, which ships every slim net), trained long enough that
# its int8 conversion passes the parity gate
VARS = [f"model={MODEL}", "image_model=vgg_16", "train_image_size=64", "batch_size=8", "steps=40",
        "learning_rate=0.05", "train_shards=2", "validation_shards=1", "fan_out=2",
        "onnx_precisions=fp32,int8", "bench_steps=20", "warmup=2", "eval_batch_size=20", "max_images=40"]
# doit's stage directory name -> the pipeline's stage name
DOIT_STAGES = {"synthetic": "synthetic", "tfrecords": "tfrecords", "train": "train", "eval": "eval",
               "export": "export", "convert": "convert", "benchmark": "benchmark"}


@pytest.fixture(scope="module")
def env(tmp_path_factory, docker_client):
    """A build directory of its own; the images come from the repository's build (built here
    when stale: the data image and the vgg_16 training image)."""
    run_doit(["images:data", "images:vgg-16-fp32-training"], env={"ZOOBUILD_BUILD_DIR": str(ROOT / "build")})
    bdir = tmp_path_factory.mktemp("kfp") / "build"
    bdir.mkdir()
    return {"ZOOBUILD_BUILD_DIR": str(bdir), "TF_CPP_MIN_LOG_LEVEL": "2"}


def _marker(d: Path) -> dict:
    return json.loads((Path(d) / ".complete.json").read_text())


def _doit_keys(bdir: Path) -> dict:
    """stage -> set of keys of every finished doit output in the build directory."""
    out = {}
    for stage in DOIT_STAGES:
        for marker in (bdir / stage).glob("*/*/.complete.json"):
            out.setdefault(stage, set()).add(json.loads(marker.read_text())["key"])
    return out


def _shape(obj, depth=2):
    if isinstance(obj, dict) and depth:
        return {k: _shape(v, depth - 1) for k, v in obj.items()}
    return type(obj).__name__ if not isinstance(obj, (int, float)) or isinstance(obj, bool) else "number"


def _run_pipeline(env, name, args=None, extra=()):
    res = run_doit(["pipeline_local", f"pipeline={name}", *VARS, *extra] +
                   ([f"pipeline_args={json.dumps(args)}"] if args else []), env=env, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return json.loads((Path(env["ZOOBUILD_BUILD_DIR"]) / "pipeline" / f"{name}-local.json").read_text())


@pytest.mark.parametrize("precision, mode", [("fp32", "benchmark"), ("int8", "benchmark"),
                                             ("fp32", "accuracy"), ("int8", "accuracy")])
def test_benchmark_pipeline_matches_the_doit_run(env, precision, mode):
    bdir = Path(env["ZOOBUILD_BUILD_DIR"])
    # the doit run of the same variables, natively (the chain once, then one benchmark each)
    run_doit(["benchmark", *VARS, f"precision={precision}", f"mode={mode}"], env=env)
    doit_keys = _doit_keys(bdir)
    # the pipeline compiled with the defaults; precision and mode given at run time
    report = _run_pipeline(env, "benchmark", {"precision": precision, "benchmark_or_accuracy": mode})
    stages = report["stages"]
    assert set(stages) == {"synthetic", "tfrecords", "train", "export", "convert", "benchmark"}
    for stage, out in stages.items():
        marker = _marker(out["dir"])
        assert marker["key"] == out["key"] and marker["key"] in doit_keys[stage], stage
    bench = stages["benchmark"]
    # run-time parameters other than the compiled defaults re-key the stage, as doit would
    assert (bench["key"] == bench["compiled_key"]) == (precision == "fp32" and mode == "benchmark")
    doit_bench = next(d for d in (bdir / "benchmark" / MODEL).iterdir() if _marker(d)["key"] == bench["key"])
    ours = json.loads((Path(bench["dir"]) / "results.json").read_text())
    theirs = json.loads((doit_bench / "results.json").read_text())
    assert ours["config"]["precision"] == precision and ours["config"]["mode"] == mode
    ours.pop("runner"), theirs.pop("runner")
    assert _shape(ours) == _shape(theirs)
    if mode == "accuracy":
        assert 0.0 <= ours["top1"] <= 1.0 and ours["images"] == theirs["images"] == 40


def test_main_chain_runs_every_stage_with_doit_keys(env):
    bdir = Path(env["ZOOBUILD_BUILD_DIR"])
    run_doit(["eval", "benchmark", *VARS], env=env)
    doit_keys = _doit_keys(bdir)
    report = _run_pipeline(env, "main")
    stages = report["stages"]
    assert set(stages) == {"synthetic", "tfrecords", "train", "eval", "export", "convert", "benchmark", "publish"}
    for stage, out in stages.items():
        assert out["key"] == out["compiled_key"], stage     # compiled defaults: the compiled keys
        if stage in doit_keys:
            assert out["key"] in doit_keys[stage], stage
    ev = json.loads((Path(stages["eval"]["dir"]) / "eval.json").read_text())
    doit_eval = next(d for d in (bdir / "eval" / MODEL).iterdir() if _marker(d)["key"] == stages["eval"]["key"])
    assert _shape(ev) == _shape(json.loads((doit_eval / "eval.json").read_text()))
    manifest = json.loads((Path(stages["publish"]["dir"]) / "manifest.json").read_text())
    assert manifest["model"] == MODEL and "onnx-fp32" in manifest["benchmark"]


def test_a_missing_image_names_it_and_how_to_build_it(env, docker_client):
    """Under a tag prefix nothing ever builds, every image is missing: the run names one and
    the doit task that builds it."""
    prefix = "zoobuild-never-built-test:"
    assert not [t for i in docker_client.images.list() for t in i.tags if t.startswith(prefix)]
    res = run_doit(["pipeline_local", "image_model=resnet_v1_50", f"image_args=_TAG_PREFIX={prefix}"],
                   env=env, check=False)
    assert res.returncode != 0
    line = [ln for ln in (res.stdout + res.stderr).splitlines() if "is not on the Docker Engine" in ln]
    assert len(line) == 1 and prefix in line[0] and "build it with `doit images" in line[0]
