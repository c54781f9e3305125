"""The benchmark harness: latency/throughput, accuracy mode, CPU placement, outputs."""
import json
import sys
import types

import numpy as np
import pytest

from slim import benchmark as bm
from slim import convert
from zoobuild.errors import UserError
from test_post_fixtures import tiny_saved_model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    export = tiny_saved_model(root / "export")
    convert.convert(export, root / "conv", precisions=("fp32",), batch_size=0, progress=lambda *_: None)
    return export, root / "conv" / "model.fp32.onnx"


def _quick(**kw):
    return dict(min_duration=0.05, min_queries=30, warmup=2, **kw)


@pytest.mark.parametrize("backend", ["tf", "onnx"])
def test_benchmark_mode_reports_latency_percentiles_and_throughput(models, tmp_path, backend):
    export, onnx_file = models
    path = export if backend == "tf" else onnx_file
    res = bm.run(bm.BenchConfig(model_path=str(path), backend=backend, batch_size=4, **_quick()), tmp_path)
    lat = res["single_stream"]["latency_ms"]
    assert set(lat) >= {"p50", "p90", "p99", "p99.9", "min", "mean", "max"}
    assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert res["single_stream"]["query_batch"] == 1 and lat["count"] >= 30
    off = res["offline"]
    assert off["batch"] == 4 and off["images"] == 4 * off["queries"] and off["throughput_ips"] > 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["single_stream"]["latency_ms"] == lat and saved["config"]["backend"] == backend
    text = (tmp_path / "summary.txt").read_text()
    assert "p99.9" in text and "images/s" in text
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_step_count_and_a_fixed_batch_model(models, tmp_path):
    export, _ = models
    convert.convert(export, tmp_path / "c", precisions=("fp32",), batch_size=3, progress=lambda *_: None)
    res = bm.run(bm.BenchConfig(model_path=str(tmp_path / "c" / "model.fp32.onnx"), backend="onnx",
                                batch_size=8, steps=17, warmup=1), tmp_path / "out")
    assert res["single_stream"]["queries"] == 17 and res["offline"]["queries"] == 17
    assert res["single_stream"]["query_batch"] == 3 and res["offline"]["batch"] == 3   # the model's own batch


