"""Running a model on a batch of images: the SavedModel through TensorFlow, a converted
file through onnxruntime.  Both map images NHWC float32 -> {output name: array}."""
from __future__ import annotations

from slim.convert.savedmodel import find_saved_model, load_serving


def tf_runner(export_dir):
    """The SavedModel's serving function, run in fp32 (the gate's reference)."""
    import tensorflow as tf

    from slim import precision

    # the bf16 rewrite is process-wide: a bf16 TF benchmark earlier in this process (doit runs
    # benchmark and convert in one) would make the "fp32" reference a bf16 one (seen: max abs
    # 0.027 against a correct fp32 ONNX model)
    precision.enable_for_eager("fp32")
    _, fn = load_serving(find_saved_model(export_dir))

    def run(images):
        out = fn(images=tf.constant(images))
        return {k: v.numpy() for k, v in out.items()}
    return run


def onnx_runner(path, threads: int = 0, basic_optimizations: bool = False):
    """basic_optimizations: only onnxruntime's semantics-preserving basic graph rewrites.  The
    full level adds layout passes that keep a reordered copy of every weight: vgg_16's fp32
    session peaked at 2.3 GB with them and 1.0 GB without (and was no faster for a few images)."""
    import numpy as np
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    if basic_optimizations:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
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


def run_batched(run, images, batch, bar=None):
    """Run `images` through `run` in chunks of `batch` (padding the last); concatenated outputs.
    `images` may be a memory-mapped array: only one chunk is read at a time."""
    import numpy as np

    if not batch:
        return run(np.asarray(images))
    parts = []
    for i in range(0, len(images), batch):
        chunk = np.asarray(images[i:i + batch])
        pad = batch - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
        out = run(chunk)
        parts.append({k: v[:batch - pad] for k, v in out.items()})
        if bar is not None:
            bar.advance(batch - pad)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
