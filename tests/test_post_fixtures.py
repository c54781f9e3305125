"""Tiny SavedModels with the export contract (input 'images' -> logits/probabilities/classes).

The post-training tests (convert, benchmark, publish) use these instead of a trained
net: same serving signature as `doit export`, a few KiB of weights, seconds to build.
"""
import json
from pathlib import Path

import pytest


def tiny_saved_model(out: Path, *, seed: int = 1, classes: int = 10, size: int = 16, channels: int = 8,
                     extra_output: bool = False) -> Path:
    """Write a SavedModel + export.json into `out`; returns `out`."""
    import tensorflow as tf

    class Tiny(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.random.stateless_normal([3, 3, 3, channels], seed=[seed, 1]) * 0.5)
            self.d = tf.Variable(tf.random.stateless_normal([channels * 4, classes], seed=[seed, 2]))

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="images")])
        def serve(self, images):
            x = tf.nn.relu(tf.nn.conv2d(images, self.w, 2, "SAME"))
            x = tf.nn.max_pool2d(x, size // 4, size // 4, "VALID")          # [N, 2, 2, C]
            logits = tf.matmul(tf.reshape(x, [-1, channels * 4]), self.d)
            out = {"logits": logits, "probabilities": tf.nn.softmax(logits),
                   "classes": tf.argmax(logits, 1)}
            if extra_output:
                out["features"] = x
            return out

    out = Path(out)
    m = Tiny()
    tf.saved_model.save(m, str(out), signatures={"serving_default": m.serve})
    (out / "export.json").write_text(json.dumps({
        "model": "tiny", "input_shape": [size, size, 3], "num_classes": classes,
        "params": {"seed": seed}, "key": f"tiny-{seed}"}))
    return out


def test_tiny_saved_model_has_the_export_signature(tmp_path):
    from slim import convert

    sig = convert.saved_model_signature(tiny_saved_model(tmp_path / "m"))
    assert sig["inputs"] == {"images": {"dtype": "float32", "shape": [None, 16, 16, 3]}}
    assert set(sig["outputs"]) == {"logits", "probabilities", "classes"}
    assert sig["outputs"]["classes"]["dtype"] == "int64"


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory):
    return tiny_saved_model(tmp_path_factory.mktemp("tiny") / "export")