def test_synthetic_inputs_are_seeded(models):
    a = bm.input_pool(bm.BenchConfig(model_path="x", seed=5), (16, 16), 2)
    b = bm.input_pool(bm.BenchConfig(model_path="x", seed=5), (16, 16), 2)
    c = bm.input_pool(bm.BenchConfig(model_path="x", seed=6), (16, 16), 2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_accuracy_mode_scores_top1_top5_through_the_reader(models, tmp_path, monkeypatch):
    export, onnx_file = models
    images = convert.seeded_inputs(10, 16, 16, seed=3)
    scores = convert.tf_runner(export)(images)["probabilities"]
    order = np.argsort(-scores, axis=1)
    # labels: 4 right at top-1, 3 more within the top 5, 3 outside the top 5
    labels = np.concatenate([order[:4, 0], order[4:7, 3], order[7:, 9]])
    calls = {}

    def fake_dataset(dataset_dir, split, batch_size, preprocess_fn=None, image_size=224, is_training=False,
                     labels_offset=0, num_epochs=None):
        calls.update(dir=dataset_dir, split=split, is_training=is_training, num_epochs=num_epochs,
                     image_size=image_size, preprocess=preprocess_fn is not None)
        stored = labels + 1                                                # with a background class
        for i in range(0, len(images), batch_size):
            yield images[i:i + batch_size], stored[i:i + batch_size] - labels_offset

    import datasets
    fake = types.ModuleType("datasets.reader")
    fake.dataset = fake_dataset
    monkeypatch.setitem(sys.modules, "datasets.reader", fake)
    monkeypatch.setattr(datasets, "reader", fake, raising=False)
    for backend, path in (("tf", export), ("onnx", onnx_file)):
        out = tmp_path / backend
        res = bm.run(bm.BenchConfig(model_path=str(path), backend=backend, mode="accuracy", data_dir="/shards",
                                    batch_size=4, labels_offset=1), out)
        assert (res["images"], res["top1"], res["top5"]) == (10, 0.4, 0.7)
        assert calls == {"dir": "/shards", "split": "validation", "is_training": False, "num_epochs": 1,
                         "image_size": 16, "preprocess": False}
        assert "top-1 0.4000" in (out / "summary.txt").read_text()
        assert (out / "latency.png").exists()
    # the model's own preprocessing (export.json) reaches the reader
    bm.run(bm.BenchConfig(model_path=str(export), backend="tf", mode="accuracy", data_dir="/shards",
                          preprocessing="vgg", max_images=4), tmp_path / "vgg")
    assert calls["preprocess"] is True


def test_bad_settings_are_one_line(models, tmp_path):
    export, _ = models
    with pytest.raises(UserError, match="backend='trt'"):
        bm.run(bm.BenchConfig(model_path=str(export), backend="trt"), tmp_path)
    with pytest.raises(UserError, match="mode=accuracy needs data_dir"):
        bm.run(bm.BenchConfig(model_path=str(export), mode="accuracy"), tmp_path)
    with pytest.raises(UserError, match="needs 8 cpus"):
        bm.plan_placement(bm.BenchConfig(model_path="x", cores=4, instances=2), available=[0, 1, 2, 3])


def test_placement_plans_threads_and_pinning():
    cfg = bm.BenchConfig(model_path="x", cores=2, instances=3, socket_id=1)
    assert bm.plan_placement(cfg, available=list(range(8, 16))) == [[8, 9], [10, 11], [12, 13]]
    assert bm.plan_placement(bm.BenchConfig(model_path="x", instances=2), available=[0, 1, 2, 3, 4]) == [[0, 1], [2, 3]]
    have = {"numactl", "taskset"}
    which = lambda name: f"/usr/bin/{name}" if name in have else None  # noqa: E731
    assert bm.pin_prefix([8, 9], 1, which) == ["numactl", "--physcpubind=8,9", "--membind=1"]
    assert bm.pin_prefix([8, 9], -1, which) == ["taskset", "-c", "8,9"]
    have.discard("numactl")
    assert bm.pin_prefix([8, 9], 1, which) == ["taskset", "-c", "8,9"]
    have.clear()
    with pytest.raises(UserError, match="numactl or taskset"):
        bm.pin_prefix([0], -1, which)
    assert bm.parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]


def test_pinned_instances_run_in_worker_processes(models, tmp_path):
    _, onnx_file = models
    res = bm.run(bm.BenchConfig(model_path=str(onnx_file), backend="onnx", cores=1, instances=2, batch_size=2,
                                **_quick()), tmp_path)
    inst = res["instances"]
    assert len(inst) == 2
    assert inst[0]["cpus"] != inst[1]["cpus"] and all(len(i["cpus"]) == 1 for i in inst)
    assert all(i["threads"] == {"intra_op": 1, "inter_op": 1} for i in inst)
    assert inst[0]["command"][:2] == ["taskset", "-c"]
    assert res["offline"]["throughput_ips"] == pytest.approx(sum(i["offline"]["throughput_ips"] for i in inst))
    assert res["single_stream"]["latency_ms"]["count"] == sum(i["single_stream"]["queries"] for i in inst)
    # percentiles are judged on the pooled latencies, the minimums on each instance's own phases
    pooled = res["single_stream"]["latency_ms"]["count"]
    assert res["validity_checks"]["p99.9_samples_met"]["have"] == pooled
    assert res["validity"]["p99.9_samples_met"] is (pooled >= 1000)
    assert res["validity_checks"]["min_queries_met"]["have"] == min(
        i[phase]["queries"] for i in inst for phase in ("single_stream", "offline"))


@pytest.mark.parametrize("backend", ["onnx", "tf"])
def test_the_default_config_gives_a_valid_result(models, tmp_path, backend):
    export, onnx_file = models
    path = onnx_file if backend == "onnx" else export
    res = bm.run(bm.BenchConfig(model_path=str(path), backend=backend), tmp_path)
    assert set(res["validity"]) == {"min_queries_met", "min_duration_met", "p50_samples_met",
                                    "p90_samples_met", "p99_samples_met", "p99.9_samples_met"}
    assert all(res["validity"].values()), res["validity_checks"]
    checks = res["validity_checks"]
    assert checks["p99.9_samples_met"]["need"] == 1000
    assert checks["p99.9_samples_met"]["have"] == res["single_stream"]["queries"] >= bm.MIN_QUERIES
    assert res["offline"]["queries"] >= bm.MIN_QUERIES
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["validity"] == res["validity"] and saved["validity_checks"] == checks
    assert "validity: ok" in (tmp_path / "summary.txt").read_text()


