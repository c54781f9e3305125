"""SavedModel -> ONNX (fp32, fp16, int8), each behind a gate measured on labelled data.

    report = convert(export_dir, out_dir, precisions=("fp32", "fp16", "int8"), batch_size=1,
                     data_dir=tfrecords_dir)

One concern per module:
  savedmodel   the source: SavedModel location, serving signature, input size, weights digest
  runners      running a SavedModel or an ONNX file on images
  samples      gate and calibration images: labelled TFRecords, or seeded when there are none
  reference    the fp32 SavedModel's outputs on the gate samples, made once per conversion
  from_tf      fp32 through tf2onnx, large weights kept out of it
  converters   the precision -> converter table (fp16, int8) and int8 quantization
  calibration  the streaming calibration reader and the calibration method
  gate         the verdict: top-1 >= 99% of fp32 on labelled data; agreement, max abs error
  pipeline     convert(): reference, convert, gate, report.json
  cli          `python -m slim.convert EXPORT OUT`
"""
from slim.convert.calibration import CALIBRATION_SAMPLES
from slim.convert.converters import CONVERTERS, PRECISIONS
from slim.convert.gate import TOLERANCES, gate_file
from slim.convert.pipeline import convert
from slim.convert.runners import onnx_runner, run_batched, tf_runner
from slim.convert.samples import iter_batches, reader_batches, seeded_inputs
from slim.convert.savedmodel import (export_info, find_saved_model, input_hw, load_serving,
                                     saved_model_signature, signature_of, versions, weights_digest)

__all__ = ["CALIBRATION_SAMPLES", "CONVERTERS", "PRECISIONS", "TOLERANCES", "convert", "export_info",
           "find_saved_model", "gate_file", "input_hw", "iter_batches", "load_serving", "onnx_runner",
           "reader_batches", "run_batched", "saved_model_signature", "seeded_inputs", "signature_of",
           "tf_runner", "versions", "weights_digest"]
