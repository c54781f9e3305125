"""`doit pipeline`: KFP v2 YAML compiled by the kfp SDK from the graph, Kubernetes training
manifests validated against the kubernetes client's models, and bad input refused (fast tier:
no engine, no image)."""
import json
import re

import pytest
import yaml

from conftest import run_doit

HEX = re.compile(r"^[0-9a-f]{64}$")


def _env(build_dir):
    return {"ZOOBUILD_BUILD_DIR": str(build_dir)}


def _spec(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d][0]


def _tasks(spec):
    """Every task of the pipeline, nested DAGs (the ParallelFor body) included."""
    out = dict(spec["root"]["dag"]["tasks"])
    for comp in spec["components"].values():
        out.update((comp.get("dag") or {}).get("tasks", {}))
    return out


def test_main_pipeline_compiles_loads_back_and_carries_images_keys_parameters(build_dir):
    from kfp import components

    run_doit(["pipeline", "model=vgg_16", "steps=3", "fan_out=3", "train_shards=4", "validation_shards=2"], env=_env(build_dir))
    path = build_dir / "pipeline" / "main.yaml"
    loaded = components.load_component_from_file(str(path))
    assert loaded.name == "zoobuild-main"
    # typed variables are pipeline parameters with the command line's values as defaults
    assert loaded.component_spec.inputs["steps"].default == 3
    assert loaded.component_spec.inputs["learning_rate"].default == 0.01
    assert sorted(loaded.component_spec.inputs["onnx_precisions"].default) == ["fp16", "fp32", "int8"]
    spec = _spec(path)
    execs = spec["deploymentSpec"]["executors"]
    images = {ex["container"]["image"] for ex in execs.values()}
    assert images == {"zoobuild:tf-compiled-base-data",
                      "zoobuild:tf-compiled-base-image-recognition-vgg-16-fp32-training"}
    for ex in execs.values():
        c = ex["container"]
        assert c["command"] == ["python3", "-m", "slim.stage"]
        assert "--key" in c["args"] and c["resources"]["resourceCpuRequest"]
    tasks = _tasks(spec)
    names = {t["taskInfo"]["name"] for t in tasks.values()}
    assert {"synthetic", "tfrecords-part", "tfrecords", "train", "eval", "export", "convert",
            "benchmark", "publish"} <= names
    for t in tasks.values():
        params = t.get("inputs", {}).get("parameters", {})
        if "key" in params:
            key = params["key"]["runtimeValue"]["constant"]
            job = json.loads(params["job"]["runtimeValue"]["constant"])
            assert HEX.match(key) and job["key_parts"]["hex"] == key
    containers = {t["taskInfo"]["name"] for t in tasks.values()
                  if "executorLabel" in spec["components"][t["componentRef"]["name"]]}
    keyed = {t["taskInfo"]["name"] for t in tasks.values() if "key" in t.get("inputs", {}).get("parameters", {})}
    assert containers == keyed == names - {"tfrecords-shards"}
    # the conversion fans out over shard ranges covering all 6 shards, then a join collects them
    loops = [t for t in tasks.values() if "parameterIterator" in t]
    assert len(loops) == 1
    items = json.loads(loops[0]["parameterIterator"]["items"]["raw"])
    assert items == ["0:2", "2:4", "4:6"]
    # the train key is the one `doit train` would use with the same variables
    train_task = next(t for t in tasks.values() if t["taskInfo"]["name"] == "train")
    job = json.loads(train_task["inputs"]["parameters"]["job"]["runtimeValue"]["constant"])
    assert job["key_parts"]["params"]["steps"] == 3 and job["key_parts"]["stage"] == "train"


def test_benchmark_pipeline_has_the_reference_parameters(build_dir):
    from kfp import components

    run_doit(["pipeline", "model=vgg_16", "pipeline=benchmark", "precision=int8"], env=_env(build_dir))
    loaded = components.load_component_from_file(str(build_dir / "pipeline" / "benchmark.yaml"))
    inputs = loaded.component_spec.inputs
    assert {"socket_id", "batch_size", "precision", "benchmark_or_accuracy", "data_location", "docker_image",
            "extra_model_args", "model_name", "mode", "verbose"} == set(inputs)
    assert inputs["precision"].default == "int8" and inputs["model_name"].default == "vgg_16"
    assert inputs["docker_image"].default == "zoobuild:tf-compiled-base-image-recognition-vgg-16-fp32-training"
    assert not (build_dir / "pipeline" / "main.yaml").exists()


