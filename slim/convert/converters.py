"""The converters, one per precision, found through one table (name -> function):

* fp32: tf2onnx from the serving signature (`slim.convert.from_tf`).
* fp16: onnxconverter-common's float16 pass over the fp32 file (keep_io_types keeps
  float32 inputs and outputs).
* int8: onnxruntime's post-training static quantization (QDQ, per-channel uint8 weights,
  uint8 activations), calibrated with MinMax on a sample file streamed one batch at a time.

Every converter takes (export_dir, out, **settings) and writes `out`.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from slim.convert import calibration
from slim.convert.from_tf import to_onnx_fp32

MIN_WEIGHT_BYTES = 1 << 20   # float32 weights at least this large are halved before the converter runs


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


_WEIGHT_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}   # ops whose weights float16 always converts


def _to_float16(tensor, chunk: int = 1 << 22):
    """A float32 TensorProto as a float16 array, clamped by the converter's own function a
    chunk at a time (its float32 temporaries would otherwise be the size of the tensor)."""
    from onnx import numpy_helper
    from onnxconverter_common import float16

    raw = tensor.raw_data
    src = (np.frombuffer(raw, dtype="<f4") if raw else numpy_helper.to_array(tensor)).reshape(-1)
    out = np.empty(src.size, dtype=np.float16)
    for i in range(0, src.size, chunk):
        out[i:i + chunk] = float16.convert_np_to_float16(src[i:i + chunk])
    return out.reshape(tuple(tensor.dims))


def _load_with_fp16_weights(fp32_path: Path, min_bytes: int | None = None):
    """The fp32 model with its large weights (read only by convolutions and matrix products)
    already float16, clamped by the converter's own function, so the converter leaves them
    be.  Done by hand because the converter replaces each tensor's bytes in place and, under
    protobuf's upb backend, the float32 bytes stay in the message's arena: vgg_16 held both."""
    import onnx
    from onnx import numpy_helper

    min_bytes = MIN_WEIGHT_BYTES if min_bytes is None else min_bytes
    model = onnx.load(str(fp32_path))
    users: dict[str, set] = {}
    for node in model.graph.node:
        for name in node.input:
            users.setdefault(name, set()).add(node.op_type)
    halves = {}
    inits = model.graph.initializer
    for i in reversed(range(len(inits))):
        t = inits[i]
        size = 4 * int(np.prod(t.dims)) if t.dims else 4
        if t.data_type == onnx.TensorProto.FLOAT and size >= min_bytes and users.get(t.name) \
                and users[t.name] <= _WEIGHT_OPS:
            halves[t.name] = _to_float16(t)
            del inits[i]
    light = onnx.ModelProto.FromString(model.SerializeToString())   # the arena of `model` goes
    del model
    for name in sorted(halves):
        light.graph.initializer.append(numpy_helper.from_array(halves.pop(name), name))
    return light


def to_onnx_fp16(export_dir, out: Path, *, fp32_path: Path, keep_io_types: bool, **_):
    import onnx
    from onnxconverter_common import float16

    with warnings.catch_warnings():     # one "will be truncated" line per tiny weight
        warnings.simplefilter("ignore", UserWarning)
        model = _detach_consumed_outputs(_load_with_fp16_weights(Path(fp32_path)))
        # the large weights are float16 already (see _load_with_fp16_weights)
        model = float16.convert_float_to_float16(model, keep_io_types=keep_io_types, check_fp16_ready=False)
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
        # Weights as uint8 too (U8U8), not onnxruntime's default int8 (U8S8): on x86 CPUs
        # without VNNI (AVX2, AVX-512 before Cascade Lake) the U8S8 kernels sum pairs of
        # products in int16 (vpmaddubsw) and saturate, so one file gave top-1 agreement 0.875
        # and max abs error 0.57 on an AVX2 host where U8U8 gave 1.0 and 0.08.  The gate
        # only sees the host it runs on; the published file must hold on every CPU.
        quantize_static(str(fp32_path), str(out), reader, quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8, per_channel=True,
                        calibrate_method=calibration.calibrate_method())
    return out


CONVERTERS = {"fp32": to_onnx_fp32, "fp16": to_onnx_fp16, "int8": to_onnx_int8}
PRECISIONS = tuple(CONVERTERS)
