"""SavedModel -> ONNX (fp32, fp16, int8), each behind a parity gate.

    report = convert(export_dir, out_dir, precisions=("fp32", "fp16", "int8"), batch_size=1)

* fp32: tf2onnx from the serving signature (input `images` [N,H,W,3] float32 ->
  `logits`, `probabilities`, `classes`), fixed input shape and batch (batch_size=0
  keeps the batch dynamic), chosen opset, optional NCHW input.
* fp16: onnxconverter-common's float16 pass (keep_io_types keeps float32 inputs/outputs).
* int8: onnxruntime post-training static quantization (QDQ), calibrated on training
  shards through the data set reader, or on seeded inputs when there are none.

Parity gate: the source SavedModel and the converted model run on the same seeded
inputs; the max abs error of `probabilities` and the top-1 agreement are held against
per-precision tolerances.  `report.json` records every precision; one that fails is
moved to `rejected/` and is never listed as publishable.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

from zoobuild.errors import UserError

PRECISIONS = ("fp32", "fp16", "int8")

# max abs error of probabilities, minimum top-1 agreement (fraction of samples)
TOLERANCES = {
    "fp32": {"max_abs": 1e-4, "top1_agreement": 1.0},
    "fp16": {"max_abs": 1e-2, "top1_agreement": 0.98},
    "int8": {"max_abs": 0.15, "top1_agreement": 0.90},
}


# ---------------------------------------------------------------- the source model

def find_saved_model(export_dir) -> Path:
    """The SavedModel directory inside an export dir (the dir itself or one level down)."""
    export_dir = Path(export_dir)
    if (export_dir / "saved_model.pb").exists():
        return export_dir
    hits = sorted(p.parent for p in export_dir.glob("*/saved_model.pb"))
    if not hits:
        raise UserError(f"{export_dir}: no saved_model.pb (expected an export dir from `doit export`)")
    return hits[0]


def export_info(export_dir) -> dict:
    """export.json beside (or above) the SavedModel, or {}."""
    for p in (Path(export_dir) / "export.json", Path(export_dir).parent / "export.json"):
        if p.exists():
            return json.loads(p.read_text())
    return {}


def _spec(t) -> dict:
    return {"dtype": t.dtype.name, "shape": [None if d is None else int(d) for d in t.shape.as_list()]}


def load_serving(sm_dir):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(sm_dir))
    if "serving_default" not in loaded.signatures:
        raise UserError(f"{sm_dir}: no serving_default signature")
    return loaded, loaded.signatures["serving_default"]


def signature_of(fn) -> dict:
    """Input/output names, dtypes and shapes of a serving function (what X-bumps compare)."""
    _, kwargs = fn.structured_input_signature
    return {"inputs": {k: _spec(v) for k, v in sorted(kwargs.items())},
            "outputs": {k: _spec(v) for k, v in sorted(fn.structured_outputs.items())}}


def saved_model_signature(export_dir) -> dict:
    _, fn = load_serving(find_saved_model(export_dir))
    return signature_of(fn)


def weights_digest(export_dir) -> str:
    from zoobuild.keys import tree_digest

    sm = find_saved_model(export_dir)
    return tree_digest(sm / "variables") if (sm / "variables").exists() else tree_digest(sm)


def input_hw(sig: dict, info: dict) -> tuple[int, int]:
    shape = sig["inputs"]["images"]["shape"]
    if shape[1] and shape[2]:
        return int(shape[1]), int(shape[2])
    given = info.get("input_shape") or info.get("image_size")
    if isinstance(given, int):
        return given, given
    if given:
        dims = [int(d) for d in given if d]
        return (dims[-3], dims[-2]) if len(dims) >= 3 else (dims[0], dims[1])
    raise UserError("input 'images' has no fixed height/width and export.json gives no input_shape")


def seeded_inputs(n: int, h: int, w: int, seed: int = 0):
    """Deterministic images in [-1, 1] (the range slim's preprocessing produces)."""
    import numpy as np

    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, h, w, 3)).astype("float32")


# ---------------------------------------------------------------- runners: images -> {name: array}

def tf_runner(export_dir):
    import tensorflow as tf

    _, fn = load_serving(find_saved_model(export_dir))

    def run(images):
        out = fn(images=tf.constant(images))
        return {k: v.numpy() for k, v in out.items()}
    return run


def onnx_runner(path, threads: int = 0):
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    nchw = inp.shape[1] == 3 and inp.shape[-1] != 3
    in_type = np.float16 if "float16" in inp.type else np.float32
    names = [o.name for o in sess.get_outputs()]

    def run(images):
        x = images.transpose(0, 3, 1, 2) if nchw else images
        outs = sess.run(names, {inp.name: np.ascontiguousarray(x, dtype=in_type)})
        return {n: np.asarray(o) for n, o in zip(names, outs)}
    run.session, run.batch = sess, inp.shape[0] if isinstance(inp.shape[0], int) else None
    return run