def test_registry_references_pin_by_digest_once_pushed(build_dir):
    digest = "sha256:" + "ab" * 32
    tag = "zoobuild:tf-compiled-base-image-recognition-vgg-16-fp32-training"
    (build_dir / "push.json").write_text(json.dumps({tag: {
        "remote": f"reg.example:5000/zoobuild:{tag.split(':')[1]}", "digest": digest,
        "image_id": "sha256:0", "registry": "reg.example:5000"}}))
    run_doit(["pipeline", "model=vgg_16", "registry=reg.example:5000"], env=_env(build_dir))
    images = {ex["container"]["image"] for ex in _spec(build_dir / "pipeline" / "main.yaml")
              ["deploymentSpec"]["executors"].values()}
    assert images == {f"reg.example:5000/zoobuild@{digest}", "reg.example:5000/zoobuild:tf-compiled-base-data"}


@pytest.mark.parametrize("word, says", [
    ("pipeline=nope", "pipeline='nope': expected one of main, benchmark"),
    ("registry=http://reg.example/x", "registry='http://reg.example/x': expected host"),
    ("cluster=k8s:ps=1,workers=0", "workers must be >= 1"),
])
def test_bad_input_is_one_line_exit_2_and_no_yaml(build_dir, word, says):
    res = run_doit(["pipeline", word], env=_env(build_dir), check=False)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and says.lower() in lines[0].lower(), res.stderr
    assert not (build_dir / "pipeline").exists() or not list((build_dir / "pipeline").iterdir())


def _roundtrip(api, doc, model):
    """A manifest validates when the kubernetes model takes it and gives back the same document
    (a misspelt or misplaced field is dropped by the model and shows up as a difference)."""
    obj = api._ApiClient__deserialize(doc, model)
    assert api.sanitize_for_serialization(obj) == doc, model
    return obj


def test_tfjob_and_plain_jobs_validate_against_the_kubernetes_models(build_dir):
    from kubernetes import client

    run_doit(["pipeline", "model=vgg_16", "cluster=k8s:ps=1,workers=3"], env=_env(build_dir))
    api = client.ApiClient()
    tfjob_docs = list(yaml.safe_load_all((build_dir / "pipeline" / "main-tfjob.yaml").read_text()))
    cm, tfjob = tfjob_docs
    _roundtrip(api, cm, "V1ConfigMap")
    job = json.loads(cm["data"]["job.json"])
    assert job["cfg"]["model"] == "vgg_16" and job["train_dir"].startswith("/zoobuild/train/vgg_16/")
    assert tfjob["apiVersion"] == "kubeflow.org/v1" and tfjob["kind"] == "TFJob"
    reps = tfjob["spec"]["tfReplicaSpecs"]
    assert set(reps) == {"PS", "Worker"} and reps["PS"]["replicas"] == 1 and reps["Worker"]["replicas"] == 3
    for rep in reps.values():
        pod = _roundtrip(api, rep["template"], "V1PodTemplateSpec")
        c = pod.spec.containers[0]
        assert c.name == "tensorflow" and c.image.startswith("zoobuild:") and "--tf-config" in c.command
    docs = list(yaml.safe_load_all((build_dir / "pipeline" / "main-jobs.yaml").read_text()))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["ConfigMap", "Service", "Job", "Job", "Job", "Job"]
    svc = _roundtrip(api, docs[1], "V1Service")
    assert svc.spec.cluster_ip == "None"
    configs = {}
    for d in docs[2:]:
        jobobj = _roundtrip(api, d, "V1Job")
        pod = jobobj.spec.template.spec
        assert pod.subdomain == svc.metadata.name
        env = {e.name: e.value for e in pod.containers[0].env}
        tf = json.loads(env["TF_CONFIG"])
        configs[(tf["task"]["type"], tf["task"]["index"])] = tf
        own = tf["cluster"][tf["task"]["type"]][tf["task"]["index"]]
        assert own.startswith(f"{pod.hostname}.{pod.subdomain}:")
    assert set(configs) == {("ps", 0), ("worker", 0), ("worker", 1), ("worker", 2)}
    assert all(len(tf["cluster"]["worker"]) == 3 for tf in configs.values())