def test_too_few_queries_are_reported_invalid(models, tmp_path):
    _, onnx_file = models
    # the run meets the minimums it was given, but 100 samples cannot place a p99.9
    res = bm.run(bm.BenchConfig(model_path=str(onnx_file), backend="onnx", min_queries=100, min_duration=0,
                                warmup=1), tmp_path / "few")
    assert res["single_stream"]["queries"] == 100
    assert res["validity"] == {"min_queries_met": True, "min_duration_met": True, "p50_samples_met": True,
                               "p90_samples_met": True, "p99_samples_met": True, "p99.9_samples_met": False}
    assert res["validity_checks"]["p99.9_samples_met"] == {"need": 1000, "have": 100}
    text = (tmp_path / "few" / "summary.txt").read_text()
    assert "NOT MET: p99.9_samples_met (need 1000, have 100)" in text
    # a fixed step count below the minimum query count is not a valid run either
    res = bm.run(bm.BenchConfig(model_path=str(onnx_file), backend="onnx", steps=17, warmup=1), tmp_path / "steps")
    assert res["validity"]["min_queries_met"] is False and res["validity"]["p99_samples_met"] is False
    assert json.loads((tmp_path / "steps" / "results.json").read_text())["validity"] == res["validity"]


def test_samples_needed_per_percentile():
    assert [bm.samples_needed(p) for p in (50, 90, 99, 99.9)] == [2, 10, 100, 1000]
    assert bm.samples_needed(99.99) == 10000


def test_doit_defaults_are_the_library_defaults():
    from tasks import benchmark

    default = bm.BenchConfig(model_path="x")
    assert benchmark.MIN_QUERIES.default == default.min_queries == bm.MIN_QUERIES
    assert benchmark.MIN_DURATION.default == default.min_duration


