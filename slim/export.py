"""export_inference_graph for TF 2.21: a SavedModel with a serving signature
and a frozen GraphDef, from a training checkpoint.

Signature ``serving_default``: input ``images`` float32 [None, H, W, 3]
(already preprocessed, as slim's exported graphs expect) -> ``logits``,
``probabilities`` (softmax) and ``classes`` (argmax, int64). The frozen graph
has the same node names: input ``images``, outputs ``logits``,
``probabilities``, ``classes``.
"""
import json
import shutil
from pathlib import Path

import slim.compat  # noqa: F401
import tensorflow as tf

from slim import inputs, nets, precision, preprocessing
from slim.eval import find_checkpoint, restore_saver
from slim.train import image_size, resolve

v1 = tf.compat.v1
OUTPUTS = ("logits", "probabilities", "classes")


def export(cfg, dataset_dir, checkpoint, out_dir, extra=None, echo=print):
    """Write ``out_dir/saved_model/``, ``out_dir/frozen_graph.pb``, ``out_dir/export.json``."""
    cfg = resolve(cfg)
    precision.require(cfg["compute"], f"export {cfg['model']} compute={cfg['compute']}")
    ckpt = find_checkpoint(checkpoint)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    info = inputs.split_info(dataset_dir)
    classes = inputs.num_classes(info) - cfg["labels_offset"]
    size = image_size(cfg, "eval_image_size")
    with tf.Graph().as_default() as graph:
        images = v1.placeholder(tf.float32, [None, size, size, 3], name="images")
        logits, _ = nets.get_network_fn(cfg["model"], classes, is_training=False)(images)
        logits = tf.identity(logits, name="logits")
        probabilities = tf.nn.softmax(logits, name="probabilities")
        predicted = tf.argmax(logits, axis=1, name="classes")
        saver = restore_saver(cfg)
        with v1.Session() as sess:
            saver.restore(sess, ckpt)
            sm_dir = out_dir / "saved_model"
            if sm_dir.exists():
                shutil.rmtree(sm_dir)
            builder = v1.saved_model.Builder(str(sm_dir))
            signature = v1.saved_model.predict_signature_def(
                inputs={"images": images},
                outputs={"logits": logits, "probabilities": probabilities,
                         "classes": predicted})
            builder.add_meta_graph_and_variables(
                sess, [v1.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": signature}, strip_default_attrs=True)
            builder.save()
            frozen = v1.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), list(OUTPUTS))
            frozen = v1.graph_util.extract_sub_graph(frozen, list(OUTPUTS))
    (out_dir / "frozen_graph.pb").write_bytes(frozen.SerializeToString())
    meta = {"model": cfg["model"], "input_name": "images", "input_shape": [None, size, size, 3],
            "input_dtype": "float32", "compute": cfg["compute"], "outputs": list(OUTPUTS), "num_classes": classes,
            "labels_offset": cfg["labels_offset"],
            "preprocessing": preprocessing.for_model(cfg["model"], cfg["preprocessing"]),
            "checkpoint": ckpt, "global_step": int(tf.train.load_variable(ckpt, "global_step")),
            "saved_model": "saved_model", "frozen_graph": "frozen_graph.pb",
            "signature": "serving_default", "training_params": cfg}
    meta.update(extra or {})
    (out_dir / "export.json").write_text(json.dumps(meta, indent=2, default=str))
    echo(f"exported {cfg['model']} to {meta.get('export_dir', out_dir)} (input images [None,{size},{size},3], "
         f"{classes} classes)")
    return meta