def test_the_stage_entry_point_rekeys_and_refuses_other_code(tmp_path, build_dir):
    from slim import stage
    from zoobuild import keys
    from zoobuild.errors import UserError

    up = tmp_path / "up"
    up.mkdir()
    keys.mark_complete(up, keys.Key("train", params={"n": 1}))
    compiled = keys.make_key("export", entries=["slim.stage"], params={"a": 1},
                             inputs={"train": keys.Key("train", params={"n": 1}).hex})
    job = {"key_parts": {**compiled.parts, "hex": compiled.hex}, "param_map": {"a": ["a", True]},
           "key_inputs": {"train": ["train", "{}"]}}
    assert stage.rekey(job, {}, {"train": str(up)}).hex == compiled.hex
    assert stage.rekey(job, {"a": 2}, {"train": str(up)}).hex != compiled.hex
    keys.mark_complete(up, keys.Key("train", params={"n": 2}))
    assert stage.rekey(job, {}, {"train": str(up)}).hex != compiled.hex
    job["key_parts"]["code"] = {**job["key_parts"]["code"], "slim/stage.py": "0" * 64}
    with pytest.raises(UserError, match="differs from the code the pipeline was compiled from"):
        stage.rekey(job, {}, {"train": str(up)})


def test_components_share_through_the_cache_when_compiled_with_one(tmp_path, build_dir, monkeypatch):
    """cache= reaches every component's job; a component whose key is cached fetches it and runs
    nothing, and one that runs shares its output under the same stage name and key as doit."""
    from slim import stage
    from zoobuild import keys
    from zoobuild.cache import Cache

    cache_url = (tmp_path / "cache").as_uri()
    run_doit(["pipeline", "model=vgg_16", f"cache={cache_url}"], env=_env(build_dir))
    text = (build_dir / "pipeline" / "main.yaml").read_text()
    assert text.count(cache_url) >= 8                   # every component's job carries it

    ran = []
    monkeypatch.setitem(stage.STAGES, "synthetic", lambda job, cfg, inputs, out, key: (
        ran.append(out), (out / "made.txt").write_text("made"))[-1] and None)
    compiled = keys.make_key("synthetic", entries=["slim.stage"], params={"seed": 1})
    job = {"key_parts": {**compiled.parts, "hex": compiled.hex}, "param_map": {},
           "key_inputs": {}, "cfg": {}, "cache": cache_url}
    first, second = tmp_path / "A" / "out", tmp_path / "B" / "out"
    stage.run_stage("synthetic", dict(job), {}, {}, first)
    assert len(ran) == 1 and Cache(cache_url).read_manifest("synthetic", compiled.hex)
    stage.run_stage("synthetic", dict(job), {}, {}, second)
    assert len(ran) == 1                                 # fetched, not run
    assert (second / "made.txt").read_text() == "made" and keys.is_complete(second, compiled)


def test_cpu_and_memory_requests_come_from_the_image_specs(build_dir, tmp_path):
    """A stage's requests: the per-stage defaults, then the `resources` of the image it runs in
    (specs/vgg_16_spec.yml, specs/pipeline_data_spec.yml), then resources=; a bad value in a
    spec is one line naming the file."""
    run_doit(["pipeline", "model=vgg_16", "resources=eval=3/5G"], env=_env(build_dir))
    spec = _spec(build_dir / "pipeline" / "main.yaml")
    res = {n: e["container"]["resources"] for n, e in spec["deploymentSpec"]["executors"].items()}
    train = next(r for n, r in res.items() if "train" in n)
    evaluate = next(r for n, r in res.items() if n.endswith("-eval"))
    tfrecords = next(r for n, r in res.items() if n.endswith("-tfrecords"))
    assert train["resourceCpuRequest"] == "8" and train["resourceMemoryRequest"] in ("16G", "16.0G")
    assert evaluate["resourceCpuRequest"] == "3"            # resources= wins over the spec
    assert tfrecords["resourceCpuRequest"] == "2"           # the data image's spec

    import shutil

    from conftest import ROOT
    specs = tmp_path / "specs"
    shutil.copytree(ROOT / "specs", specs)
    (build_dir / "pipeline" / "main.yaml").unlink()
    bad = specs / "vgg_16_spec.yml"
    bad.write_text(bad.read_text().replace("train: 8/16G", "train: lots"))
    res = run_doit(["pipeline", "model=vgg_16", f"specs={specs}"], env=_env(build_dir), check=False)
    said = res.stdout + res.stderr
    assert res.returncode != 0 and "vgg_16_spec.yml" in said and "resources.train" in said
    assert "expected CPU/MEMORY" in said and not (build_dir / "pipeline" / "main.yaml").exists()
