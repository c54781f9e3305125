"""Best-known parameters: the sweep writes specs/tuned/<model>.yml; train and benchmark use it
for what the user did not set; a user value wins."""
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from test_slim_common import subprocess_env

MODEL = "mobilenet_v1_025"


@pytest.mark.slow
def test_sweep_writes_the_tuned_file(tmp_path):
    """A tiny grid (2 batch sizes x 1 thread setting, training and inference) of a tiny net;
    the thread setting is not the default one, so the file shows that it was carried through."""
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "tune.py"), "--model", MODEL, "--precisions", "fp32",
         "--modes", "training,inference", "--batch-sizes", "2,4", "--threads", "1/2",
         "--steps", "1", "--warmup", "1", "--image-size", "64"],
        env=subprocess_env(ZOOBUILD_TUNED_DIR=str(tmp_path / "tuned"),
                           ZOOBUILD_BUILD_DIR=str(tmp_path / "build")),
        capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr
    body = yaml.safe_load((tmp_path / "tuned" / f"{MODEL}.yml").read_text())
    assert body["model"] == MODEL
    for mode in ("training", "inference"):
        grid = body["grid"]["fp32"][mode]
        assert len(grid) == 2 and {g["batch_size"] for g in grid} == {2, 4}
        best = body["settings"]["fp32"][mode]
        assert best["images_per_sec"] == max(g["images_per_sec"] for g in grid) > 0
        assert best["intra_op_threads"] == 1 and best["inter_op_threads"] == 2
        assert best["OMP_NUM_THREADS"] == best["intra_op_threads"] and best["KMP_BLOCKTIME"] == 1
        assert f"{MODEL} fp32 {mode}:" in res.stdout
    assert (tmp_path / "build" / "bench" / f"tune-{MODEL}.json").exists()
    from zoobuild import machine

    assert body["host"]["machine"] == machine.identity()   # the figures say which machine


def _tuned_file(tmp_path, monkeypatch):
    from slim import tuning

    monkeypatch.setenv("ZOOBUILD_TUNED_DIR", str(tmp_path / "tuned"))
    point = {"intra_op_threads": 1, "inter_op_threads": 2, "OMP_NUM_THREADS": 1,
             "KMP_AFFINITY": tuning.KMP_AFFINITY, "KMP_BLOCKTIME": 1}
    tuning.write_file("vgg_16", {"model": "vgg_16", "settings": {
        "fp32": {"training": {"batch_size": 24, **point, "images_per_sec": 3.0},
                 "inference": {"batch_size": 12, **point, "images_per_sec": 9.0}},
        "bf16": {"training": {"batch_size": 32, **point, "images_per_sec": 5.0}}}})


def _vars(monkeypatch, **values):
    from doit import doit_cmd

    monkeypatch.setattr(doit_cmd, "_CMDLINE_VARS", {k: str(v) for k, v in values.items()}, raising=False)


def test_train_uses_tuned_values_unless_given(tmp_path, monkeypatch):
    import tasks.train as tt

    monkeypatch.delenv("ZOOBUILD_CPU_FLAGS", raising=False)
    _tuned_file(tmp_path, monkeypatch)
    _vars(monkeypatch)
    p = tt.train_params("vgg_16")
    assert (p["batch_size"], p["intra_op_threads"], p["inter_op_threads"]) == (24, 1, 2)
    _vars(monkeypatch, compute="bf16")
    assert tt.train_params("vgg_16")["batch_size"] == 32          # per precision
    _vars(monkeypatch, batch_size=3, inter_op_threads=4)
    p = tt.train_params("vgg_16")
    assert (p["batch_size"], p["intra_op_threads"], p["inter_op_threads"]) == (3, 1, 4)
    _vars(monkeypatch)
    assert tt.train_params("inception_v3")["batch_size"] == tt.OPTIONS["batch_size"].default  # no file


def test_benchmark_uses_the_tuned_inference_batch_unless_given(tmp_path, monkeypatch):
    import tasks.benchmark as tp

    _tuned_file(tmp_path, monkeypatch)
    _vars(monkeypatch, model="vgg_16", backend="tf")
    assert tp.bench_config("vgg_16")["batch_size"] == 12
    _vars(monkeypatch, model="vgg_16", backend="tf", bench_batch_size=5)
    assert tp.bench_config("vgg_16")["batch_size"] == 5
    _vars(monkeypatch, model="vgg_16", backend="tf", precision="bf16")   # no bf16 inference point
    assert tp.bench_config("vgg_16")["batch_size"] == tp.BENCH_BATCH.default


def test_settings_of_another_machine_say_so_in_one_line(tmp_path, monkeypatch):
    """Tuned values still apply on another kind of machine (a starting point), and train and
    benchmark say in one line whose figures they are and how to re-measure them here."""
    from slim import tuning
    from zoobuild import machine

    _tuned_file(tmp_path, monkeypatch)
    assert tuning.elsewhere("vgg_16") is None                   # no machine recorded
    body = tuning.load("vgg_16")
    tuning.write_file("vgg_16", {**body, "host": {"machine": machine.identity()}})
    assert tuning.elsewhere("vgg_16") is None                   # this machine's own figures
    tuning.write_file("vgg_16", {**body, "host": {"machine": "Other CPU x64 flags:0123456789ab"}})
    line = tuning.elsewhere("vgg_16", "bf16", "training")
    assert "\n" not in line and "measured on Other CPU x64" in line and machine.identity() in line
    assert "bench/tune.py --model vgg_16 --precisions bf16" in line
    assert tuning.elsewhere("vgg_16", "bf16", "training",           # nothing left to take
                            given={"batch_size", "intra_op_threads", "inter_op_threads"}) is None
    assert tuning.elsewhere("vgg_16", "bf16", "training", given={"batch_size"}) == line
    assert tuning.elsewhere("vgg_16", "bf16", "inference") is None   # no such settings
    assert tuning.elsewhere("inception_v3") is None                   # no file
    assert tuning.settings("vgg_16")["batch_size"] == 24              # still applied


def test_a_bad_tuned_file_is_one_line(tmp_path, monkeypatch):
    from slim import tuning
    from zoobuild.errors import UserError

    monkeypatch.setenv("ZOOBUILD_TUNED_DIR", str(tmp_path))
    (tmp_path / "vgg_16.yml").write_text("settings: [1, 2]\n")
    with pytest.raises(UserError, match="vgg_16.yml: expected a mapping"):
        tuning.settings("vgg_16")


def test_manifest_and_catalog_show_the_tuned_values(tmp_path, monkeypatch):
    import json

    from artifacts import release, store as st
    from test_post_fixtures import tiny_saved_model

    _tuned_file(tmp_path, monkeypatch)
    store = st.open_store(str(tmp_path / "store"))
    m = release.release(store, "vgg_16", "1.0.0", export_dir=tiny_saved_model(tmp_path / "export"),
                        progress=lambda *_: None)
    assert m["tuned"]["fp32"]["training"]["batch_size"] == 24
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    assert next(iter(index["models"]["vgg_16"]["versions"]["1.0.0"].values()))["tuned"]["bf16"]["training"][
        "batch_size"] == 32
    table = (tmp_path / "store" / "MODELS.md").read_text()
    assert "## Best-known parameters" in table
    assert "| vgg_16 | fp32 | inference | 12 | 1/2 | 1 | granularity=fine,compact,1,0 | 1 | 9.0 |" in table