def test_module_entry_point_and_the_quickstart_script(models, tmp_path):
    import os
    import subprocess
    from pathlib import Path

    _, onnx_file = models
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root), MODEL_PATH=str(onnx_file), OUTPUT_DIR=str(tmp_path / "qs"),
               MODEL_NAME="tiny", PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    # the model images' quickstart script: its flags are the CLI's, its backend follows the file
    done = subprocess.run(["sh", str(root / "images" / "quickstart" / "benchmark.sh"), "--steps", "20",
                           "--warmup", "1"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "qs" / "results.json").read_text())
    assert saved["config"]["backend"] == "onnx" and saved["config"]["model"] == "tiny"
    assert saved["single_stream"]["queries"] == 20 and "images/s" in done.stdout
    assert not (tmp_path / "qs" / "latency.png").exists()
    # bad input: one line, exit 2, nothing written
    bad = subprocess.run([sys.executable, "-m", "slim.benchmark", str(tmp_path / "missing.onnx"),
                          str(tmp_path / "bad"), "--backend", "onnx"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"zoobuild: model {tmp_path / 'missing.onnx'}: does not exist"]
    assert not (tmp_path / "bad").exists()


@pytest.mark.engine
def test_benchmark_runs_in_the_model_image(models, tmp_path, docker_client):
    from conftest import run_doit
    from images import plan as plan_mod

    plan = plan_mod.load_plan()
    tag = plan_mod.model_image_tag(plan, "vgg_16", mode=("inference", "training"))
    name = plan.by_tag[tag].name
    run_doit([f"images:{name}"])                 # up to date unless the image was never built
    _, onnx_file = models
    for backend, path in (("onnx", onnx_file), ("tf", models[0])):
        out = tmp_path / backend
        res = bm.run_in_image(bm.BenchConfig(model_path=str(path), backend=backend, model="vgg_16", cores=1,
                                             batch_size=2, **_quick()), out, image=tag, client=docker_client,
                              echo=lambda *_: None)
        assert res["runner"]["image"] == tag and res["runner"]["image_id"].startswith("sha256:")
        assert res["offline"]["throughput_ips"] > 0 and res["instances"][0]["command"][:2] == ["taskset", "-c"]
        assert json.loads((out / "results.json").read_text())["runner"]["name"] == "docker"
        assert (out / "latency.png").exists() and "images/s" in (out / "summary.txt").read_text()


class _LocalContainer:
    """Stands in for a container: the same command, environment and working directory, run as
    a local process, so the real CLI parses the options the docker runner wrote."""

    def __init__(self, command, environment, working_dir):
        import os
        import subprocess

        argv = [sys.executable if command[0] == "python3" else command[0]] + command[1:]
        self.proc = subprocess.Popen(argv, cwd=working_dir, env=dict(os.environ, **environment),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.removed = False

    def logs(self, stream, follow):
        return iter(self.proc.stdout)

    def wait(self):
        return {"StatusCode": self.proc.wait()}

    def remove(self, force):
        self.removed = True


class _LocalEngine:
    def __init__(self, have=("zoobuild/tiny:inference",)):
        self.have, self.calls = have, []
        self.images = self.containers = self

    def get(self, tag):
        if tag not in self.have:
            raise LookupError(tag)
        return types.SimpleNamespace(id="sha256:" + "0" * 64)

    def run(self, image, command, detach, **kw):
        self.calls.append((image, command, kw))
        return _LocalContainer(command, kw["environment"], kw["working_dir"])


def test_docker_runner_runs_the_cli_in_the_image_it_is_given(models, tmp_path):
    _, onnx_file = models
    engine = _LocalEngine()
    cfg = bm.BenchConfig(model_path=str(onnx_file), backend="onnx", model="tiny", batch_size=2, steps=40,
                         warmup=1, min_duration=0.5)
    res = bm.RUNNERS["docker"](cfg, tmp_path / "out", image="zoobuild/tiny:inference", client=engine,
                               echo=lambda *_: None)
    (image, command, kw), = engine.calls
    assert image == "zoobuild/tiny:inference" and kw["network_mode"] == "none"
    assert command[:3] == ["python3", "-m", "slim.benchmark"] and "--no-chart" in command
    assert kw["volumes"][str(onnx_file.parent)]["mode"] == "ro"
    assert kw["volumes"][str((tmp_path / "out").resolve())]["mode"] == "rw"
    # every setting crossed the command line: the run inside is the run asked for
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["config"] == {**cfg.to_json(), "model_path": str(onnx_file.resolve())}
    assert saved["single_stream"]["queries"] == 40 and saved["offline"]["batch"] == 2
    assert saved["runner"] == {"name": "docker", "image": "zoobuild/tiny:inference",
                               "image_id": "sha256:" + "0" * 64} == res["runner"]
    assert (tmp_path / "out" / "latency.png").exists()          # drawn by the host
    with pytest.raises(UserError, match="needs the model image's tag"):
        bm.RUNNERS["docker"](cfg, tmp_path / "none", client=engine)
    with pytest.raises(UserError, match="is not built"):
        bm.RUNNERS["docker"](cfg, tmp_path / "none", image="zoobuild/other:1", client=engine)


def test_timed_loop_counts_cycles_inputs_and_reports_progress(monkeypatch):
    import io

    from zoobuild.progress import progress

    monkeypatch.setenv("ZOOBUILD_PROGRESS", "plain")
    calls, log = [], io.StringIO()
    with progress("phase", total=130, unit="queries", stream=log) as bar:
        lat, wall = bm.timed_loop(calls.append, ["a", "b", "c"], warmup=3, min_duration=0, min_queries=0,
                                  steps=130, bar=bar)
    assert len(lat) == 130 and len(calls) == 133 and calls[3:7] == ["a", "b", "c", "a"]
    assert all(x >= 0 for x in lat) and wall > 0
    assert "phase: 130/130 queries" in log.getvalue()
    # without a step count: the minimum query count exactly, once the (zero) duration is met
    lat, _ = bm.timed_loop(calls.append, ["a"], warmup=0, min_duration=0, min_queries=100, steps=0)
    assert len(lat) == 100
    lat, _ = bm.timed_loop(calls.append, ["a"], warmup=0, min_duration=0, min_queries=0, steps=0)
    assert len(lat) == 1
