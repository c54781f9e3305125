"""compute=bf16: the CPU refusal, the key, the rewrite itself, and a tiny train+eval+export."""
import json

import numpy as np
import pytest

from conftest import run_doit
from test_slim_common import NUM_CLASSES, SMALL, dataset_dir  # noqa: F401
from zoobuild.errors import UserError

OLD_CPU = "sse sse2 ssse3 sse4_1 sse4_2 avx avx2 fma avx512f avx512bw avx512vl"


def _host_has_bf16():
    from images import cpu

    return any(f in cpu.host_features(open("/proc/cpuinfo").read()) for f in cpu.BF16_FEATURES)


needs_bf16 = pytest.mark.skipif(not _host_has_bf16(), reason="host CPU has no avx512_bf16/amx_bf16")


def test_old_cpu_gets_one_line_and_nothing_runs(monkeypatch, dataset_dir, tmp_path):
    from images import cpu
    from slim import precision, train

    monkeypatch.setenv("ZOOBUILD_CPU_FLAGS", OLD_CPU)
    with pytest.raises(UserError) as err:
        precision.require("bf16")
    msg = str(err.value)
    assert "\n" not in msg and "avx512_bf16" in msg and "amx_bf16" in msg
    precision.require("fp32")                     # fp32 needs nothing
    with pytest.raises(UserError, match="compute='fp16'"):
        precision.require("fp16")
    monkeypatch.setenv("ZOOBUILD_CPU_FLAGS", OLD_CPU + " amx_tile amx_bf16")
    assert cpu.has_bf16()                         # AMX alone is enough

    monkeypatch.setenv("ZOOBUILD_CPU_FLAGS", OLD_CPU)
    run = tmp_path / "run"
    with pytest.raises(UserError, match="train mobilenet_v1_025 compute=bf16 needs CPU feature"):
        train.train({**SMALL, "steps": 1, "compute": "bf16"}, dataset_dir, run)
    assert not run.exists()


def test_doit_train_bf16_on_old_cpu_fails_in_one_line(dataset_dir, build_dir):
    res = run_doit(["train", f"model={SMALL['model']}", "compute=bf16", f"dataset_dir={dataset_dir}"],
                   env={"ZOOBUILD_BUILD_DIR": str(build_dir), "ZOOBUILD_CPU_FLAGS": OLD_CPU},
                   check=False, timeout=300)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "compute=bf16 needs CPU feature avx512_bf16 or amx_bf16" in out, out
    assert not (build_dir / "train").exists() or not any((build_dir / "train").rglob("*.index"))


def test_compute_is_part_of_train_eval_export_keys(monkeypatch, dataset_dir):
    from doit import doit_cmd
    import tasks.train as tt

    monkeypatch.delenv("ZOOBUILD_CPU_FLAGS", raising=False)
    got = {}
    for compute in ("fp32", "bf16"):
        tt._train_key.cache_clear()
        monkeypatch.setattr(doit_cmd, "_CMDLINE_VARS",
                            {"dataset_dir": str(dataset_dir), "compute": compute}, raising=False)
        got[compute] = (tt.train_key("vgg_16"), tt.eval_key("vgg_16"), tt.export_key("vgg_16"))
        assert got[compute][0].params["compute"] == compute
    for fp32, bf16 in zip(got["fp32"], got["bf16"]):
        assert fp32.hex != bf16.hex
    assert "slim/precision.py" in got["bf16"][0].code
    monkeypatch.setattr(doit_cmd, "_CMDLINE_VARS", {"compute": "fp8"}, raising=False)
    with pytest.raises(UserError, match="compute='fp8'"):
        tt.OPTIONS["compute"].get()


