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


def tiny_v1_export(out: Path, *, seed: int = 1, classes: int = 10, size: int = 16) -> Path:
    """The layout `doit export` writes (slim/export.py): a TF1 Builder SavedModel under
    out/saved_model/ and export.json beside it."""
    import tensorflow as tf

    v1 = tf.compat.v1
    out = Path(out)
    with tf.Graph().as_default():
        images = v1.placeholder(tf.float32, [None, size, size, 3], name="images")
        w = v1.get_variable("w", initializer=tf.random.stateless_normal([3, 3, 3, 8], seed=[seed, 1]) * 0.5)
        d = v1.get_variable("d", initializer=tf.random.stateless_normal([8, classes], seed=[seed, 2]))
        x = tf.reduce_max(tf.nn.relu(tf.nn.conv2d(images, w, 2, "SAME")), [1, 2])
        logits = tf.identity(tf.matmul(x, d), name="logits")
        outputs = {"logits": logits, "probabilities": tf.nn.softmax(logits, name="probabilities"),
                   "classes": tf.argmax(logits, 1, name="classes")}
        with v1.Session() as sess:
            sess.run(v1.global_variables_initializer())
            builder = v1.saved_model.Builder(str(out / "saved_model"))
            builder.add_meta_graph_and_variables(
                sess, [v1.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": v1.saved_model.predict_signature_def(
                    inputs={"images": images}, outputs=outputs)}, strip_default_attrs=True)
            builder.save()
            frozen = v1.graph_util.convert_variables_to_constants(
                sess, sess.graph.as_graph_def(), ["logits", "probabilities", "classes"])
    (out / "frozen_graph.pb").write_bytes(frozen.SerializeToString())
    (out / "export.json").write_text(json.dumps({
        "model": "tiny_v1", "input_name": "images", "input_shape": [None, size, size, 3],
        "num_classes": classes, "labels_offset": 0, "saved_model": "saved_model",
        "frozen_graph": "frozen_graph.pb", "outputs": ["logits", "probabilities", "classes"],
        "training_params": {"model": "tiny_v1", "batch_size": 8}}))
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