def run_batched(run, images, batch):
    """Run `images` through `run` in chunks of `batch` (padding the last); concatenated outputs."""
    import numpy as np

    if not batch:
        return run(images)
    parts = []
    for i in range(0, len(images), batch):
        chunk = images[i:i + batch]
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        out = run(chunk)
        parts.append({k: v[:batch - pad] for k, v in out.items()})
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


# ---------------------------------------------------------------- converters (name -> function)

@contextlib.contextmanager
def _fresh_node_protos():
    """tf2onnx rewrites every node's attributes in place after each optimizer pass; under
    protobuf's upb backend the replaced attributes stay in the message's arena until the
    message dies, so a net with 0.5 GB of weights (vgg_16) grows by 0.5 GB per pass and
    runs out of memory.  Building a fresh NodeProto each time lets the old one go."""
    import onnx
    from tf2onnx.graph import Node

    original = Node.update_proto

    def update_proto(self, external_tensor_storage=None):
        old = self._op
        new = onnx.NodeProto(name=old.name, op_type=old.op_type, domain=old.domain, doc_string=old.doc_string)
        new.input.extend(self.input)
        new.output.extend(self.output)
        for attr_name, sub_graph in (self.get_body_graphs() or {}).items():
            self.set_attr(attr_name, sub_graph.make_graph(f"graph for {self.name} {attr_name}",
                                                          external_tensor_storage=external_tensor_storage))
        new.attribute.extend(self.get_onnx_attrs(external_tensor_storage).values())
        self._op = new

    Node.update_proto = update_proto
    try:
        yield
    finally:
        Node.update_proto = original