def _dtypes_after_rewrite(config):
    """Data types of every node TensorFlow actually ran (its partition graphs, after grappler)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    with tf.Graph().as_default():
        x = v1.placeholder(tf.float32, [2, 16, 16, 3])
        w = v1.get_variable("w", [3, 3, 3, 8])
        y = tf.reduce_sum(tf.nn.relu(tf.nn.conv2d(x, w, 1, "SAME")))
        meta = v1.RunMetadata()
        with v1.Session(config=config) as sess:
            sess.run(v1.global_variables_initializer())
            out = sess.run(y, {x: np.ones([2, 16, 16, 3], np.float32)},
                           options=v1.RunOptions(output_partition_graphs=True), run_metadata=meta)
    assert np.isfinite(out)
    types = set()
    for graph in meta.partition_graphs:
        for node in graph.node:
            types |= {attr.type for attr in node.attr.values() if attr.type}
    return types


@needs_bf16
def test_bf16_session_config_runs_bfloat16_ops():
    import tensorflow as tf
    from slim import precision

    bf16 = tf.bfloat16.as_datatype_enum
    assert bf16 not in _dtypes_after_rewrite(precision.session_config("fp32"))
    assert bf16 in _dtypes_after_rewrite(precision.session_config("bf16"))


@pytest.mark.slow
@needs_bf16
def test_tiny_bf16_train_eval_export_and_tf_benchmark(monkeypatch, dataset_dir, tmp_path):
    """compute=bf16 end to end on a tiny net: variables stay fp32, the SavedModel takes and gives
    float32, export records the compute, and the TF backend runs it with precision=bf16."""
    import tensorflow as tf
    from slim import eval as slim_eval, export, precision, train
    from slim.benchmark import BenchConfig
    from slim.benchmark.backends import TFBackend

    monkeypatch.delenv("ZOOBUILD_CPU_FLAGS", raising=False)
    cfg = {**SMALL, "steps": 3, "compute": "bf16", "eval_batch_size": 20, "max_num_batches": 1}
    run = tmp_path / "run"
    summary = train.train(cfg, dataset_dir, run)
    assert summary["global_step"] == 3 and np.isfinite(summary["final_loss"])
    assert summary["params"]["compute"] == "bf16"
    reader = tf.train.load_checkpoint(summary["checkpoint"])
    dtypes = reader.get_variable_to_dtype_map()
    assert {d for n, d in dtypes.items() if n != "global_step"} == {tf.float32}

    result = slim_eval.evaluate(cfg, dataset_dir, run)
    assert result["compute"] == "bf16" and 0.0 <= result["top1"] <= result["top5"] <= 1.0
    # the accuracy gate's reference: the same checkpoint on the same images in fp32
    assert result["reference"]["compute"] == "fp32"
    assert result["reference"]["num_examples"] == result["num_examples"]
    assert result["gate"]["reference_top1"] == result["reference"]["top1"]
    assert result["gate"]["passed"] == (result["gate"]["ratio"] >= 0.99)

    meta = export.export(cfg, dataset_dir, run, tmp_path / "export")
    assert meta["compute"] == "bf16" and meta["input_dtype"] == "float32"
    assert json.loads((tmp_path / "export" / "export.json").read_text())["compute"] == "bf16"
    sig = tf.saved_model.load(str(tmp_path / "export" / "saved_model")).signatures["serving_default"]
    assert sig.structured_input_signature[1]["images"].dtype == tf.float32
    assert {k: v.dtype for k, v in sig.structured_outputs.items()} == {
        "logits": tf.float32, "probabilities": tf.float32, "classes": tf.int64}

    bc = BenchConfig(model_path=str(tmp_path / "export"), backend="tf", precision="bf16")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    try:
        backend = TFBackend(bc)
        scores = backend.scores(backend.predict(backend.prepare(x)))
    finally:   # the rewrite is process-wide in eager mode: later tests expect fp32
        precision.enable_for_eager("fp32")
    assert scores.dtype == np.float32 and scores.shape == (2, NUM_CLASSES + 1)
    assert np.allclose(scores.sum(1), 1.0, atol=1e-2)

    monkeypatch.setenv("ZOOBUILD_CPU_FLAGS", OLD_CPU)
    with pytest.raises(UserError, match="benchmark backend=tf precision=bf16 needs CPU feature"):
        TFBackend(bc)
    with pytest.raises(UserError, match="backend=tf runs one of fp32, bf16"):
        TFBackend(BenchConfig(model_path=str(tmp_path / "export"), backend="tf", precision="int8"))


@pytest.mark.slow
@needs_bf16
def test_doit_bf16_train_eval_export_benchmark_publish(dataset_dir, build_dir, tmp_path):
    """The whole bf16 chain through doit on a tiny net: the bf16 model publishes with its gate
    in the manifest and the catalog."""
    store = tmp_path / "store"
    args = [f"model={SMALL['model']}", "compute=bf16", f"dataset_dir={dataset_dir}", "steps=4",
            "train_image_size=64", "batch_size=8", "optimizer=momentum", "batch_norm_decay=0.9",
            "eval_batch_size=20", "backend=tf", "precision=bf16", "onnx_precisions=fp32",
            "min_duration=0.05", "min_queries=20", f"store={store}", "version=1.0.0"]
    env = {"ZOOBUILD_BUILD_DIR": str(build_dir), "TF_CPP_MIN_LOG_LEVEL": "2"}
    res = run_doit(["publish"] + args, env=env, check=False, timeout=1500)
    out = res.stdout + res.stderr
    ev = json.loads(next((build_dir / "eval" / SMALL["model"]).glob("*/eval.json")).read_text())
    assert ev["compute"] == "bf16" and ev["reference"]["compute"] == "fp32"
    if not ev["gate"]["passed"]:      # the gate did its job: nothing was published
        assert res.returncode != 0 and "refused by the accuracy gate" in out, out
        assert not (store / "models").exists()
        return
    assert res.returncode == 0, out
    bench = json.loads(next((build_dir / "benchmark" / SMALL["model"]).glob("*/results.json")).read_text())
    assert bench["config"]["precision"] == "bf16" and bench["offline"]["throughput_ips"] > 0
    manifest = json.loads(next(store.glob(f"models/{SMALL['model']}/1.0.0/*/manifest.json")).read_text())
    saved = {a["precision"]: a for a in manifest["artifacts"] if a["format"] == "savedmodel"}
    assert saved["bf16"]["gate"]["passed"] and manifest["eval"]["gate"]["passed"]
    assert manifest["benchmark"]["savedmodel-bf16"]["throughput_ips"] > 0
    assert "| bf16 | savedmodel |" in (store / "MODELS.md").read_text()
