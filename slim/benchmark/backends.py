"""Inference backends (name -> class).  Each one loads a model and offers the same four things:

    backend.hw, backend.fixed_batch      input height/width; the model's own batch or None
    feed = backend.prepare(images)       NHWC float32 numpy -> what predict takes (untimed)
    out = backend.predict(feed)          one query (timed)
    backend.scores(out)                  numpy [N, classes] (accuracy mode)

`threads` > 0 pins intra-op threads to that many and inter-op to 1 (a pinned worker).
TensorFlow and onnxruntime are imported inside the constructors: importing this module is cheap.
"""
from __future__ import annotations

from slim.benchmark.config import BenchConfig


class TFBackend:
    """The SavedModel's serving_default, called eagerly (a concrete function: graph execution)."""

    def __init__(self, cfg: BenchConfig, threads: int = 0):
        import tensorflow as tf

        if threads:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        from slim import convert

        self._tf = tf
        self._loaded, self._fn = convert.load_serving(convert.find_saved_model(cfg.model_path))
        sig = convert.signature_of(self._fn)
        self.hw = convert.input_hw(sig, convert.export_info(cfg.model_path))
        self.fixed_batch = sig["inputs"]["images"]["shape"][0]
        self.dtype = "float32"

    def prepare(self, images):
        return self._tf.constant(images)

    def predict(self, x):
        return self._fn(images=x)

    def scores(self, out):
        return (out["probabilities"] if "probabilities" in out else out["logits"]).numpy()


class ONNXBackend:
    """onnxruntime on the CPU execution provider."""

    def __init__(self, cfg: BenchConfig, threads: int = 0):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(cfg.model_path), opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.nchw = inp.shape[1] == 3 and inp.shape[-1] != 3
        h, w = (inp.shape[2], inp.shape[3]) if self.nchw else (inp.shape[1], inp.shape[2])
        self.hw = (int(h), int(w))
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.dtype = "float16" if "float16" in inp.type else "float32"
        self.outputs = [o.name for o in self.session.get_outputs()]
        self._score = "probabilities" if "probabilities" in self.outputs else "logits"

    def prepare(self, images):
        import numpy as np

        x = images.transpose(0, 3, 1, 2) if self.nchw else images
        return {self.input_name: np.ascontiguousarray(x, dtype=self.dtype)}

    def predict(self, feed):
        return self.session.run(None, feed)

    def scores(self, out):
        return out[self.outputs.index(self._score)]


BACKENDS = {"tf": TFBackend, "onnx": ONNXBackend}


def load(cfg: BenchConfig, threads: int = 0):
    """The backend `cfg.backend` names, with `cfg.model_path` loaded."""
    return BACKENDS[cfg.backend](cfg, threads=threads)
