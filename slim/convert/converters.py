"""The converters, one per precision, found through one table (name -> function):

* fp32: tf2onnx from the serving signature (`slim.convert.from_tf`).
* fp16: onnxconverter-common's float16 pass over the fp32 file (keep_io_types keeps
  float32 inputs and outputs).
* int8: onnxruntime's post-training static quantization (QDQ, per-channel int8 weights,
  uint8 activations), calibrated with MinMax on a sample file streamed one batch at a time.

Every converter takes (export_dir, out, **settings) and writes `out`.
"""
from __future__ import annotations

import warnings
from pathlib import Path

from slim.convert import calibration
from slim.convert.from_tf import to_onnx_fp32


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


def to_onnx_fp16(export_dir, out: Path, *, fp32_path: Path, keep_io_types: bool, **_):
    import onnx
    from onnxconverter_common import float16

    model = _detach_consumed_outputs(onnx.load(str(fp32_path)))
    with warnings.catch_warnings():     # one "will be truncated" line per tiny weight
        warnings.simplefilter("ignore", UserWarning)
        model = float16.convert_float_to_float16(model, keep_io_types=keep_io_types)
    onnx.save(model, str(out))
    return out


def to_onnx_int8(export_dir, out: Path, *, fp32_path: Path, calibration_file, batch_size: int,
                 nchw: bool, input_name: str = "images", **_):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from zoobuild.progress import progress

    batch = batch_size or 1
    Reader = calibration.reader_class()
    with progress("convert: int8 calibration", total=None, unit="images") as bar:
        reader = Reader(calibration_file, input_name, batch, nchw, bar=bar)
        quantize_static(str(fp32_path), str(out), reader, quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=calibration.calibrate_method())
    return out


CONVERTERS = {"fp32": to_onnx_fp32, "fp16": to_onnx_fp16, "int8": to_onnx_int8}
PRECISIONS = tuple(CONVERTERS)