def to_onnx_fp32(export_dir, out: Path, *, batch_size: int, opset: int, nchw: bool, hw, **_):
    import tensorflow as tf
    import tf2onnx

    # tf2onnx deep-copies the whole graph before each optimizer pass unless told not to
    # (it reads the variable's presence, not its value): a 0.5 GB net would need many copies.
    os.environ.setdefault("TF2ONNX_CATCH_ERRORS", "FALSE")
    info = export_info(export_dir)
    frozen = Path(export_dir) / info["frozen_graph"] if info.get("frozen_graph") else None
    try:
        with _fresh_node_protos():
            if frozen is not None and frozen.exists():
                # the export's frozen GraphDef: no second freeze of the variables (vgg_16: 9 GB
                # peak instead of 14 GB)
                graph_def = tf.compat.v1.GraphDef()
                graph_def.ParseFromString(frozen.read_bytes())
                outputs = [f"{n}:0" for n in info.get("outputs", ["logits", "probabilities", "classes"])]
                tf2onnx.convert.from_graph_def(
                    graph_def, input_names=["images:0"], output_names=outputs, opset=opset,
                    shape_override={"images:0": [batch_size, hw[0], hw[1], 3]} if batch_size else None,
                    inputs_as_nchw=["images:0"] if nchw else None,
                    tensors_to_rename={"images:0": "images", **{o: o[:-2] for o in outputs}},
                    output_path=str(out))
            else:
                _, fn = load_serving(find_saved_model(export_dir))
                spec = (tf.TensorSpec([batch_size or None, hw[0], hw[1], 3], tf.float32, name="images"),)
                wrapped = tf.function(lambda images: fn(images=images))
                tf2onnx.convert.from_function(wrapped, input_signature=spec, opset=opset,
                                              inputs_as_nchw=["images"] if nchw else None,
                                              output_path=str(out))
    except Exception as err:  # tf2onnx raises plain exceptions for unsupported ops
        raise UserError(f"tf2onnx could not convert {export_dir} (opset {opset}): "
                        f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
    return out


def to_onnx_fp16(export_dir, out: Path, *, fp32_path: Path, keep_io_types: bool, **_):
    import onnx
    from onnxconverter_common import float16

    import warnings

    model = _detach_consumed_outputs(onnx.load(str(fp32_path)))
    with warnings.catch_warnings():     # one "will be truncated" line per tiny weight
        warnings.simplefilter("ignore", UserWarning)
        model = float16.convert_float_to_float16(model, keep_io_types=keep_io_types)
    onnx.save(model, str(out))
    return out


def _detach_consumed_outputs(model):
    """Give every graph output that other nodes also read its own Identity.

    float16's keep_io_types casts a graph output back to float32 where it is produced,
    so a node reading that tensor (softmax reading logits) would get float32 while typed
    float16; the Identity keeps the internal tensor float16 and only the output cast.
    """
    from onnx import helper

    graph = model.graph
    consumed = {i for n in graph.node for i in n.input}
    for out in graph.output:
        if out.name not in consumed:
            continue
        inner = out.name + "__inner"
        for n in graph.node:
            n.output[:] = [inner if o == out.name else o for o in n.output]
            n.input[:] = [inner if i == out.name else i for i in n.input]
        graph.node.append(helper.make_node("Identity", [inner], [out.name], name=out.name + "__out"))
    return model


def to_onnx_int8(export_dir, out: Path, *, fp32_path: Path, calibration, **_):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self, feeds):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    import onnxruntime as ort
    name = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"]).get_inputs()[0].name
    feeds = [{name: b} for b in calibration]
    quantize_static(str(fp32_path), str(out), Reader(feeds), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    return out


CONVERTERS = {"fp32": to_onnx_fp32, "fp16": to_onnx_fp16, "int8": to_onnx_int8}


# ---------------------------------------------------------------- calibration data

def iter_batches(data_dir, split: str, batch_size: int, hw, *, preprocessing: str = "",
                 labels_offset: int = 0):
    """(images NHWC float32, labels int64) numpy batches of one split through the data set
    reader (`datasets.reader.dataset`), preprocessed the way the model was trained
    (export.json's `preprocessing`; empty: the reader's default), read once in order."""
    import numpy as np

    from datasets import reader  # the data engineer's tf.data reader

    kwargs = {"image_size": hw[0], "is_training": False, "num_epochs": 1, "labels_offset": labels_offset}
    if preprocessing:
        from slim.preprocessing import get_preprocessing

        prep = get_preprocessing(preprocessing, is_training=False)
        kwargs["preprocess_fn"] = lambda image, height, width, _training: prep(image, height, width)
    for images, labels in reader.dataset(str(data_dir), split, batch_size, **kwargs):
        yield np.asarray(images, dtype="float32"), np.asarray(labels).reshape(-1)


def reader_batches(data_dir, split: str, batch_size: int, hw, limit: int, preprocessing: str = ""):
    """Up to `limit` full image batches from the reader."""
    out = []
    for images, _ in iter_batches(data_dir, split, batch_size, hw, preprocessing=preprocessing):
        if len(images) == batch_size:
            out.append(images)
        if len(out) >= limit:
            break
    return out


def calibration_batches(data_dir, batch_size: int, hw, limit: int = 8, seed: int = 1, preprocessing: str = ""):
    batch = batch_size or 1
    if data_dir:
        batches = reader_batches(data_dir, "train", batch, hw, limit, preprocessing=preprocessing)
        if batches:
            return batches, "train shards"
    return [seeded_inputs(batch, *hw, seed=seed + i) for i in range(limit)], "seeded"


# ---------------------------------------------------------------- parity gate

def parity(source: dict, converted: dict, tolerance: dict) -> dict:
    import numpy as np

    key = "probabilities" if "probabilities" in source else "logits"
    a, b = source[key].astype("float64"), converted[key].astype("float64")
    if a.shape != b.shape:
        return {"passed": False, "reason": f"{key} shape {list(b.shape)} != source {list(a.shape)}"}
    max_abs = float(np.max(np.abs(a - b))) if a.size else 0.0
    agree = float(np.mean(np.argmax(a, -1) == np.argmax(b, -1)))
    logits_abs = (float(np.max(np.abs(source["logits"] - converted["logits"].astype("float64"))))
                  if "logits" in source and "logits" in converted else None)
    failures = []
    if not np.isfinite(max_abs) or max_abs > tolerance["max_abs"]:
        failures.append(f"max abs error {max_abs:.3g} > {tolerance['max_abs']:g}")
    if agree < tolerance["top1_agreement"]:
        failures.append(f"top-1 agreement {agree:.3f} < {tolerance['top1_agreement']:g}")
    return {"passed": not failures, "compared": key, "max_abs": max_abs, "logits_max_abs": logits_abs,
            "top1_agreement": agree, "samples": int(a.shape[0]), "tolerance": dict(tolerance),
            "reason": "; ".join(failures) or None}


def gate(export_dir, onnx_path, precision: str, *, samples: int = 32, seed: int = 0,
         tolerance: dict | None = None, source_run=None, batch: int | None = None) -> dict:
    """Run the parity gate for one converted file; returns the verdict dict."""
    sig = saved_model_signature(export_dir)
    hw = input_hw(sig, export_info(export_dir))
    images = seeded_inputs(samples, *hw, seed=seed)
    source = run_batched(source_run or tf_runner(export_dir), images, batch)
    conv_run = onnx_runner(onnx_path)
    converted = run_batched(conv_run, images, conv_run.batch)
    return parity(source, converted, tolerance or TOLERANCES[precision])


def versions() -> dict:
    """Converter versions, for manifests."""
    import importlib.metadata as md

    out = {}
    for dist in ("tensorflow-cpu", "tf2onnx", "onnx", "onnxruntime", "onnxconverter-common"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def convert(export_dir, out_dir, *, precisions=PRECISIONS, batch_size: int = 1, opset: int = 17,
            nchw: bool = False, keep_io_types: bool = True, data_dir: str = "", samples: int = 32,
            seed: int = 0, tolerances: dict | None = None, progress=print) -> dict:
    """Convert and gate; writes ONNX files, rejected/ and report.json into out_dir; returns the report."""
    import numpy as np

    bad = [p for p in precisions if p not in CONVERTERS]
    if bad:
        raise UserError(f"precision {bad[0]!r}: expected one of {', '.join(PRECISIONS)}")
    if batch_size < 0:
        raise UserError(f"batch_size={batch_size}: expected >= 1, or 0 for a dynamic batch")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sm = find_saved_model(export_dir)
    _, fn = load_serving(sm)
    sig = signature_of(fn)
    if "images" not in sig["inputs"]:
        raise UserError(f"{sm}: serving signature has inputs {list(sig['inputs'])}; expected 'images'")
    info = export_info(export_dir)
    hw = input_hw(sig, info)
    tol = {p: dict(TOLERANCES[p], **((tolerances or {}).get(p, {}))) for p in PRECISIONS}

    images = seeded_inputs(samples, *hw, seed=seed)
    source_run = tf_runner(export_dir)
    source = run_batched(source_run, images, batch_size or None)

    fp32_path = out_dir / "model.fp32.onnx"
    todo = list(dict.fromkeys(["fp32", *precisions]))     # fp16 and int8 start from fp32
    calibration, calib_source = None, None
    if "int8" in todo:
        calibration, calib_source = calibration_batches(data_dir, batch_size, hw,
                                                        preprocessing=info.get("preprocessing") or "")
        if nchw:
            calibration = [np.ascontiguousarray(c.transpose(0, 3, 1, 2)) for c in calibration]
    results = {}
    for p in todo:
        path = out_dir / f"model.{p}.onnx"
        progress(f"convert: {p} -> {path.name}")
        CONVERTERS[p](export_dir, path, batch_size=batch_size, opset=opset, nchw=nchw, hw=hw,
                      fp32_path=fp32_path, keep_io_types=keep_io_types, calibration=calibration)
        conv_run = onnx_runner(path)
        verdict = parity(source, run_batched(conv_run, images, conv_run.batch), tol[p])
        entry = {"precision": p, "format": "onnx", "requested": p in precisions, **verdict}
        if not verdict["passed"]:
            rejected = out_dir / "rejected"
            rejected.mkdir(exist_ok=True)
            shutil.move(path, rejected / path.name)
            entry["file"] = f"rejected/{path.name}"
            progress(f"convert: {p} REJECTED by the parity gate: {verdict['reason']}")
        else:
            from zoobuild.digest import sha256_file
            entry.update(file=path.name, sha256=sha256_file(path), size=path.stat().st_size)
            progress(f"convert: {p} passed (max abs {verdict['max_abs']:.2g}, "
                     f"top-1 agreement {verdict['top1_agreement']:.3f})")
        results[p] = entry
        if p == "fp32" and not verdict["passed"]:
            for later in todo[1:]:
                results[later] = {"precision": later, "format": "onnx", "requested": True, "passed": False,
                                  "reason": "fp32 conversion failed the parity gate"}
            break
    report = {
        "model": info.get("model"), "export_dir": str(export_dir), "signature": sig,
        "input_hw": list(hw), "batch_size": batch_size, "opset": opset, "nchw": nchw,
        "keep_io_types": keep_io_types, "samples": samples, "seed": seed,
        "calibration": calib_source, "converters": versions(),
        "results": {p: results[p] for p in todo if p in precisions or p in results},
        "passed": sorted(p for p in precisions if results.get(p, {}).get("passed")),
        "rejected": sorted(p for p in precisions if not results.get(p, {}).get("passed")),
    }
    tmp = out_dir / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1, sort_keys=True))
    os.replace(tmp, out_dir / "report.json")
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m slim.convert", description=__doc__.split("\n")[0])
    ap.add_argument("export_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--precisions", default="fp32,fp16,int8")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--nchw", action="store_true")
    ap.add_argument("--no-keep-io-types", action="store_true")
    ap.add_argument("--data-dir", default="")
    a = ap.parse_args(argv)
    try:
        report = convert(a.export_dir, a.out_dir, precisions=a.precisions.split(","),
                         batch_size=a.batch_size, opset=a.opset, nchw=a.nchw,
                         keep_io_types=not a.no_keep_io_types, data_dir=a.data_dir)
    except UserError as err:
        print(f"zoobuild: {err}", file=sys.stderr)
        return 2
    print(json.dumps({"passed": report["passed"], "rejected": report["rejected"]}))
    return 0 if not report["rejected"] else 1


if __name__ == "__main__":
    sys.exit(main())
