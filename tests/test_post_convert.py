"""Conversion behind the parity gate, and publishing what passed (tiny SavedModels)."""
import json
import shutil

import numpy as np
import pytest

from artifacts import catalog, fetch, release, store as st
from slim import convert
from zoobuild.errors import UserError
from test_post_fixtures import tiny_saved_model, tiny_v1_export


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return tiny_saved_model(tmp_path_factory.mktemp("tiny") / "export")


@pytest.fixture(scope="module")
def converted(export, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "out"
    report = convert.convert(export, out, precisions=("fp32", "fp16", "int8"), batch_size=4, progress=lambda *_: None)
    return out, report


def _corrupt(src, dst, scale=25.0):
    """Copy an ONNX file with its largest float initializer blown up (a broken conversion)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    inits = [i for i in model.graph.initializer if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    target = max(inits, key=lambda i: np.prod(i.dims))
    arr = numpy_helper.to_array(target).copy()
    arr.flat[::3] *= scale
    target.CopyFrom(numpy_helper.from_array(arr, target.name))
    onnx.save(model, str(dst))
    return dst


def test_every_precision_passes_its_gate(converted):
    out, report = converted
    assert report["passed"] == ["fp16", "fp32", "int8"] and report["rejected"] == []
    r = report["results"]
    assert r["fp32"]["max_abs"] <= convert.TOLERANCES["fp32"]["max_abs"]
    assert r["fp32"]["top1_agreement"] == 1.0
    for p in ("fp32", "fp16", "int8"):
        assert (out / f"model.{p}.onnx").exists() and r[p]["sha256"]
    assert report["signature"]["inputs"]["images"]["shape"] == [None, 16, 16, 3]
    assert report["calibration"]["source"] == "seeded" and report["batch_size"] == 4
    assert json.loads((out / "report.json").read_text())["passed"] == report["passed"]
    # fixed input shape and batch; keep_io_types keeps fp16's input float32
    import onnx
    for p in ("fp32", "fp16"):
        inp = onnx.load(str(out / f"model.{p}.onnx")).graph.input[0]
        assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [4, 16, 16, 3]
        assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    fp16_inits = {i.data_type for i in onnx.load(str(out / "model.fp16.onnx")).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in fp16_inits
    int8_ops = {n.op_type for n in onnx.load(str(out / "model.int8.onnx")).graph.node}
    assert "QuantizeLinear" in int8_ops


def test_parity_gate_rejects_a_corrupted_conversion(export, converted, tmp_path):
    out, _ = converted
    bad = _corrupt(out / "model.fp32.onnx", tmp_path / "bad.onnx")
    verdict = convert.gate_file(export, bad, "fp32")
    assert not verdict["passed"]
    assert "max abs error" in verdict["reason"]
    good = convert.gate_file(export, out / "model.fp32.onnx", "fp32")
    assert good["passed"], good


def test_a_failing_conversion_is_reported_and_never_published(export, converted, tmp_path, monkeypatch, build_dir):
    # the fp16 converter produces a broken model: the report says so and publish refuses it
    real = convert.CONVERTERS["fp16"]

    def broken_fp16(export_dir, out, **kw):
        real(export_dir, out, **kw)
        return _corrupt(out, out)
    monkeypatch.setitem(convert.CONVERTERS, "fp16", broken_fp16)
    out = tmp_path / "conv"
    report = convert.convert(export, out, precisions=("fp32", "fp16"), batch_size=4, progress=lambda *_: None)
    assert report["passed"] == ["fp32"] and report["rejected"] == ["fp16"]
    assert not (out / "model.fp16.onnx").exists() and (out / "rejected" / "model.fp16.onnx").exists()
    saved = json.loads((out / "report.json").read_text())["results"]["fp16"]
    assert saved["passed"] is False and "max abs error" in saved["reason"]

    store = st.open_store(str(tmp_path / "store"))
    with pytest.raises(UserError, match="fp16: failed the parity gate"):
        release.release(store, "tiny", "1.0.0", export_dir=export, convert_dir=out, precisions=["fp32", "fp16"],
                        progress=lambda *_: None)
    assert st.versions(store, "tiny") == []
    # by default only what passed goes out
    m = release.release(store, "tiny", "1.0.0", export_dir=export, convert_dir=out, progress=lambda *_: None)
    assert [a["precision"] for a in m["artifacts"] if a["format"] == "onnx"] == ["fp32"]
    assert m["parity"]["fp16"]["passed"] is False


def test_a_file_changed_after_the_gate_is_not_published(export, converted, tmp_path, build_dir):
    out, _ = converted
    copy = tmp_path / "conv"
    shutil.copytree(out, copy)
    _corrupt(copy / "model.int8.onnx", copy / "model.int8.onnx", scale=1.01)
    store = st.open_store(str(tmp_path / "store"))
    with pytest.raises(UserError, match="differs from the file the parity gate passed"):
        release.release(store, "tiny", "1.0.0", export_dir=export, convert_dir=copy, progress=lambda *_: None)
    assert st.versions(store, "tiny") == []


def test_nchw_and_dynamic_batch(export, tmp_path):
    report = convert.convert(export, tmp_path / "c", precisions=("fp32",), batch_size=0, nchw=True,
                             progress=lambda *_: None)
    assert report["passed"] == ["fp32"]
    run = convert.onnx_runner(tmp_path / "c" / "model.fp32.onnx")
    inp = run.session.get_inputs()[0]
    assert inp.shape[1:] == [3, 16, 16] and not isinstance(inp.shape[0], int)


def test_publish_detects_a_signature_change_and_fetch_gets_a_working_model(export, converted, tmp_path, build_dir):
    out, _ = converted
    store = st.open_store(str(tmp_path / "store"))
    m = release.release(store, "tiny", "1.0.0", export_dir=export, convert_dir=out, progress=lambda *_: None)
    assert m["signature"]["outputs"]["classes"]["dtype"] == "int64"
    assert m["converters"]["tf2onnx"] and m["source"]["revision"]
    assert m["training"]["export_key"] == "tiny-1"
    # retrained weights: Y must go up
    retrained = tiny_saved_model(tmp_path / "retrained", seed=2)
    with pytest.raises(UserError, match="weights changed.*minor"):
        release.release(store, "tiny", "1.0.1", export_dir=retrained, progress=lambda *_: None)
    # one more output: the signature changed, X must go up (detected, nobody declared it)
    wider = tiny_saved_model(tmp_path / "wider", extra_output=True)
    with pytest.raises(UserError, match="signature changed.*major"):
        release.release(store, "tiny", "1.1.0", export_dir=wider, progress=lambda *_: None)
    release.release(store, "tiny", "2.0.0", export_dir=wider, progress=lambda *_: None)
    index = json.loads((tmp_path / "store" / "index.json").read_text())
    assert sorted(index["models"]["tiny"]["versions"]) == ["1.0.0", "2.0.0"]
    assert "| tiny | 1.0.0 |" in (tmp_path / "store" / "MODELS.md").read_text()
    assert catalog.render_markdown(catalog.build_index(store)) == (tmp_path / "store" / "MODELS.md").read_text()

    got = fetch.fetch(store, "tiny", "^1", tmp_path / "models")
    images = convert.seeded_inputs(4, 16, 16, seed=9)
    want = convert.tf_runner(export)(images)["probabilities"]
    fetched = convert.onnx_runner(got / "onnx" / "model.fp32.onnx")(images)["probabilities"]
    assert np.max(np.abs(want - fetched)) < 1e-4
    assert (got / "saved_model" / "saved_model.pb").exists() and (got / "parity.json").exists()


def test_the_export_stage_layout_converts_and_publishes(tmp_path, build_dir):
    """slim/export.py's layout: a TF1 SavedModel in saved_model/, export.json beside it."""
    export = tiny_v1_export(tmp_path / "export")
    report = convert.convert(export, tmp_path / "c", precisions=("fp32", "fp16"), batch_size=2,
                             progress=lambda *_: None)
    assert report["passed"] == ["fp16", "fp32"]
    # converted from the export's frozen GraphDef, named like the serving signature
    run = convert.onnx_runner(tmp_path / "c" / "model.fp32.onnx")
    assert [i.name for i in run.session.get_inputs()] == ["images"] and run.batch == 2
    assert sorted(o.name for o in run.session.get_outputs()) == ["classes", "logits", "probabilities"]
    nchw = convert.convert(export, tmp_path / "n", precisions=("fp32",), batch_size=0, nchw=True,
                           progress=lambda *_: None)
    assert nchw["passed"] == ["fp32"]
    assert convert.onnx_runner(tmp_path / "n" / "model.fp32.onnx").session.get_inputs()[0].shape[1:] == [3, 16, 16]
    assert report["signature"]["inputs"]["images"]["shape"] == [None, 16, 16, 3]
    store = st.open_store(str(tmp_path / "store"))
    m = release.release(store, "tiny", "0.1.0", export_dir=export, convert_dir=tmp_path / "c",
                        progress=lambda *_: None)
    assert m["training"]["params"] == {"model": "tiny_v1", "batch_size": 8}
    got = fetch.fetch(store, "tiny", "^0.1", tmp_path / "models")
    assert (got / "saved_model" / "saved_model.pb").exists() and (got / "export.json").exists()
