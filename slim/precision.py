"""Compute precision of training, evaluation and inference: fp32, or bf16 through TensorFlow's
oneDNN auto-mixed-precision rewrite.

bf16 is a rewrite, not a new model: grappler's ``auto_mixed_precision_onednn_bfloat16`` pass
(TF 2.21's RewriterConfig field; ``auto_mixed_precision_mkl`` is its deprecated alias) casts
the eligible ops of the graph (Conv2D, MatMul and their gradients, ...) to bfloat16 when the
session runs.  Variables, the optimizer's slots and the checkpoint stay float32, and so do a
SavedModel's inputs and outputs.  The same switch is thrown for TF1 sessions
(:func:`session_config`) and for eager / ``tf.function`` calls (:func:`enable_for_eager`).

A CPU without bf16 instructions would emulate them, many times slower than fp32: that is
refused in one line (:func:`require`) instead.

TensorFlow is imported inside the functions: importing this module is cheap.
"""
from __future__ import annotations

from zoobuild.errors import UserError

COMPUTES = ("fp32", "bf16")
#: the RewriterConfig field of TF 2.21 that turns the bf16 rewrite on
REWRITE = "auto_mixed_precision_onednn_bfloat16"


def check(compute: str) -> str:
    if compute not in COMPUTES:
        raise UserError(f"compute={compute!r}: expected one of {', '.join(COMPUTES)}")
    return compute


def require(compute: str, what: str = "") -> None:
    """UserError (one line) when ``compute`` needs CPU features this host lacks.

    images/cpu.py reads the flags (ZOOBUILD_CPU_FLAGS plays an older CPU).  A model package
    ships no images/: inside its container the host-side task has already checked."""
    check(compute)
    if compute == "fp32":
        return
    try:
        from images import cpu
    except ImportError:  # inside a model package (the host checked before starting it)
        return
    cpu.check_bf16(what=what or f"compute={compute}")


def session_config(compute: str, config=None):
    """A tf.compat.v1.ConfigProto (``config`` updated in place when given) with the rewrite
    switched on for bf16 and left at TensorFlow's default for fp32."""
    import tensorflow as tf
    from tensorflow.core.protobuf import rewriter_config_pb2

    check(compute)
    config = tf.compat.v1.ConfigProto() if config is None else config
    if compute == "bf16":
        setattr(config.graph_options.rewrite_options, REWRITE, rewriter_config_pb2.RewriterConfig.ON)
    return config


def enable_for_eager(compute: str) -> None:
    """Switch the rewrite on (bf16) or off (fp32) for this process's eager context (tf.function,
    loaded SavedModels): a process-wide setting, so fp32 sets it back explicitly."""
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options({REWRITE: check(compute) == "bf16"})
