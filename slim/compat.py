"""tf-slim 1.1.0 on TensorFlow 2.21: every compatibility patch in one place.

Import this module (or anything in ``slim``) before ``tf_slim``. Each patch
says why it exists; all are idempotent.
"""
import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402


def _alias_legacy_tf_layers():
    # tensorflow.python.layers.{core,normalization,...} lazily import
    # ``tf_keras.legacy_tf_layers.*``; tf-keras 2.21 ships them only under
    # ``tf_keras.src.legacy_tf_layers``. slim.batch_norm goes through it.
    src = importlib.import_module("tf_keras.src.legacy_tf_layers")
    sys.modules.setdefault("tf_keras.legacy_tf_layers", src)
    for sub in ("base", "core", "convolutional", "normalization", "pooling",
                "variable_scope_shim"):
        mod = importlib.import_module(f"tf_keras.src.legacy_tf_layers.{sub}")
        sys.modules.setdefault(f"tf_keras.legacy_tf_layers.{sub}", mod)


def _patch_control_flow_ops():
    # tfexample_decoder calls control_flow_ops.case / .cond, removed from
    # that module in TF 2.x internals.
    from tensorflow.python.ops import control_flow_ops
    if not hasattr(control_flow_ops, "case"):
        control_flow_ops.case = tf.case
    if not hasattr(control_flow_ops, "cond"):
        control_flow_ops.cond = tf.cond


def _absl_stream_to_real_stderr():
    # absl binds its handler to sys.stderr at first use; under doit that is a
    # capture object without close(), and logging's atexit shutdown then
    # prints a traceback. Point it at the process's real stderr.
    try:
        from absl import logging as absl_logging
        absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
    except Exception:  # absl layout changed: only cosmetic
        pass


def _quiet():
    # tf_slim is TF1 code: every layer call warns about deprecated APIs.
    import warnings
    warnings.filterwarnings("ignore", message=r"`layer.apply` is deprecated")
    warnings.filterwarnings("ignore", message=r"`tf.layers.flatten` is deprecated")
    tf.get_logger().setLevel("ERROR")


_alias_legacy_tf_layers()
_patch_control_flow_ops()
_absl_stream_to_real_stderr()
_quiet()

import tf_slim  # noqa: E402,F401

PATCHES = ("tf_keras.legacy_tf_layers alias", "control_flow_ops.case/cond",
           "absl log stream")
