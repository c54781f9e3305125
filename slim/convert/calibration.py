"""int8 calibration data, streamed: a CalibrationDataReader that hands onnxruntime one batch
at a time from a memory-mapped sample file, and the calibration settings.

MinMax is onnxruntime's calibrator that reduces each tensor inside the graph (ReduceMin /
ReduceMax nodes added by `augment_graph`), so what it keeps per batch is two small arrays per
calibrated tensor, never the activations themselves.  Entropy and Percentile keep every
activation of every sample (histograms over all of them), which for vgg_16 at 224x224 is
tens of MB per image; they are not used.
"""
from __future__ import annotations

import numpy as np

CALIBRATION_SAMPLES = 32      # images; slim's nets need few for MinMax ranges
METHOD = "MinMax"


def calibration_batches_count(batch_size: int, samples: int = CALIBRATION_SAMPLES) -> int:
    batch = batch_size or 1
    return max(1, -(-samples // batch))


class StreamingCalibrationReader:
    """onnxruntime's CalibrationDataReader over a sample file: `get_next` reads one batch
    from disk (NHWC -> NCHW when the model wants it) and nothing is kept afterwards."""

    def __init__(self, images_path, input_name: str, batch: int, nchw: bool, bar=None):
        from slim.convert.samples import load_images

        self._images = load_images(images_path)
        self._name, self._batch, self._nchw, self._bar = input_name, batch, nchw, bar
        self._pos = 0

    def get_next(self):
        if self._pos + self._batch > len(self._images):
            return None           # a fixed-batch model takes full batches only
        chunk = np.asarray(self._images[self._pos:self._pos + self._batch], dtype="float32")
        self._pos += self._batch
        if self._nchw:
            chunk = chunk.transpose(0, 3, 1, 2)
        if self._bar is not None:
            self._bar.advance(self._batch)
        return {self._name: np.ascontiguousarray(chunk)}

    def rewind(self):
        self._pos = 0

    def __len__(self):
        return len(self._images) // self._batch


def reader_class():
    """StreamingCalibrationReader as a subclass of onnxruntime's abstract reader (imported
    late: onnxruntime is only needed when int8 is asked for)."""
    from onnxruntime.quantization import CalibrationDataReader

    return type("CalibrationReader", (StreamingCalibrationReader, CalibrationDataReader), {})


def calibrate_method():
    from onnxruntime.quantization import CalibrationMethod

    return getattr(CalibrationMethod, METHOD)
