"""The doit chain convert -> benchmark -> publish -> fetch, on a tiny export."""
import json

import pytest

from conftest import run_doit
from test_post_fixtures import tiny_saved_model

pytestmark = pytest.mark.slow      # six doit runs, two of which import TensorFlow


def test_doit_convert_benchmark_publish_fetch(build_dir, tmp_path):
    from zoobuild import keys

    export = tiny_saved_model(tmp_path / "export")
    # the run cache behind the export: export <- train (on a data set) <- eval of that training
    train_key = keys.Key("train", inputs={"dataset": "d" * 64})
    keys.mark_complete(export, keys.Key("export", inputs={"train": train_key.hex}))
    for stage, key in (("train", train_key), ("eval", keys.Key("eval", inputs={"train": train_key.hex}))):
        d = build_dir / stage / "vgg_16" / key.short
        d.mkdir(parents=True)
        keys.mark_complete(d, key)
    (build_dir / "eval" / "vgg_16" / keys.Key("eval", inputs={"train": train_key.hex}).short / "eval.json") \
        .write_text(json.dumps({"top1": 0.75, "top5": 1.0}))
    store = tmp_path / "store"
    common = ["model=vgg_16", f"export_dir={export}", "onnx_precisions=fp32,fp16", "onnx_batch=2",
              "min_duration=0.05", "min_queries=20"]
    listed = run_doit(["list", "--all"] + common).stdout
    for sub in ("convert:vgg_16", "benchmark:vgg_16", "publish:vgg_16", "fetch:vgg_16"):
        assert sub in listed

    res = run_doit(["publish"] + common + ["precision=fp16", "version=1.0.0", f"store={store}"])
    out = res.stdout + res.stderr
    assert "convert: fp16 passed" in out and "images/s" in out and "first version" in out
    conv = [d for d in (build_dir / "convert" / "vgg_16").iterdir() if (d / ".complete.json").exists()]
    assert len(conv) == 1 and json.loads((conv[0] / "report.json").read_text())["passed"] == ["fp16", "fp32"]
    bench = list((build_dir / "benchmark" / "vgg_16").glob("*/results.json"))
    assert len(bench) == 1 and (bench[0].parent / "latency.png").exists()
    manifest = json.loads((store / "models/vgg_16/1.0.0/x86_64/manifest.json").read_text())
    assert manifest["benchmark"]["onnx-fp16"]["throughput_ips"] > 0
    assert [a["precision"] for a in manifest["artifacts"]] == ["fp32", "fp16", "fp32"]
    assert manifest["dataset"]["key"] == "d" * 64 and manifest["eval"]["top1"] == 0.75
    assert "| vgg_16 | 1.0.0 | x86_64 | fp32 | savedmodel | 0.750 |" in (store / "MODELS.md").read_text()

    # nothing changed: convert and benchmark are up to date; the same version is refused
    again = run_doit(["publish"] + common + ["precision=fp16", "version=1.0.0", f"store={store}"], check=False)
    assert again.returncode != 0
    assert "-- convert:vgg_16" in again.stdout and "-- benchmark:vgg_16" in again.stdout
    assert "already published and versions are immutable" in again.stdout + again.stderr
    # a bad version string is one line
    bad = run_doit(["publish"] + common + ["version=1.0", f"store={store}"], check=False)
    assert bad.returncode != 0 and "expected X.Y.Z" in bad.stdout + bad.stderr

    fetched = tmp_path / "fetched"
    run_doit(["fetch", "model=vgg_16", "version=^1.0", f"store={store}", f"fetch_dir={fetched}"])
    got = fetched / "vgg_16" / "1.0.0"
    arch = next(got.iterdir())
    assert (arch / "onnx" / "model.fp16.onnx").exists() and (arch / "saved_model" / "saved_model.pb").exists()
    missing = run_doit(["fetch", "model=vgg_16", "version=^3", f"store={store}", f"fetch_dir={fetched}"],
                       check=False)
    assert missing.returncode != 0 and "unsupported major version 3" in missing.stdout + missing.stderr

    # without version= the main job publishes to bleedingedge, and only when something changed
    first = run_doit(["publish"] + common + ["precision=fp16", f"store={store}"])
    assert ".  publish:vgg_16" in first.stdout
    assert (store / "models" / "vgg_16" / "bleedingedge" / "x86_64" / "manifest.json").exists() or \
        any((store / "models" / "vgg_16" / "bleedingedge").rglob("manifest.json"))
    second = run_doit(["publish"] + common + ["precision=fp16", f"store={store}"])
    assert "-- publish:vgg_16" in second.stdout
