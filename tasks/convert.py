"""convert: SavedModel -> ONNX fp32/fp16/int8, each behind the accuracy gate (one subtask per model).

    doit convert model=vgg_16 onnx_precisions=fp32,fp16,int8 onnx_batch=1 opset=17

The variables have names of their own (onnx_batch, opset, ...) so that passing them never
changes the key of the training stage.  Output:
  build/convert/<model>/<key12>/     model.<precision>.onnx, rejected/, report.json
"""
from __future__ import annotations

from pathlib import Path

from tasks.cache import shared_cache
from tasks.common import MODEL
from tasks.errors import guarded
from tasks.exports import (data_identity, default_tfrecords, export_dir, export_digest, export_task_dep,
                           require_export)
from tasks.params import Var
from zoobuild import keys
from zoobuild.produce import produce

__all__ = ["task_convert"]

ONNX_PRECISIONS = ("fp32", "fp16", "int8")

PRECISIONS = Var("onnx_precisions", list, ["fp32", "fp16", "int8"], "convert: precisions to convert and gate",
                 choices=ONNX_PRECISIONS)
ONNX_BATCH = Var("onnx_batch", int, 1, "convert: fixed batch of the ONNX models (0: dynamic)",
                 minimum=0)
OPSET = Var("opset", int, 17, "convert: ONNX opset", minimum=1)
NCHW = Var("nchw", bool, False, "convert: NCHW input for the ONNX models")
KEEP_IO = Var("keep_io_types", bool, True, "convert: fp16 keeps float32 inputs and outputs")
CALIB_DIR = Var("calib_dir", str, "", "convert: TFRecords whose validation split gates and train split "
                "calibrates int8; empty: the default TFRecords when built, else seeded inputs")


def convert_params() -> dict:
    calib = CALIB_DIR.get()
    if not calib:   # the gate reads its validation split for every precision
        d = default_tfrecords()
        calib = str(d) if d else ""
    return {"precisions": sorted(PRECISIONS.get()), "onnx_batch": ONNX_BATCH.get(), "opset": OPSET.get(),
            "nchw": NCHW.get(), "keep_io_types": KEEP_IO.get(), "calib_dir": calib}


def convert_key(model: str) -> keys.Key:
    params = convert_params()
    inputs = {"export": export_digest(export_dir(model), model)}
    if params["calib_dir"]:
        inputs["calibration"] = data_identity(params["calib_dir"])
    # the calibration data is keyed by its identity, not by where it lies: a path (under this
    # machine's build directory) would give every machine its own key and defeat the cache
    keyed = {n: v for n, v in params.items() if n != "calib_dir"}
    return keys.make_key("convert", entries=["slim.convert"], params=keyed, inputs=inputs)


def convert_dir(model: str) -> Path:
    return keys.run_dir("convert", model, convert_key(model))


def _convert(model: str, src: str, out: str, key: keys.Key, params: dict) -> None:
    from slim import convert

    require_export(Path(src), model)
    calib = params["calib_dir"]
    if calib and not CALIB_DIR.get() and not Path(calib).is_dir():
        calib = ""  # export_dir= without the default data set: gate and calibrate on seeded inputs

    def build(tmp):
        report = convert.convert(src, tmp, precisions=params["precisions"], batch_size=params["onnx_batch"],
                                 opset=params["opset"], nchw=params["nchw"],
                                 keep_io_types=params["keep_io_types"], data_dir=calib)
        return {"passed": report["passed"], "rejected": report["rejected"]}

    produce("convert", key, Path(out), build, cache=shared_cache())
    report = keys.read_marker(out) or {}
    if report.get("rejected"):
        print(f"convert: {model}: REJECTED by the gate: {', '.join(report['rejected'])} "
              f"(see {out}/report.json); they will not be published")


def task_convert():
    """SavedModel -> ONNX fp32/fp16/int8, each behind an accuracy gate (vars: onnx_precisions, onnx_batch, opset, nchw)."""
    model = MODEL.get()
    key = convert_key(model)
    out = keys.run_dir("convert", model, key)
    yield {
        "name": model,
        "actions": [(guarded(_convert), (model, str(export_dir(model)), str(out), key, convert_params()))],
        "uptodate": [keys.key_uptodate(key, out)],
        "task_dep": export_task_dep(model),
        "meta": {"key": key, "outdir": out},
        "doc": f"convert {model} -> {out}",
        "verbosity": 2,
    }
