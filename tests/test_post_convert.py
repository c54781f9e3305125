"""Conversion behind the gate, and publishing what passed (tiny SavedModels).

The labelled tests use a tiny model that needs no training: it scores each pixel's
closeness to each synthetic class's colour (datasets.synthetic paints every object in its
class's colour), so on the embedded-style TFRecords its fp32 top-1 is high and a broken
conversion shows up as lost accuracy."""
import json
import platform
import shutil

import numpy as np
import pytest

from artifacts import catalog, fetch, release, store as st
from slim import convert
from slim.convert import gate
from zoobuild.errors import UserError
from test_post_fixtures import tiny_saved_model, tiny_v1_export
from test_slim_common import NUM_CLASSES, slim_dataset

QUIET = {"progress": lambda *_: None}


def colour_model(out, classes: int = NUM_CLASSES, size: int = 16, sigma: float = 0.3):
    """A SavedModel (+ export.json) classifying synthetic images by their objects' colour.
    Labels are slim's: 0 background, 1..classes; the input is the reader's [-1, 1] range."""
    import tensorflow as tf

    from datasets.synthetic import class_colour

    colours = np.stack([class_colour(c, classes) / 255.0 * 2 - 1 for c in range(classes)]).astype("float32")

    class Colour(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(colours.T)                                   # [3, classes]
            self.c2 = tf.Variable((colours ** 2).sum(1))                      # [classes]

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
        def serve(self, images):
            x = tf.reshape(images, [-1, 3])
            d2 = tf.reduce_sum(x * x, 1, keepdims=True) - 2 * tf.matmul(x, self.w) + self.c2
            near = tf.reshape(tf.exp(-d2 / (2 * sigma ** 2)), [-1, size * size, classes])
            score = tf.reduce_mean(near, 1)                                  # share of pixels per class
            logits = tf.concat([tf.fill([tf.shape(images)[0], 1], 0.02), score], 1) * 40.0
            return {"logits": logits, "probabilities": tf.nn.softmax(logits), "classes": tf.argmax(logits, 1)}

    m = Colour()
    tf.saved_model.save(m, str(out), signatures={"serving_default": m.serve})
    (out / "export.json").write_text(json.dumps({"model": "colour", "input_shape": [size, size, 3],
                                                 "num_classes": classes + 1, "labels_offset": 0}))
    return out


@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """(export, TFRecords, conversion dir, report): the colour model gated on labelled data."""
    data = slim_dataset(tmp_path_factory)
    export = colour_model(tmp_path_factory.mktemp("colour") / "export")
    out = tmp_path_factory.mktemp("conv") / "labelled"
    report = convert.convert(export, out, batch_size=4, data_dir=str(data), **QUIET)
    return export, data, out, report


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return tiny_saved_model(tmp_path_factory.mktemp("tiny") / "export")


@pytest.fixture(scope="module")
def converted(export, tmp_path_factory):
    out = tmp_path_factory.mktemp("conv") / "out"
    report = convert.convert(export, out, precisions=("fp32", "fp16", "int8"), batch_size=4, **QUIET)
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


def test_weights_kept_out_of_tf2onnx_and_halved_first_give_the_same_model(tmp_path, monkeypatch):
    """With the size threshold at 0 every weight takes the low-memory paths that vgg_16's
    large ones take: placeholders through tf2onnx then streamed back in, and float16 before
    the fp16 converter; the models must still pass the gate and match the plain ones."""
    from slim.convert import converters, from_tf

    export = tiny_v1_export(tmp_path / "export")
    plain = convert.convert(export, tmp_path / "plain", precisions=("fp32", "fp16"), batch_size=2, **QUIET)
    monkeypatch.setattr(from_tf, "MIN_WEIGHT_BYTES", 0)
    monkeypatch.setattr(converters, "MIN_WEIGHT_BYTES", 0)
    low = convert.convert(export, tmp_path / "low", precisions=("fp32", "fp16"), batch_size=2, **QUIET)
    assert low["passed"] == ["fp16", "fp32"]
    import onnx
    for p in ("fp32", "fp16"):
        model = onnx.load(str(tmp_path / "low" / f"model.{p}.onnx"))
        assert [i.name for i in model.graph.input] == ["images"]
        assert low["results"][p]["max_abs"] == plain["results"][p]["max_abs"]
    def ops(d):   # the weights' Transposes are folded: the same graph as tf2onnx's own
        return sorted(n.op_type for n in onnx.load(str(tmp_path / d / "model.fp32.onnx")).graph.node)
    assert ops("low") == ops("plain")
    halves = {i.data_type for i in onnx.load(str(tmp_path / "low" / "model.fp16.onnx")).graph.initializer}
    assert onnx.TensorProto.FLOAT16 in halves


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


# ---------------------------------------------------------------- the gate on labelled data

def _onehot(pred, classes=5, p=0.9):
    out = np.full((len(pred), classes), (1 - p) / (classes - 1))
    out[np.arange(len(pred)), pred] = p
    return {"probabilities": out}


def test_gate_rule_is_99_percent_of_fp32_top1_on_labels():
    labels = np.arange(100) % 5
    ref = _onehot(labels)                                   # fp32 top-1 1.0
    tol = gate.TOLERANCES["int8"]
    one_wrong, two_wrong = labels.copy(), labels.copy()
    one_wrong[0] = (labels[0] + 1) % 5
    two_wrong[:2] = (labels[:2] + 1) % 5
    ok = gate.judge(gate.measure(ref, _onehot(one_wrong), labels), "int8", tol, "tfrecords")
    assert ok["passed"] and ok["top1"] == 0.99 and ok["fp32_top1"] == 1.0 and ok["top1_ratio"] == 0.99
    bad = gate.judge(gate.measure(ref, _onehot(two_wrong), labels), "int8", tol, "tfrecords")
    assert not bad["passed"] and "top-1 0.9800 < 99% of the fp32 SavedModel's 1.0000" in bad["reason"]
    # accuracy decides, not agreement: flipping 20 samples the reference already got wrong
    # keeps top-1 (passes on labels) but would fail the agreement fallback without labels
    ref_pred = labels.copy()
    ref_pred[:20] = (labels[:20] + 1) % 5
    conv_pred = ref_pred.copy()
    conv_pred[:20] = (labels[:20] + 2) % 5
    on_labels = gate.judge(gate.measure(_onehot(ref_pred), _onehot(conv_pred), labels), "int8", tol, "tfrecords")
    assert on_labels["passed"] and on_labels["top1_agreement"] == 0.8
    seeded = gate.judge(gate.measure(_onehot(ref_pred), _onehot(conv_pred)), "int8", tol, "seeded")
    assert not seeded["passed"] and "top-1 agreement 0.800 < 0.9 on 100 clear samples" in seeded["reason"]
    assert seeded["top1"] is None and seeded["note"] == gate.SEEDED_NOTE


def test_agreement_counts_only_samples_with_a_clear_reference_top1():
    ref = np.full((10, 4), 0.1)
    ref[:, 0] = 0.7                                        # 0.7 vs 0.1: clear
    ref[6:, :2] = [0.449, 0.451]                           # top-1 margin 0.002: a tie
    conv = ref.copy()
    conv[6:, :2] = [0.451, 0.449]                          # the ties flip
    figures = gate.measure({"probabilities": ref}, {"probabilities": conv})
    assert figures["clear"] == 6 and figures["top1_agreement"] == 1.0
    verdict = gate.judge(figures, "fp16", gate.TOLERANCES["fp16"], "seeded")
    assert verdict["passed"], verdict
    conv[0] = [0.1, 0.7, 0.1, 0.1]                         # a clear sample flips: it counts
    figures = gate.measure({"probabilities": ref}, {"probabilities": conv})
    assert figures["clear"] == 6 and figures["top1_agreement"] == 5 / 6
    # without the margin every tie would count against the conversion
    assert gate.measure({"probabilities": ref}, {"probabilities": conv}, clear_margin=0)["top1_agreement"] == 0.5


def test_labelled_conversion_passes_and_reports_its_accuracy(labelled):
    _, data, out, report = labelled
    assert report["gate"]["data"] == "tfrecords" and report["gate"]["split"] == "validation"
    assert report["gate"]["samples"] == 60 and report["gate"]["note"] is None
    assert report["calibration"]["source"] == "tfrecords" and report["calibration"]["method"] == "MinMax"
    assert report["passed"] == ["fp16", "fp32", "int8"], report["results"]
    fp32_top1 = report["results"]["fp32"]["fp32_top1"]
    assert fp32_top1 >= 0.9                                  # the colour model works on this data
    for p, r in report["results"].items():
        assert r["data"] == "tfrecords" and r["fp32_top1"] == fp32_top1
        assert r["top1"] >= 0.99 * fp32_top1 and r["top1_ratio"] == r["top1"] / fp32_top1
        assert r["clear"] <= r["samples"] == 60 and r["max_abs"] >= 0 and r["size"] > 0
    saved = json.loads((out / "report.json").read_text())
    assert saved["results"]["int8"]["top1"] == report["results"]["int8"]["top1"]


def test_a_conversion_that_loses_accuracy_fails_on_labelled_data(labelled, tmp_path, monkeypatch):
    export, data, _, _ = labelled
    real = convert.CONVERTERS["fp16"]

    def lossy_fp16(export_dir, out, **kw):   # colours of every third class channel off
        real(export_dir, out, **kw)
        return _corrupt(out, out, scale=-3.0)
    monkeypatch.setitem(convert.CONVERTERS, "fp16", lossy_fp16)
    report = convert.convert(export, tmp_path / "c", precisions=("fp16",), batch_size=4, data_dir=str(data),
                             **QUIET)
    r = report["results"]["fp16"]
    assert report["rejected"] == ["fp16"] and r["data"] == "tfrecords"
    assert r["top1"] < 0.99 * r["fp32_top1"] and "99% of the fp32 SavedModel's" in r["reason"]
    assert (tmp_path / "c" / "rejected" / "model.fp16.onnx").exists()


def test_without_validation_shards_the_gate_falls_back_to_seeded_inputs_and_says_so(export, tmp_path):
    lines = []
    empty = tmp_path / "no_shards"
    empty.mkdir()
    report = convert.convert(export, tmp_path / "c", precisions=("fp32",), batch_size=4, data_dir=str(empty),
                             progress=lines.append)
    assert report["gate"]["data"] == "seeded" and report["gate"]["note"] == gate.SEEDED_NOTE
    r = report["results"]["fp32"]
    assert r["data"] == "seeded" and r["top1"] is None and r["note"] == gate.SEEDED_NOTE
    assert any("no labelled validation TFRecords" in line and str(empty) in line for line in lines)


@pytest.mark.slow
def test_same_export_twice_same_verdict_and_figures(labelled, tmp_path):
    """Each step in its own process, as for a large model (isolate=True).  The files' bytes
    may differ (tf2onnx names nodes after the traced function, whose name differs per
    process); every verdict and figure must not."""
    export, data, _, _ = labelled
    reports = [convert.convert(export, tmp_path / f"c{i}", batch_size=4, data_dir=str(data), isolate=True,
                               **QUIET) for i in range(2)]

    def figures(report):
        return {p: {k: v for k, v in r.items() if k not in ("file", "sha256")} for p, r in report["results"].items()}
    assert reports[0]["passed"] == ["fp16", "fp32", "int8"]
    assert figures(reports[0]) == figures(reports[1])
    assert reports[0]["gate"]["data"] == "tfrecords"


def test_catalog_gives_each_precision_its_size_and_gate_top1(labelled, tmp_path, build_dir):
    export, _, out, report = labelled
    store = st.open_store(str(tmp_path / "store"))
    release.release(store, "colour", "1.0.0", export_dir=export, convert_dir=out, **QUIET)
    text = (tmp_path / "store" / "MODELS.md").read_text()
    arch = platform.machine()
    sizes = set()
    for p in ("fp32", "fp16", "int8"):
        r = report["results"][p]
        row = (f"| colour | 1.0.0 | {arch} | {p} | onnx | {r['top1']:.3f} | – | "
               f"{catalog._human_size(r['size'])} | gate |")
        assert row in text, (row, text)
        sizes.add(r["size"])
    assert len(sizes) == 3                                   # fp16 and int8 files are their own size
    fp32 = report["results"]["fp32"]["fp32_top1"]
    assert f"| colour | 1.0.0 | {arch} | fp32 | savedmodel | {fp32:.3f} | – |" in text
    assert [line.endswith("| gate | `" + line.split("`")[1] + "` |") for line in text.splitlines()
            if line.startswith("| colour |")] == [True] * 4
    rows = catalog.build_index(store)["models"]["colour"]["versions"]["1.0.0"][arch]["rows"]
    assert {r["precision"]: r["gate"]["top1"] for r in rows if r["format"] == "onnx"} == \
        {p: report["results"][p]["top1"] for p in ("fp32", "fp16", "int8")}


def test_the_fp32_reference_stays_fp32_after_a_bf16_run_in_the_same_process(export, converted):
    """A bf16 TF benchmark switches TensorFlow's bf16 rewrite on for every later tf.function of
    the process (doit runs benchmark and convert in one process); the gate's reference must
    still be the fp32 model, or a good fp32 conversion is rejected."""
    from slim import precision

    out, _ = converted
    precision.enable_for_eager("bf16")
    try:
        verdict = convert.gate_file(export, out / "model.fp32.onnx", "fp32")
    finally:
        precision.enable_for_eager("fp32")
    assert verdict["passed"], verdict
